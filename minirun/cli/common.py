"""The typer app and what every command shares: error handling, the store, tables."""

from __future__ import annotations

import functools
import sys

import typer

from .. import __version__
from ..errors import MinirunError, as_failure

EXIT_CODES_HELP = ("Exit codes: 0 success; 1 failed (not found, corrupt input, conflict); "
                   "2 bad usage; 3 environment (not root, unsupported filesystem).")
RUN_EXIT_CODES_HELP = ("Exit codes follow docker run: the command's own code; 128+N if it was killed "
                       "by signal N; 125 minirun failed; 126 the command cannot be executed; "
                       "127 the command was not found.")

app = typer.Typer(
    name="minirun", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Run images on kernel overlayfs and see exactly what each run wrote.\n\n"
         "The store lives in $MINIRUN_ROOT (default /var/lib/minirun).",
)


def handled(run_mode: bool = False):
    """Turn MinirunError into one line on stderr and its exit code (125 for everything in `run`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (MinirunError, OSError) as err:
                failure = as_failure(err, run_mode)
                if failure is None:
                    raise
                print(failure[0], file=sys.stderr)
                raise typer.Exit(failure[1])
            except KeyboardInterrupt:
                raise typer.Exit(130)
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
                                              help="Print the version and exit.")) -> None:
    pass



def print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())

