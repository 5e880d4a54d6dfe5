"""Capabilities, no_new_privs and every other prctl(2): the one module that
imports python-prctl, and the one that makes the raw prctl calls it lacks.
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

import os

from .. import linux
from ..errors import EnvironmentProblem, UsageError

DOCKER_DEFAULT = frozenset({
    "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
    "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
})


_FLAGS = ("CAP_EFFECTIVE", "CAP_INHERITABLE", "CAP_PERMITTED", "CAP_LAST_CAP")


# capabilities newer than python-prctl 1.8 knows (Linux 5.9); the kernel's own
# count (/proc/sys/kernel/cap_last_cap) decides which of them exist here
_NEWER = {"checkpoint_restore": 40}


def all_names() -> frozenset[str]:
    """Every capability python-prctl names (chown, ..., bpf), and the newer ones, lowercase."""
    global _all_names
    if _all_names is None:
        import _prctl
        _all_names = frozenset(n[4:].lower() for n in dir(_prctl) if n.startswith("CAP_") and n not in _FLAGS)
        _all_names |= frozenset(_NEWER)
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
    return _NEWER.get(name) or getattr(_prctl, f"CAP_{name.upper()}")


def last_cap() -> int:
    """The highest capability number this kernel knows. Read once, while the host's
    /proc is still there; every set is cleared up to it, named or not."""
    global _last
    if _last < 0:
        fd = os.open("/proc/sys/kernel/cap_last_cap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _last = int(os.read(fd, 16))
        finally:
            os.close(fd)
    return _last


_last = -1


def limit_bounding(keep: frozenset[str]) -> None:
    """Drop every other capability from the bounding set (needs CAP_SETPCAP: call while
    root), up to the kernel's last number, whether python-prctl names it or not."""
    import _prctl
    keep_numbers = {_number(n) for n in keep}
    for number in range(last_cap() + 1):
        if number not in keep_numbers:
            _prctl.prctl(_prctl.PR_CAPBSET_DROP, number)


def cannot_give(capabilities: dict) -> tuple[str, list[str]] | None:
    """The first of an OCI process's sets that capset would refuse, with the names it
    would refuse: permitted beyond our own permitted set, effective beyond the
    permitted set asked for, inheritable beyond the bounding set left after
    limit_bounding (the kernel's rules, checked before the container is reported
    ready rather than found at its exec). Names this kernel does not have are left
    out, as apply_sets leaves them (runc warns and skips them too)."""
    import _prctl
    last = last_cap()
    named = {n: _number(n) for n in all_names() if _number(n) <= last}

    def asked(kind: str) -> set[str]:
        return {name for n in capabilities.get(kind, []) if (name := normalise(n)) in named}

    ours = _prctl.get_caps([], list(named.values()), [])[_prctl.CAP_PERMITTED]
    held = {n for n, number in named.items() if ours[number]}
    bounding = {n for n, number in named.items() if _prctl.prctl(_prctl.PR_CAPBSET_READ, number)}
    for kind, allowed in (("permitted", held), ("effective", asked("permitted")),
                          ("inheritable", bounding & asked("bounding"))):
        refused = sorted(asked(kind) - allowed)
        if refused:
            return kind, [f"CAP_{n.upper()}" for n in refused]
    return None


def keep_across_setuid() -> None:
    import _prctl
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 1)


def apply(keep: frozenset[str], ambient: frozenset[str], no_new_privs: bool) -> None:
    """After setuid: permitted = effective = keep, inheritable = ambient = what a
    non-root user was explicitly given (empty for root, which gets the bounding set at exec).
    One capset sets all three sets at once, so no step ever has effective > permitted."""
    import _prctl
    last = last_cap()
    # a capability minirun itself lacks (this VM has no sys_resource) cannot be granted,
    # nor one this kernel does not have
    numbers = {name: number for name in keep if (number := _number(name)) <= last}
    permitted = _prctl.get_caps([], list(numbers.values()), [])[_prctl.CAP_PERMITTED]
    keep_caps = sorted(number for number in numbers.values() if permitted[number])
    amb = sorted(numbers[name] for name in ambient if name in numbers and numbers[name] in keep_caps)
    drop_caps = [n for n in range(last + 1) if n not in keep_caps]
    not_amb = [n for n in range(last + 1) if n not in amb]
    # one capset: effective and permitted to set, then to clear; inheritable likewise.
    # Every number up to the kernel's last is cleared unless kept, named or not.
    _prctl.set_caps(keep_caps, keep_caps, amb, drop_caps, drop_caps, not_amb)
    ambient_clear()
    for cap in amb:
        ambient_raise(cap)
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 0)
    if no_new_privs:
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def apply_sets(effective: frozenset[str], permitted: frozenset[str], inheritable: frozenset[str],
               ambient: frozenset[str], no_new_privs: bool) -> None:
    """An OCI runtime's process.capabilities, after setuid (bounding: limit_bounding,
    before it): each set exactly as named, in one capset; then the ambient set."""
    import _prctl
    last = last_cap()

    def numbers(names: frozenset[str]) -> list[int]:
        return sorted(n for name in names if (n := _number(name)) <= last)

    eff, perm, inh = numbers(effective), numbers(permitted), numbers(inheritable)
    every = range(last + 1)
    _prctl.set_caps(eff, perm, inh, [n for n in every if n not in eff], [n for n in every if n not in perm],
                    [n for n in every if n not in inh])
    ambient_clear()
    for cap in numbers(ambient):
        ambient_raise(cap)
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 0)
    if no_new_privs:
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def drop_all() -> None:
    """No capability in any set: for --init's PID 1, which never execs (an exec would
    recompute the sets) and needs none to wait for and signal its own children."""
    import _prctl
    every = list(range(last_cap() + 1))
    _prctl.set_caps([], [], [], every, every, every)
    ambient_clear()


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"minirun {what} must run as root (it mounts overlayfs and "
                                 "creates namespaces)", f"run it with sudo: sudo minirun {what} ...")


# ---------------------------------------------------------------- the raw prctl(2) calls
# python-prctl lacks the ambient set and loads more than these need; the C call
# goes through linux's libc handle, so every prctl minirun makes is in this module.

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def set_pdeathsig(signum: int) -> None:
    """Have the kernel send signum to this process when its parent dies."""
    _prctl(PR_SET_PDEATHSIG, signum)


def set_dumpable(on: bool) -> None:
    """PR_SET_DUMPABLE: while off, only CAP_SYS_PTRACE may ptrace this process or open
    its /proc/PID/{root,cwd,exe,fd,mem,environ}; execve turns it on again."""
    _prctl(PR_SET_DUMPABLE, int(on), 0, "prctl PR_SET_DUMPABLE")


def set_child_subreaper() -> None:
    """Orphaned descendants are reparented to this process instead of to init."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, "prctl PR_SET_CHILD_SUBREAPER")


def _prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> int:
    return linux._check(linux._libc.prctl(linux.c_int(option), linux.c_ulong(arg2), linux.c_ulong(arg3),
                                          linux.c_ulong(0), linux.c_ulong(0)), what)


def set_name(name: str) -> None:
    """The process name ps shows (PR_SET_NAME, at most 15 bytes)."""
    buf = name.encode()[:15] + b"\0"
    linux._check(linux._libc.prctl(linux.c_int(PR_SET_NAME), buf, linux.c_ulong(0), linux.c_ulong(0),
                                   linux.c_ulong(0)), "prctl PR_SET_NAME")


def ambient_raise(cap: int) -> None:
    """python-prctl has no ambient set; the raw prctl does (Linux 4.3+)."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, "raise ambient capability")


def ambient_clear() -> None:
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, "clear ambient capabilities")
