"""Capabilities and no_new_privs: the one module that imports python-prctl.
It uses the package's C module, _prctl, directly: the Python wrapper `prctl`
builds classes for every capability on import (~1.5 ms of each `minirun run`)
and its set_caps only translates names to the numbers used here anyway.

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


_FLAGS = ("CAP_EFFECTIVE", "CAP_INHERITABLE", "CAP_PERMITTED", "CAP_LAST_CAP")


def all_names() -> frozenset[str]:
    """Every capability python-prctl names (chown, ..., audit_read), lowercase."""
    global _all_names
    if _all_names is None:
        import _prctl
        _all_names = frozenset(n[4:].lower() for n in dir(_prctl) if n.startswith("CAP_") and n not in _FLAGS)
    return _all_names


_all_names: frozenset[str] | None = None


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


def preload() -> None:
    """Import python-prctl now: after a chroot into the container it cannot be found."""
    import _prctl  # noqa: F401


def _number(name: str) -> int:
    import _prctl
    return getattr(_prctl, f"CAP_{name.upper()}")


def limit_bounding(keep: frozenset[str]) -> None:
    """Drop every other capability from the bounding set (needs CAP_SETPCAP: call while root).
    Numbers the kernel knows but python-prctl has no name for (checkpoint_restore, ...)
    are dropped too, read from /proc/sys/kernel/cap_last_cap."""
    import _prctl
    keep_numbers = {_number(n) for n in keep}
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for number in range(last + 1):
        if number not in keep_numbers:
            _prctl.prctl(_prctl.PR_CAPBSET_DROP, number)


def keep_across_setuid() -> None:
    import _prctl
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 1)


def apply(keep: frozenset[str], ambient: frozenset[str], no_new_privs: bool) -> None:
    """After setuid: permitted = effective = keep, inheritable = ambient = what a
    non-root user was explicitly given (empty for root, which gets the bounding set at exec).
    One capset sets all three sets at once, so no step ever has effective > permitted."""
    import _prctl
    from .. import linux
    everything = all_names()
    # a capability minirun itself lacks (this VM has no sys_resource) cannot be granted
    numbers = {name: _number(name) for name in keep}
    permitted = _prctl.get_caps([], list(numbers.values()), [])[_prctl.CAP_PERMITTED]
    keep = frozenset(name for name, number in numbers.items() if permitted[number])
    keep_caps = [_number(n) for n in sorted(keep)]
    drop_caps = [_number(n) for n in sorted(everything - keep)]
    amb = [_number(n) for n in sorted(ambient & keep)]
    not_amb = [_number(n) for n in sorted(everything - (ambient & keep))]
    # one capset: effective and permitted to set, then to clear; inheritable likewise
    _prctl.set_caps(keep_caps, keep_caps, amb, drop_caps, drop_caps, not_amb)
    linux.ambient_clear()
    for cap in amb:
        linux.ambient_raise(cap)
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 0)
    if no_new_privs:
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
