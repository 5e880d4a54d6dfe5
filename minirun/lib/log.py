"""--log-level: what minirun did to the kernel, one line each on stderr.

    minirun --log-level debug run --rm busybox true      (or MINIRUN_LOG_LEVEL=debug)

At debug, linux.py reports every mount, unshare, pivot_root and fsconfig call,
and the launcher the overlay strategy, namespaces, cgroup paths and capabilities
it chose. Levels: debug, info, warning (the default: only warnings), error.
Lines go out with one write(2) on fd 2, so they stay whole when the container's
setup (a forked child) and minirun write at the same time, and they work after
pivot_root, where no module could be imported. Nothing is imported here.
"""

from __future__ import annotations

import os

LEVELS = ("debug", "info", "warning", "error")


def level() -> str:
    """MINIRUN_LOG_LEVEL, in any case; an unknown value means the default."""
    value = os.environ.get("MINIRUN_LOG_LEVEL", "warning").lower() or "warning"
    return value if value in LEVELS else "warning"


_threshold = LEVELS.index(level())
debugging = _threshold == 0          # callers test this before building a costly message


def set_level(value: str) -> None:
    """Set the level for this process and the processes it starts."""
    global _threshold, debugging
    os.environ["MINIRUN_LOG_LEVEL"] = value
    _threshold = LEVELS.index(value)
    debugging = _threshold == 0


def silence() -> None:
    """No more lines from this process (a -d monitor, whose stderr is the container's log)."""
    global _threshold, debugging
    _threshold, debugging = len(LEVELS), False


def debug(message: str) -> None:
    if debugging:
        _emit("debug", message)


def _emit(at: str, message: str) -> None:
    line = f"minirun[{os.getpid()}] {at}: {' '.join(message.split())}\n"
    try:
        os.write(2, line.encode(errors="replace"))
    except OSError:
        pass


def flag_names(value: int, table: dict[int, str]) -> str:
    """A flags word as 'NAME|NAME|0x10' for the log."""
    names = [name for bit, name in table.items() if value & bit]
    rest = value & ~sum(table)
    return "|".join(names + ([hex(rest)] if rest else [])) or "0"
