"""The CVE-2019-5736 class: a container's command that leads back to
/proc/self/exe must never run the host's interpreter inside the container.

The command resolves inside the container, but /proc/self/exe is a magic link
to whatever the exec'ing process runs. Before the exec trampoline, that was
minirun's own python: the kernel ran it in the container, on the image's
copies of ld.so and libc and with the image's PYTHONHOME, so the image's
Python code ran in a process whose /proc/self/exe is the host's interpreter,
open for the taking (only ETXTBSY, while minirun itself still ran the same
file, kept a write out). Here minirun runs from a canary copy of the
interpreter in the test's own directory, so even a successful write would hit
nothing of the host's. The image carries what that interpreter needs to start
(the loader and libraries `ldd` names) and a PYTHONHOME whose `encodings`
package is the attacker's code: it prints a marker and tries to open its
/proc/self/exe for writing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from .conftest import REPO
from .imagebuild import busybox_layer, entry, write_layout

MARKER = "HOST-INTERPRETER-RAN-IN-CONTAINER"
PAYLOAD = f"""import posix
posix.write(1, ("{MARKER} exe=" + posix.readlink("/proc/self/exe") + "\\n").encode())
fd = posix.open("/proc/self/exe", 0o10000000)
try:
    posix.open("/proc/self/fd/%d" % fd, posix.O_WRONLY)
    posix.write(1, b"OPENED-FOR-WRITE\\n")
except OSError as exc:
    posix.write(1, ("write refused: %s\\n" % exc).encode())
posix._exit(0)
""".encode()
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
COMMANDS = {"path": ["/proc/self/exe"], "symlink": ["/entry"], "shebang": ["/shebang"],
            "via-PATH": ["selfexe"]}


def _libraries(binary: Path) -> list[str]:
    """The files the dynamic loader maps for binary: (none for a static build)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            found.append(path)
    return found


def _entries_for(paths: list[str]) -> list:
    made, entries = {"bin", "etc", "proc", "dev", "sys", "tmp"}, []
    for path in paths:
        parts = Path(path).parent.parts[1:]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made:
                made.add(folder)
                entries.append(entry(folder, tarfile.DIRTYPE, mode=0o755))
        entries.append(entry(path.lstrip("/"), data=Path(os.path.realpath(path)).read_bytes(), mode=0o755))
    return entries


class Canary:
    """minirun run from a copy of this test's interpreter, against the mr store."""

    def __init__(self, tmp_path: Path, mr):
        self.binary = tmp_path / "canary" / VERSION
        self.binary.parent.mkdir()
        shutil.copy2(os.path.realpath(sys.executable), self.binary)
        self.digest = self.sum()
        self.env = dict(mr.env, PYTHONPATH=os.pathsep.join([str(REPO), *site.getsitepackages()]))

    def sum(self) -> str:
        return hashlib.sha256(self.binary.read_bytes()).hexdigest()

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), "-m", "minirun", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def attack(mr, tmp_path):
    canary = Canary(tmp_path, mr)
    home = f"evil/lib/{VERSION}"
    extra = _entries_for(_libraries(canary.binary)) + [
        *(entry(d, tarfile.DIRTYPE, mode=0o755) for d in ("evil", "evil/lib", home, f"{home}/encodings")),
        entry(f"{home}/encodings/__init__.py", data=PAYLOAD),
        entry("shebang", data=b"#!/proc/self/exe\n", mode=0o755),
        entry("entry", tarfile.SYMTYPE, linkname="/proc/self/exe"),
        entry("bin/selfexe", tarfile.SYMTYPE, linkname="/proc/self/exe"),
    ]
    layout = tmp_path / "layout"
    write_layout(layout, [busybox_layer(extra)],
                 {"Cmd": ["/entry"], "Env": ["PYTHONHOME=/evil", "PATH=/bin"]})
    loaded = canary("load", "--tag", "localhost/selfexe", str(layout))
    assert loaded.returncode == 0, loaded.stderr
    return canary


def refused(result: subprocess.CompletedProcess, canary: Canary) -> None:
    assert MARKER not in result.stdout, f"the host's interpreter ran in the container: {result.stdout}"
    assert result.returncode == 126, (result.returncode, result.stdout, result.stderr)
    assert "exec trampoline" in result.stderr and "/proc/self/exe" in result.stderr
    assert canary.sum() == canary.digest


@pytest.mark.parametrize("how", list(COMMANDS))
@pytest.mark.parametrize("init", [False, True], ids=["", "init"])
def test_run_never_runs_the_hosts_interpreter_in_the_container(attack, how, init):
    result = attack("run", "--rm", *(["--init"] if init else []), "localhost/selfexe", *COMMANDS[how])
    refused(result, attack)


@pytest.mark.parametrize("how", list(COMMANDS))
def test_exec_never_runs_the_hosts_interpreter_in_the_container(attack, how):
    started = attack("run", "-d", "--name", "victim", "localhost/selfexe", "busybox", "sleep", "60")
    assert started.returncode == 0, started.stderr
    try:
        refused(attack("exec", "victim", *COMMANDS[how]), attack)
    finally:
        attack("rm", "-f", "victim")


def test_the_image_default_command_is_refused_too(attack):
    """No command given: the image's Cmd, /entry, is the symlink to /proc/self/exe."""
    refused(attack("run", "--rm", "localhost/selfexe"), attack)


def test_ordinary_commands_still_run_through_the_trampoline(attack):
    """PID 1 is the command with its own argv, nothing of the trampoline's."""
    result = attack("run", "--rm", "localhost/selfexe", "sh", "-c", "cat /proc/1/cmdline; busybox readlink /proc/1/exe")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sh\0-c\0cat /proc/1/cmdline; busybox readlink /proc/1/exe\0/bin/busybox\n"


# ---------------------------------------------------------------- exec before PID 1's exec

def slow_path_image(tmp_path: Path, canary: Canary, entries: int) -> str:
    """An image whose PATH makes its command's search take seconds: every /a is a
    chain of 40 symlinks of ~4,000 characters each, and the command is on none of
    them. Its PID 1 stays minirun's own python (the host's, a canary copy here) for
    as long as the search lasts, while its state already says running."""
    pad = "/." * 1990
    chain = [entry(f"s/{i}", tarfile.SYMTYPE, linkname=f"{pad}/s/{i + 1}") for i in range(39)]
    chain += [entry("s/39", tarfile.SYMTYPE, linkname=f"{pad}/d"), entry("a", tarfile.SYMTYPE, linkname="/s/0")]
    extra = [entry("s", tarfile.DIRTYPE, mode=0o755), entry("d", tarfile.DIRTYPE, mode=0o755), *chain]
    layout = tmp_path / "slow"
    write_layout(layout, [busybox_layer(extra)],
                 {"Cmd": ["nowhere-to-be-found"], "Env": ["PATH=/bin:" + ":".join(["/a"] * entries)]})
    loaded = canary("load", "--tag", "localhost/slow", str(layout))
    assert loaded.returncode == 0, loaded.stderr
    return "localhost/slow"


def test_exec_waits_for_pid_1_to_leave_the_hosts_interpreter(mr, tmp_path):
    """Until its exec, PID 1 is the host's python with capabilities it has yet to
    drop. An exec that joined it then could chmod/chown that host file through
    /proc/1/exe (found by an outside review). exec now says "still starting"."""
    canary = Canary(tmp_path, mr)
    image = slow_path_image(tmp_path, canary, 300)
    mode = canary.binary.stat().st_mode
    starter = subprocess.Popen([str(canary.binary), "-m", "minirun", "run", "-d", "--name", "racer", image],
                               env=canary.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = []
    try:
        while starter.poll() is None or not seen:
            result = canary("exec", "racer", "sh", "-c",
                            "chmod 6777 /proc/1/exe 2>/dev/null; chown 4242 /proc/1/exe 2>/dev/null; "
                            "grep ^Name: /proc/1/status")
            seen.append((result.returncode, result.stdout.strip(), result.stderr.strip()))
    finally:
        starter.wait(timeout=120)
    stat = canary.binary.stat()
    assert (stat.st_mode, stat.st_uid) == (mode, 0), f"the host file was changed: {oct(stat.st_mode)}, {seen}"
    for code, out, err in seen:
        assert "python" not in out, seen
        if code != 0:
            assert ("still starting" in err or "not running" in err or "no such container" in err), seen
    assert any("still starting" in err for _, _, err in seen), seen     # the window was there
    mr("rm", "-f", "racer")
