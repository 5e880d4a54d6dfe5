"""The command line. One short function per verb; the only place that prints
errors and maps them to exit codes (see minirun/errors.py for the table)."""

from __future__ import annotations

import functools
import json
import sys
from typing import List, Optional

import typer

from . import __version__
from .errors import MinirunError

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


def _fail(err: MinirunError, code: int) -> None:
    print("Error: " + " ".join(err.line().split()), file=sys.stderr)
    raise typer.Exit(code)


def handled(run_mode: bool = False):
    """Turn MinirunError into one line on stderr and its exit code (125 for everything in `run`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except MinirunError as err:
                _fail(err, 125 if run_mode else err.exit_code)
            except KeyboardInterrupt:
                raise typer.Exit(130)
        return inner
    return wrap


def _store(create: bool = True):
    from .store import open_store
    return open_store(create=create)


def _version(value: bool) -> None:
    if value:
        print(f"minirun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")) -> None:
    pass


# ---------------------------------------------------------------- images

@app.command(epilog=EXIT_CODES_HELP)
@handled()
def load(paths: List[str] = typer.Argument(..., metavar="PATH...",
                                           help="docker-archive tar, OCI archive tar, or OCI layout dir"),
         tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Name the loaded image REF."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the loaded image lines.")):
    """Load images from archives or OCI layout directories.

    Each layer is verified and extracted once into the cache; one already there
    prints "Already exists".

    Example: sudo minirun load busybox.tar ./myapp-oci/
    """
    from .images import load as do_load
    from .runtime import require_root
    require_root("load")
    def report(label: str, status: str) -> None:
        if not quiet and status != "Extracting":
            print(f"{label}: {status}", flush=True)
    for line in do_load(_store(), paths, tag, report):
        print(line)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def pull(ref: str = typer.Argument(..., metavar="REF", help="e.g. busybox, user/app:tag, host:5000/x/y@sha256:..."),
         platform: Optional[str] = typer.Option(None, "--platform", help="os/arch[/variant] to pick from "
                                                "a multi-platform image (default: this host's)."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the reference.")):
    """Pull an image from a registry; layers already in the cache are not downloaded.

    Credentials come from ~/.docker/config.json (see `minirun login`). Plain
    HTTP is used only for localhost and registries listed in
    MINIRUN_INSECURE_REGISTRIES (comma-separated host[:port]).

    Example: sudo minirun pull 127.0.0.1:5000/library/busybox:latest
    """
    from . import progress as progress_mod
    from .reference import parse
    from .runtime import require_root
    from .sources.registry.pull import pull as do_pull
    require_root("pull")
    ref_text = str(parse(ref))
    parsed = parse(ref)
    show = progress_mod.for_output(quiet)
    if not quiet:
        print(f"{parsed.tag or parsed.digest}: Pulling from {parsed.repository}", flush=True)
    with show:
        result = do_pull(_store(), ref_text, platform, show)
    if not quiet:
        print(f"Digest: {result.manifest_digest}")
        word = "Image is up to date for" if result.up_to_date else "Downloaded newer image for"
        print(f"Status: {word} {result.ref}")
    print(result.ref)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def push(image: str = typer.Argument(..., help="Image to push (reference or id)."),
         dest: Optional[str] = typer.Argument(None, metavar="[REF]", help="Where to push it "
                                              "(default: the image's own reference).")):
    """Push an image to a registry: blobs it lacks, then the manifest.

    Example: sudo minirun push myapp 127.0.0.1:5000/team/myapp:v1
    """
    from . import progress as progress_mod
    from .sources.registry.push import push as do_push
    show = progress_mod.for_output()
    with show:
        result = do_push(_store(create=False), image, dest, show)
    print(f"{result.ref}: digest: {result.digest} size: {result.size}")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def login(registry: str = typer.Argument(..., help="host[:port], or docker.io"),
          username: Optional[str] = typer.Option(None, "--username", "-u"),
          password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
          password: Optional[str] = typer.Option(None, "--password", "-p", help="Prefer --password-stdin.")):
    """Check credentials against a registry and store them in ~/.docker/config.json.

    Example: echo secret | minirun login -u me --password-stdin 127.0.0.1:5000
    """
    from .errors import UsageError
    from .sources.registry import auth
    from .sources.registry.client import RegistryClient
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username or password is None:
        if not sys.stdin.isatty():
            raise UsageError("login needs --username and a password", "pass --password-stdin")
        import getpass
        username = username or input("Username: ")
        password = getpass.getpass("Password: ")
    RegistryClient(registry, creds=(username, password)).ping()
    path = auth.save_credentials(registry, username, password)
    print(f"Login Succeeded (credentials saved in {path})")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def logout(registry: str = typer.Argument(..., help="host[:port], or docker.io")):
    """Remove a registry's stored credentials.

    Example: minirun logout 127.0.0.1:5000
    """
    from .sources.registry import auth
    if auth.remove_credentials(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def images(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only image ids."),
           format: Optional[str] = typer.Option(None, "--format", help="'json' for JSON lines."),
           no_trunc: bool = typer.Option(False, "--no-trunc", help="Full image ids.")):
    """List images: reference, image id, created, size and layer count.

    Example: minirun images
    """
    from . import images as imgs
    from .reference import parse
    rows = imgs.rows(_store(create=False))
    if quiet:
        for row in rows:
            print(row.image_id if no_trunc else row.image_id[7:19])
        return
    if format == "json":
        for row in rows:
            print(json.dumps({"ID": row.image_id, "RepoTags": list(row.refs), "Created": row.created,
                              "Size": row.size, "Layers": row.layers, "Architecture": row.architecture}))
        return
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "LAYERS")]
    for row in rows:
        shown_id = row.image_id if no_trunc else row.image_id[7:19]
        names = [parse(r) for r in row.refs] or [None]
        for ref in names:
            repo, tag = ("<none>", "<none>") if ref is None else \
                (ref.familiar().rsplit(":", 1)[0] if ref.tag else ref.familiar(), ref.tag or "<none>")
            table.append((repo, tag, shown_id, imgs.human_age(row.created), imgs.human_size(row.size),
                          str(row.layers)))
    _print_table(table)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def rmi(names: List[str] = typer.Argument(..., metavar="IMAGE..."),
        force: bool = typer.Option(False, "--force", "-f", help="Remove even if containers use it.")):
    """Remove images; layers that no other image or container uses are deleted.

    Example: sudo minirun rmi myapp
    """
    from .images import remove
    from .runtime import require_root
    require_root("rmi")
    remove(_store(), names, force, print)


# ---------------------------------------------------------------- containers

@app.command(epilog=RUN_EXIT_CODES_HELP,
             context_settings={"allow_interspersed_args": False})
@handled(run_mode=True)
def run(image: str = typer.Argument(..., help="Image reference or id (12+ hex digits)."),
        command: List[str] = typer.Argument(None, metavar="[CMD [ARG...]]",
                                            help="Overrides the image's Cmd."),
        name: Optional[str] = typer.Option(None, "--name", help="Name the container."),
        rm: bool = typer.Option(False, "--rm", help="Remove the container (and its upper dir) on exit."),
        env: List[str] = typer.Option([], "--env", "-e", help="Set K=V (or pass K from the host)."),
        workdir: Optional[str] = typer.Option(None, "--workdir", "-w", help="Working directory inside."),
        user: Optional[str] = typer.Option(None, "--user", "-u", help="USER[:GROUP], names or numbers."),
        hostname: Optional[str] = typer.Option(None, "--hostname", "-h", help="Container hostname."),
        entrypoint: Optional[str] = typer.Option(None, "--entrypoint", help="Override the Entrypoint."),
        chroot: bool = typer.Option(False, "--chroot", help="Use chroot instead of pivot_root."),
        network: str = typer.Option("none", "--network", help="none (own namespace, lo only), host, "
                                    "or bridge (eth0 on the minirun0 bridge)."),
        volume: List[str] = typer.Option([], "--volume", "-v", help="HOST:CTR[:ro] bind mount."),
        tmpfs: List[str] = typer.Option([], "--tmpfs", help="PATH[:OPTIONS] tmpfs mount."),
        read_only: bool = typer.Option(False, "--read-only", help="No upper dir: the root is read-only."),
        privileged: bool = typer.Option(False, "--privileged", help="All capabilities, no masked paths."),
        cap_add: List[str] = typer.Option([], "--cap-add", help="Add a capability (or ALL)."),
        cap_drop: List[str] = typer.Option([], "--cap-drop", help="Drop a capability (or ALL)."),
        security_opt: List[str] = typer.Option([], "--security-opt",
                                               help="no-new-privileges[:true|false] (default true)."),
        memory: Optional[str] = typer.Option(None, "--memory", "-m", help="Memory limit, e.g. 32m."),
        cpus: Optional[str] = typer.Option(None, "--cpus", help="CPU limit, e.g. 0.5."),
        pids_limit: Optional[str] = typer.Option(None, "--pids-limit", help="Task limit (-1: none)."),
        ulimit: List[str] = typer.Option([], "--ulimit", help="NAME=SOFT[:HARD], e.g. nofile=1024."),
        init: bool = typer.Option(False, "--init", help="Run a tiny PID 1 that forwards signals and "
                                  "reaps zombies."),
        interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep stdin open (with -t: "
                                         "type into the container's terminal)."),
        tty: bool = typer.Option(False, "--tty", "-t", help="Give the container a terminal."),
        detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; print the id. "
                                    "Output goes to `minirun logs`.")):
    """Run a command in a new container on overlayfs.

    Every write lands in the container's upper dir; see it with
    `minirun diff NAME` and find it with `minirun inspect NAME`.

    Example: sudo minirun run --name t1 busybox sh -c 'echo hi > /greeting'
    """
    from .launcher import run as do_run
    from .sandbox.spec import RunOptions
    opts = RunOptions(tuple(command or ()), entrypoint, tuple(env), workdir, user, hostname, chroot,
                      network=network, volumes=tuple(volume), tmpfs=tuple(tmpfs), read_only=read_only,
                      privileged=privileged, cap_add=tuple(cap_add), cap_drop=tuple(cap_drop),
                      no_new_privs=_no_new_privs(security_opt), memory=memory, cpus=cpus,
                      pids_limit=pids_limit, ulimits=tuple(ulimit), init=init,
                      interactive=interactive, tty=tty, detach=detach)
    result = do_run(_store(), image, opts, name=name, remove=rm)
    if result.error:
        print(f"Error: {result.error}", file=sys.stderr)
    elif detach:
        print(result.container_id)
    raise typer.Exit(result.exit_code)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def ps(all: bool = typer.Option(False, "--all", "-a", help="Show all containers, not only running."),
       quiet: bool = typer.Option(False, "--quiet", "-q", help="Only container ids."),
       format: Optional[str] = typer.Option(None, "--format", help="'json' for JSON lines.")):
    """List containers.

    Example: minirun ps -a
    """
    from .images import human_age
    from .runtime import container_records
    records = [c for c in container_records(_store(create=False))
               if all or c["state"].get("status") == "running"]
    if quiet:
        for c in records:
            print(c["id"][:12])
        return
    if format == "json":
        for c in records:
            print(json.dumps({"ID": c["id"], "Name": c["name"], "Image": c["image"],
                              "Command": c["argv"], "Created": c["created"], "State": c["state"]}))
        return
    table = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for c in records:
        command = " ".join(c.get("argv", []))
        command = command if len(command) <= 20 else command[:19] + "…"
        table.append((c["id"][:12], c["image"], f'"{command}"', human_age(c["created"]),
                      _status(c["state"]), c["name"]))
    _print_table(table)


def _no_new_privs(options: list[str]) -> bool:
    from .errors import UsageError
    value = True
    for option in options:
        key, _, setting = option.replace("=", ":").partition(":")
        if key != "no-new-privileges" or setting not in ("", "true", "false"):
            raise UsageError(f"unsupported --security-opt {option!r}",
                             "minirun knows no-new-privileges[:true|false]")
        value = setting != "false"
    return value


def _status(state: dict) -> str:
    status = state.get("status", "unknown")
    if status == "exited":
        code = state.get("exit_code")
        oom = " (OOM killed)" if state.get("oom_killed") else ""
        return f"Exited ({'?' if code is None else code}){oom}"
    return status.capitalize()


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def rm(names: List[str] = typer.Argument(..., metavar="CONTAINER..."),
       force: bool = typer.Option(False, "--force", "-f", help="Kill a running container first.")):
    """Remove containers and their upper dirs.

    Example: sudo minirun rm t1
    """
    from .runtime import remove, require_root
    require_root("rm")
    store = _store()
    for name in names:
        remove(store, name, force)
        print(name)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def inspect(name: str = typer.Argument(..., metavar="CONTAINER")):
    """Show a container as JSON, with its UpperDir, WorkDir and LowerDirs.

    Example: minirun inspect t1 | jq -r .UpperDir
    """
    from .runtime import inspect as do_inspect
    print(json.dumps(do_inspect(_store(create=False), name), indent=2))


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def diff(name: str = typer.Argument(..., metavar="CONTAINER"),
         as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {Path, Kind}.")):
    """Show what a container wrote: A added, C changed, D deleted (read from its upper dir).

    Example: sudo minirun diff t1
    """
    from .runtime import diff as do_diff, require_root
    require_root("diff")
    changes = do_diff(_store(create=False), name)
    if as_json:
        print(json.dumps([c.to_json() for c in changes], indent=1))
        return
    for change in changes:
        print(f"{change.kind} {change.path}")


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def logs(name: str = typer.Argument(..., metavar="CONTAINER"),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it exits.")):
    """Print what a detached (-d) container wrote to stdout and stderr.

    Example: minirun logs -f web
    """
    from .runtime import logs as do_logs
    out = sys.stdout.buffer

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()
    do_logs(_store(create=False), name, follow, write)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def stop(names: List[str] = typer.Argument(..., metavar="CONTAINER..."),
         time_: int = typer.Option(10, "--time", "-t", help="Seconds to wait after SIGTERM before SIGKILL.")):
    """Stop running containers: SIGTERM, then SIGKILL after the grace period.

    Example: sudo minirun stop -t 2 web
    """
    from .runtime import require_root, stop as do_stop
    require_root("stop")
    store = _store()
    for name in names:
        do_stop(store, name, time_)
        print(name)


@app.command(epilog=EXIT_CODES_HELP)
@handled()
def kill(names: List[str] = typer.Argument(..., metavar="CONTAINER..."),
         signal_: str = typer.Option("KILL", "--signal", "-s", help="Signal name or number.")):
    """Send a signal to running containers (default SIGKILL).

    Example: sudo minirun kill -s HUP web
    """
    from .runtime import require_root, send_signal
    require_root("kill")
    signum = _signal_number(signal_)
    store = _store()
    for name in names:
        send_signal(store, name, signum)
        print(name)


def _signal_number(text: str) -> int:
    import signal
    from .errors import UsageError
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else "SIG" + text.upper()
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise UsageError(f"unknown signal {text!r}", "use a name like TERM or HUP, or a number") from None


@app.command(name="exec", epilog=RUN_EXIT_CODES_HELP, context_settings={"allow_interspersed_args": False})
@handled(run_mode=True)
def exec_(name: str = typer.Argument(..., metavar="CONTAINER"),
          command: List[str] = typer.Argument(..., metavar="CMD [ARG...]"),
          env: List[str] = typer.Option([], "--env", "-e", help="Set K=V."),
          user: Optional[str] = typer.Option(None, "--user", "-u", help="USER[:GROUP]."),
          workdir: Optional[str] = typer.Option(None, "--workdir", "-w", help="Working directory."),
          interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep stdin open."),
          tty: bool = typer.Option(False, "--tty", "-t", help="Allocate a terminal.")):
    """Run a command in a running container: its namespaces, root, user and capabilities.

    Example: sudo minirun exec -it web sh
    """
    from .runtime import exec_in, require_root
    require_root("exec")
    outcome = exec_in(_store(create=False), name, tuple(command), tuple(env), user, workdir, tty, interactive)
    if outcome.error:
        print(f"Error: {outcome.error}", file=sys.stderr)
    raise typer.Exit(outcome.exit_code)


def _print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def main() -> None:
    import os
    os.umask(0o022)   # store dirs become the container's / and its mount points: never 0700
    app()
