"""Run a function in a forked child and bring its failure back to the parent.

For work that must not change the calling process: unsharing a mount
namespace, mounting, chroot, pivot_root. Whatever the child mounts dies with
it, so a killed minirun leaks nothing onto the host.
"""

from __future__ import annotations

import os
from .frozen import dataclass
from typing import Callable


@dataclass(frozen=True)
class ChildFailure:
    errno: int          # of the OSError the child raised, else 0
    message: str


def in_child(work: Callable[[], None]) -> ChildFailure | None:
    """None when work() returned in the child; else what went wrong there."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        code = 0
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
            line = getattr(exc, "line", None)
            message = line() if line else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
            number = exc.errno if isinstance(exc, OSError) and exc.errno else 0
            os.write(write_end, f"{number}\n{message}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        number, _, message = pipe.read().decode(errors="replace").partition("\n")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return ChildFailure(int(number) if number.isdigit() else 0, message or "the child process died")
