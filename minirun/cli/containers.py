"""Container commands: run, create, start, restart, ps, rm, diff, logs, stop, kill, exec, top, stats, cp."""

from __future__ import annotations

import sys
import time
from typing import List, Optional

import typer

from . import lightcmds, runflags
from .common import (EXIT_CODES_HELP, RUN_EXIT_CODES_HELP, app, completer, for_each, handled, print_table,
                     register, store as _store)


register(runflags.RUN)
register(runflags.CREATE)


register(lightcmds.PS)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def rm(names: List[str] = typer.Argument(..., metavar="CONTAINER...", autocompletion=completer("containers")),
       force: bool = typer.Option(False, "--force", "-f", help="Kill a running container first.")):
    """Remove containers and their upper dirs.

    With several, each that fails (no such container, still running without -f)
    is reported and the rest are still removed; the exit code is then 1.

    Example: sudo minirun rm t1
    """
    from ..api.control import remove
    from ..linux.caps import require_root
    require_root("rm")
    store = _store()

    def one(name: str) -> None:
        remove(store, name, force)
        print(name, flush=True)
    for_each(names, one)


@app.command(epilog=EXIT_CODES_HELP + " With two containers, 0 whether or not they differ (as docker diff).")
@handled()
def diff(name: str = typer.Argument(..., metavar="CONTAINER", autocompletion=completer("containers")),
         other: Optional[str] = typer.Argument(None, metavar="CONTAINER_B", autocompletion=completer("containers"),
                                               help="Compare the two containers' upper dirs instead."),
         as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {Path, Kind}; with two "
                                      "containers, of {Path, Only: A or B, Type} or {Path, Differs}, "
                                      "Differs mapping each field to its two values."),
         format: Optional[str] = typer.Option(None, "--format", help="json (one object per line) or a "
                                              "template over Path and Kind, e.g. '{{.Kind}} {{.Path}}'."),
         stat_: bool = typer.Option(False, "--stat", help="Account for the upper dir as overlayfs filled it: "
                                    "files created, files copied up from a lower layer (the bytes copied, and "
                                    "whether only metadata changed), whiteouts, opaque dirs, and totals. With "
                                    "--format json: one object per entry {Kind, Path, Type, Size, CopiedBytes, "
                                    "MetadataOnly, HiddenBytes, Origin}, then {\"Totals\": {...}}.")):
    """Show what a container wrote: A added, C changed, D deleted (read from its upper dir).

    --stat splits the upper dir by what overlayfs did. The first write to a
    file a lower layer holds copies the whole file up before the write: a
    one-byte append to a 100 MB file, or a chmod, costs 100 MB there
    ("copied-up", its bytes under COPIED; "metadata only" when the content is
    still the lower copy's). A path no lower layer shows is "created"; a
    deleted lower file leaves a "whiteout"; a lower dir removed and made
    again is "opaque" (its lower content hidden).

    With two containers A and B (e.g. two runs of one command), compare their
    upper dirs: "< PATH" is only in A, "> PATH" only in B, and "~ PATH mode
    0644->0600 ..." in both but different in type, mode, uid, gid, size, sha256,
    target, rdev, opaque or xattrs (a whiteout has type whiteout).

    Example: sudo minirun diff t1          sudo minirun diff t1 t2

    Example: sudo minirun diff --stat t1
    """
    from ..api.control import diff as do_diff
    from ..linux.caps import require_root
    from . import formatting
    formatting.check(format)
    require_root("diff")
    if stat_:
        from ..errors import UsageError
        if other is not None:
            raise UsageError("diff --stat takes one container", "e.g. minirun diff --stat t1")
        from .layercmds import diff_stat
        diff_stat(_store(create=False), name, format)
        return
    if other is not None:
        from ..api.upperdiff import compare_containers
        differences = compare_containers(_store(create=False), name, other)     # an iterator, as below
        if as_json:
            formatting.print_json_list(d.to_json() for d in differences)
        elif format == "json" or formatting.is_template(format):
            formatting.print_rows((d.to_json() for d in differences), format)
        else:
            formatting.print_lines(difference.line() for difference in differences)
        return
    changes = do_diff(_store(create=False), name)      # an iterator: printed as the walk goes
    if as_json:
        formatting.print_json_list(c.to_json() for c in changes)
        return
    if format == "json" or formatting.is_template(format):
        formatting.print_rows((c.to_json() for c in changes), format)
        return
    formatting.print_lines(f"{change.kind} {change.path}" for change in changes)



@app.command(epilog=EXIT_CODES_HELP)
@handled()
def logs(name: str = typer.Argument(..., metavar="CONTAINER", autocompletion=completer("containers")),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output until the "
                                     "container ends."),
         tail: str = typer.Option("all", "--tail", "-n", help="Only the last N lines (all: every line)."),
         since: Optional[str] = typer.Option(None, "--since", help="Only output since a time: "
                                             "2026-12-06T01:51:29Z, a date, Unix seconds, or a duration "
                                             "before now (10m, 1h30m)."),
         until: Optional[str] = typer.Option(None, "--until", help="Only output before a time (same forms)."),
         timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Begin each line with the time "
                                         "it was written (RFC 3339, nanoseconds, UTC).")):
    """Print what a container wrote: its stdout on stdout, its stderr on stderr.

    Every container keeps a log (foreground runs too, unless run with
    --log-driver none), bounded by --log-opt max-size and max-file (default
    10m x 3 files). With -t, the container's terminal is one stream: stdout.

    Example: minirun logs -f --tail 20 --since 10m -t web
    """
    from ..api import logs as api_logs
    opts = api_logs.options(follow, tail, since, until, timestamps)

    def writer(stream):
        def write(chunk: bytes) -> None:
            stream.write(chunk)
            stream.flush()
        return write
    api_logs.show(_store(create=False), name, opts, writer(sys.stdout.buffer), writer(sys.stderr.buffer))


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def stop(names: List[str] = typer.Argument(..., metavar="CONTAINER...", autocompletion=completer("containers")),
         time_: int = typer.Option(10, "--time", "-t", help="Seconds to wait after SIGTERM before SIGKILL.")):
    """Stop running containers: SIGTERM, then SIGKILL after the grace period.

    One already stopped is left as it is (exit 0, as docker). With several, each
    that fails is reported and the rest are still stopped.

    Example: sudo minirun stop -t 2 web
    """
    from ..api.control import stop as do_stop
    from ..linux.caps import require_root
    require_root("stop")
    store = _store()

    def one(name: str) -> None:
        do_stop(store, name, time_)
        print(name, flush=True)
    for_each(names, one)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def kill(names: List[str] = typer.Argument(..., metavar="CONTAINER...", autocompletion=completer("containers")),
         signal_: str = typer.Option("KILL", "--signal", "-s", help="Signal name or number.")):
    """Send a signal to running containers (default SIGKILL).

    One already stopped is left as it is (exit 0). With several, each that fails
    is reported and the rest still get the signal.

    Example: sudo minirun kill -s HUP web
    """
    from ..api.control import send_signal
    from ..linux.caps import require_root
    require_root("kill")
    signum = _signal_number(signal_)
    store = _store()

    def one(name: str) -> None:
        send_signal(store, name, signum)
        print(name, flush=True)
    for_each(names, one)


def _signal_number(text: str) -> int:
    """A signal by name (KILL, SIGHUP) or number, as `docker kill -s` takes it: 1 to
    SIGRTMAX. 0 (which only tests whether the process exists) is refused, as docker does."""
    import signal
    from ..errors import UsageError, brief
    if text.isascii() and text.isdigit():
        number = int(text) if len(text) <= 3 else 0
    else:
        name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
        try:
            number = int(getattr(signal.Signals, name))
        except AttributeError:
            raise UsageError(f"unknown signal {brief(text)}",
                             "use a name like TERM or HUP, or a number") from None
    if not 1 <= number <= signal.SIGRTMAX:
        raise UsageError(f"invalid signal {brief(text)}: signals are numbered 1 to {int(signal.SIGRTMAX)}",
                         "use a name like TERM or HUP, or a number in that range")
    return number


@app.command(name="exec", epilog=RUN_EXIT_CODES_HELP, context_settings={"allow_interspersed_args": False})
@handled(run_mode=True)
def exec_(name: str = typer.Argument(..., metavar="CONTAINER", autocompletion=completer("containers")),
          command: List[str] = typer.Argument(..., metavar="CMD [ARG...]"),
          env: List[str] = typer.Option([], "--env", "-e", help="Set K=V."),
          user: Optional[str] = typer.Option(None, "--user", "-u", help="USER[:GROUP]."),
          workdir: Optional[str] = typer.Option(None, "--workdir", "-w", help="Working directory."),
          interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep stdin open."),
          tty: bool = typer.Option(False, "--tty", "-t", help="Allocate a terminal.")):
    """Run a command in a running container: its namespaces, root, user and capabilities.

    Example: sudo minirun exec -it web sh
    """
    from ..api.control import exec_in
    from ..linux.caps import require_root
    require_root("exec")
    outcome = exec_in(_store(create=False), name, tuple(command), tuple(env), user, workdir, tty, interactive)
    if outcome.error:
        from ..errors import printable
        print(f"Error: {printable(outcome.error)}", file=sys.stderr)
    raise typer.Exit(outcome.exit_code)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def top(name: str = typer.Argument(..., metavar="CONTAINER", autocompletion=completer("containers"))):
    """List a running container's processes, as docker top: their host pids.

    Example: sudo minirun top web
    """
    import pwd
    from ..api.monitor import top as do_top
    from ..linux.caps import require_root
    require_root("top")

    def user(uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except (KeyError, OverflowError):
            return str(uid)
    table = [("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")]
    for row in do_top(_store(create=False), name):
        spent = row.cpu_seconds
        table.append((user(row.uid), str(row.pid), str(row.ppid), str(row.cpu_percent),
                      time.strftime("%H:%M", time.localtime(row.started)), row.tty,
                      f"{spent // 3600:02d}:{spent // 60 % 60:02d}:{spent % 60:02d}", row.command))
    print_table(table)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def stats(names: List[str] = typer.Argument(None, metavar="[CONTAINER...]", autocompletion=completer("containers")),
          no_stream: bool = typer.Option(False, "--no-stream", help="Print one sample and exit."),
          format: Optional[str] = typer.Option(None, "--format", help="json (one object per line) or a "
                                               "template over ID, Name, CPUPerc, MemUsage, MemPerc, NetIO, "
                                               "PIDs.")):
    """Show running containers' CPU, memory, network and pids use.

    The figures come from each container's cgroup (or its processes, for one
    that has no cgroup). CPU % is of one CPU, measured over half a second. On a terminal, without
    --no-stream, the figures are redrawn each second until Ctrl-C; elsewhere (a
    pipe, a file) one sample is printed, as with --no-stream.

    Example: sudo minirun stats --no-stream web
    """
    from ..api.catalog import human_size
    from ..api.monitor import running_names, stats as do_stats
    from ..linux.caps import require_root
    from . import formatting
    formatting.check(format)
    require_root("stats")
    store = _store(create=False)
    no_stream = no_stream or not sys.stdout.isatty()
    while True:
        rows = do_stats(store, list(names) if names else running_names(store))
        lines = [{"ID": r.id[:12], "Name": r.name, "CPUPerc": f"{r.cpu_percent:.2f}%",
                  "MemUsage": f"{human_size(r.memory)} / {human_size(r.memory_limit)}",
                  "MemPerc": f"{100 * r.memory / r.memory_limit:.2f}%" if r.memory_limit else "--",
                  "NetIO": f"{human_size(r.net_in)} / {human_size(r.net_out)}", "PIDs": str(r.pids)}
                 for r in rows]
        if not no_stream:
            print("\033[2J\033[H", end="")              # redraw in place, as docker stats
        if format == "json" or formatting.is_template(format):
            formatting.print_rows(lines, format)
        else:
            print_table([("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "PIDS")] +
                        [(x["ID"], x["Name"], x["CPUPerc"], x["MemUsage"], x["MemPerc"], x["NetIO"], x["PIDs"])
                         for x in lines])
        sys.stdout.flush()
        if no_stream:
            return
        time.sleep(0.5)


@app.command(epilog="Exit codes: 0 started (with -a: the container's own code, as docker start -a); "
                    "1 no such container; 125 minirun failed.")
@handled()
def start(names: List[str] = typer.Argument(..., metavar="CONTAINER...", autocompletion=completer("containers")),
          attach: bool = typer.Option(False, "--attach", "-a", help="Wait for it, its output on ours; its "
                                      "exit code is ours."),
          interactive: bool = typer.Option(False, "--interactive", "-i", help="With -a: our stdin is its.")):
    """Start created or stopped containers again, with the flags they were made with.

    The upper dir stays: what earlier runs wrote is there, and each new write lands
    in it too. A running container is left as it is. Without -a it runs in the
    background (output in `minirun logs`) and its name is printed.

    Example: sudo minirun start web      sudo minirun start -ai shell
    """
    from ..errors import UsageError
    store = _store()
    if attach and len(names) > 1:
        raise UsageError("start -a takes one container", "start the others without -a")
    if attach:
        raise typer.Exit(_started(store, names[0], attach=True, interactive=interactive))

    def one(name: str) -> None:
        _started(store, name)
        print(name, flush=True)
    for_each(names, one)


def _started(store, name: str, attach: bool = False, interactive: bool = False) -> int:
    """start_container's exit code; a container that did not start raises, for the one
    error path (start, restart)."""
    from ..errors import StartFailed
    from ..run.start import start_container
    result = start_container(store, name, attach=attach, interactive=interactive)
    if result.error:
        raise StartFailed(result.error, result.exit_code)
    return result.exit_code


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def restart(names: List[str] = typer.Argument(..., metavar="CONTAINER...", autocompletion=completer("containers")),
            time_: int = typer.Option(10, "--time", "-t", help="Seconds to wait after SIGTERM before SIGKILL.")):
    """Stop containers (if running), then start them again in the background.

    Example: sudo minirun restart -t 2 web
    """
    from ..api.control import stop as do_stop
    store = _store()

    def one(name: str) -> None:
        do_stop(store, name, time_)
        _started(store, name)
        print(name, flush=True)
    for_each(names, one)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def cp(source: str = typer.Argument(..., metavar="SRC", help="CONTAINER:PATH or a host path."),
       dest: str = typer.Argument(..., metavar="DEST", help="A host path or CONTAINER:PATH.")):
    """Copy files between a container and the host, as docker cp.

    CONTAINER:PATH is read through the container's merged view (running or
    stopped); a copy into a container lands in its upper dir, copy-on-write,
    as its own writes do (see `minirun diff`). Paths inside it resolve inside
    its root: a symlink can never lead out of it. A directory is copied whole,
    into DEST if that is a directory, else as DEST; SRC/. copies its contents.

    Example: sudo minirun cp web:/etc/nginx/nginx.conf .      sudo minirun cp ./site web:/srv
    """
    from ..api import copy as cpmod
    from ..errors import UsageError
    from ..linux.caps import require_root
    require_root("cp")
    src, dst = cpmod.split(source), cpmod.split(dest)
    if (src is None) == (dst is None):
        raise UsageError("cp copies between a container and the host: one of SRC and DEST must be "
                         "CONTAINER:PATH, the other a host path",
                         "e.g. minirun cp web:/etc/hosts ./hosts, or minirun cp ./file web:/tmp/")
    store = _store(create=False)
    if src is not None:
        copied = cpmod.copy_out(store, src[0], src[1] or "/", dest)
    else:
        copied = cpmod.copy_in(store, source, dst[0], dst[1] or "/")
    if copied.skipped:
        print(f"left out {copied.skipped} device(s), FIFO(s) or socket(s)", file=sys.stderr)
