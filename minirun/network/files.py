"""The /etc/hosts, /etc/hostname and /etc/resolv.conf a container sees.

They are written beside the container's config and bind-mounted over the
image's files, as Docker does, so the runtime's own writes never land in the
overlay upper dir and `minirun diff` shows only what the command wrote.

resolv.conf follows Docker: `host` mode copies the host's file as it is (a
resolver on 127.0.0.53 is reachable from the host's namespace); `bridge` mode
drops loopback nameservers, which would point at the container itself, and
IPv6 ones, since the bridge network has no IPv6; `none` mode has no DNS.
"""

from __future__ import annotations

import os

from . import HOST, NONE, parse_mode

HOST_RESOLV_CONF = "/etc/resolv.conf"
# where systemd-resolved lists the real upstream servers behind its 127.0.0.53 stub
RESOLVED_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
NO_ADDRESS_IP = "127.0.1.1"   # Debian's convention for a hostname without a network address
MAX_RESOLV_CONF = 1 << 20     # a host resolv.conf bigger than this, or not a plain file, reads as missing


def hosts_text(hostname: str, address: str | None) -> str:
    return ("127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{address or NO_ADDRESS_IP}\t{hostname}\n")


def resolv_text(network_mode: str, host_files: tuple[str, ...] = (HOST_RESOLV_CONF,
                                                                   RESOLVED_RESOLV_CONF)) -> str:
    """resolv.conf for the mode; host_files are the host's, most preferred first."""
    mode = parse_mode(network_mode)
    if mode == NONE:
        return "# minirun: --network none has no DNS\n"
    text = _read(host_files[0])
    if mode == HOST:
        return text
    kept = _without_unreachable_nameservers(text)
    if not _nameservers(kept):
        # a host behind systemd-resolved names only 127.0.0.53; its upstreams are elsewhere
        for path in host_files[1:]:
            fallback = _without_unreachable_nameservers(_read(path))
            if _nameservers(fallback):
                return fallback
        kept += "# minirun: the host has no nameserver a bridged container can reach\n"
    return kept


def _read(path: str) -> str:
    """The host file's text, or "" when it is missing, unreadable, not a regular file
    (opened without blocking: a FIFO would stall every run) or over MAX_RESOLV_CONF."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000 or st.st_size > MAX_RESOLV_CONF:
            return ""
        data = os.read(fd, MAX_RESOLV_CONF + 1)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return "" if len(data) > MAX_RESOLV_CONF else data.decode("utf-8", "replace")


def _nameservers(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines()
            if len(line.split()) >= 2 and line.split()[0] == "nameserver"]


def _without_unreachable_nameservers(text: str) -> str:
    """Drop nameservers a container on the bridge cannot reach: loopback, IPv6, malformed."""
    kept = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and not _reachable_from_bridge(words[1]):
            continue
        kept.append(line)
    return "".join(line + "\n" for line in kept)


def _reachable_from_bridge(server: str) -> bool:
    try:
        import ipaddress
        address = ipaddress.ip_address(server.split("%")[0])
    except ValueError:
        return False
    return address.version == 4 and not address.is_loopback


def render_etc_files(hostname: str, address: str | None, network_mode: str,
                     host_files: tuple[str, ...] = (HOST_RESOLV_CONF,
                                                    RESOLVED_RESOLV_CONF)) -> dict[str, str]:
    """File name -> content, pure apart from reading the host's resolv.conf."""
    return {"hosts": hosts_text(hostname, address),
            "hostname": f"{hostname}\n",
            "resolv.conf": resolv_text(network_mode, host_files)}
