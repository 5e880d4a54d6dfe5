"""The bridge network over rtnetlink. The only module that imports pyroute2.

    host namespace                          container namespace (by pid)
    minirun0 (bridge, gateway/prefix) ──port── mr<id8> ══veth══ eth0 (address/prefix)
                                                                 default via gateway

The veth peer is created directly inside the container's namespace under its
final name `eth0` (IFLA_NET_NS_PID on the peer), rather than created on the
host under a temporary name, moved and renamed: one netlink request instead of
three, and no temporary name that two concurrent runs could both pick.

Nothing here enables IP forwarding or adds NAT: container <-> host traffic ends
at the bridge's own address, and container <-> container traffic is switched by
the bridge at layer 2, so neither is routed. Nothing leaves this machine.

pyroute2 costs about 270 ms to import, so import this module only for `bridge`.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import socket
import threading
import time

from pyroute2 import IPRoute, NetlinkError

from .. import linux
from ..errors import Conflict, RuntimeFailure, UsageError
from .ipam import Allocation

CONTAINER_IFNAME = "eth0"
MAIN_TABLE = 254
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")   # IFNAMSIZ - 1, no '/', ':' or spaces
_HINT = "check that the kernel has bridge and veth support (modprobe bridge veth)"


@contextlib.contextmanager
def _failing_as(what: str):
    """Turn a netlink or OS error into one RuntimeFailure naming the step."""
    try:
        yield
    except NetlinkError as exc:
        raise RuntimeFailure(f"{what}: {os.strerror(exc.code) if exc.code else exc}",
                             _HINT) from exc
    except OSError as exc:
        raise RuntimeFailure(f"{what}: {exc.strerror or exc}", _HINT) from exc


def _check_ifname(name: str) -> str:
    if not _IFNAME_RE.fullmatch(name):
        raise UsageError(f"invalid interface name {name!r}",
                         "use 1 to 15 letters, digits, '_', '.' or '-'")
    return name


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _ignoring(ipr_call, *codes: int) -> None:
    """Run one netlink request; an error in `codes` means it was already done."""
    try:
        ipr_call()
    except NetlinkError as exc:
        if exc.code not in codes:
            raise


# ---------------------------------------------------------------- the bridge

def ensure_bridge(name: str, gateway_cidr: str) -> None:
    """Create the bridge if missing, give it the gateway address and bring it up.

    Idempotent and safe when several runs start at once: each step treats
    "already exists" as done, so the loser of a race just finds the winner's work."""
    _check_ifname(name)
    gateway = ipaddress.ip_interface(gateway_cidr)
    with _failing_as(f"set up bridge {name}"), IPRoute() as ipr:
        _check_no_overlap(ipr, name, gateway.network)
        index = _index(ipr, name)
        if index is None:
            _ignoring(lambda: ipr.link("add", ifname=name, kind="bridge", address=_random_mac()),
                      errno.EEXIST)
            index = _index(ipr, name)
        elif _kind(ipr, index) != "bridge":
            raise Conflict(f"network interface {name} exists and is not a bridge",
                           "remove it or pick another bridge name")
        _ignoring(lambda: ipr.addr("add", index=index, address=str(gateway.ip),
                                   prefixlen=gateway.network.prefixlen), errno.EEXIST)
        ipr.link("set", index=index, state="up")


def _random_mac() -> str:
    """A fixed MAC for the bridge. Without one the kernel gives the bridge the lowest
    MAC among its ports, which changes as containers come and go, and every
    container's ARP entry for the gateway goes stale (Docker sets one too)."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFE) | 0x02          # unicast, locally administered
    return ":".join(f"{b:02x}" for b in octets)


def _kind(ipr: IPRoute, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def _check_no_overlap(ipr: IPRoute, bridge: str, subnet: ipaddress.IPv4Network) -> None:
    """Refuse a subnet the host already routes elsewhere: the bridge would steal that traffic.

    Routes are read before the bridge's index, so a route a concurrent run just
    added to this same bridge is always recognised as ours."""
    routes = ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE)
    own = _index(ipr, bridge)
    for route in routes:
        dst = route.get_attr("RTA_DST")
        if dst is None or route["dst_len"] == 0 or route.get_attr("RTA_OIF") == own:
            continue
        routed = ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False)
        if routed.overlaps(subnet):
            device = _name(ipr, route.get_attr("RTA_OIF"))
            raise Conflict(f"subnet {subnet} overlaps the host's route to {routed} via {device}",
                           "configure another subnet for minirun's bridge")


def _name(ipr: IPRoute, index: int | None) -> str:
    if index is None:
        return "no device"
    links = ipr.get_links(index)
    return links[0].get_attr("IFLA_IFNAME") if links else f"interface {index}"


def delete_bridge(name: str) -> None:
    """Delete the bridge if it exists (tests, and a future `network prune`)."""
    with _failing_as(f"delete bridge {name}"), IPRoute() as ipr:
        _ignoring(lambda: ipr.link("del", ifname=_check_ifname(name)), errno.ENODEV)


# ---------------------------------------------------------------- containers

def attach(container_pid: int, alloc: Allocation) -> None:
    """Give the network namespace of `container_pid` an eth0 on alloc.bridge.

    The bridge must exist (ensure_bridge). On failure nothing is left behind:
    deleting the host end of a veth deletes its peer too."""
    _check_ifname(alloc.veth_host)
    with _failing_as(f"attach {alloc.veth_host} to {alloc.bridge}"), IPRoute() as host:
        bridge = _index(host, alloc.bridge)
        if bridge is None:
            raise RuntimeFailure(f"attach {alloc.veth_host}: bridge {alloc.bridge} does not exist",
                                 "create it first with ensure_bridge()")
        try:
            host.link("add", ifname=alloc.veth_host, kind="veth",
                      peer={"ifname": CONTAINER_IFNAME, "net_ns_pid": container_pid})
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise Conflict(f"network interface {alloc.veth_host} already exists",
                               f"a leftover? remove it with `ip link del {alloc.veth_host}`") from exc
            raise
        try:
            host.link("set", index=_index(host, alloc.veth_host), master=bridge, state="up")
            _configure_inside(container_pid, alloc)
        except BaseException:
            _ignoring(lambda: host.link("del", ifname=alloc.veth_host), errno.ENODEV)
            raise
    if _stp_off(alloc.bridge):      # with STP, a port learns for 2 x forward_delay (30 s) first
        wait_forwarding(alloc.veth_host)


def _stp_off(bridge: str) -> bool:
    try:
        with open(f"/sys/class/net/{bridge}/bridge/stp_state", "rb") as f:
            return f.read().strip() == b"0"
    except OSError:
        return False


FORWARDING = "3"                # BR_STATE_FORWARDING, as brport/state shows it


def wait_forwarding(port: str, timeout: float = 2.0) -> bool:
    """Wait until the bridge forwards through port; whether it does.

    The kernel enables a bridge port when it sees the veth's carrier come on,
    in a work item that runs a moment after the link is set up (~1.5 ms here,
    in one attach out of four). A frame sent in that moment is dropped: a
    container's first ARP request, which the kernel repeats only after a second.
    A `ping -c1 -W1 gateway` run at once failed for it. The wait is a read of
    sysfs when the port is already forwarding. Past timeout the container starts
    anyway: its traffic flows once the port is enabled."""
    path = f"/sys/class/net/{port}/brport/state"
    deadline, pause = time.monotonic() + timeout, 0.0002
    while True:
        try:
            with open(path, "rb") as f:
                if f.read().strip() == FORWARDING.encode():
                    return True
        except OSError:
            return False        # no such port (deleted meanwhile): nothing to wait for
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def _configure_inside(container_pid: int, alloc: Allocation) -> None:
    """Address, up and default route for eth0, and lo up, inside the container's namespace."""
    with IPRoute(use_socket=_netlink_socket_in(container_pid)) as ipr:
        eth0 = _index(ipr, CONTAINER_IFNAME)
        ipr.addr("add", index=eth0, address=alloc.address, prefixlen=alloc.prefixlen)
        ipr.link("set", index=eth0, state="up")
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=alloc.gateway, oif=eth0)


def _netlink_socket_in(pid: int) -> socket.socket:
    """An rtnetlink socket in the network namespace of `pid`.

    A socket stays in the namespace it was created in. setns() changes only the
    calling thread's namespace, so a short-lived thread enters the container's
    namespace, opens the socket and exits, and this process never moves. That
    costs ~2 ms, where pyroute2's own netns support forks a helper (~12 ms)."""
    result: dict = {}

    def enter_and_open() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.CLONE_NEWNET)
            finally:
                os.close(fd)
            result["socket"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                             socket.NETLINK_ROUTE)
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=enter_and_open, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["socket"]


def detach(alloc: Allocation) -> None:
    """Delete the host end of the container's veth pair; a missing one is fine.

    The kernel also deletes the pair when the container's namespace dies, so
    this matters only while something still holds that namespace open."""
    _check_ifname(alloc.veth_host)
    with _failing_as(f"detach {alloc.veth_host}"), IPRoute() as ipr:
        _ignoring(lambda: ipr.link("del", ifname=alloc.veth_host), errno.ENODEV)
