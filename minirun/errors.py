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
    ├── DamagedRecord            exit 1   a record of the store that cannot be read as what it must be
    ├── EnvironmentProblem       exit 3   not root, unsupported filesystem, read-only store, missing kernel feature,
    │                                     a store others can write to
    └── RuntimeFailure           exit 125 the container could not be set up

`minirun run` follows `docker run` instead: any MinirunError exits 125, a
command that cannot be executed exits 126, one that is not found exits 127.

Only the CLI turns these into output and exit codes. Each error carries a
one-line message naming the cause and a hint naming the fix; callers branch
on the class, never on the text. This module owns that line: whatever a user,
an image or a damaged store put into a message (a newline, an escape sequence)
is shown escaped, so an error is always exactly one line and never drives the
terminal. A command that goes on past a damaged record says so with one
warning line per record (warn_damaged).
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


class StartFailed(RuntimeFailure):
    """The container was made but its command did not start: 125 (a step of minirun's
    failed), 126 (the command cannot be executed) or 127 (not found), as docker
    says them. The run has already recorded it; the CLI reports it in its one error
    path, with this exit code rather than run's blanket 125."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


REPAIR_HINT = "`minirun fsck` lists what is damaged, `minirun fsck --repair` repairs it"


class DamagedRecord(MinirunError):
    """A file or directory of the store that is not what minirun wrote there:
    truncated, of the wrong type, garbage, or replaced by something else."""

    def __init__(self, path: str, problem: str, hint: str = REPAIR_HINT):
        super().__init__(f"{shown(path)} is damaged: {problem}", hint)
        self.path, self.problem = path, problem


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


def printable(text: str) -> str:
    """text with every character a terminal would act on escaped as Python does
    (\\n, \\x1b, \\u2028, \\udcff): control characters, line and paragraph
    separators, format characters such as bidirectional overrides, and the lone
    surrogates an undecodable argument becomes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _ESCAPES.get(c) or c.encode("unicode_escape",
                   "backslashreplace").decode("ascii") for c in text)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(path: str, limit: int = 200) -> str:
    """A path (or any text a user gave) as a message shows it: printable, cut short."""
    text = printable(str(path))
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


_warnings: dict[str, str] = {}         # line -> the damaged path it is about
_shown: set = set()


def warn_damaged(err: DamagedRecord) -> None:
    """A damaged record a command skips and goes past. Each is said once, in one
    line, when the command ends (flush_warnings): however many times the command
    read it, and not at all when the command fails because of that very record
    (its error line says it)."""
    line = "Warning: " + printable(err.line())
    if line not in _shown:
        _warnings.setdefault(line, err.path)


def take_warnings(failure: BaseException | None = None) -> list[str]:
    """The warning lines gathered so far, each once, less those about the record
    failure is about (its own error line says it); the CLI prints them."""
    skip = failure.path if isinstance(failure, DamagedRecord) else None
    lines = [line for line, path in _warnings.items() if path != skip]
    _shown.update(_warnings)
    _warnings.clear()
    return lines
