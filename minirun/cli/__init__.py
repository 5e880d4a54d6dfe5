"""The command line: the only printer and the only importer of typer, click and
rich. One module per group of commands:

    __init__.py    main(), and the one error path (as_failure: an error -> one line
                   on stderr and its exit code; flush_warnings)
    light.py       the light path: commands as data (Command, Arg, Flag), their
                   parser, and dispatch() for run, images, ps, load, pull, --version
    lightcmds.py   images, ps, load and pull as data; runflags.py run's flags and start
    common.py      the typer app, handled() and the store; complete.py completion
    images.py, lifecycle.py, containers.py, registry.py, usage.py, system.py
                   the typer commands by group (system: fsck, doctor, info)
    formatting.py  --format json and templates; progress.py load/pull/push progress

main() first tries the light path for the commands whose speed matters: it reads
the same definitions without importing typer (~100 ms). Anything it is not sure
of goes to the typer app.
"""

from __future__ import annotations

import errno

__all__ = ["app", "main", "as_failure", "flush_warnings"]


def typer_app():
    """The typer app with every command registered (importing typer costs ~100 ms)."""
    from . import images, lifecycle, usage, registry, containers, system  # noqa: F401 - registers
    from .common import app
    return app


def __getattr__(name: str):
    if name == "app":
        return typer_app()
    raise AttributeError(name)


def _stdio_on_devnull(os, sys) -> None:
    """A closed 0, 1 or 2 (`minirun run ... >&-`) becomes /dev/null: else the next
    file minirun opens would take its number, and output meant for the terminal
    would land in it (a store record, a layer)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, mode, closefd=False))


def main() -> None:
    import gc
    import os
    import sys
    # The quick commands (run, images, ps) make few cyclic objects before they exit or
    # wait, and the collector's passes over a heap of fresh imports cost a run ~0.5 ms.
    # load, pull and every typer command turn it back on.
    gc.disable()
    os.umask(0o022)   # store dirs become the container's / and its mount points: never 0700
    if sys.stdout is None or sys.stderr is None or sys.stdin is None:
        _stdio_on_devnull(os, sys)
    from .light import dispatch
    code = dispatch(sys.argv[1:])
    if code is not None:
        # The light commands hold no threads and leave every file closed; skip the
        # interpreter's teardown (~5 ms of module and object finalisation).
        try:
            sys.stdout.flush()
        except BrokenPipeError:         # the reader went away: as a tool killed by SIGPIPE
            code = 141
        except OSError as exc:          # e.g. ENOSPC writing to a file
            print(f"Error: writing the output: {exc.strerror or exc}", file=sys.stderr)
            code = code or 1
        try:
            sys.stderr.flush()
        except OSError:
            pass
        from .. import codecache        # after the output: a first run's rewrite delays only the exit
        codecache.save()
        os._exit(code)
    gc.enable()
    app = typer_app()
    if sys.argv[1:2] in (["run"], ["create"]):
        # docker run and create say 125 for their own failures, a bad flag among them; the
        # command's own exit codes (2 included) pass through untouched
        from typer._click.exceptions import UsageError   # typer's own copy of click
        UsageError.exit_code = 125
    app()


# ---------------------------------------------------------------- the one error path

def flush_warnings(failure: BaseException | None = None) -> None:
    """Print the warnings gathered so far (errors.warn_damaged), except those about
    what failure is about."""
    import os
    from ..errors import out_of_space, take_warnings
    if isinstance(failure, OSError) and not out_of_space(failure):
        failure = os_error(failure)
    for line in take_warnings(failure):
        try:
            os.write(2, (line + "\n").encode(errors="backslashreplace"))
        except OSError:
            pass


def as_failure(err: BaseException, run_mode: bool = False) -> tuple[str, int] | None:
    """The one stderr line and exit code for an error the CLI reports, or None for
    one it must not hide (a bug: let the traceback show). Kept free of typer so the
    light `run` path reports errors exactly as the typer commands do."""
    from ..errors import EnvironmentProblem, MinirunError, StartFailed, no_space, out_of_space, printable
    if not isinstance(err, (MinirunError, OSError)):
        return None
    if out_of_space(err) and not isinstance(err, EnvironmentProblem):
        err = no_space(_store_root() or "the store")   # whatever layer noticed, the cause is the disk
    elif isinstance(err, OSError):
        from ..lib import log
        if log.debugging:               # where it came from, for a bug report
            import traceback
            traceback.print_exception(err)
        err = os_error(err)
    code = 125 if run_mode and not isinstance(err, StartFailed) else err.exit_code
    return "Error: " + _short_words(printable(err.line())), code


def _short_words(line: str, limit: int = 200) -> str:
    """Each word (a path, a value a user gave) longer than limit cut short: whatever
    layer built the message, a 5,000-character name is not echoed whole."""
    if len(line) <= limit:
        return line
    return " ".join(w if len(w) <= limit else f"{w[:limit // 2]}... ({len(w)} characters)"
                    for w in line.split(" "))


def os_error(err: OSError):
    """The one-line error for an OSError no layer turned into one: what failed, on
    which path, and the fix that cause usually needs."""
    from ..errors import REPAIR_HINT, DamagedRecord, EnvironmentProblem, MinirunError, shown
    path = f" ({shown(err.filename)})" if err.filename is not None else ""
    if err.filename2 is not None:
        path = f" ({shown(err.filename)} -> {shown(err.filename2)})"
    what = err.strerror or type(err).__name__
    root = _store_root()
    in_store = root is not None and err.filename is not None and \
        (str(err.filename) + "/").startswith(root.rstrip("/") + "/")
    if err.errno == errno.EPERM:
        return EnvironmentProblem(f"operation not permitted: {what}{path}",
                                  "minirun needs root with CAP_SYS_ADMIN (not an unprivileged "
                                  "container); `minirun doctor` shows what is missing")
    if err.errno == errno.EACCES:
        return EnvironmentProblem(f"permission denied{path}",
                                  "the store belongs to root: run minirun as root (sudo)")
    if err.errno == errno.EROFS:
        where = shown(root) if in_store else (shown(err.filename) if err.filename else "the target")
        return EnvironmentProblem(f"{where} is on a read-only filesystem",
                                  "remount it read-write, or set MINIRUN_ROOT to a writable directory")
    if in_store and err.errno in _DAMAGE_ERRNOS:
        if err.errno in (errno.ENOTDIR, errno.ELOOP):
            from ..store.readers import first_non_dir
            return DamagedRecord(first_non_dir(str(err.filename)), "it is not a directory")
        return MinirunError(f"the store is damaged: {what}{path}", REPAIR_HINT)
    return MinirunError(f"{what}{path}")


def _store_root() -> str | None:
    """The store's root for a message, or None when even that cannot be known (a
    broken config file is what the error being reported may be about)."""
    try:
        import os
        from ..config import get
        return os.path.abspath(get("root"))
    except Exception:          # noqa: BLE001 - the message must come out whatever is broken
        return None


# What a file or directory of the store replaced by something else makes the kernel say.
_DAMAGE_ERRNOS = (errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY,
                  errno.ENXIO, errno.EINVAL)
