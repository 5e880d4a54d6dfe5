"""Bring `lo` up in the current network namespace with two ioctls.

A new network namespace starts with `lo` down, so even 127.0.0.1 is
unreachable. The container's child runs this right after unshare(CLONE_NEWNET),
before exec, where importing pyroute2 (~270 ms) would slow every run down for
one flag; SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket need only the stdlib.
The socket comes from linux.inet_socket: socket.py builds enums and imports
selectors at import time, which cost every run ~8 ms in the child.
"""

from __future__ import annotations

import os

from ..errors import RuntimeFailure
from ..linux import inet_socket, ioctl

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
# struct ifreq: char ifr_name[IFNAMSIZ=16]; a union whose first member we use is
# short ifr_flags; the union is padded to 24 bytes, so sizeof(struct ifreq) == 40.
# Packed by hand: the struct module is one more import on every run.


def _ifreq(name: bytes, flags: int) -> bytes:
    return name[:15].ljust(16, b"\0") + flags.to_bytes(2, "little") + bytes(22)


def _flags(ifreq: bytes) -> int:
    return int.from_bytes(ifreq[16:18], "little")


def loopback_up(name: str = "lo") -> None:
    """Set IFF_UP on `name` (a no-op when it is up already).

    The socket must be created in the target namespace: a socket belongs to
    the namespace it was made in, so call this after unshare(CLONE_NEWNET)."""
    ifname = name.encode()
    try:
        sock = inet_socket()
        try:
            reply = ioctl(sock, SIOCGIFFLAGS, _ifreq(ifname, 0))
            flags = _flags(reply)
            if not flags & IFF_UP:
                ioctl(sock, SIOCSIFFLAGS, _ifreq(ifname, flags | IFF_UP))
        finally:
            os.close(sock)
    except OSError as exc:
        raise RuntimeFailure(f"bring up {name}: {exc.strerror or exc}",
                             "this needs CAP_NET_ADMIN in the container's network namespace") from exc


def is_up(name: str = "lo") -> bool:
    """Whether `name` has IFF_UP in the current namespace (for checks and tests)."""
    sock = inet_socket()
    try:
        reply = ioctl(sock, SIOCGIFFLAGS, _ifreq(name.encode(), 0))
    finally:
        os.close(sock)
    return bool(_flags(reply) & IFF_UP)

