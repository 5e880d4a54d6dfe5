"""The light path: `minirun run`, `images`, `ps`, `load`, `pull` and `--version`
without typer, and the command definitions both parsers read.

Importing typer costs ~100 ms, more than a whole container start. The commands
people run in loops are therefore described here as data: a Command with its
arguments (Arg), its flags (Flag), its help, and the function that does the
work (run's is cli/runflags.py, the others' cli/lightcmds.py).
common.register() turns a Command into a typer command (help, completion and
usage errors stay typer's); parse() reads the same definition without typer.
parse() accepts only what it is sure of and returns None for anything else
(--help, an unknown flag, a missing value), so typer answers those with its
usual messages; tests/unit/test_runflags.py proves both parsers agree.

dispatch() returns an exit code when it handled the command line, or None when
the typer app must. Errors print the same one line, with the same exit codes,
as the typer commands (cli/__init__.py as_failure). Nothing heavy is imported
here.
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
        from .lightcmds import LIGHT
        command = LIGHT.get(argv[0])
        if command is None:
            return None
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
    from ..lib import log
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
    from . import as_failure, flush_warnings
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


# ---------------------------------------------------------------- commands as data

EXIT_CODES_HELP = ("Exit codes: 0 success; 1 failed (not found, corrupt input, conflict); "
                   "2 bad usage; 3 environment (not root, unsupported filesystem, a store others "
                   "can write to).")
RUN_EXIT_CODES_HELP = ("Exit codes follow docker run: the command's own code; 128+N if it was killed "
                       "by signal N; 125 minirun failed; 126 the command cannot be executed; "
                       "127 the command was not found.")


class Flag:
    """One option: its parameter name, its spellings, bool / str / list, help, default."""
    __slots__ = ("dest", "names", "kind", "help", "value")

    def __init__(self, dest: str, names: tuple[str, ...], kind: str, help: str, default=None):
        self.dest, self.names, self.kind, self.help, self.value = dest, names, kind, help, default

    @property
    def default(self):
        """A fresh default each time (lists are appended to)."""
        return False if self.kind == "bool" else [] if self.kind == "list" else self.value


class Arg:
    """A positional argument; a variadic one takes the rest (at least one if required)."""
    __slots__ = ("dest", "metavar", "help", "required", "variadic", "complete")

    def __init__(self, dest: str, metavar: str, help: str = "", required: bool = True,
                 variadic: bool = False, complete: str = ""):
        self.dest, self.metavar, self.help = dest, metavar, help
        self.required, self.variadic = required, variadic
        self.complete = complete          # a function of cli/complete.py: images, containers


class Command:
    """A verb: its words for typer (doc, epilog), what it takes, and run, the function
    that does the work: it takes the parsed values and returns the exit code. Each
    Command is defined beside its function (cli/runflags.py, cli/lightcmds.py), so
    the module dispatch() imports for the verb is the one that runs it, and that
    function imports what the work needs only when it is called."""
    __slots__ = ("name", "doc", "epilog", "args", "flags", "interspersed", "run_mode", "run")

    def __init__(self, name: str, doc: str, epilog: str, args: tuple[Arg, ...], flags: tuple[Flag, ...],
                 run, interspersed: bool = True, run_mode: bool = False):
        self.name, self.doc, self.epilog, self.args, self.flags = name, doc, epilog, args, flags
        self.run, self.interspersed, self.run_mode = run, interspersed, run_mode

    def execute(self, values: dict) -> int:
        return self.run(values)


def parse(command: Command, argv: list[str]) -> dict | None:
    """argv (after the verb) as {dest: value}, as typer would give it, or None when
    typer must decide. Options follow click's rules: --name=value or --name value,
    clustered short switches (-it), a short option's value glued on (-eK=V) or next,
    `--` ends the options; without interspersed args the first positional ends them."""
    by_name = {name: flag for flag in command.flags for name in flag.names}
    values = {flag.dest: flag.default for flag in command.flags}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional += argv[i + 1:]
            break
        if arg.startswith("--"):
            name, eq, inline = arg.partition("=")
            flag = by_name.get(name)
            if flag is None:
                return None
            if flag.kind == "bool":
                if eq:
                    return None
                values[flag.dest] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        return None
                    inline = argv[i]
                _store(values, flag, inline)
        elif arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                flag = by_name.get("-" + arg[j])
                if flag is None:
                    return None
                if flag.kind == "bool":
                    values[flag.dest] = True
                    j += 1
                    continue
                value = arg[j + 1:]
                if not value:
                    i += 1
                    if i >= len(argv):
                        return None
                    value = argv[i]
                _store(values, flag, value)
                break
        elif command.interspersed:
            positional.append(arg)
        else:
            positional += argv[i:]
            break
        i += 1
    return _bind(command.args, positional, values)


def _bind(args: tuple[Arg, ...], positional: list[str], values: dict) -> dict | None:
    for arg in args:
        if arg.variadic:
            if arg.required and not positional:
                return None
            values[arg.dest], positional = list(positional), []
        elif positional:
            values[arg.dest] = positional.pop(0)
        elif arg.required:
            return None
        else:
            values[arg.dest] = None
    return None if positional else values


def _store(values: dict, flag: Flag, value: str) -> None:
    if flag.kind == "list":
        values[flag.dest].append(value)
    else:
        values[flag.dest] = value
