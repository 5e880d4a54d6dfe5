"""-p/--publish on the real kernel: a server inside a container on the bridge, a
client on 127.0.0.1 through minirun's port proxy (network/ports.py).

Every test uses its own store (`mr`), its own bridge and /24 (netfixtures), and
host ports on 127.0.0.1 it found free; traffic goes only over 127.0.0.1 and the
test's own bridge. After each test the `mr` fixture checks that no process of
the store (the proxy included: it inherits MINIRUN_ROOT) is left.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import socket
import subprocess
import time

import pytest

from minirun.network import ipam

from . import netfixtures, slowed

pytestmark = pytest.mark.kernel

# a server of one connection at a time: reads a line, answers with it
ECHO_SERVER = 'while true; do nc -l -p 80 -e sh -c "read line; echo got-\\$line"; done'


@pytest.fixture
def bridge(mr, bridge_net):
    """conftest's bridge of this test's own, with busybox loaded: its name."""
    mr.load("busybox")
    return bridge_net[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ask(port: int, line: bytes = b"ping", timeout: float = 15) -> bytes:
    """Send line, half-close, read the answer to its end. Retried while the server in
    the container is not listening yet (the proxy then closes at once: no answer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(line + b"\n")
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            if answer:
                return answer
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer on 127.0.0.1:{port} within {timeout}s")
        time.sleep(0.1)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def proxies(mr) -> list[int]:
    """This store's proxy processes (named minirun-proxy, MINIRUN_ROOT in their environment)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            environ = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if comm == "minirun-proxy" and f"MINIRUN_ROOT={mr.root}".encode() in environ:
            found.append(int(pid))
    return found


def gone(mr, port: int, timeout: float = 5, at_once: bool = False) -> None:
    """No proxy of this store is left and nothing listens on the port any more. at_once:
    already (after `stop`, which returns once the end is recorded: the proxy is reaped
    before that, not when the runtime exits)."""
    if at_once:
        assert refused(port) and proxies(mr) == [], "the proxy outlived the recorded end"
    deadline = time.monotonic() + timeout
    # a dying proxy leaves /proc's environ (its memory goes first) a moment before its
    # descriptors close: wait for both
    while (proxies(mr) or not refused(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxies(mr) == [], "a proxy outlived its container"
    assert refused(port), f"127.0.0.1:{port} still accepts connections"


def one_error_line(result, words: str, code: int = 125) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- traffic

def test_foreground_run_serves_a_client_on_127_0_0_1(mr, bridge):
    port = free_port()
    run = mr.popen("run", "--name", "fg", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                   'nc -l -p 80 -e sh -c "read line; echo got-\\$line"',
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert ask(port, b"hello") == b"got-hello\n"
        assert run.wait(timeout=20) == 0, run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    gone(mr, port)
    assert mr.inspect("fg")["NetworkSettings"]["Ports"] == {}
    assert ipam.allocations(str(mr.root)) == {}


def test_detached_run_serves_shows_its_port_and_the_proxy_ends_with_it(mr, bridge):
    port = free_port()
    cid = mr.ok("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                ECHO_SERVER).stdout.strip()
    assert ask(port, b"one") == b"got-one\n"
    assert ask(port, b"two") == b"got-two\n"
    ps = mr.ok("ps").lines
    assert ps[0].split()[-2:] == ["PORTS", "NAMES"]
    assert f"127.0.0.1:{port}->80/tcp" in ps[1]
    row = json.loads(mr.ok("ps", "--format", "json").stdout)
    assert row["Ports"] == f"127.0.0.1:{port}->80/tcp"
    doc = mr.inspect("web")
    assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert doc["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    # the proxy runs on the host's network namespace and holds only its socket and /dev/null
    [proxy] = proxies(mr)
    assert os.readlink(f"/proc/{proxy}/ns/net") == os.readlink("/proc/self/ns/net")
    held = {os.readlink(f"/proc/{proxy}/fd/{fd}") for fd in os.listdir(f"/proc/{proxy}/fd")}
    assert all(h == "/dev/null" or h.startswith("socket:") or h == "anon_inode:[eventpoll]" for h in held), held
    assert len([h for h in held if h.startswith("socket:")]) == 1, held
    status = dict(line.split(":", 1) for line in Path(f"/proc/{proxy}/status").read_text().splitlines())
    assert status["Uid"].split() == ["65534"] * 4 and int(status["CapEff"], 16) == 0, status
    mr.ok("stop", "-t", "1", "web")
    gone(mr, port, at_once=True)
    assert mr.ok("ps", "-a", "--format", "{{.Ports}}").stdout.strip() == ""
    assert mr.inspect("web")["NetworkSettings"]["Ports"] == {}
    assert mr.inspect("web")["Id"] == cid


def test_a_random_host_port_is_shown_in_ps_and_inspect(mr, bridge):
    mr.ok("run", "-d", "--name", "rnd", "-p", "127.0.0.1::80", "busybox", "sh", "-c", ECHO_SERVER)
    bound = mr.inspect("rnd")["NetworkSettings"]["Ports"]["80/tcp"]
    assert bound[0]["HostIp"] == "127.0.0.1"
    port = int(bound[0]["HostPort"])
    assert port > 0
    assert mr.inspect("rnd")["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                            "HostPort": ""}]}
    assert mr.ok("ps", "--format", "{{.Ports}}").stdout.strip() == f"127.0.0.1:{port}->80/tcp"
    assert ask(port) == b"got-ping\n"
    mr.ok("rm", "-f", "rnd")
    gone(mr, port)


def test_create_start_and_restart_publish_the_recorded_ports(mr, bridge):
    port = free_port()
    mr.ok("create", "--name", "c", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", ECHO_SERVER)
    assert refused(port)                                      # created: nothing bound yet
    assert mr.ok("ps", "-a", "--format", "{{.Ports}}").stdout.strip() == ""
    mr.ok("start", "c")
    assert ask(port, b"a") == b"got-a\n"
    mr.ok("restart", "-t", "1", "c")
    assert ask(port, b"b") == b"got-b\n"
    assert len(proxies(mr)) == 1
    mr.ok("stop", "-t", "1", "c")
    gone(mr, port, at_once=True)


# The runtime gives back the port, cgroup and address a moment after the command
# ends; this monitor makes that moment a second long.
def run_slow_release(mr, *args: str) -> None:
    slowed.run(mr, "minirun.run.start:release", 1.0, "run", "-d", *args)


def test_stop_and_start_wait_for_the_runtime_to_record_the_end(mr, bridge):
    """stop returns once the end is recorded (exit code known, port free); start of
    a container whose command has just ended waits for its runtime to let go of the
    port instead of failing on it."""
    port = free_port()
    run_slow_release(mr, "--name", "s", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    mr.ok("stop", "-t", "0", "s")
    state = mr.inspect("s")["State"]
    assert state["status"] == "exited" and state["exit_code"] == 137, state
    gone(mr, port, at_once=True)
    mr.ok("rm", "s")
    run_slow_release(mr, "--name", "e", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "0.3")
    deadline = time.monotonic() + 10
    while mr.inspect("e")["State"]["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)                     # the command ended; its runtime sleeps on
    mr.ok("start", "e")
    mr.ok("stop", "-t", "0", "e")
    gone(mr, port)
    mr.ok("rm", "e")
    # rm -f returns once the runtime has let go of the port
    run_slow_release(mr, "--name", "f", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    mr.ok("rm", "-f", "f")
    gone(mr, port, at_once=True)


# ---------------------------------------------------------------- refusals and cleanup

@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_a_port_in_use_is_refused_and_nothing_is_left(mr, bridge, detach):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = mr("run", *(["-d"] if detach else []), "-p", f"127.0.0.1:{port}:80", "busybox", "true")
        one_error_line(result, f"Bind for 127.0.0.1:{port} failed: port is already allocated")
    assert mr.ok("ps", "-a", "-q").stdout == ""
    assert os.listdir(mr.root / "containers") == []
    assert ipam.allocations(str(mr.root)) == {}
    assert proxies(mr) == []


def test_start_refuses_a_port_in_use_and_the_container_stays_as_it_was(mr, bridge):
    port = free_port()
    mr.ok("create", "--name", "c", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        result = mr("start", "c")
    one_error_line(result, "port is already allocated", code=1)     # start's code for a conflict
    assert mr.inspect("c")["State"]["Status"] == "created"
    assert ipam.allocations(str(mr.root)) == {}


@pytest.mark.parametrize("spec, words", [
    ("0", "container port '0' is not a port from 1 to 65535"),
    ("70000:80", "host port '70000' is not a port from 1 to 65535"),
    ("127.0.0.1:x:80", "host port 'x'"),
    ("80/udp", "TCP ports only"),
    ("1.2.3.4.5:80:80", "is not an IPv4 address"),
])
def test_bad_specs_exit_125_with_one_line_and_nothing_made(mr, bridge, spec, words):
    for verb in ("run", "create"):
        one_error_line(mr(verb, "-p", spec, "busybox", "true"), words)
    assert mr.ok("ps", "-a", "-q").stdout == ""


def test_network_none_is_refused_and_host_discards_the_ports(mr, bridge):
    port = free_port()
    one_error_line(mr("run", "--network", "none", "-p", f"127.0.0.1:{port}:80", "busybox", "true"),
                   "--network none has no network")
    result = mr("run", "--rm", "--network", "host", "-p", f"127.0.0.1:{port}:80", "busybox", "echo", "ran")
    assert result.returncode == 0 and result.stdout == "ran\n", result.stderr
    assert result.stderr == "WARNING: Published ports are discarded when using host network mode\n"


def test_p_selects_the_bridge_when_no_network_is_given(mr, bridge):
    port = free_port()
    mr.ok("run", "-d", "--name", "b", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60")
    assert mr.inspect("b")["HostConfig"]["NetworkMode"] == "bridge"
    assert netfixtures.bridge_ports(bridge) == [ipam.veth_name(mr.inspect("b")["Id"])]
    mr.ok("rm", "-f", "b")
    gone(mr, port)


def test_the_proxy_dies_with_a_killed_runtime(mr, bridge):
    """SIGKILL to the -d monitor: nothing runs the cleanup, yet PR_SET_PDEATHSIG ends the
    proxy and frees the port."""
    port = free_port()
    mr.ok("run", "-d", "--name", "k", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", ECHO_SERVER)
    assert ask(port) == b"got-ping\n"
    [proxy] = proxies(mr)
    monitor = int(open(f"/proc/{proxy}/stat").read().rsplit(")", 1)[1].split()[1])
    os.kill(monitor, signal.SIGKILL)
    gone(mr, port)


def test_release_stops_the_proxy_and_frees_the_port_at_once():
    """The proxy on its own, forked from this process, in front of a server of this
    test's on 127.0.0.1: both ways, half-closes passed on, and run/plan.py release()
    (where a container's end gives back its address) reaps it before it returns."""
    from minirun.network import ports
    from minirun.run.plan import Resources, release
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        listeners = ports.bind(ports.parse_all([f"127.0.0.1::{server.getsockname()[1]}"]))
        port = listeners.published[0].host_port
        pid = ports.start_proxy(listeners, "127.0.0.1")
        assert listeners.sockets == []                  # ours are closed: the proxy holds them
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"request")
                client.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := conn.recv(4096):       # ends: the client's half-close came through
                    received += chunk
                assert received == b"request"
                conn.sendall(b"answer")
                conn.shutdown(socket.SHUT_WR)
                client.settimeout(5)
                assert client.recv(4096) == b"answer"
                assert client.recv(4096) == b""
        release(None, "", Resources(ports=listeners, proxy=pid))
        assert refused(port)
        assert not os.path.exists(f"/proc/{pid}"), "the proxy was not reaped"


def test_connections_without_end_cost_the_host_no_thread_and_the_port_keeps_serving(mr, bridge):
    """A review made the thread-per-connection proxy grow to ~4,900 threads with
    3,000 idle connections (and die for good once a thread could not start)."""
    import socket
    port = free_port()
    mr.ok("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", ECHO_SERVER)
    assert ask(port, b"one") == b"got-one\n"
    idle = []
    try:
        for _ in range(700):                    # past the proxy's cap of 512
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        [proxy] = proxies(mr)
        status = dict(line.split(":", 1) for line in Path(f"/proc/{proxy}/status").read_text().splitlines())
        assert int(status["Threads"]) == 1, status["Threads"]
        assert len(os.listdir(f"/proc/{proxy}/fd")) <= 2 * 512 + 8
    finally:
        for sock in idle:
            sock.close()
    assert ask(port, b"two") == b"got-two\n"
