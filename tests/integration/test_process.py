"""Process control: terminals, signals, detached containers, logs, stop, kill, exec."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from .test_run import wait_running


def run_in_pty(mr, *args: str, keys: list[tuple[float, bytes]] = (), size=(24, 80),
               resize=None, timeout: float = 20, keys_after: bytes = b"") -> tuple[int, bytes]:
    """Run the CLI with a pseudo-terminal as its controlling terminal, like a person
    at a shell: type keys after delays, optionally resize, collect the screen output.
    keys_after: the delays (the resize's too) count from when the output first shows it
    (a key typed before the container's terminal is up reaches minirun's own: ^Z would
    stop it; a resize before the command's trap is set is lost)."""
    pid, master = pty.fork()
    if pid == 0:  # the CLI, in its own session with the pty as stdio
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        os.environ.clear()
        os.environ.update(mr.env)
        os.execv(sys.executable, [sys.executable, "-m", "minirun", *args])
    output = b""
    start = time.monotonic()
    pending = list(keys)
    typing_from = None if keys_after else start
    while True:
        if typing_from is None and keys_after in output:
            typing_from = time.monotonic()
        if pending and typing_from is not None and time.monotonic() - typing_from >= pending[0][0]:
            os.write(master, pending.pop(0)[1])
        if resize and typing_from is not None and time.monotonic() - typing_from >= resize[0]:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *resize[1], 0, 0))
            resize = None
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return os.waitstatus_to_exitcode(status), output


@pytest.mark.kernel
def test_tty_is_the_containers_own_terminal_with_our_size(mr):
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-t", "busybox", "sh", "-c", "tty; stty size; ls /proc/self/fd",
                           size=(31, 97))
    assert code == 0, out
    lines = out.decode().split()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:3] == ["31", "97"]
    assert lines[3:] == ["0", "1", "2", "3"]      # nothing leaked in: 3 is ls's own directory


@pytest.mark.kernel
def test_ctrl_c_in_an_interactive_tty_run(mr):
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-it", "--init", "busybox", "sleep", "30",
                           keys=[(1.5, b"\x03")])
    assert code == 130, out


@pytest.mark.kernel
def test_ctrl_z_in_exec_t_neither_stops_nor_hangs_it(mr):
    """exec's command leads a session of its own on the container's terminal, with
    its waiter outside it: the kernel sees an orphaned group and drops ^Z's SIGTSTP,
    as under docker exec. A waiter holding the terminal would let ^Z stop cat and
    leave exec waiting for ever."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "z", "busybox", "sleep", "60")
    code, out = run_in_pty(mr, "exec", "-it", "z", "sh", "-c", "echo typing; exec cat", keys_after=b"typing",
                           keys=[(0.5, b"\x1a"), (1.0, b"still-here\n"), (1.5, b"\x04")], timeout=30)
    assert code == 0, out
    assert out.count(b"still-here") == 2, out        # the terminal's echo, then cat's copy
    mr.ok("rm", "-f", "z")


@pytest.mark.kernel
def test_ctrl_z_under_run_it_init_neither_stops_nor_hangs_it(mr):
    """--init's command leads a process group of PID 1's session, so ^Z's SIGTSTP stops
    it; nobody can `fg` it there, so init sends it SIGCONT (an outside review found
    cat frozen, and ^C unable to end it)."""
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-it", "--init", "busybox", "sh", "-c", "echo typing; exec cat",
                           keys_after=b"typing",
                           keys=[(0.5, b"\x1a"), (1.0, b"still-here\n"), (1.5, b"\x04")], timeout=30)
    assert code == 0, out
    assert out.count(b"still-here") == 2, out


@pytest.mark.kernel
def test_exec_forwards_signals_to_its_command(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "s", "busybox", "sleep", "60")
    proc = mr.popen("exec", "s", "sh", "-c", "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 42
    mr.ok("rm", "-f", "s")


@pytest.mark.kernel
def test_window_size_follows_a_resize(mr):
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-t", "busybox", "sh", "-c",
                           "trap 'stty size; exit 0' WINCH; echo trap-set; while true; do sleep 0.1; done",
                           size=(24, 80), resize=(0.2, (50, 132)), keys_after=b"trap-set", timeout=60)
    assert code == 0, out
    assert b"50 132" in out


@pytest.mark.kernel
def test_signals_are_forwarded_to_the_container(mr):
    mr.load("busybox")
    for signum, expected in ((signal.SIGUSR1, 42), (signal.SIGHUP, 43), (signal.SIGTERM, 44)):
        name = signal.Signals(signum).name[3:]
        proc = mr.popen("run", "--rm", "--name", f"sig{expected}", "busybox", "sh", "-c",
                        f"trap 'exit {expected}' {name}; echo ready; while true; do sleep 0.1; done",
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready and proc.stdout.readline() == b"ready\n", "the trap was not set"
            proc.send_signal(signum)
            assert proc.wait(timeout=10) == expected
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()


@pytest.mark.kernel
def test_detached_container_logs_exec_and_stop(mr):
    mr.load("busybox")
    out = mr.ok("run", "-d", "--name", "bg", "busybox", "sh", "-c",
                "echo started; echo to-stderr >&2; echo shared > /shared; trap '' TERM; "
                "while true; do sleep 0.1; done")
    cid = out.stdout.strip()
    assert len(cid) == 64 and mr.inspect("bg")["Id"] == cid
    time.sleep(0.5)
    logs = mr.ok("logs", "bg")
    assert (logs.stdout, logs.stderr) == ("started\n", "to-stderr\n")     # each on its own stream
    # exec sees the same root filesystem and PID namespace
    seen = mr.ok("exec", "bg", "sh", "-c", "cat /shared; echo exec > /from-exec; cat /proc/1/cmdline | tr '\\0' ' '")
    assert seen.lines[0] == "shared" and "trap" in seen.lines[1]
    assert mr.ok("exec", "-u", "1000", "-w", "/tmp", "bg", "sh", "-c", "id -u; pwd").lines == ["1000", "/tmp"]
    assert mr("exec", "bg", "no-such-cmd").returncode == 127
    assert "A /from-exec" in mr.ok("diff", "bg").lines
    # it ignores SIGTERM, so stop escalates to SIGKILL after the grace period
    started = time.monotonic()
    mr.ok("stop", "-t", "1", "bg")
    assert 0.9 < time.monotonic() - started < 8
    state = mr.only_state()
    assert state["status"] == "exited" and state["exit_code"] == 137
    assert mr("exec", "bg", "true").returncode == 125


@pytest.mark.kernel
def test_stop_with_init_ends_on_sigterm(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--init", "--name", "polite", "busybox", "sleep", "30")
    started = time.monotonic()
    mr.ok("stop", "polite")
    assert time.monotonic() - started < 5
    state = mr.only_state()
    assert state["exit_code"] == 143


@pytest.mark.kernel
def test_kill_with_a_signal_and_logs_follow(mr):
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "k", "busybox", "sh", "-c",
          "trap 'echo got-hup; exit 3' HUP; echo ready; while true; do sleep 0.1; done")
    follower = mr.popen("logs", "-f", "k", stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    mr.ok("kill", "-s", "HUP", "k")
    out, _ = follower.communicate(timeout=10)
    assert out.split() == ["ready", "got-hup"]
    assert mr.only_state()["exit_code"] == 3
    assert mr("kill", "-s", "NOPE", "k").returncode == 2


@pytest.mark.kernel
def test_detached_start_failure_is_reported(mr):
    mr.load("busybox")
    result = mr("run", "-d", "busybox", "no-such-command")
    assert result.returncode == 127 and "not found" in result.stderr


@pytest.mark.kernel
def test_interactive_tty_with_init_reads_input(mr):
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-it", "--init", "busybox", "sh", "-c",
                           "echo ready; read x; echo got-$x", keys=[(0.2, b"hello\r")], keys_after=b"ready")
    assert code == 0 and b"got-hello" in out, out


@pytest.mark.kernel
def test_what_was_typed_during_start_up_reaches_the_container(mr):
    """Keys typed before the container's terminal is up stay queued (the relay
    switches the terminal to raw mode without flushing its input)."""
    mr.load("busybox")
    code, out = run_in_pty(mr, "run", "--rm", "-it", "busybox", "sh", "-c", "read x; echo got-$x",
                           keys=[(0, b"hello\r")])
    assert code == 0 and b"got-hello" in out, out
