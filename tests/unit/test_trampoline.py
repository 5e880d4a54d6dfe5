"""The exec trampoline's machine code, run for real: it execs argv[1] with argv[2:]
and the environment, closes fd 3 on that exec, reports a failed execve's errno on
fd 3, and runs only under its own argv[0]."""

from __future__ import annotations

import errno
import os
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
