"""`minirun run`: its flags (defined once, see cli/spec.py), and the function that runs it.

This module imports nothing heavy: it runs on every `minirun run`.
"""

from __future__ import annotations

from .light import RUN_EXIT_CODES_HELP, Arg, Command, Flag
from .light import parse as _parse

RUN_FLAGS = (
    Flag("name", ("--name",), "str", "Name the container."),
    Flag("rm", ("--rm",), "bool", "Remove the container (and its upper dir) on exit."),
    Flag("env", ("--env", "-e"), "list", "Set K=V (or pass K from the host)."),
    Flag("env_file", ("--env-file",), "list", "Read K=V lines from a file (# comments, blank lines "
         "skipped): a regular file of at most 1 MiB, or - for stdin."),
    Flag("workdir", ("--workdir", "-w"), "str", "Working directory inside."),
    Flag("user", ("--user", "-u"), "str", "USER[:GROUP], names or numbers."),
    Flag("hostname", ("--hostname", "-h"), "str", "Container hostname."),
    Flag("entrypoint", ("--entrypoint",), "str", "Override the Entrypoint."),
    Flag("chroot", ("--chroot",), "bool", "Use chroot instead of pivot_root."),
    Flag("network", ("--network",), "str", "none (own namespace, lo only), host, or bridge (eth0 on "
         "the minirun0 bridge). Default: network.default in the config file, else none."),
    Flag("publish", ("--publish", "-p"), "list", "Repeatable. Publish a container port on the host: "
         "[HOSTIP:][HOSTPORT:]CONTAINERPORT (or PORT/tcp), HOSTIP 0.0.0.0 unless given, a free host port "
         "when HOSTPORT is left out (-p 127.0.0.1::80), ranges of the same length (-p 8080-8081:80-81). "
         "TCP only, through a proxy on the host; needs the bridge network, which -p selects when "
         "--network is not given. Example: -p 127.0.0.1:8080:80"),
    Flag("volume", ("--volume", "-v"), "list", "HOST:CTR[:ro] bind mount."),
    Flag("tmpfs", ("--tmpfs",), "list", "PATH[:OPTIONS] tmpfs mount."),
    Flag("read_only", ("--read-only",), "bool", "No upper dir: the root is read-only."),
    Flag("privileged", ("--privileged",), "bool", "All capabilities, no masked paths."),
    Flag("cap_add", ("--cap-add",), "list", "Add a capability (or ALL)."),
    Flag("cap_drop", ("--cap-drop",), "list", "Drop a capability (or ALL)."),
    Flag("security_opt", ("--security-opt",), "list", "Repeatable. By default a container runs under a "
         "seccomp filter like Docker's default: keyctl is refused, and so are namespaces, mounts and "
         "the like without --cap-add SYS_ADMIN. seccomp=PROFILE.json: a profile in Docker's JSON "
         "format instead; seccomp=unconfined: no filter (as with --privileged). "
         "no-new-privileges[:true|false] (default true)."),
    Flag("memory", ("--memory", "-m"), "str", "Memory limit, e.g. 32m."),
    Flag("cpus", ("--cpus",), "str", "CPU limit, e.g. 0.5."),
    Flag("pids_limit", ("--pids-limit",), "str", "Task limit (-1: none)."),
    Flag("ulimit", ("--ulimit",), "list", "NAME=SOFT[:HARD], e.g. nofile=1024."),
    Flag("init", ("--init",), "bool", "Run a tiny PID 1 that forwards signals and reaps zombies."),
    Flag("interactive", ("--interactive", "-i"), "bool", "Keep stdin open (with -t: type into the "
         "container's terminal)."),
    Flag("tty", ("--tty", "-t"), "bool", "Give the container a terminal."),
    Flag("detach", ("--detach", "-d"), "bool", "Run in the background; print the id. Output goes "
         "to `minirun logs`."),
    Flag("log_driver", ("--log-driver",), "str", "k8s-file (the default: every container keeps a log "
         "that `minirun logs` reads, stdout and stderr apart; json-file and local mean the same here) or "
         "none (no log: its output is only copied onto minirun's stdout and stderr)."),
    Flag("log_opt", ("--log-opt",), "list", "Bound the log: max-size=SIZE (default 10m; k, m, g) and "
         "max-file=N (default 3): past max-size the log is rotated, keeping N files in all."),
    Flag("pull", ("--pull",), "str", "missing (default): pull the image when the store lacks it, "
         "progress on stderr; always: pull first (layers already here are not fetched); never."),
)
PULL_POLICIES = ("missing", "always", "never")



def parse(argv: list[str]) -> dict | None:
    """run's arguments (after the word run), or None when typer must decide."""
    return _parse(RUN, argv)


# ---------------------------------------------------------------- running

def options(values: dict):
    """run/plan.py RunOptions from the parsed flags (run's and create's)."""
    from ..run.plan import RunOptions
    nnp, seccomp = security_options(values["security_opt"])
    if seccomp not in (None, "unconfined"):
        import os
        seccomp = os.path.abspath(seccomp)      # kept for `start`, which may run elsewhere
    opts = RunOptions(tuple(values["command"] or ()), values["entrypoint"],
                      tuple(read_env_files(values["env_file"]) + list(values["env"])), values["workdir"],
                      values["user"], values["hostname"], values["chroot"],
                      network=values["network"] or ("bridge" if values["publish"] else _default_network()),
                      publish=tuple(values["publish"]), volumes=tuple(values["volume"]),
                      tmpfs=tuple(values["tmpfs"]),
                      read_only=values["read_only"], privileged=values["privileged"],
                      cap_add=tuple(values["cap_add"]), cap_drop=tuple(values["cap_drop"]),
                      no_new_privs=nnp, seccomp=seccomp, memory=values["memory"],
                      cpus=values["cpus"], pids_limit=values["pids_limit"], ulimits=tuple(values["ulimit"]),
                      init=values["init"], interactive=values["interactive"], tty=values["tty"],
                      detach=values["detach"], log_driver=values["log_driver"],
                      log_opts=tuple(values["log_opt"]))
    return opts


def execute(values: dict) -> int:
    """Run the container the parsed flags describe; its exit code. Errors raise, a
    container that did not start too (errors.StartFailed), for the CLI's one error path."""
    from ..run.start import run
    from ..store import open_store
    opts = options(values)
    store = open_store()
    result = with_image(store, values, lambda: run(store, values["image"], opts, name=values["name"],
                                                    remove=values["rm"]))
    if result.error:
        from ..errors import StartFailed
        raise StartFailed(result.error, result.exit_code)
    if values["detach"]:
        print(result.container_id)
    return result.exit_code


def execute_create(values: dict) -> int:
    """create: the container the flags describe, made and not started; prints its id."""
    from ..run.start import create_container
    from ..store import open_store
    opts = options(values)
    store = open_store()
    print(with_image(store, values, lambda: create_container(store, values["image"], opts, name=values["name"],
                                                            remove=values["rm"])))
    return 0


def with_image(store, values: dict, action):
    """action(), after pulling the image first (--pull always) or when it is missing
    (--pull missing, the default), as docker run and create do."""
    from ..errors import ImageNotFound
    policy = pull_policy(values["pull"])
    if policy == "always":
        pull_for_run(store, values["image"])
    try:
        return action()
    except ImageNotFound:
        from ..oci.reference import is_id_prefix
        if policy == "never" or is_id_prefix(values["image"]):
            raise                        # an image id names no registry
        import sys
        print(f"Unable to find image '{values['image']}' locally", file=sys.stderr, flush=True)
        pull_for_run(store, values["image"])
        return action()


RUN = Command(
    "run",
    """Run a command in a new container on overlayfs.

    Every write lands in the container's upper dir; see it with
    `minirun diff NAME` and find it with `minirun inspect NAME`.

    Example: sudo minirun run --name t1 busybox sh -c 'echo hi > /greeting'
    """,
    RUN_EXIT_CODES_HELP,
    (Arg("image", "IMAGE", "Image reference, id, or a unique prefix of an id.", complete="images"),
     Arg("command", "[CMD [ARG...]]", "Overrides the image's Cmd.", required=False, variadic=True)),
    RUN_FLAGS, execute, interspersed=False, run_mode=True)


def pull_policy(value: str | None) -> str:
    from ..errors import UsageError, brief
    if value is None:
        return "missing"
    if value not in PULL_POLICIES:
        raise UsageError(f"invalid --pull {brief(value)}", "use --pull missing, always or never")
    return value


def pull_for_run(store, image: str) -> None:
    """Pull image as `minirun pull` would, its output on stderr (run's stdout is the
    container's); a failure says the image is neither here nor fetchable."""
    import sys
    from ..errors import MinirunError, context
    from .lightcmds import pull_with_progress
    try:
        pull_with_progress(store, image, None, stream=sys.stderr)
    except MinirunError as exc:
        raise context(f"pulling {image}", exc) from None


CREATE = Command(
    "create",
    """Make a container from an image without starting it, as docker create.

    It takes every flag of `run` and prints the new container's id; `minirun
    start` runs it (again and again: its upper dir keeps what each run wrote).

    Example: sudo minirun create --name web busybox httpd -f -p 8080
    """,
    "Exit codes: 0 made; 125 minirun failed (a bad flag, no such image).",
    RUN.args, RUN_FLAGS, execute_create, interspersed=False, run_mode=True)


def _default_network() -> str:
    from ..config import get
    return get("network.default")


ENV_FILE_MAX = 1 << 20      # far more than an environment execve() takes (ARG_MAX)
STDIN_NAMES = ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")


def read_env_files(paths: list[str]) -> list[str]:
    """docker's --env-file: K=V or K (taken from the host) per line; blank lines and
    lines starting with # are skipped. -e flags come after, so they win. A file is
    a regular file of at most 1 MiB, or stdin (- or /dev/stdin): never a FIFO that
    would block, nor /dev/zero."""
    from ..errors import UsageError, brief, shown
    out = []
    for path in paths:
        data = _env_file_bytes(path)
        if b"\0" in data:
            number = data[:data.index(b"\0")].count(b"\n") + 1
            raise UsageError(f"--env-file {shown(path)}, line {number}: "
                             "holds a NUL byte, which no environment variable can",
                             "write one VARIABLE=value per line")
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UsageError(f"--env-file {shown(path)}: byte {exc.start} is not UTF-8",
                             "give a UTF-8 file of K=V lines") from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.partition("=")[0] or any(c.isspace() for c in line.partition("=")[0]):
                raise UsageError(f"--env-file {shown(path)}, line {number}: {brief(line)} is not K=V",
                                 "write one VARIABLE=value per line")
            out.append(line)
    return out


def _env_file_bytes(path: str) -> bytes:
    import os
    import stat
    from ..errors import UsageError, shown
    fix = f"give a regular file of at most {ENV_FILE_MAX >> 20} MiB of K=V lines, or - for stdin"
    if path in STDIN_NAMES:
        fd, close = 0, False
    else:
        try:
            fd, close = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), True
        except (OSError, ValueError) as exc:
            raise UsageError(f"--env-file {shown(path)}: {getattr(exc, 'strerror', None) or exc}", fix) from None
    try:
        mode = os.fstat(fd).st_mode
        if close and not stat.S_ISREG(mode):
            raise UsageError(f"--env-file {shown(path)} is not a regular file", fix)
        data = b""
        while len(data) <= ENV_FILE_MAX:
            chunk = os.read(fd, ENV_FILE_MAX + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise UsageError(f"--env-file {shown(path)}: {exc.strerror or exc}", fix) from None
    finally:
        if close:
            os.close(fd)
    if len(data) > ENV_FILE_MAX:
        raise UsageError(f"--env-file {shown(path)} is over {ENV_FILE_MAX >> 20} MiB", fix)
    return data


def security_options(options: list[str]) -> tuple[bool, str | None]:
    """--security-opt values, as docker reads them (KEY=VALUE, or the older KEY:VALUE):
    (no_new_privs, seccomp profile: None for the default, "unconfined" or a path)."""
    from ..errors import UsageError
    nnp, seccomp = True, None
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")
        if key == "no-new-privileges" and value in ("", "true", "false"):
            nnp = value != "false"
        elif key == "seccomp" and value:
            seccomp = value
        else:
            raise UsageError(f"unsupported --security-opt {option!r}",
                             "minirun knows seccomp=PROFILE.json|unconfined and no-new-privileges[:true|false]")
    return nnp, seccomp
