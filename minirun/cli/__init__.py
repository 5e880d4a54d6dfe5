"""The command line. One short function per verb, grouped by what they act on
(images, registry, containers, lifecycle); common.py is the only place that
prints errors and maps them to exit codes (see minirun/errors.py for the table).

main() first tries the light path (cli/light.py) for the commands whose speed
matters (`run`, `images`, `ps`, `--version`): it reads the same flag definitions
without importing typer. Anything it is not sure of goes to the typer app.
"""

from __future__ import annotations

__all__ = ["app", "main"]


def typer_app():
    """The typer app with every command registered (importing typer costs ~100 ms)."""
    from . import images, lifecycle, usage, registry, containers, system  # noqa: F401 - registers
    from .common import app
    return app


def __getattr__(name: str):
    if name == "app":
        return typer_app()
    raise AttributeError(name)


def main() -> None:
    import gc
    import os
    import sys
    # The quick commands (run, images, ps) make few cyclic objects before they exit or
    # wait, and the collector's passes over a heap of fresh imports cost a run ~0.5 ms.
    # load, pull and every typer command turn it back on.
    gc.disable()
    os.umask(0o022)   # store dirs become the container's / and its mount points: never 0700
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
        os._exit(code)
    gc.enable()
    typer_app()()
