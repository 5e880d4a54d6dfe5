"""Commands defined as data, so two parsers can read one definition.

Importing typer costs ~100 ms, more than a whole container start. The commands
people run in loops (`run`, `images`, `ps`, `load`) are therefore described
here as a Command: its arguments, its flags (Flag), its help, and the function
that does the work. common.register() turns a Command into a typer command
(help, completion and usage errors stay typer's); parse() reads the same
definition without typer, for the light path (cli/light.py). parse() accepts
only what it is sure of and returns None for anything else (--help, an unknown
flag, a missing value), so typer answers those with its usual messages.
tests/unit/test_runflags.py proves both parsers agree.

Nothing heavy is imported here.
"""

from __future__ import annotations

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
    """A verb: its words for typer (doc, epilog), what it takes, and what runs it.
    `target` is "module:function" below minirun.cli, imported only when it runs;
    the function takes the parsed values and returns the exit code."""
    __slots__ = ("name", "doc", "epilog", "args", "flags", "interspersed", "run_mode", "target")

    def __init__(self, name: str, doc: str, epilog: str, args: tuple[Arg, ...], flags: tuple[Flag, ...],
                 target: str, interspersed: bool = True, run_mode: bool = False):
        self.name, self.doc, self.epilog, self.args, self.flags = name, doc, epilog, args, flags
        self.target, self.interspersed, self.run_mode = target, interspersed, run_mode

    def execute(self, values: dict) -> int:
        import sys
        module, _, function = self.target.partition(":")
        name = __package__ + module            # importlib would import warnings too
        __import__(name)
        return getattr(sys.modules[name], function)(values)


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
