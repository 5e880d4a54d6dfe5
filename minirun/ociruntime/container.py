"""create, like runc's (start, kill, delete and run: lifecycle.py).

create forks an intermediate process that joins the namespaces given a path and
unshares the new ones, then forks the init (so that it is PID 1 of a new PID
namespace) and exits. The init sets everything up (init.setup), reports its
result on a pipe, and blocks opening the exec fifo for writing. create writes
state.json and the pid file once the init is ready; on any failure it kills the
init and removes the state dir, so nothing is left. start opens the fifo to read:
the init's open returns, and it execs process.args.
"""

from __future__ import annotations

import _signal as signal    # the C module: `signal` wraps it in enums, and enum costs every call ~3 ms
import os
import time

from .. import linux
from ..errors import MinirunError, RuntimeFailure, UsageError
from ..lib import jsonio as json
from ..linux import caps, procfs
from . import state   # the others: imported by the commands that need them

_FLAGS = {"pid": linux.CLONE_NEWPID, "network": linux.CLONE_NEWNET, "mount": linux.CLONE_NEWNS,
          "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS, "cgroup": linux.CLONE_NEWCGROUP,
          "user": linux.CLONE_NEWUSER}


def _send(fd: int, message: dict) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


def _high(fd: int, above: int) -> int:
    """fd moved above the fds --preserve-fds hands on."""
    if fd > above:
        return fd
    import fcntl
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above + 1)
    os.close(fd)
    return new


def _child(cfg: dict, bundle: str, fifo_path: str, report: int, no_pivot: bool, preserve: int,
           cgroup: list[str], seccomp_program: tuple | None, console=None, go: int = -1) -> None:
    """The intermediate process; never returns."""
    from ..linux.cgroups import ocigroup
    from . import hooks, init
    code = 1
    try:
        caps.set_dumpable(False)            # the host's python until its exec: no ptrace, no /proc/PID/fd
        if cgroup:
            ocigroup.join(cgroup, os.getpid())
        for fd in range(3, 3 + preserve):
            try:
                os.set_inheritable(fd, True)
            except OSError:
                pass
        unshare = 0
        for ns in cfg["linux"]["namespaces"]:
            if ns.get("path"):
                try:
                    fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise RuntimeFailure(f"linux.namespaces: {ns['type']} path {ns['path']}: {exc.strerror}",
                                         "give the path of a namespace, e.g. /proc/PID/ns/net") from None
                try:
                    linux.setns(fd, _FLAGS[ns["type"]])
                except OSError as exc:
                    raise RuntimeFailure(f"linux.namespaces: cannot join {ns['path']} as a {ns['type']} "
                                         f"namespace: {exc.strerror}", "give a namespace of that type") from None
                finally:
                    os.close(fd)
            else:
                unshare |= _FLAGS[ns["type"]]
        if unshare & linux.CLONE_NEWUSER:           # first, so that it owns the others; create maps it
            linux.unshare(linux.CLONE_NEWUSER)
            _send(report, {"userns": True})
            if not _read_line(go):
                os._exit(1)
        linux.unshare(unshare & ~linux.CLONE_NEWUSER)
        fifo = os.open(fifo_path, os.O_PATH | os.O_CLOEXEC)
        pid = os.fork()
        if pid:
            _send(report, {"pid": pid})
            code = 0
        else:
            try:
                hook_state: dict = {}

                def before_pivot() -> None:
                    if go < 0:
                        return
                    _send(report, {"hooks": True})      # create runs prestart and createRuntime, then
                    line = _read_line(go)                # sends the state the hooks in here get
                    if not line:
                        os._exit(127)
                    hook_state.update(json.loads(line))
                    hooks.run(cfg.get("hooks"), "createContainer", hook_state)

                program = init.setup(cfg, bundle, no_pivot, console, before_pivot)
                _send(report, {"ready": True})
                os.close(report)
                report = -1
                while not program:              # no process in config.json: start kills it
                    signal.pause()
                at_start = (lambda: hooks.run(cfg.get("hooks"), "startContainer", hook_state)) \
                    if hooks.wanted(cfg.get("hooks"), ("startContainer",)) else None
                init.finish(cfg["process"], program, fifo, seccomp_program, init.report_sink(), at_start)
            except BaseException as exc:  # noqa: BLE001 - reported to create, or to stderr after start
                _tell(report, exc)
            os._exit(127)
    except BaseException as exc:  # noqa: BLE001
        _tell(report, exc)
    os._exit(code)


def _tell(report: int, exc: BaseException) -> None:
    """exc to create over the report pipe, or to stderr once it is closed; quietly, so a
    create that is gone (EPIPE) never sends this forked copy back into create's code."""
    try:
        if report >= 0:
            _send(report, _describe(exc))
        else:
            os.write(2, f"minirun-oci: {_describe(exc)['error']}\n".encode())
    except BaseException:  # noqa: BLE001
        pass


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            return b""
        data += chunk
    return data


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while pid and procfs.start_time(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _describe(exc: BaseException) -> dict:
    if isinstance(exc, MinirunError):
        return {"error": exc.message, "hint": exc.hint}
    if isinstance(exc, OSError):
        return {"error": f"container setup failed: {exc.strerror or exc}"
                         + (f": {exc.filename}" if exc.filename else ""), "hint": None}
    return {"error": f"container setup failed: {type(exc).__name__}: {exc}", "hint": None}


def _seccomp(cfg: dict, root: str | None = None) -> tuple | None:
    """(BPF program, flags) of linux.seccomp, compiled by the sandbox's libseccomp binding
    (once per --root dir: seccache.py)."""
    profile = cfg["linux"].get("seccomp")
    if not profile:
        return None
    from . import seccache
    held = frozenset(caps.normalise(n) for n in cfg["process"]["capabilities"].get("bounding", []))
    return seccache.compiled(root, profile, held)


def _console(cfg: dict, console_socket: str | None):
    """The connected --console-socket when process.terminal is true (one line otherwise)."""
    terminal = cfg["process"]["terminal"]
    if terminal != bool(console_socket):
        raise UsageError("process.terminal is true but no --console-socket was given" if terminal else
                         "--console-socket was given but process.terminal is false",
                         "give both (a terminal sent over the socket) or neither (stdio passed through)")
    if not terminal:
        return None
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(console_socket)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--console-socket {console_socket}: {exc.strerror}",
                         "give the path of a listening unix socket") from None
    return sock


def create(root: str, container_id: str, bundle: str, pid_file: str | None, no_pivot: bool = False,
           preserve_fds: int = 0, console_socket: str | None = None) -> int:
    from ..linux.cgroups import membership, ocigroup
    from . import config, hooks, hostmounts
    caps.require_root("create")
    bundle = os.path.abspath(bundle)
    cfg = config.load(bundle)
    host_mounts = not any(ns["type"] == "mount" for ns in cfg["linux"]["namespaces"])
    if host_mounts:
        hostmounts.check(cfg)
    console = _console(cfg, console_socket)
    program = _seccomp(cfg, root)
    state.reserve(root, container_id)
    if any(ns["type"] == "user" for ns in cfg["linux"]["namespaces"]):
        # the init opens the fifo as the user namespace's root: the host ids that maps to own it (as runc)
        os.chown(state.fifo_path(root, container_id), *(config.host_id(cfg["linux"][k], 0)
                                                       for k in ("uidMappings", "gidMappings")))
    pid, cgroup, made, seen = 0, [], [], []
    try:
        resources = cfg["linux"].get("resources") or {}
        extra = [f"{d['type'] if d['type'] != 'u' else 'c'} {d['major']}:{d['minor']} rwm"
                 for d in cfg["linux"]["devices"] if d["type"] != "p"]
        group = ocigroup.create(container_id, cfg["linux"].get("cgroupsPath") or "", resources, extra)
        cgroup, made = group.dirs, group.made
        partial = {"cgroups_made": made, "cgroup_dirs": cgroup, "host_mounts": host_mounts,
                   "rootfs": cfg["root"]["path"]}
        if made or host_mounts:
            state.save_creating(root, container_id, partial)
        cfg["cgroup"] = group.to_json()         # for the init's cgroup mount (cgroupview.py)
        read_fd, write_fd = os.pipe()
        read_fd, write_fd = _high(read_fd, 2 + preserve_fds), _high(write_fd, 2 + preserve_fds)
        go_r = go_w = -1
        userns = any(ns["type"] == "user" for ns in cfg["linux"]["namespaces"])
        if userns or hooks.wanted(cfg.get("hooks"), ("prestart", "createRuntime", "createContainer",
                                                     "startContainer")):
            go_r, go_w = os.pipe()
            go_r, go_w = _high(go_r, 2 + preserve_fds), _high(go_w, 2 + preserve_fds)
        # The first write to a v1 cgroup.procs waits out an RCU grace period (~10 ms here):
        # create moves the init in itself, while the init sets up its mounts, unless the
        # init must be in its cgroups from the start: a cgroup namespace (rooted where it
        # is made), any hook (each runs with the init in its cgroups, as under runc) or a
        # user namespace (create answers the intermediate process then). start can only
        # follow create, so the program never runs outside its cgroups.
        late_join = bool(cgroup) and go_w < 0 and not any(ns["type"] == "cgroup"
                                                          for ns in cfg["linux"]["namespaces"])
        middle = os.fork()
        if middle == 0:
            os.close(read_fd)
            if go_w >= 0:
                os.close(go_w)
            _child(cfg, bundle, state.fifo_path(root, container_id), write_fd, no_pivot, preserve_fds,
                   [] if late_join else cgroup, program, console, go_r)
        os.close(write_fd)
        if go_r >= 0:
            os.close(go_r)
        if late_join:
            membership.move_in_place()      # the kernel's wait for the init's join, while the init works

        def run_hooks(init_pid: int) -> None:
            """prestart and createRuntime in here, then the state to the init for createContainer."""
            current = hooks.state({"id": container_id, "pid": init_pid, "bundle": bundle,
                                  "annotations": cfg["annotations"]}, "created")
            hooks.run(cfg.get("hooks"), "prestart", current)
            hooks.run(cfg.get("hooks"), "createRuntime", current)
            os.write(go_w, (json.dumps(current) + "\n").encode())
        def map_ids(_pid: int) -> None:
            """The middle process's new user namespace gets the config's mappings."""
            for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
                lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in cfg["linux"][key])
                try:
                    with open(f"/proc/{middle}/{name}", "w") as f:
                        f.write(lines)
                except OSError as exc:
                    raise RuntimeFailure(f"linux.{key}: the kernel refused them: {exc.strerror}",
                                         "give ranges that do not overlap, at most 340 lines") from None
            os.write(go_w, b"\n")

        def on_pid(init_pid: int) -> None:
            """The init's pid, recorded at once: a create killed from here on leaves
            what `delete --force` needs to kill the init (blocked on the exec fifo)."""
            seen.append(init_pid)           # killed by the cleanup below if the join fails
            partial.update(pid=init_pid, start_time=procfs.start_time(init_pid))
            state.save_creating(root, container_id, partial)
            if late_join:
                _join_late(cgroup, init_pid)
        try:
            messages = _read_reports(read_fd, {"pid": on_pid} if late_join
                                     else {"pid": on_pid, "hooks": run_hooks, "userns": map_ids})
        finally:
            if go_w >= 0:
                os.close(go_w)
        os.waitpid(middle, 0)
        for message in messages:
            pid = message.get("pid", pid)
        last = messages[-1] if messages else {"error": "the container's init ended without a word"}
        if "error" in last:
            raise RuntimeFailure(last["error"], last.get("hint"))
        if not pid or not last.get("ready"):
            raise RuntimeFailure("the container's init ended before it was ready", "run with --debug")
        started = partial.get("start_time") or procfs.start_time(pid)      # on_pid read it already
        record = {"id": container_id, "pid": pid, "start_time": started, "bundle": bundle,
                  "rootfs": cfg["root"]["path"], "cgroups_made": made, "cgroup_dirs": cgroup, "host_mounts": host_mounts,
                  "no_process": bool(cfg.get("noProcess")), "annotations": cfg["annotations"], "owner": "root",
                  "hooks": {k: v for k, v in (cfg.get("hooks") or {}).items() if k in ("poststart", "poststop")},
                  "created": _now()}
        state.save(root, container_id, record)
        if console is not None:
            console.close()
        if pid_file:
            tmp = pid_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(pid))
            os.replace(tmp, pid_file)
        return pid
    except BaseException:
        pid = pid or (seen[0] if seen else 0)
        if pid:
            procfs.signal_quietly(pid, signal.SIGKILL)
        if console is not None:
            console.close()
        ocigroup.remove(made)
        if host_mounts:
            _wait_gone(pid)
            hostmounts.unmount_beneath(cfg["root"]["path"])
        state.remove(root, container_id)
        raise


def _join_late(dirs: list[str], pid: int) -> None:
    """The init into the container's cgroups, from create; an init already gone has
    sent its own error, which says more than ESRCH."""
    from ..linux.cgroups import ocigroup
    try:
        ocigroup.join(dirs, pid)
    except ProcessLookupError:
        pass
    except OSError as exc:
        raise RuntimeFailure(f"cannot move the container's init into its cgroups: {exc.strerror}",
                             "give linux.cgroupsPath a leaf cgroup (v2), and cpuset.cpus and cpuset.mems "
                             "that are not empty (v1)") from None


def _now() -> str:
    """RFC 3339 UTC with microseconds, as datetime's isoformat() gives it (without datetime's import)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _read_reports(fd: int, handlers: dict | None = None) -> list[dict]:
    """The intermediate's {"pid"} and the init's {"ready"} or an {"error"}, in any order.
    A request the sender waits on ({"userns"} from the intermediate, {"hooks"} from the
    init before pivot_root) calls handlers[key](pid); "hooks" waits for the init's pid."""
    data, messages, done = b"", [], set()
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            *lines, data = data.split(b"\n")
            messages += [json.loads(line) for line in lines if line.strip()]
            pid = next((m["pid"] for m in messages if "pid" in m), 0)
            for key, handler in (handlers or {}).items():
                if key not in done and (pid or key == "userns") and any(key in m for m in messages):
                    done.add(key)
                    handler(pid)
            if any("error" in m for m in messages) or (any("pid" in m for m in messages)
                                                      and any("ready" in m for m in messages)):
                break
    finally:
        os.close(fd)
    messages.sort(key=lambda m: "pid" not in m)
    return messages
