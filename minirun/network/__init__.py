"""Container networking: which network a container gets, and the pieces that build it.

    none     (default) a new network namespace with only `lo` up
    host     no new network namespace: the container shares the host's
    bridge   a new network namespace with `eth0`, one end of a veth pair whose
             other end is a port of the host bridge `minirun0`; the bridge holds
             the gateway address, so containers reach the host and each other
             (no NAT and no IP forwarding: nothing leaves this machine; `-p`
             publishes a port through a proxy process on the host, ports.py)

    ipam.py      addresses, recorded in $MINIRUN_ROOT/networks/ (this package owns it)
    files.py     the /etc/hosts, /etc/hostname and /etc/resolv.conf bound into a container
    loopback.py  `lo` up with two ioctls, for the child in its new namespace
    ports.py     -p: the specs, the host's listening sockets, and the userland proxy
                 (in the host's namespace) that relays them to a bridged container
    netlink.py   bridge and veth over rtnetlink: the only module that imports pyroute2

This module and every one above except netlink.py import only the standard
library, so `--network none` and `host` never pay for importing pyroute2.
"""

from __future__ import annotations

from ..errors import UsageError

NONE, HOST, BRIDGE = "none", "host", "bridge"
MODES = (NONE, HOST, BRIDGE)
DEFAULT_MODE = NONE


def parse_mode(text: str) -> str:
    """The network mode named by `--network TEXT`, or a UsageError listing the valid ones."""
    mode = text.strip().lower()
    if mode not in MODES:
        raise UsageError(f"invalid network mode {text!r}",
                         f"use one of: {', '.join(MODES)}")
    return mode


def needs_netns(mode: str) -> bool:
    """Whether the container gets its own network namespace (all modes but host)."""
    return mode != HOST
