"""The typer app and what every command shares: error handling, the store, tables."""

from __future__ import annotations

import functools
import os
import sys

import typer

from .. import __version__
from ..errors import MinirunError
from . import as_failure, flush_warnings
from .formatting import print_table  # noqa: F401 - the tables of every command
from .light import EXIT_CODES_HELP, RUN_EXIT_CODES_HELP  # noqa: F401 - the commands' epilogs

app = typer.Typer(
    name="minirun", no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Run images on kernel overlayfs and see exactly what each run wrote.\n\n"
         "The store lives in $MINIRUN_ROOT (default /var/lib/minirun).",
)


def for_each(names, action) -> None:
    """action(name) for every name, as docker's rm, stop and kill do: one that fails is
    reported in its line and the rest go on; the exit code is then the first failure's."""
    failed = 0
    for name in names:
        try:
            action(name)
        except (MinirunError, OSError) as err:
            failure = as_failure(err)
            flush_warnings(err)
            if failure is None:
                raise
            print(failure[0], file=sys.stderr, flush=True)
            failed = failed or failure[1]
    if failed:
        raise typer.Exit(failed)


def handled(run_mode: bool = False):
    """Turn MinirunError into one line on stderr and its exit code (125 for everything in `run`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except (MinirunError, OSError) as err:
                failure = as_failure(err, run_mode)
                flush_warnings(err)          # before the error, and not about what it is about
                if failure is None:
                    raise
                print(failure[0], file=sys.stderr)
                raise typer.Exit(failure[1])
            except KeyboardInterrupt:
                flush_warnings()
                raise typer.Exit(130)
            except BaseException:            # typer.Exit with a code, or a bug
                flush_warnings()
                raise
            flush_warnings()
            return result
        return inner
    return wrap


def store(create: bool = True):
    from ..store import open_store
    return open_store(create=create)


def _version(value: bool) -> None:
    if value:
        print(f"minirun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit."),
                 log_level: str = typer.Option("warning", "--log-level", envvar="MINIRUN_LOG_LEVEL",
                                               help="debug shows what minirun does to the kernel (mounts "
                                               "and their options, namespaces, pivot_root, cgroups, "
                                               "capabilities), one line each on stderr; also info, "
                                               "warning, error.")) -> None:
    from ..lib import log
    value = log_level.lower()
    if value not in log.LEVELS:
        if os.environ.get("MINIRUN_LOG_LEVEL", "").lower() == value:
            value = "warning"        # as the light path reads the variable: unknown means the default
        else:
            raise typer.BadParameter(f"{log_level!r} is not one of {', '.join(log.LEVELS)}")
    log.set_level(value)


def completer(kind: str):
    """A typer autocompletion callback: complete.images, complete.containers, ... or None."""
    if not kind:
        return None

    def candidates(incomplete: str) -> list[str]:
        from . import complete
        return getattr(complete, kind)(incomplete)
    return candidates


def register(command) -> None:
    """Make a spec.Command a typer command: its signature is built from the same
    Arg and Flag definitions the light parser reads."""
    import inspect
    from typing import List, Optional
    param = functools.partial(inspect.Parameter, kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = []
    for arg in command.args:
        annotation = List[str] if arg.variadic else str
        params.append(param(arg.dest, annotation=annotation if arg.required else Optional[annotation],
                            default=typer.Argument(... if arg.required else None, metavar=arg.metavar,
                                                   help=arg.help or None,
                                                   autocompletion=completer(arg.complete))))
    kinds = {"bool": bool, "str": Optional[str], "list": List[str]}
    for flag in command.flags:
        params.append(param(flag.dest, annotation=kinds[flag.kind],
                            default=typer.Option(flag.default, *flag.names, help=flag.help)))

    def body(**values) -> None:
        raise typer.Exit(command.execute(values) or 0)
    body.__name__ = body.__qualname__ = command.name
    body.__doc__ = command.doc
    body.__signature__ = inspect.Signature(params)
    settings = {} if command.interspersed else {"allow_interspersed_args": False}
    if any("-h" in flag.names for flag in command.flags):
        settings["help_option_names"] = ["--help"]          # run -h HOSTNAME, as docker
    app.command(command.name, epilog=command.epilog, context_settings=settings)(
        handled(run_mode=command.run_mode)(body))
