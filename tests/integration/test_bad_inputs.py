"""Inputs that once ended in a traceback (issue 14, item 12): out-of-range signals,
a 5,000-character file name, SOURCE_DATE_EPOCH=10^30, a deeply nested config
file, MINIRUN_ROOT=/dev/null, a read-only store, --env-file /dev/zero or with a
NUL byte, image configs with Env ["=x"] or Entrypoint [""], and control
characters a user gives echoed in error lines. Each must be one line naming the
cause, with a documented exit code."""

from __future__ import annotations

import os
import resource
import shutil

import pytest

from .imagebuild import busybox_layer, write_layout

MEMORY_CAP = 2 << 30


def capped():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in lines[0]), repr(lines[0])
    return lines[0]


@pytest.mark.parametrize("signal", ["999", "65", "99999999999999999999", "0", "-1", "SIGNOPE"])
def test_kill_with_a_signal_out_of_range_is_one_line(mr, signal):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "s", "busybox", "sleep", "100")
    result = mr("kill", "-s", signal, "s")
    assert result.returncode == 2 and "signal" in one_line(result)
    assert mr.running_state("s")["status"] == "running"


def test_a_five_thousand_character_file_name_is_one_short_line(mr):
    name = "a" * 5000
    for args in (("import", name), ("import", name, "x:1"), ("load", name), ("save", "-o", name, "x"),
                 ("export", "-o", name, "x")):
        result = mr(*args)
        assert result.returncode in (1, 2), (args, result.stderr)
        assert len(one_line(result)) < 500, args


@pytest.mark.parametrize("value", [str(10 ** 30), "253402300800", "\u00b2", "-5", "1e9"])
def test_source_date_epoch_out_of_range_is_one_line(mr, tmp_path, value):
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "true")
    result = mr("commit", "c", "x:1", env={"SOURCE_DATE_EPOCH": value})
    assert result.returncode == 2 and "SOURCE_DATE_EPOCH" in one_line(result)
    mr.ok("export", "c", "-o", str(tmp_path / "c.tar"))
    result = mr("import", str(tmp_path / "c.tar"), "y:1", env={"SOURCE_DATE_EPOCH": value})
    assert result.returncode == 2 and "SOURCE_DATE_EPOCH" in one_line(result)
    assert mr.ok("images", "-q").lines == [mr.ok("images", "-q").lines[0]]   # nothing was added


def test_a_deeply_nested_or_endless_config_file_is_one_line(mr, tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    table = tmp_path / "table.toml"
    table.write_text("x = {" * 5000 + "}" * 5000 + "\n")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for config in (deep, table, "/dev/zero", fifo):
        for args, code in ((("images",), 3), (("run", "--rm", "busybox", "true"), 125)):
            result = mr(*args, env={"MINIRUN_CONFIG": str(config)}, preexec_fn=capped, timeout=30)
            assert result.returncode == code, (config, args, result.stderr)
            assert "config" in one_line(result)


@pytest.mark.parametrize("root", ["/dev/null", "/dev/zero/x", "/proc/self/status"])
def test_a_store_root_that_is_not_a_directory_is_one_line(mr, root):
    for args in (("images",), ("ps", "-a"), ("run", "--rm", "busybox", "true"), ("fsck",),
                 ("system", "df"), ("rm", "x"), ("load", mr.fixture_path("busybox")), ("layers",),
                 ("prune", "-f"), ("info",)):
        result = mr(*args, env={"MINIRUN_ROOT": root})
        assert result.returncode in (3, 125) if args[0] == "run" else result.returncode == 3, \
            (args, result.stderr)
        assert root in one_line(result) or "MINIRUN_ROOT" in one_line(result), args


WRITING = [("run", "--rm", "busybox", "true"), ("run", "--name", "n", "busybox", "true"),
           ("rm", "-f", "c"), ("rmi", "-f", "busybox"), ("tag", "busybox", "x:1"),
           ("commit", "c", "x:2"), ("prune", "-f", "--containers"), ("image", "prune", "-f"),
           ("fsck", "--repair"), ("export", "c", "-o", "/dev/null")]


def test_every_writing_command_on_a_read_only_store_is_one_line(mr, tmp_path):
    mr.load("busybox")
    mr.ok("run", "--name", "c", "busybox", "sh", "-c", "echo hi > /f")
    before = sorted(str(p) for p in mr.root.rglob("*"))
    ro = ("unshare", "-m", "--propagation", "private", "sh", "-c",
          'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(mr.root))
    for args in WRITING + [("load", mr.fixture_path("myapp")),
                           ("import", str(tmp_path / "none.tar"))]:
        if args[0] == "import":
            mr.ok("export", "c", "-o", args[1])
        result = mr(*args, prefix=ro)
        if args[0] in ("export", "fsck") and result.returncode == 0:
            assert result.stderr == ""     # read the store only, or found nothing to repair
            continue
        assert result.returncode in (3, 125), (args, result.stderr)
        assert "read-only" in one_line(result).lower(), args
    assert sorted(str(p) for p in mr.root.rglob("*")) == before


def test_env_file_is_bounded_regular_or_stdin(mr, tmp_path):
    mr.load("busybox")
    nul = tmp_path / "nul.env"
    nul.write_bytes(b"A=1\nB=x\0y\n")
    huge = tmp_path / "huge.env"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)
    fifo = tmp_path / "fifo.env"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(nul), str(huge), str(fifo), str(tmp_path)):
        result = mr("run", "--rm", "--env-file", path, "busybox", "true", preexec_fn=capped, timeout=30)
        assert result.returncode == 125, (path, result.stderr)
        assert "--env-file" in one_line(result), path
    ok = mr("run", "--rm", "--env-file", "/dev/stdin", "busybox", "sh", "-c", "echo $A",
            input="A=from-stdin\n")
    assert ok.returncode == 0 and ok.stdout == "from-stdin\n", ok.stderr


def test_image_env_with_an_empty_name_is_refused_and_an_empty_entrypoint_is_none(mr, tmp_path):
    write_layout(tmp_path / "envx", [busybox_layer()], {"Env": ["=x"], "Cmd": ["true"]})
    write_layout(tmp_path / "ep", [busybox_layer()], {"Entrypoint": [""], "Cmd": ["echo", "ok"]})
    write_layout(tmp_path / "eponly", [busybox_layer()], {"Entrypoint": [""]})
    write_layout(tmp_path / "cmd", [busybox_layer()], {"Cmd": [""]})
    for name in ("envx", "ep", "eponly", "cmd"):
        mr.ok("load", "-q", str(tmp_path / name))
    result = mr("run", "--rm", "envx")
    assert result.returncode == 125 and "Env" in one_line(result)
    assert os.listdir(mr.root / "containers") == []
    assert mr.ok("run", "--rm", "ep").stdout == "ok\n"
    assert mr.ok("run", "--rm", "ep", "echo", "other").stdout == "other\n"
    result = mr("run", "--rm", "eponly")
    assert result.returncode == 125 and "no command" in one_line(result)
    result = mr("run", "--rm", "cmd")
    assert result.returncode in (125, 127) and "ValueError" not in one_line(result)
    assert os.listdir(mr.root / "containers") == []


@pytest.mark.parametrize("flag", ["-u", "--entrypoint", "-w", "--name", "-e", "--hostname", "IMAGE"])
def test_error_lines_escape_control_characters_a_user_gave(mr, flag):
    mr.load("busybox")
    value = "bad\nvalue\x1b[31m\r\x07\x9b"
    if flag == "IMAGE":
        args = ("run", "--rm", value)
    elif flag == "-e":
        args = ("run", "--rm", "-e", "=" + value, "busybox", "true")
    elif flag == "-w":
        args = ("run", "--rm", "-w", "/" + value, "busybox", "true")
    else:
        args = ("run", "--rm", flag, value, "busybox", "true")
    result = mr(*args)
    assert result.returncode != 0 or flag == "-w", result.stderr
    if result.returncode != 0:
        line = one_line(result)
        assert "\\n" in line or "\\x1b" in line or "value" in line
    for args in (("inspect", value), ("rm", value), ("kill", "-s", value, "x"), ("rmi", value),
                 ("tag", "busybox", value)):
        result = mr(*args)
        assert result.returncode != 0
        one_line(result)


def test_paths_on_the_command_line_are_never_echoed_raw(mr, tmp_path):
    odd = tmp_path / "new\nline\x1b[2J"
    odd.mkdir()
    result = mr("load", str(odd))
    assert result.returncode == 1
    one_line(result)
    shutil.rmtree(odd)
