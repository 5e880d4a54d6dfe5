"""Small helpers for tests that give `minirun run --network bridge` a bridge of their own.

A test bridge is named mrt<4 hex> and gets a random 10.X.Y.0/24 that no host
route touches (10.88/16, minirun's default, and 10.213/16, test_network.py's
range, are never picked), so parallel runs and a real minirun0 are left alone.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess

AVOID = (ipaddress.ip_network("10.88.0.0/16"), ipaddress.ip_network("10.213.0.0/16"))


def host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True,
                         text=True, check=True).stdout
    nets = []
    for line in out.splitlines():
        words = line.split()
        dst = words[1] if words[0] in ("local", "broadcast", "unicast") else words[0]
        if dst == "default":
            continue
        try:
            nets.append(ipaddress.ip_network(dst, strict=False))
        except ValueError:
            continue
    return nets


def free_subnet() -> str | None:
    """A random 10.X.Y.0/24 that overlaps no host route, or None after 50 tries."""
    taken = host_routes() + list(AVOID)
    for _ in range(50):
        subnet = ipaddress.ip_network(f"10.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.0/24")
        if not any(subnet.overlaps(route) for route in taken):
            return str(subnet)
    return None


def bridge_name() -> str:
    return "mrt" + secrets.token_hex(2)


def link_names() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def bridge_ports(bridge: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except FileNotFoundError:
        return []


def delete_link(name: str) -> None:
    subprocess.run(["ip", "link", "del", name], capture_output=True)
