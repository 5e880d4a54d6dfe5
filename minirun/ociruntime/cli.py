"""minirun-oci's command line: runc's commands and flags, parsed by hand (typer
costs every call tens of ms). The one place an error becomes output: one line on
stderr, and with --log a line in FILE (text, or --log-format json as runc's
{"level","msg","time"}); the exit code is non-zero.

    minirun-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND ...
    create --bundle B [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
    start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
    run [create's flags] [--detach] ID | features | --version
    exec [--process F] [--detach] [--pid-file F] [--console-socket S] [-t] [--cwd D] [-e K=V] [-u UID[:GID]]
         [--cap C] [--no-new-privs] ID [ARGS...]   (exec.py)
    ps [--format table|json] ID [PS_ARGS...]   (ps.py)

Global flags podman or containerd pass that minirun-oci does not know are ignored
(a note with --debug); --systemd-cgroup is refused.
"""

from __future__ import annotations

import sys

from ..errors import MinirunError, UsageError
from ..lib import jsonio as json      # the C half of json: no re, no enum on every call

# flags of each command: name -> takes a value
_COMMANDS = {
    "create": {"--bundle": True, "-b": True, "--pid-file": True, "--console-socket": True, "--no-pivot": False,
               "--no-new-keyring": False, "--preserve-fds": True},
    "run": {"--bundle": True, "-b": True, "--pid-file": True, "--console-socket": True, "--no-pivot": False,
            "--no-new-keyring": False, "--preserve-fds": True, "--detach": False, "-d": False,
            "--keep": False},
    "start": {}, "state": {}, "kill": {"--all": False, "-a": False},
    "delete": {"--force": False, "-f": False}, "features": {},
}
_GLOBAL = {"--root": True, "--log": True, "--log-format": True, "--debug": False, "--systemd-cgroup": False}


class _Output:
    log: str | None = None
    json: bool = False
    debug: bool = False

    def write(self, level: str, message: str) -> None:
        if level == "debug" and not self.debug:
            return
        print(f"minirun-oci: {message}" if level == "error" else f"minirun-oci: {level}: {message}", file=sys.stderr)
        if self.log:
            import datetime
            now = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
            line = (json.dumps({"level": level, "msg": message, "time": now}) if self.json
                    else f'time="{now}" level={level} msg="{message}"')
            try:
                with open(self.log, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass


def _split(args: list[str], known: dict[str, bool], out: _Output, globals_: bool) -> tuple[dict, list[str]]:
    flags, rest, i = {}, [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i + 1:]
            break
        if not arg.startswith("-") or arg == "-" or (globals_ and arg in ("--version", "-v", "--help", "-h")):
            if globals_:
                rest += args[i:]
                break
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg.partition("=")
        if name not in known:
            if globals_ or name.startswith("--"):
                out.write("debug", f"ignoring unknown flag {arg}")
                i += 1
                continue
            raise UsageError(f"unknown flag {arg}", "see minirun-oci --help")
        if known[name]:
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"flag {name} needs a value", f"give {name} VALUE")
                i += 1
                value = args[i]
            flags[name.lstrip("-")] = value
        else:
            flags[name.lstrip("-")] = value.lower() not in ("false", "0") if eq else True
        i += 1
    return flags, rest


def _one_id(rest: list[str], command: str, extra: int = 0) -> str:
    if not rest or len(rest) > 1 + extra:
        raise UsageError(f"{command} takes {'ID [SIGNAL]' if extra else 'one container ID'}",
                         f"minirun-oci {command} ID")
    return rest[0]


def _features() -> dict:
    from . import config, hooks, init
    return {"ociVersionMin": "1.0.0", "ociVersionMax": "1.1.0", "hooks": list(hooks.KINDS),
            "mountOptions": sorted(set(init._FLAGS) | set(init._PROPAGATION)),
            "linux": {"namespaces": list(config.NAMESPACE_TYPES), "capabilities": [],
                      "cgroup": {"v1": True, "v2": True, "systemd": False},
                      "seccomp": {"enabled": False}, "apparmor": {"enabled": False},
                      "selinux": {"enabled": False}},
            "annotations": {"org.opencontainers.runc.version": "minirun-oci"}}


def dispatch(argv: list[str], out: _Output) -> int:
    flags, rest = _split(argv, _GLOBAL, out, globals_=True)
    out.log, out.json, out.debug = flags.get("log"), flags.get("log-format") == "json", bool(flags.get("debug"))
    if flags.get("log-format", "text") not in ("text", "json"):
        raise UsageError(f"--log-format {flags['log-format']!r} is unknown", "use text or json")
    if flags.get("systemd-cgroup"):
        raise UsageError("--systemd-cgroup is not supported", "drop the flag (cgroupfs paths are not supported either)")
    if rest[:1] in (["--version"], ["-v"], ["version"]):
        from .. import __version__
        print(f"minirun-oci version {__version__}\nspec: 1.1.0")
        return 0
    if not rest or rest[0] in ("--help", "-h", "help"):
        print(__doc__.split("\n\n")[1] if rest else __doc__)
        return 0 if rest else 2
    command, args = rest[0], rest[1:]
    if command in ("exec", "ps"):           # their own parsers: ociruntime/exec.py, ps.py
        from . import exec as exec_, ps
        return (exec_ if command == "exec" else ps).main(flags.get("root") or "/run/minirun-oci", args)
    if command not in _COMMANDS:
        raise UsageError(f"unknown command {command!r}", "use create, start, state, kill, delete, run, exec, ps or features")
    opts, rest = _split(args, _COMMANDS[command], out, globals_=False)
    root = flags.get("root") or "/run/minirun-oci"
    from . import state                 # container (and through it init, the sandbox) only where used
    if command == "features":
        print(json.dumps(_features(), indent=2))
        return 0
    if command in ("create", "run"):
        from . import container
        container_id = state.check_id(_one_id(rest, command))
        try:
            preserve = int(opts.get("preserve-fds", 0))
        except ValueError:
            raise UsageError("--preserve-fds takes a number", "e.g. --preserve-fds 2") from None
        if preserve:
            raise UsageError("--preserve-fds above 0 is not supported yet: the exec trampoline "
                             "uses descriptor 3", "pass no descriptors beyond stdio")
        bundle = opts.get("bundle") or opts.get("b") or "."
        if command == "create":
            container.create(root, container_id, bundle, opts.get("pid-file"), bool(opts.get("no-pivot")), preserve,
                             opts.get("console-socket"))
            return 0
        from . import lifecycle
        return lifecycle.run(root, container_id, bundle, opts.get("pid-file"), bool(opts.get("no-pivot")),
                             preserve, bool(opts.get("detach") or opts.get("d")), opts.get("console-socket"))
    if command == "kill":
        from . import lifecycle
        from .config import signal_number
        container_id = _one_id(rest, command, extra=1)
        lifecycle.kill(root, container_id, signal_number(rest[1] if len(rest) > 1 else "TERM"),
                       bool(opts.get("all") or opts.get("a")))
        return 0
    container_id = _one_id(rest, command)
    if command == "start":
        from . import lifecycle
        lifecycle.start(root, container_id)
    elif command == "state":
        print(json.dumps(state.public(root, state.load(root, container_id)), indent=2))
    elif command == "delete":
        from . import lifecycle
        lifecycle.delete(root, container_id, bool(opts.get("force") or opts.get("f")))
    return 0


def main(argv: list[str] | None = None) -> int:
    out = _Output()
    try:
        code = dispatch(sys.argv[1:] if argv is None else argv, out)
        sys.stdout.flush()
    except BrokenPipeError:             # `minirun-oci features | head`: the reader left, as SIGPIPE would end us
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except MinirunError as exc:
        out.write("error", exc.line() if hasattr(exc, "line") else str(exc))
        code = exc.exit_code
    except OSError as exc:              # what the kernel refused where no step says more (a full /run, say)
        where = f" ({exc.filename})" if exc.filename else ""
        out.write("error", f"{exc.strerror or exc}{where} (hint: check the --root dir and the bundle, "
                           f"then try again)")
        code = 125
    except KeyboardInterrupt:
        code = 130
    from .. import codecache            # a new cache file after an edit (bin/minirun-oci installed it)
    codecache.save()
    return code


def exit_now(code: int) -> None:
    """End the process with code, skipping the interpreter's teardown: after create's
    imports, finalising the modules cost each call ~8 ms. minirun-oci holds no threads,
    and every file it wrote is closed by now; only stdout and stderr may hold output."""
    import os
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
