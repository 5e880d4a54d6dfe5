"""`minirun-oci exec`: one more process in a running container, as runc's exec.

    exec [--process F | ARGS...] [--detach] [--pid-file F] [--console-socket S] [--tty]
         [--cwd D] [--env K=V]... [--user UID[:GID]] [--additional-gids G]... [--cap C]...
         [--no-new-privs] [--preserve-fds N] ID [ARGS...]

The process is --process FILE (a runtime-spec `process` object, checked as
config.json's is), or the bundle's process with ARGS and the flags over it.
Three processes, so that the one the container sees is born inside it:

    minirun-oci exec (host)     pins the init with a pidfd (sandbox/join.pin: a
      |                         recycled pid, or an init still starting, is refused)
      +- joiner                 non-dumpable: joins the init's cgroups
      |                         (linux/cgroups/membership.py), then every namespace
      |                         on the pidfd, then the init's root; forks, reports
      |                         the pid and exits
      +- process                born in the container's PID namespace: rlimits,
                                cwd (checked to stay inside the root), terminal,
                                the container's seccomp profile, user, the five
                                capability sets; execs process.args through the
                                sealed-memfd trampoline, as the init does

The process is then a child of whoever reaps orphans: this command (a child
subreaper) without --detach, which waits and exits as the process did (128+N
for signal N); with --detach, the caller's subreaper (conmon, containerd's shim),
and this command writes --pid-file and returns once the exec has happened.
"""

from __future__ import annotations

import json
import os

from ..errors import Conflict, UsageError
from . import config, state

# flag -> (key, takes a value, repeatable)
FLAGS = {"--process": ("process", True, False), "-p": ("process", True, False),
         "--detach": ("detach", False, False), "-d": ("detach", False, False),
         "--pid-file": ("pid-file", True, False), "--console-socket": ("console-socket", True, False),
         "--tty": ("tty", False, False), "-t": ("tty", False, False), "--cwd": ("cwd", True, False),
         "--env": ("env", True, True), "-e": ("env", True, True), "--user": ("user", True, False),
         "-u": ("user", True, False), "--additional-gids": ("additional-gids", True, True),
         "-g": ("additional-gids", True, True), "--cap": ("cap", True, True), "-c": ("cap", True, True),
         "--no-new-privs": ("no-new-privs", False, False), "--preserve-fds": ("preserve-fds", True, False),
         "--process-label": ("process-label", True, False), "--apparmor": ("apparmor", True, False),
         "--cgroup": ("cgroup", True, True), "--ignore-paused": ("ignore-paused", False, False)}


def parse(args: list[str]) -> tuple[dict, str, list[str]]:
    """(flags, ID, ARGS): flags come before the ID; everything after it is the command's."""
    opts: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=")
        if name not in FLAGS:
            raise UsageError(f"exec: unknown flag {arg}", "see runc's exec flags: minirun-oci exec --help")
        key, takes, many = FLAGS[name]
        if takes:
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"exec: flag {name} needs a value", f"give {name} VALUE")
                i += 1
                value = args[i]
            if many:
                opts.setdefault(key, []).append(value)
            else:
                opts[key] = value
        else:
            opts[key] = value.lower() not in ("false", "0") if eq else True
        i += 1
    if i >= len(args):
        raise UsageError("exec needs a container ID", "minirun-oci exec [--process FILE] ID [ARGS...]")
    return opts, args[i], args[i + 1:]


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = f.read(config.MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror}", f"give a readable {what} file") from None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path} is not valid JSON: {exc}", "fix the file") from None
    if not isinstance(doc, dict) or len(data) > config.MAX_CONFIG_BYTES:
        raise UsageError(f"{what} {path} is not a JSON object of at most 4 MiB", "fix the file")
    return doc


def build(opts: dict, args: list[str], bundle_process: dict) -> dict:
    """The process to run: --process FILE, or the bundle's process with ARGS and the flags."""
    if opts.get("process"):
        process = _read_json(opts["process"], "--process")
    else:
        if not args:
            raise UsageError("exec needs a command: ARGS or --process FILE",
                             "minirun-oci exec ID COMMAND [ARG...]")
        process = {key: value for key, value in bundle_process.items() if key not in ("terminal", "consoleSize")}
        process["args"] = list(args)
        process["capabilities"] = {k: list(v) for k, v in (bundle_process.get("capabilities") or {}).items()}
        process["user"] = dict(bundle_process.get("user") or {})
    if opts.get("tty"):
        process["terminal"] = True
    if opts.get("cwd"):
        process["cwd"] = opts["cwd"]
    if opts.get("env"):
        process["env"] = list(process.get("env") or []) + opts["env"]
    user = process.setdefault("user", {}) if isinstance(process.get("user", {}), dict) else process["user"]
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        try:
            user["uid"] = int(uid)
            if gid:
                user["gid"] = int(gid)
        except ValueError:
            raise UsageError(f"exec: --user {opts['user']!r} is not UID[:GID]",
                             "give numbers, e.g. --user 1000:1000") from None
    if opts.get("additional-gids"):
        try:
            user["additionalGids"] = [int(g) for g in opts["additional-gids"]]
        except ValueError:
            raise UsageError("exec: --additional-gids takes numbers", "e.g. -g 10") from None
    if opts.get("cap"):
        sets = process.setdefault("capabilities", {})
        for name in opts["cap"]:
            for kind in ("bounding", "effective", "permitted"):
                sets.setdefault(kind, []).append(name)
    if opts.get("no-new-privs"):
        process["noNewPrivileges"] = True
    for field in ("apparmor", "process-label"):
        if opts.get(field):
            raise UsageError(f"exec: --{field} is not supported", "drop the flag")
    try:
        config._process(process)          # the checks config.json's process gets
    except config.ConfigError as exc:
        raise UsageError(exc.message.replace("config.json: ", "exec process: ", 1), exc.hint) from None
    return process


def main(root: str, argv: list[str]) -> int:
    opts, container_id, args = parse(argv)
    try:
        preserve = int(opts.get("preserve-fds", 0))
    except ValueError:
        raise UsageError("--preserve-fds takes a number", "e.g. --preserve-fds 2") from None
    if preserve:
        raise UsageError("--preserve-fds above 0 is not supported yet: the exec trampoline uses "
                         "descriptor 3", "pass no descriptors beyond stdio")
    record = state.load(root, state.check_id(container_id))
    current = state.status(root, record)
    if current != "running":
        raise Conflict(f"container {container_id} is {current}, not running",
                       "exec runs in a running container: start it first" if current == "created"
                       else "start a new container")
    cfg = _read_json(os.path.join(record["bundle"], "config.json"), "the bundle's config.json")
    process = build(opts, args, cfg.get("process") if isinstance(cfg.get("process"), dict) else {})
    from . import execjoin
    return execjoin.run(root, record, cfg, process, bool(opts.get("detach")), opts.get("pid-file"),
                        opts.get("console-socket"))
