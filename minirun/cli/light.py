"""The light path: `minirun run`, `images`, `ps`, `load` and `--version` without typer.

dispatch() returns an exit code when it handled the command line, or None when
the typer app must (any other command, --help, anything it cannot parse for
sure). Errors print the same one line, with the same exit codes, as the typer
commands (errors.as_failure).
"""

from __future__ import annotations

import os
import sys


def dispatch(argv: list[str]) -> int | None:
    if "_MINIRUN_COMPLETE" in os.environ:      # the shell asks typer for completions
        return None
    if argv == ["--version"]:
        from .. import __version__
        print(f"minirun {__version__}")
        return 0
    argv = take_log_level(argv)
    if argv is None or not argv:
        return None
    if argv[0] == "run":
        from .runflags import RUN as command
    else:
        from .quick import LIGHT
        command = LIGHT.get(argv[0])
        if command is None:
            return None
    from .spec import parse
    values = parse(command, argv[1:])
    if values is None:
        return None
    if argv[0] in ("load", "pull"):
        import gc
        gc.enable()           # long commands: main() turned it off for the quick ones
    return _guarded(lambda: command.execute(values), run_mode=command.run_mode)


def take_log_level(argv: list[str]) -> list[str] | None:
    """A leading --log-level LEVEL (or --log-level=LEVEL) applied and removed; None if
    its value is not a level (typer then says so)."""
    from .. import log
    if argv and argv[0].startswith("--log-level"):
        name, eq, value = argv[0].partition("=")
        if name != "--log-level":
            return None
        if not eq:
            if len(argv) < 2:
                return None
            value, argv = argv[1], argv[2:]
        else:
            argv = argv[1:]
        if value not in log.LEVELS:
            return None
        log.set_level(value)
    return argv


def _guarded(action, run_mode: bool = False) -> int:
    from ..errors import as_failure, flush_warnings
    try:
        code = action()
    except BrokenPipeError:
        # the reader went away (`minirun images | head -1`): stop quietly, as a tool
        # killed by SIGPIPE would, with its exit code (128 + 13)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:                 # noqa: BLE001 - as_failure decides what to show
        failure = as_failure(err, run_mode)
        flush_warnings(err)                  # before the error, and not about what it is about
        if failure is None:
            raise
        print(failure[0], file=sys.stderr)
        return failure[1]
    except KeyboardInterrupt:
        flush_warnings()
        return 130
    flush_warnings()
    return code
