"""The exec trampoline's machine code, run for real: it execs argv[1] with argv[2:]
and the environment, closes fd 3 on that exec, reports a failed execve's errno on
fd 3, and runs only under its own argv[0]."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess

import pytest

from minirun.sandbox import trampoline

pytestmark = pytest.mark.skipif(not trampoline.supported(), reason="the program exists for x86-64 only")


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "trampoline"
    path.write_bytes(trampoline.program())
    path.chmod(0o755)
    return str(path)


def run_with_report(program: str, argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run the program with a pipe at fd 3, as process._exec gives it one; its
    stdout and stderr go to one pipe."""
    out_r, out_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.dup2(rep_w, trampoline.REPORT_FD)
            os.closerange(4, 1024)
            os.execv(program, argv)
        finally:
            os._exit(99)
    os.close(out_w)
    os.close(rep_w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(out_r, "rb") as out, os.fdopen(rep_r, "rb") as rep:
        return os.waitstatus_to_exitcode(status), out.read(), rep.read()


def test_it_execs_the_command_with_its_own_argv_and_the_environment(program):
    proc = subprocess.run([trampoline.ARGV0, "/usr/bin/env", "env-as-argv0"], executable=program,
                          env={"ONLY": "this"}, capture_output=True)
    assert (proc.returncode, proc.stdout) == (0, b"ONLY=this\n")
    proc = subprocess.run([trampoline.ARGV0, "/bin/sh", "shown-name", "-c", "cat /proc/$$/cmdline", "arg"],
                          executable=program, capture_output=True)
    assert proc.stdout == b"shown-name\0-c\0cat /proc/$$/cmdline\0arg\0"


def test_the_command_never_inherits_fd_3(program):
    code, out, report = run_with_report(program, [trampoline.ARGV0, "/bin/sh", "sh", "-c",
                                                  "if [ -e /proc/$$/fd/3 ]; then echo open; else echo closed; fi"])
    assert (code, out, report) == (0, b"closed\n", b"")


@pytest.mark.parametrize("name,mode,number", [("missing", None, errno.ENOENT), ("not-executable", 0o644, errno.EACCES),
                                              ("not-a-program", 0o755, errno.ENOEXEC), ("", None, errno.EACCES)])
def test_a_failed_execve_reports_its_errno_on_fd_3(program, tmp_path, name, mode, number):
    path = tmp_path / name
    if mode is not None:
        path.write_bytes(b"\0\1\2\3 no ELF, no #!")
        path.chmod(mode)
    code, _, report = run_with_report(program, [trampoline.ARGV0, str(path), "x"])
    assert code == 127
    assert trampoline.decode(report) == number


def test_it_refuses_to_run_under_another_argv0(program):
    """#!/proc/self/exe reaches it with argv[0] "/proc/self/exe": it must end at once."""
    code, out, report = run_with_report(program, ["/proc/self/exe", "/bin/echo", "echo", "ran"])
    assert (code, out, report) == (126, trampoline.REFUSED, b"")
    assert out.startswith(b"minirun: ") and out.endswith(b"not running it\n")


def test_the_memfd_is_sealed_against_writes():
    fd = trampoline.prepare()
    try:
        assert os.pread(fd, 4, 0) == b"\x7fELF"
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        reopened = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)     # what /proc/self/exe gives
        try:
            with pytest.raises(PermissionError):
                os.write(reopened, b"x")
        finally:
            os.close(reopened)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def test_failures_read_like_dockers():
    assert trampoline.failure("/app", errno.ENOENT)[0] == 127
    assert trampoline.failure("/app", errno.EACCES) == (126, "exec /app: Permission denied")
    assert trampoline.decode(b"{") == ord("{") and trampoline.decode(b'{"code": 1}') == 0


def test_the_code_is_what_trampoline_s_assembles_to(tmp_path):
    """_CODE is pasted from the assembler's output; this keeps the two one program."""
    if not shutil.which("as") or not shutil.which("objcopy"):
        pytest.skip("needs GNU as and objcopy (binutils)")
    source = os.path.join(os.path.dirname(trampoline.__file__), "trampoline.s")
    subprocess.run(["as", "--64", "-o", str(tmp_path / "t.o"), source], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "t.o"), str(tmp_path / "t.bin")],
                   check=True)
    assert (tmp_path / "t.bin").read_bytes() == trampoline._CODE


def supervised(program: str, mode: str, script: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([mode, "/bin/sh", "sh", "-c", script], executable=program,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.parametrize("mode", [trampoline.INIT, trampoline.WAIT])
def test_a_supervisor_exits_as_its_command_did(program, mode):
    proc = supervised(program, mode, "echo out; exit 3")
    assert proc.communicate(timeout=10)[0] == b"out\n" and proc.returncode == 3
    proc = supervised(program, mode, "kill -KILL $$")
    proc.communicate(timeout=10)
    assert proc.returncode == 128 + 9
    code, _, report = run_with_report(program, [mode, "/no/such/command", "x"])
    assert (code, trampoline.decode(report)) == (127, errno.ENOENT)


@pytest.mark.parametrize("mode", [trampoline.INIT, trampoline.WAIT])
def test_a_supervisor_forwards_signals_and_holds_no_capability(program, mode):
    proc = supervised(program, mode, 'trap "exit 42" TERM; grep -E "^(Name|Cap(Inh|Prm|Eff)):" /proc/$PPID/status;'
                      ' echo ready; while :; do sleep 0.05; done')
    lines = []
    while (line := proc.stdout.readline()) != b"ready\n":
        assert line, proc.stderr.read()
        lines.append(line.decode().split())
    assert dict(lines) == {"Name:": mode, "CapInh:": "0" * 16, "CapPrm:": "0" * 16, "CapEff:": "0" * 16}
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 42


def test_wait_mode_gives_the_command_a_session_init_mode_a_process_group(program):
    """exec's command leads a session of its own, so ^Z on its terminal stops only
    it; --init's command leads a process group in PID 1's session."""
    script = 'set -- $(cut -d")" -f2 /proc/$$/stat); echo "$$ $3 $4"'
    for mode, same_session in ((trampoline.WAIT, True), (trampoline.INIT, False)):
        out = supervised(program, mode, script, start_new_session=True).communicate(timeout=10)[0]
        pid, group, session = out.split()
        assert group == pid and (session == pid) == same_session, (mode, out)


def test_init_reaps_orphans_as_pid_1(program):
    """In a PID namespace of its own, as under run --init: an orphan's zombie is reaped."""
    if not shutil.which("unshare") or not shutil.which("bash"):
        pytest.skip("needs unshare and bash")
    script = ('(sh -c "exit 0" &); sleep 0.3; '
              'for f in /proc/[0-9]*/stat; do cut -d" " -f3 "$f"; done | grep -c Z || true')
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "bash", "-c",
                           f'exec -a {trampoline.INIT} {program} /bin/sh sh -c \'{script}\''],
                          capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == b"0", proc.stdout


def test_setup_failures_read_as_one_line():
    assert trampoline.setup_failure(b"I\x05\x01") == ("container setup: the init process could not drop its "
                                                      "capabilities (capset): Operation not permitted "
                                                      "(does the seccomp profile allow it?)")
    assert trampoline.setup_failure(b"\x02I\x04\x0b").startswith("container setup: the init process could not start")
    assert trampoline.setup_failure(b"I") == trampoline.setup_failure(b"I\x09\x01") == ""


def test_find_leaves_a_symlink_it_cannot_resolve_to_the_commands_own_execve(tmp_path):
    """exec's waiter sits outside the container's PID namespace, where a link into
    /proc/self resolves to nothing: the command's execve must see it, not skip it."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").symlink_to("/proc/no-such-pid/exe")
    env = {"PATH": f"{first}:{second}"}
    assert trampoline.find("tool", env) == str(first / "tool")
    (second / "tool").write_text("#!/bin/sh\n")
    (second / "tool").chmod(0o755)
    assert trampoline.find("tool", env) == str(second / "tool")
    with pytest.raises(FileNotFoundError):
        trampoline.find("other", env)
