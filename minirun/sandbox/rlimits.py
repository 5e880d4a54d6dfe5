"""--ulimit: per-process resource limits (setrlimit(2)), in docker's syntax.

    nofile=1024:2048    soft 1024, hard 2048
    nproc=100           soft = hard = 100
    core=-1             unlimited

The parent checks every request against its own limits (check()) before
forking. The container inherits the parent's hard limits, and only
CAP_SYS_RESOURCE can raise a hard limit, so a request over the host's hard
limit would otherwise fail in the child, after namespaces and mounts were
already made, with nothing better than EPERM. The child then applies the
limits (apply()) before it drops capabilities and execs.

Note that the kernel does not enforce nproc against a root process that has
CAP_SYS_ADMIN or CAP_SYS_RESOURCE. Use cgroups' pids.max (--pids-limit) to
bound a container's tasks whoever runs them.
"""

from __future__ import annotations

import resource
from typing import Callable, Iterable, NamedTuple

from ..errors import EnvironmentProblem, RuntimeFailure, UsageError

UNLIMITED = resource.RLIM_INFINITY
CAP_SYS_RESOURCE = 24
NR_OPEN = "/proc/sys/fs/nr_open"

# docker's names, and the RLIMIT_* numbers from <asm-generic/resource.h> (Python lacks RLIMIT_LOCKS)
RESOURCES = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6, "nofile": 7,
    "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13,
    "rtprio": 14, "rttime": 15,
}


class Ulimit(NamedTuple):
    name: str
    soft: int              # UNLIMITED (-1) for no limit
    hard: int

    @property
    def resource(self) -> int:
        return RESOURCES[self.name]

    def flag(self) -> str:
        """The limit as the user would write it, for messages."""
        if self.soft == self.hard:
            return f"--ulimit {self.name}={self.soft}"
        return f"--ulimit {self.name}={self.soft}:{self.hard}"

    def to_json(self) -> dict:
        """docker's HostConfig.Ulimits entry."""
        return {"Name": self.name, "Soft": self.soft, "Hard": self.hard}

    @classmethod
    def from_json(cls, data: dict) -> "Ulimit":
        return cls(data["Name"], int(data["Soft"]), int(data["Hard"]))


def parse_ulimit(text: str) -> Ulimit:
    """NAME=SOFT[:HARD]. A missing hard limit means hard = soft, and -1 means unlimited."""
    name, sep, values = text.partition("=")
    if not sep or name not in RESOURCES:
        raise UsageError(f"invalid --ulimit {text!r}: expected NAME=SOFT[:HARD] with a known NAME",
                         "NAME is one of " + ", ".join(sorted(RESOURCES)) + "; e.g. --ulimit nofile=1024:2048")
    soft_text, _, hard_text = values.partition(":")
    soft = _value(text, soft_text)
    hard = _value(text, hard_text) if hard_text else soft
    if _above(soft, hard):
        raise UsageError(f"invalid --ulimit {text!r}: the soft limit is above the hard limit",
                         f"give a soft limit no greater than the hard one, e.g. {name}={hard_text}:{hard_text}")
    return Ulimit(name, soft, hard)


def parse_ulimits(texts: Iterable[str]) -> tuple[Ulimit, ...]:
    """Every --ulimit flag; as in docker, a later flag for the same name replaces an earlier one."""
    by_name = {}
    for text in texts:
        ulimit = parse_ulimit(text)
        by_name[ulimit.name] = ulimit
    return tuple(by_name.values())


def _value(text: str, number: str) -> int:
    try:
        value = int(number)
    except ValueError:
        value = -2
    if value < -1:
        raise UsageError(f"invalid --ulimit {text!r}: {number!r} is not a limit",
                         "give a whole number of at least 0, or -1 for unlimited")
    return UNLIMITED if value == -1 else value


def _above(a: int, b: int) -> bool:
    """a > b, with UNLIMITED greater than every number."""
    if a == UNLIMITED:
        return b != UNLIMITED
    return b != UNLIMITED and a > b


# ---------------------------------------------------------------- in the parent

def check(ulimits: Iterable[Ulimit],
          current_hard: Callable[[int], tuple[int, int]] = resource.getrlimit,
          can_raise: bool | None = None, nr_open: int | None = None) -> None:
    """Refuse, before anything is set up, a limit the child could not set.

    Without CAP_SYS_RESOURCE no hard limit may go above the current one. With it,
    nofile still stops at fs.nr_open."""
    if can_raise is None:
        can_raise = has_sys_resource()
    for ulimit in ulimits:
        if not can_raise:
            host_hard = current_hard(ulimit.resource)[1]
            if _above(ulimit.hard, host_hard):
                raise EnvironmentProblem(
                    f"{ulimit.flag()}: above this host's hard limit {_show(host_hard)} "
                    "(raising it needs CAP_SYS_RESOURCE)",
                    f"ask for at most {ulimit.name}={_show(host_hard)}, or raise the hard limit "
                    "where minirun starts (e.g. LimitNOFILE= in a systemd unit, limits.conf)")
        elif ulimit.name == "nofile":
            ceiling = _nr_open() if nr_open is None else nr_open
            if _above(ulimit.hard, ceiling):
                raise EnvironmentProblem(f"{ulimit.flag()}: above this kernel's fs.nr_open {ceiling}",
                                         f"ask for at most nofile={ceiling}, or raise sysctl fs.nr_open")


def has_sys_resource(status: str = "/proc/self/status") -> bool:
    """Whether this process's effective capabilities include CAP_SYS_RESOURCE."""
    from ..linux.procfs import status_field
    value = status_field("CapEff", status)
    return value is not None and bool(int(value, 16) >> CAP_SYS_RESOURCE & 1)


def _nr_open() -> int:
    with open(NR_OPEN) as f:
        return int(f.read())


def _show(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


# ---------------------------------------------------------------- in the child

def apply(ulimits: Iterable[Ulimit]) -> None:
    """setrlimit each one, in the child before exec; check() has already vetted them."""
    for ulimit in ulimits:
        try:
            resource.setrlimit(ulimit.resource, (ulimit.soft, ulimit.hard))
        except (OSError, ValueError) as err:
            raise RuntimeFailure(f"{ulimit.flag()}: setrlimit failed: {err}",
                                 "check the limit against `ulimit -H -a` on this host") from err
