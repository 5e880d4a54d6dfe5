"""Every error minirun raises on purpose, and the exit code each one maps to.

    MinirunError                 exit 1   something a user can fix; message + hint
    ├── UsageError               exit 2   a malformed argument or reference
    ├── NotFound                 exit 1   no such image, container or layer
    │   ├── ImageNotFound
    │   └── ContainerNotFound
    ├── Conflict                 exit 1   a name in use, an image still used by a container
    ├── BadImage                 exit 1   a blob or archive that fails verification or parsing
    │   ├── DigestMismatch
    │   └── UnsupportedMediaType
    ├── RegistryError            exit 1   a registry refused, failed or could not be reached
    │   ├── AuthError                     credentials missing or rejected
    │   └── RegistryUnavailable           connection refused or broken (worth a retry)
    ├── EnvironmentProblem       exit 3   not root, unsupported filesystem, missing kernel feature,
    │                                     a store others can write to
    └── RuntimeFailure           exit 125 the container could not be set up

`minirun run` follows `docker run` instead: any MinirunError exits 125, a
command that cannot be executed exits 126, one that is not found exits 127.

Only the CLI turns these into output and exit codes. Each error carries a
one-line message naming the cause and a hint naming the fix; callers branch
on the class, never on the text.
"""

from __future__ import annotations

import errno


class MinirunError(Exception):
    exit_code = 1
    hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def line(self) -> str:
        """The one line the CLI prints: cause, then fix."""
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class UsageError(MinirunError):
    exit_code = 2


class NotFound(MinirunError):
    pass


class ImageNotFound(NotFound):
    hint = "see `minirun images`, or fetch it with `minirun load` / `minirun pull`"


class ContainerNotFound(NotFound):
    hint = "see `minirun ps -a`"


class Conflict(MinirunError):
    pass


class BadImage(MinirunError):
    pass


class DigestMismatch(BadImage):
    hint = "the file is corrupt or was altered; fetch or save it again"


class UnsupportedMediaType(BadImage):
    pass


class RegistryError(MinirunError):
    pass


class AuthError(RegistryError):
    hint = "log in with `minirun login REGISTRY`, or check the credentials in ~/.docker/config.json"


class RegistryUnavailable(RegistryError):
    pass


class EnvironmentProblem(MinirunError):
    exit_code = 3


class RuntimeFailure(MinirunError):
    exit_code = 125


def context(prefix: str, err: MinirunError) -> MinirunError:
    """Prefix an error's message with one short lowercase context, keeping its class."""
    err.message = f"{prefix}: {err.message}"
    err.args = (err.message,)
    return err


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException | None) -> bool:
    """True when exc, or an error it was raised from or during, is ENOSPC/EDQUOT
    (the kernel says ENOSPC for a filesystem out of inodes too)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def no_space(root: str) -> EnvironmentProblem:
    return EnvironmentProblem(f"no space or no free inodes left on the filesystem of {root}; "
                              "the command stopped and kept nothing",
                              "free space there (e.g. `minirun prune`) or set MINIRUN_ROOT to a "
                              "bigger filesystem, then try again")


def brief(value: object, limit: int = 60) -> str:
    """repr(value), cut short: an error line names a bad value (or a tar entry's
    name, which may be megabytes long) without echoing all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def named(name: str) -> str:
    """A name from an image (a tar entry, a link target) as an error line shows it."""
    return brief(name, 200)


def as_failure(err: BaseException, run_mode: bool = False) -> tuple[str, int] | None:
    """The one stderr line and exit code for an error the CLI reports, or None for
    one it must not hide (a bug: let the traceback show). Kept free of typer so the
    light `run` path reports errors exactly as the typer commands do."""
    if not isinstance(err, (MinirunError, OSError)):
        return None
    if out_of_space(err) and not isinstance(err, EnvironmentProblem):
        from .store.root import default_root
        err = no_space(default_root())      # whatever layer noticed, the cause is the disk
    elif isinstance(err, PermissionError) and err.errno == errno.EPERM:
        err = EnvironmentProblem(f"operation not permitted: {err.strerror or err}"
                                 + (f" ({err.filename})" if err.filename else ""),
                                 "minirun needs root with CAP_SYS_ADMIN (not an unprivileged "
                                 "container); `minirun doctor` shows what is missing")
    elif isinstance(err, PermissionError):
        err = EnvironmentProblem(f"permission denied: {err.filename or err}",
                                 "the store belongs to root: run minirun as root (sudo)")
    elif not isinstance(err, MinirunError):
        return None
    return "Error: " + " ".join(err.line().split()), 125 if run_mode else err.exit_code
