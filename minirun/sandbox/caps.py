"""Capabilities and no_new_privs: the one module that imports python-prctl.

Defaults follow Docker: the bounding, permitted and effective sets hold
Docker's default list; the inheritable and ambient sets stay empty (Docker
since CVE-2022-24769), so a non-root user execs with no capabilities, except
the ones --cap-add names, which are raised as ambient for it.

    compute(add, drop, privileged) -> frozenset of names      pure
    apply(keep, ambient)                                      in the child, after setuid
"""

from __future__ import annotations

from ..errors import UsageError

DOCKER_DEFAULT = frozenset({
    "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
    "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
})


def all_names() -> frozenset[str]:
    import prctl
    return frozenset(n for n in prctl.ALL_CAP_NAMES if n != "last_cap")


def normalise(name: str) -> str:
    """'CAP_NET_ADMIN', 'net_admin' and 'NET_ADMIN' all mean net_admin; 'ALL' stays ALL."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    plain = upper.removeprefix("CAP_").lower()
    if plain not in all_names():
        raise UsageError(f"unknown capability {name!r}", "names look like NET_ADMIN or CAP_NET_ADMIN")
    return plain


def compute(add: tuple[str, ...] = (), drop: tuple[str, ...] = (), privileged: bool = False) -> frozenset[str]:
    """Docker's rules: start from the default set (or all with --privileged), drop, then add."""
    everything = all_names()
    keep = set(everything if privileged else DOCKER_DEFAULT)
    drops = {normalise(n) for n in drop}
    adds = {normalise(n) for n in add}
    keep -= everything if "ALL" in drops else drops
    keep |= everything if "ALL" in adds else adds
    return frozenset(keep)


def added(add: tuple[str, ...]) -> frozenset[str]:
    names = {normalise(n) for n in add}
    return all_names() if "ALL" in names else frozenset(names)


def limit_bounding(keep: frozenset[str]) -> None:
    """Drop every other capability from the bounding set (needs CAP_SETPCAP: call while root)."""
    import prctl
    for name in all_names() - keep:
        prctl.capbset_drop(getattr(prctl, f"CAP_{name.upper()}"))


def keep_across_setuid() -> None:
    import prctl
    prctl.set_keepcaps(True)


def apply(keep: frozenset[str], ambient: frozenset[str], no_new_privs: bool) -> None:
    """After setuid: permitted = effective = keep, inheritable = ambient = what a
    non-root user was explicitly given (empty for root, which gets the bounding set at exec)."""
    import prctl
    from .. import linux
    caps = [getattr(prctl, f"CAP_{n.upper()}") for n in sorted(keep)]
    amb = [getattr(prctl, f"CAP_{n.upper()}") for n in sorted(ambient & keep)]
    prctl.cap_permitted.limit(*caps)
    prctl.cap_effective.limit(*caps)
    prctl.cap_inheritable.limit(*amb)
    linux.ambient_clear()
    for cap in amb:
        linux.ambient_raise(cap)
    prctl.set_keepcaps(False)
    if no_new_privs:
        prctl.set_no_new_privs(1)
