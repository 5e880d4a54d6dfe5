"""The bridge network on the real kernel, without `minirun run`.

Each "container" is a child process that unshares its network namespace, brings
`lo` up with minirun's ioctl helper and waits on its stdin pipe; the test then
plays the runtime's part: ensure_bridge() and attach() from the host. Every
test uses its own bridge (mrt<hex>) and /24 under 10.213.0.0/16, and only
sends bounded ICMP/TCP between namespaces it created. The `lab` fixture always
kills the children and deletes the veths and bridges it made, then checks that
no test device is left.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from minirun.errors import Conflict, RuntimeFailure
from minirun.network import ipam, netlink

pytestmark = pytest.mark.kernel

CHILD = """
import signal, sys
from minirun import linux
from minirun.network.loopback import is_up, loopback_up
from minirun.linux.caps import set_pdeathsig
set_pdeathsig(signal.SIGKILL)
linux.unshare(linux.CLONE_NEWNET)
loopback_up()
assert is_up("lo")
print("ready", flush=True)
sys.stdin.read()
"""


def host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True,
                         text=True, check=True).stdout
    nets = []
    for line in out.splitlines():
        dst = line.split()[0] if line.split()[0] not in ("local", "broadcast") else line.split()[1]
        if "/" in dst or dst[0].isdigit():
            nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


def free_test_subnet() -> str:
    """A random 10.213.X.0/24 that no host route touches."""
    taken = host_routes()
    for _ in range(50):
        subnet = ipaddress.ip_network(f"10.213.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(route) for route in taken):
            return str(subnet)
    pytest.skip("no free 10.213.X.0/24 subnet on this host")


def link_names() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def ping_argv(address: str) -> list[str]:
    """Reachability: one reply within 3 s, a probe each second until then (-w), so
    that one frame lost on a busy host does not fail the test. That attach makes
    the first frame count is test_attach_returns_once_the_bridge_forwards_through_the_port's."""
    ping = shutil.which("ping")
    if ping:
        return [ping, "-c1", "-w3", address]
    if shutil.which("busybox"):
        return ["busybox", "ping", "-c1", "-w3", address]
    pytest.skip("needs ping or busybox")


@dataclass
class Container:
    proc: subprocess.Popen
    cid: str
    alloc: ipam.Allocation | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def run(self, *argv: str, timeout: float = 10, check: bool = True) -> subprocess.CompletedProcess:
        """Run a host binary inside this container's network namespace only."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv],
                              capture_output=True, text=True, timeout=timeout, check=check)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Lab:
    """One test's bridge, subnet, store and children, all removed by the fixture."""

    def __init__(self, root: str):
        self.root = root
        self.bridge = "mrt" + secrets.token_hex(3)
        self.subnet = free_test_subnet()
        self.children: list[Container] = []
        self.devices: set[str] = {self.bridge}

    def child(self) -> Container:
        """A process in a fresh network namespace with lo up, not attached yet."""
        proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        container = Container(proc, secrets.token_hex(32))
        self.children.append(container)
        self.devices.add(ipam.veth_name(container.cid))
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready and proc.stdout.readline() == "ready\n", "child did not start"
        return container

    def container(self) -> Container:
        """A child with an address on this lab's bridge, as `run --network bridge` would make."""
        container = self.child()
        container.alloc = ipam.allocate(self.root, container.cid, self.subnet, self.bridge)
        netlink.ensure_bridge(self.bridge, container.alloc.gateway_cidr)
        netlink.attach(container.pid, container.alloc)
        return container

    def cleanup(self) -> None:
        for container in self.children:
            container.stop()
        for name in self.devices:
            subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(str(tmp_path / "store"))
    try:
        yield lab
    finally:
        lab.cleanup()
    left = sorted(set(link_names()) & lab.devices)
    assert not left, f"test network devices left behind: {left}"


# ---------------------------------------------------------------- attach

def test_attach_gives_eth0_an_address_and_a_default_route(lab):
    c = lab.container()
    assert f"inet {c.alloc.cidr} " in c.run("ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"default via {c.alloc.gateway} dev eth0" in c.run("ip", "route").stdout
    assert ",UP" in c.run("ip", "-o", "link", "show", "lo").stdout
    host_end = subprocess.run(["ip", "-o", "link", "show", c.alloc.veth_host], capture_output=True,
                              text=True, check=True).stdout
    assert f"master {lab.bridge}" in host_end and "state UP" in host_end
    assert "link-netnsid" in host_end       # its peer was made in the container's namespace


def test_attach_returns_once_the_bridge_forwards_through_the_port(lab):
    """Right after a port comes up, the kernel takes a moment to enable it (here in
    about one attach of four); a container's first ARP request sent then was
    dropped and repeated only after a second. attach() waits for forwarding."""
    for _ in range(40):
        c = lab.container()
        state = Path(f"/sys/class/net/{c.alloc.veth_host}/brport/state").read_text().strip()
        assert state == netlink.FORWARDING, f"port {c.alloc.veth_host} in state {state} after attach"
        c.stop()


def test_loopback_works_in_the_new_namespace(lab):
    c = lab.child()
    c.run(*ping_argv("127.0.0.1"))


def test_container_reaches_the_gateway_and_the_host_reaches_the_container(lab):
    c = lab.container()
    c.run(*ping_argv(c.alloc.gateway))
    subprocess.run(ping_argv(c.alloc.address), capture_output=True, check=True, timeout=10)


def test_two_containers_ping_each_other(lab):
    a, b = lab.container(), lab.container()
    assert a.alloc.address != b.alloc.address
    a.run(*ping_argv(b.alloc.address))
    b.run(*ping_argv(a.alloc.address))


TCP_SERVER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 0))
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
conn.sendall(("hello " + peer[0]).encode())
conn.close()
"""

TCP_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
    print(s.recv(100).decode())
"""


def test_two_containers_talk_tcp(lab):
    a, b = lab.container(), lab.container()
    server = subprocess.Popen(["nsenter", f"--net=/proc/{a.pid}/ns/net", sys.executable, "-c",
                               TCP_SERVER, a.alloc.address], stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        reply = b.run(sys.executable, "-c", TCP_CLIENT, a.alloc.address, port).stdout
        assert reply.strip() == f"hello {b.alloc.address}"
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# ---------------------------------------------------------------- teardown

def test_detach_and_release_remove_the_veth_and_the_address(lab):
    c = lab.container()
    netlink.detach(c.alloc)
    assert c.alloc.veth_host not in link_names()
    assert c.run("ip", "link", "show", "eth0", check=False).returncode != 0
    assert ipam.release(lab.root, c.cid) == c.alloc
    assert ipam.lookup(lab.root, c.cid) is None
    netlink.detach(c.alloc)          # a missing veth is fine


def test_the_veth_goes_when_the_container_dies(lab):
    c = lab.container()
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait()
    deadline = time.monotonic() + 30          # the kernel cleans up a dead namespace in a work queue
    while c.alloc.veth_host in link_names() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.alloc.veth_host not in link_names()


# ---------------------------------------------------------------- the bridge

ENSURE = "import sys; from minirun.network import netlink; netlink.ensure_bridge(sys.argv[1], sys.argv[2])"


def test_ensure_bridge_is_idempotent_and_safe_when_racing(lab):
    gateway_cidr = str(next(ipaddress.ip_network(lab.subnet).hosts())) + "/24"
    racers = [subprocess.Popen([sys.executable, "-c", ENSURE, lab.bridge, gateway_cidr])
              for _ in range(4)]
    assert [p.wait(timeout=30) for p in racers] == [0, 0, 0, 0]
    netlink.ensure_bridge(lab.bridge, gateway_cidr)
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", lab.bridge], capture_output=True,
                         text=True, check=True).stdout
    assert len(out.splitlines()) == 1 and f"inet {gateway_cidr} " in out
    assert "UP" in subprocess.run(["ip", "-o", "link", "show", lab.bridge], capture_output=True,
                                  text=True, check=True).stdout


def bridge_mac(name: str) -> str:
    out = subprocess.run(["ip", "-o", "link", "show", name], capture_output=True, text=True,
                         check=True).stdout
    return out.split("link/ether ")[1].split()[0]


def test_the_bridge_mac_stays_put_as_ports_come_and_go(lab):
    """Else the kernel copies the lowest port MAC and containers' gateway ARP entries go stale."""
    a = lab.container()
    mac = bridge_mac(lab.bridge)
    b = lab.container()
    netlink.detach(a.alloc)
    assert bridge_mac(lab.bridge) == mac
    b.run(*ping_argv(b.alloc.gateway))


def test_a_subnet_the_host_already_routes_is_refused(lab):
    c = lab.container()
    other = "mrt" + secrets.token_hex(3)
    lab.devices.add(other)
    with pytest.raises(Conflict) as info:
        netlink.ensure_bridge(other, c.alloc.gateway_cidr)
    assert lab.bridge in info.value.message
    assert other not in link_names()


def test_attach_to_a_dead_process_leaves_nothing(lab):
    c = lab.child()
    alloc = ipam.allocate(lab.root, c.cid, lab.subnet, lab.bridge)
    netlink.ensure_bridge(lab.bridge, alloc.gateway_cidr)
    c.proc.kill()
    c.proc.wait()
    with pytest.raises(RuntimeFailure):
        netlink.attach(c.pid, alloc)
    assert alloc.veth_host not in link_names()


def test_attach_without_the_bridge_fails_clearly(lab):
    c = lab.child()
    alloc = ipam.allocate(lab.root, c.cid, lab.subnet, lab.bridge)
    with pytest.raises(RuntimeFailure) as info:
        netlink.attach(c.pid, alloc)
    assert f"bridge {lab.bridge} does not exist" in info.value.message
    assert alloc.veth_host not in link_names()


def test_attach_leaks_no_file_descriptors(lab):
    children = [lab.child() for _ in range(3)]
    gc.collect()
    before = sorted(os.listdir("/proc/self/fd"))
    for c in children:
        alloc = ipam.allocate(lab.root, c.cid, lab.subnet, lab.bridge)
        netlink.ensure_bridge(lab.bridge, alloc.gateway_cidr)
        netlink.attach(c.pid, alloc)
        netlink.detach(alloc)
    gc.collect()
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_how_long_ensure_bridge_and_attach_take(lab):
    """Prints timings (run with -s to see them); no assertion on speed."""
    timings = []
    for _ in range(5):
        c = lab.child()
        c.alloc = ipam.allocate(lab.root, c.cid, lab.subnet, lab.bridge)
        start = time.perf_counter()
        netlink.ensure_bridge(lab.bridge, c.alloc.gateway_cidr)
        middle = time.perf_counter()
        netlink.attach(c.pid, c.alloc)
        timings.append((middle - start, time.perf_counter() - middle))
    print("\nensure_bridge + attach (ms): " + ", ".join(f"{e * 1000:.1f} + {a * 1000:.1f}"
                                                      for e, a in timings))
