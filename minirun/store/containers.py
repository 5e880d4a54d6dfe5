"""containers/<id>/: one container's files and state.

    upper/ work/    the overlay upper and work dirs (what the run wrote)
    init/           the init layer: mount points the image lacks, topmost lower dir
    l/<n>           short links to the lower dirs, made only when the legacy mount
                    option string would overflow a page
    config.json     what was asked for: image, layers, argv, env, ...
    state.json      what happened: status, pid, exit code, times

Creation builds the whole dir in tmp/ and renames it into place, and state.json
is replaced by a rename, so a reader never sees half a record. A record that
is damaged all the same (store/readers.py) raises DamagedRecord naming it and
how to fix it; remove() needs no record at all. Nothing else
is made per container: the overlay goes on the store's shared mnt/ (inside the
container's mount namespace), and /etc/hosts, hostname and resolv.conf live in
a tmpfs of the container's own (sandbox/rootfs.py). On this machine's ext4 each
file made and deleted costs a run ~0.25 ms.
"""

from __future__ import annotations

import os
import time

from ..lib import jsonio
from ..lib.names import is_container_name, is_hex
from ..errors import NO_SPACE_ERRNOS, Conflict, ContainerNotFound, DamagedRecord, UsageError, warn_damaged
from ..lib.fsutil import tree_size
from . import readers
from . import ContainerConfig, ContainerState, dump
from ..lib.fsutil import make_dir, remove_tree, umask
from ..lib.frozen import replace
from ..linux.procfs import start_time



def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ContainerStore:
    def __init__(self, directory: str, store):
        self.directory = directory
        self.store = store

    # ------------------------------------------------------------ paths
    def path(self, cid: str, *parts: str) -> str:
        return os.path.join(self.directory, cid, *parts)

    def upper(self, cid: str) -> str:
        return self.path(cid, "upper")

    def work(self, cid: str) -> str:
        return self.path(cid, "work")

    def init(self, cid: str) -> str:
        return self.path(cid, "init")

    def disk_usage(self, cid: str) -> int:
        """Bytes of the regular files in the container's upper dir (its writes)."""
        return tree_size(self.upper(cid))[0]

    def log(self, cid: str) -> str:
        """container.log: what the container wrote to stdout and stderr (logfile.py's
        format; older parts in container.log.1, .2, ...)."""
        return self.path(cid, "container.log")

    # ------------------------------------------------------------ the runtime's claim
    # The process that runs a container (the foreground `run`, or a -d container's
    # monitor) holds an exclusive flock on containers/<id>/ from before the command
    # can end until it has recorded the end: copied the last output, given back the
    # cgroup, ports and address, written state.json. The kernel drops it if that
    # process dies. Between the command's end and that record, the container still
    # counts as running for `stop`, `logs -f`, `ps` and `inspect` (settled());
    # `start` and `rm` wait for the claim to go (run/start.py, api/control.py).

    def claim(self, cid: str, path: str | None = None) -> int:
        """Take the runtime's claim (on path: the container's dir while still staged);
        the fd to close once the end is recorded. A Conflict when another minirun
        process runs the container, or is still recording how its last run ended."""
        from ..linux import LOCK_EX, LOCK_NB, flock
        fd = os.open(path or self.path(cid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            flock(fd, LOCK_EX | LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict(f"container {cid[:12]} is being run by another minirun process",
                           "wait for it to end, or stop it with `minirun stop`") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def claimed(self, cid: str) -> bool:
        """Whether a runtime still holds the container (has not yet recorded its end)."""
        from ..linux import LOCK_NB, LOCK_SH, flock
        try:
            fd = os.open(self.path(cid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False            # removed: nothing left to record
        try:
            flock(fd, LOCK_SH | LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def settled(self, cid: str) -> ContainerState:
        """effective_state(), except that a container whose command has ended still
        shows as recorded (running) while its runtime is finishing with it."""
        state = self.state(cid)
        effective = effective_state(state)
        if state.running and not effective.running and self.claimed(cid):
            return state
        return effective

    # ------------------------------------------------------------ lifecycle
    @staticmethod
    def new_id() -> str:
        return os.urandom(32).hex()

    def create(self, cid: str, config: ContainerConfig, links: dict[str, str], init_entries=(),
               state: ContainerState | None = None, claim: bool = False) -> int:
        """Create containers/<id>/ with config.json and state.json (default: created).

        links maps short names (l/<n>) to the lower dirs they stand for;
        init_entries (mounts.InitEntry) make the init layer. claim: the runtime's
        claim on it, taken before it appears, is returned (its fd); else -1."""
        name = config.name
        config = replace(config, id=cid, name=name or cid[:12], created=now())
        if not name:        # a fresh random id: nothing to check, and the rename is atomic
            return self._materialise(cid, config, links, init_entries, state, claim)
        check_name(name)
        with self.store.locks.hold("containers"):
            if self.find_by_name(name, warn=True):
                raise Conflict(f"the container name {name!r} is already in use",
                               f"remove it with `minirun rm {name}` or pick another --name")
            return self._materialise(cid, config, links, init_entries, state, claim)

    def _materialise(self, cid: str, config: ContainerConfig, links: dict[str, str], init_entries,
                     state: ContainerState | None, claim: bool) -> int:
        """containers/<id>/, built in tmp/ and renamed into place whole."""
        # Each file-system call here costs a run ~40 us: modes are given at creation,
        # and chmod or chown follow only when the umask or the owner calls for them.
        with self.store.staging("container", 0o711) as staged:
            for sub in ("upper", "work", "init"):
                make_dir(os.path.join(staged, sub), 0o755)   # upper/ is the container's /
            _build_init(os.path.join(staged, "init"), init_entries)
            if links:
                os.mkdir(os.path.join(staged, "l"), 0o700)
                for short, target in links.items():
                    os.symlink(target, os.path.join(staged, short))
            _write_json(os.path.join(staged, "config.json"), dump(config))
            _write_json(os.path.join(staged, "state.json"), dump(state or ContainerState("created")))
            fd = self.claim(cid, staged) if claim else -1
            try:
                os.rename(staged, self.path(cid))
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
            return fd

    def config(self, cid: str) -> ContainerConfig:
        """config.json; FileNotFoundError once the container is gone, DamagedRecord if
        it is damaged (or missing from a container dir that is there)."""
        path = self.path(cid, "config.json")
        return readers.container_config(cid, path, self._record(cid, path, readers.CONTAINER_CONFIG_LIMIT,
                                                                readers.config_hint(cid)))

    def state(self, cid: str) -> ContainerState:
        """state.json; status "removing" once the container is gone, DamagedRecord
        if it is damaged."""
        path = self.path(cid, "state.json")
        try:
            doc = self._record(cid, path, readers.CONTAINER_STATE_LIMIT, readers.state_hint(cid))
        except FileNotFoundError:
            return ContainerState("removing")
        return readers.container_state(cid, path, doc)

    def _record(self, cid: str, path: str, limit: int, hint: str) -> object:
        try:
            return readers.read_json(path, limit, hint)
        except FileNotFoundError:
            if os.path.isdir(self.path(cid)):
                raise DamagedRecord(path, "it is missing", hint) from None
            raise

    def set_state(self, cid: str, **changes) -> ContainerState:
        """Record changes to the state (ContainerState's fields). A damaged state.json
        is replaced: what the runtime records now is what is true."""
        try:
            state = replace(self.state(cid), **changes)
        except DamagedRecord:
            state = ContainerState(**{"status": "exited", **changes})
        tmp = self.path(cid, f".state.json.{os.getpid()}")
        try:
            _write_json(tmp, dump(state))
        except FileNotFoundError:
            return state  # removed meanwhile (`rm -f` of a running container)
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            _remove_quietly(tmp)
            _overwrite_json(self.path(cid, "state.json"), dump(state))
            return state
        os.rename(tmp, self.path(cid, "state.json"))
        return state

    def remove(self, cid: str) -> None:
        """Rename away first so the container vanishes in one step, then delete its files."""
        doomed = self.store.staging_file("rmcontainer")
        try:
            os.rename(self.path(cid), doomed)
        except FileNotFoundError:
            return
        _remove_container_dir(doomed)

    # ------------------------------------------------------------ look-ups
    def ids(self) -> list[str]:
        return [n for n in readers.list_dir(self.directory) if len(n) == 64 and is_hex(n, 64)]

    def find_by_name(self, name: str, warn: bool = False) -> str | None:
        """The container with this name. A container whose config is damaged has no
        name anyone can know; with warn, each one is reported as it is passed over."""
        for cid in self.ids():
            try:
                if self.config(cid).name == name:
                    return cid
            except FileNotFoundError:
                continue
            except DamagedRecord as err:
                if warn:
                    warn_damaged(err)
        return None

    def resolve(self, text: str) -> str:
        """A container by full id, name or unique id prefix (in docker's order)."""
        if len(text) == 64 and is_hex(text, 64) and os.path.lexists(self.path(text)):
            return text
        by_name = self.find_by_name(text)
        if by_name:
            return by_name
        if is_hex(text):
            matches = [cid for cid in self.ids() if cid.startswith(text)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise UsageError(f"container id prefix {text} is ambiguous", "give more hex digits")
        raise ContainerNotFound(f"no such container: {text}")


def _build_init(root: str, entries) -> None:
    for entry in entries:
        path = os.path.join(root, entry.path)
        if entry.is_file:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, entry.mode & 0o777))
        else:
            os.mkdir(path, entry.mode & 0o777)
        foreign = (entry.uid, entry.gid) != (os.geteuid(), os.getegid())
        if foreign:
            os.chown(path, entry.uid, entry.gid)        # clears setuid/setgid: chmod after
        if foreign or entry.mode & ~0o777 or entry.mode & umask():
            os.chmod(path, entry.mode)


def _write_file(path: str, content: str) -> None:
    data = memoryview(content.encode())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def check_name(name: str) -> None:
    """Refuse a --name docker would refuse."""
    if not is_container_name(name):
        raise UsageError(f"invalid container name {name!r}",
                         "use letters, digits, '_', '.' and '-', starting with a letter or digit")


def _write_json(path: str, doc: dict) -> None:
    _write_file(path, jsonio.dumps(doc, indent=1, sort_keys=True))


def _overwrite_json(path: str, doc: dict) -> None:
    """A full disk's way to record a state: over the old file, in place, padded with
    spaces (still JSON) to the old length, so that the write lands in blocks the file
    already has and needs no free space. How a container ended is recorded even when
    its own command filled the disk. Not atomic, which a full disk excuses."""
    data = jsonio.dumps(doc, indent=1, sort_keys=True).encode()
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        data = data.ljust(size) if len(data) < size else data
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(fd, view[offset:], offset)
    finally:
        os.close(fd)


# What overlayfs makes in a work dir (a volatile mount adds the rest), deepest first
_OVERLAY_WORK = ("work/incompat/volatile/dirty", "work/incompat/volatile", "work/incompat", "work", "")


def _remove_container_dir(path: str) -> None:
    """A container dir renamed away (into the store's tmp/, where only root goes):
    the files this module and overlayfs make are removed by name, ~15 calls where
    the walk of remove_tree needs ~100 (~0.3 ms of every `run --rm`); what the run
    wrote to upper/, the init layer and anything unexpected, by the walk."""
    for name in ("config.json", "state.json"):
        _remove_quietly(os.path.join(path, name))
    work = os.path.join(path, "work")
    try:
        for i, name in enumerate(_OVERLAY_WORK):
            try:
                (os.rmdir if i else os.unlink)(os.path.join(work, name))
            except FileNotFoundError:
                pass                    # not volatile, or never mounted
    except OSError:
        remove_tree(work)               # another layout (an index dir, say): the walk copes
    for name in ("upper", "init"):
        try:
            os.rmdir(os.path.join(path, name))      # an upper dir the run left empty
        except OSError:
            remove_tree(os.path.join(path, name))
    try:
        os.rmdir(path)
    except OSError:
        remove_tree(path)             # logs, short links, or more


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def effective_state(state: ContainerState) -> ContainerState:
    """The recorded state, corrected when the runtime died and its container with it."""
    if state.status == "running":
        if not state.pid or start_time(state.pid) != state.pid_start:
            return replace(state, status="exited", exit_code=None, error="the runtime process died",
                           ports=())
    return state
