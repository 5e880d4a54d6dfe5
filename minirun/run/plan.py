"""`minirun run`, from options to a frozen plan: RunOptions (the flags, one
definition for every parser), check_options() (everything that can be refused,
refused before anything exists), then prepare(): the image resolved, the
overlay, mounts and /etc files planned, an address and a cgroup driver taken,
all in memory, as a Prepared: a frozen sandbox/process.py Launch and a Pending
write of containers/<id>/. start.py starts and waits for it.
"""

from __future__ import annotations

import os

from .. import oci
from ..linux import overlay
from ..errors import RuntimeFailure
from ..lib import log
from ..lib.frozen import asdict, dataclass, replace
from ..network import BRIDGE, needs_netns, parse_mode
from ..sandbox import mounts as mounts_mod
from ..sandbox import program as specs
from ..store import ContainerConfig, ContainerState, ImageRecord


@dataclass(frozen=True)
class RunOptions:
    """The flags of `minirun run` that shape the process (one definition for every parser)."""
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    chroot: bool = False
    # isolation and resources
    network: str = "none"
    publish: tuple[str, ...] = ()       # -p specs, as given (network/ports.py reads them)
    volumes: tuple[str, ...] = ()
    tmpfs: tuple[str, ...] = ()
    read_only: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privs: bool = True
    seccomp: str | None = None          # a profile's path, "unconfined", or None: the default
    memory: str | None = None
    cpus: str | None = None
    pids_limit: str | None = None
    ulimits: tuple[str, ...] = ()
    # process control
    init: bool = False
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    # output
    log_driver: str | None = None       # store/logfile.py: k8s-file (the default) or none
    log_opts: tuple[str, ...] = ()      # max-size=SIZE, max-file=N


def options_record(opts: RunOptions, host_env: dict[str, str] | None = None) -> dict:
    """opts as config.json keeps them, for `start`: a bare -e K becomes K=V now, from
    this environment, as the run took it (a later start must not read another one)."""
    host_env = dict(os.environ) if host_env is None else host_env
    env = [item if "=" in item else f"{item}={host_env[item]}" for item in opts.env
           if "=" in item or item in host_env]
    record = asdict(opts)
    record.update(env=env, detach=False, interactive=False)   # start decides those afresh
    return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}


def options_from_record(record: dict, what: str) -> RunOptions:
    """The RunOptions a config.json kept; DamagedRecord when they do not fit."""
    from ..errors import DamagedRecord
    fields = {f.name: f for f in RunOptions.__record_fields__}
    values = {}
    for key, value in record.items():
        if key not in fields:
            raise DamagedRecord(what, f"its run options hold {key[:80]!r}, which this minirun does not know")
        default = fields[key].default
        want = tuple if isinstance(default, tuple) else bool if isinstance(default, bool) else str
        if isinstance(value, list) and want is tuple and all(isinstance(v, str) for v in value):
            value = tuple(value)
        elif not (isinstance(value, want) or (value is None and default is None)):
            raise DamagedRecord(what, f"its run option {key!r} is not what it should be")
        values[key] = value
    return RunOptions(**values)


@dataclass(frozen=True)
class Checked:
    """The flags, parsed and validated, before anything is created."""
    network: str
    mounts: tuple
    caps: frozenset
    ambient: frozenset
    limits: object                    # cgroups.Limits, None when no limit flag was given
    ulimits: tuple
    seccomp: object = None            # sandbox/seccomp.py Filter; None: unconfined
    ports: tuple = ()                 # network/ports.py Bindings to publish (none with --network host)
    log: object = None                # store/logfile.py Policy


def check_options(opts: RunOptions, store=None, warn=None) -> Checked:
    """warn(line): for a warning that refuses nothing (-p with --network host)."""
    from ..linux import caps
    volumes = [mounts_mod.parse_volume(v) for v in opts.volumes]
    tmpfs = [mounts_mod.parse_tmpfs(t) for t in opts.tmpfs]
    mounts_mod.check_no_duplicates(volumes + tmpfs)
    if not opts.privileged:
        mounts_mod.check_tmpfs_dev(tmpfs)
    ulimits, limits = (), None        # the modules for these load only when a flag asks
    if opts.ulimits:
        from ..sandbox import rlimits
        ulimits = rlimits.parse_ulimits(opts.ulimits)
        rlimits.check(ulimits)
    if (opts.memory, opts.cpus, opts.pids_limit) != (None, None, None):
        from ..linux import cgroups
        limits = cgroups.Limits.parse(opts.memory, opts.cpus, opts.pids_limit)
    keep = caps.compute(opts.cap_add, opts.cap_drop, opts.privileged)
    if opts.chroot and not opts.privileged:
        # a chroot inside a namespace that still holds the host's tree is escaped
        # with chroot(2) itself; pivot_root (the default) has no such hole
        keep -= {"sys_chroot"}
    seccomp = None
    if store is not None:             # issue 14.5: compiled (or read from the store) before anything exists
        from ..sandbox import seccomp as seccomp_mod
        seccomp = seccomp_mod.for_run(store, opts.seccomp, keep, opts.privileged)
    from ..store import logfile
    network = parse_mode(opts.network)
    return Checked(network, tuple(volumes + tmpfs), keep, caps.added(opts.cap_add), limits, ulimits,
                   seccomp, _published(opts.publish, network, warn) if opts.publish else (),
                   logfile.policy(opts.log_driver, opts.log_opts))


def _published(specs: tuple[str, ...], network: str, warn) -> tuple:
    """-p as Bindings: on the bridge network only (with host: discarded, as docker does)."""
    from ..network import HOST, NONE, ports
    bindings = ports.parse_all(specs)
    if network == NONE:
        from ..errors import UsageError
        raise UsageError("-p publishes a port of the bridge network, and --network none has no network",
                         "leave --network out (-p then selects bridge), or use --network bridge")
    if network == HOST:
        if warn is not None:
            warn("WARNING: Published ports are discarded when using host network mode")
        return ()
    return bindings


@dataclass
class Resources:
    """What a running container holds outside its directory, released when it ends."""
    cgroup: object = None
    allocation: object = None
    ports: object = None              # network/ports.py Listeners: bound before the container exists
    proxy: int = 0                    # the pid of their proxy, once the container's network is up


@dataclass(frozen=True)
class Planned:
    """What _plan() works out: the process, its overlay and mounts, and what
    containers/<id>/ will hold."""
    process: object                   # sandbox/program.py ProcessSpec
    overlay: object                   # overlay.py OverlayMount
    mounts: tuple
    config: ContainerConfig
    links: dict                       # l/<n> -> lower dir, when the mount string would overflow
    init: tuple                       # sandbox/mounts.py InitEntry: the init layer


@dataclass(frozen=True)
class Prepared:
    """A container ready to start: its id, the frozen Launch for the child, what it
    holds outside its directory, and its Pending write (None once written)."""
    cid: str
    launch: object                    # sandbox/process.py Launch
    resources: Resources
    pending: Pending | None = None
    log: object = None                # store/logfile.py Policy: where its output is kept
    claim: int = -1                   # the runtime's claim, when taken already (`start`)


def create(store, image: str, opts: RunOptions, checked: Checked, name, remove, warn,
           claim: bool = False) -> Prepared:
    """The container on disk, its address and its cgroup; on any failure none of them.
    claim: with the runtime's claim (run -d: its monitor runs it), in Prepared.claim."""
    prepared = prepare(store, image, opts, checked, name, remove, warn)
    try:
        fd = prepared.pending.write(claim=claim)
    except BaseException:
        release(store, prepared.cid, prepared.resources)
        store.containers.remove(prepared.cid)        # written before its cgroup failed, if it was
        raise
    return Prepared(prepared.cid, prepared.launch, prepared.resources, log=prepared.log, claim=fd)


def prepare(store, image: str, opts: RunOptions, checked: Checked, name, remove, warn,
            existing: str = "", hold: bool = True) -> Prepared:
    """Everything a container needs, planned in memory, with its address and cgroup
    driver, and the Pending write of containers/<id>/. On failure nothing is left held.
    existing: the id of a container to start again (its dir stays; its state is
    what is written). hold False: no cgroup (`create`: the container does not run)."""
    resources = Resources()
    cid = existing or store.containers.new_id()
    if hold and checked.ports:        # a port already taken is refused before anything exists
        from ..network import ports
        resources.ports = ports.bind(checked.ports)
    gc_lock = store.locks.hold("gc", shared=True)
    try:
        gc_lock.__enter__()
    except BaseException:
        release(store, cid, resources)
        raise
    try:
        planned = _plan(store, cid, image, opts, checked, name, remove, warn, resources)
        launch = _launch(store, planned, opts, checked)
        driver, limits = _cgroup_driver(checked, opts) if hold else (None, None)
    except BaseException:
        gc_lock.__exit__(None, None, None)
        release(store, cid, resources)
        raise
    pending = Pending(store, cid, planned, gc_lock, resources, driver, limits,
                      (checked, opts) if log.debugging else None, existing=bool(existing))
    return Prepared(cid, launch, resources, pending, checked.log)


def _launch(store, planned: Planned, opts: RunOptions, checked: Checked):
    from ..sandbox import process
    return process.Launch(
        process=planned.process, overlay=planned.overlay, merged=store.mount_point,
        strategy=overlay.strategy_from_env(), mounts=planned.mounts, privileged=opts.privileged,
        caps=checked.caps, ambient=checked.ambient, no_new_privs=opts.no_new_privs and not opts.privileged,
        netns=needs_netns(checked.network), ulimits=checked.ulimits, init=opts.init,
        sync=True,                      # the child waits at least for containers/<id>/
        tty=opts.tty, interactive=opts.interactive, seccomp=checked.seccomp)


def _cgroup_driver(checked: Checked, opts: RunOptions):
    """(driver, limits) when the container gets a cgroup, else (None, None); a
    controller a limit needs that is missing is refused now."""
    if not wants_cgroup(checked.limits, opts.detach):
        return None, None
    from ..linux import cgroups
    limits = checked.limits or cgroups.Limits()
    driver = cgroups.open_driver(limits=limits)
    return (driver, limits) if driver is not None else (None, None)


class Pending:
    """containers/<id>/ planned but not yet written, and the shared gc lock held
    until it is, so that prune cannot take the image's layers in between."""

    def __init__(self, store, cid: str, planned: Planned, lock, resources: Resources,
                 driver=None, limits=None, shown=None, existing: bool = False):
        self._store, self._cid, self._planned, self._lock = store, cid, planned, lock
        self._resources, self._driver, self._limits, self._shown = resources, driver, limits, shown
        self.existing = existing          # a container started again: its dir is there

    def write(self, state: ContainerState | None = None, claim: bool = False) -> int:
        """containers/<id>/ on disk, in state (default: created), then its cgroup,
        named in the state: the record exists before the cgroup does, so `rm` of a
        container whose runtime was killed at any point frees it (by its id, if
        need be); the lock goes. On failure the caller removes the container.
        claim: the runtime's claim (store/containers.py), taken before the first
        write, is returned (its fd; else -1): `rm` and `start` leave a container
        alone while it is being set up."""
        containers, planned = self._store.containers, self._planned
        # With a cgroup, the record is written as created and says running only
        # once the cgroup it names exists: a reader never sees a running container
        # without its cgroup (a foreground run's state used to, for a moment).
        first = state if self._driver is None or state is None else ContainerState("created")
        fd = -1
        try:
            if self.existing:       # every field: what the last run recorded is cleared
                fd = containers.claim(self._cid) if claim else -1
                containers.set_state(self._cid, **asdict(first or ContainerState("created")))
            else:
                fd = containers.create(self._cid, planned.config, planned.links, planned.init, state=first,
                                       claim=claim)
            if self._driver is not None:
                self._resources.cgroup = self._driver.create(self._cid, self._limits)
                cgroup = self._resources.cgroup.to_json()
                if state is None:
                    containers.set_state(self._cid, cgroup=cgroup)
                else:
                    containers.set_state(self._cid, **asdict(replace(state, cgroup=cgroup)))
            if self._shown is not None:
                _log_choices(*self._shown, self._resources)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        finally:
            self.release()
        return fd

    def release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None


def _plan(store, cid: str, image: str, opts: RunOptions, checked: Checked, name,
          remove, warn, resources: Resources) -> Planned:
    """Resolve the image and plan the overlay, the mounts and the container's config."""
    from ..network import files as etc_files
    containers = store.containers
    image_id, record = store.images.resolve(image)
    config = oci.parse_config(store.blobs.read(image_id))
    lowers = lower_dirs(store, record)
    _warn_platform(config, warn)
    proc = specs.build(config, opts, cid)
    if checked.network == BRIDGE:
        resources.allocation = _allocate(store, cid)
    address = resources.allocation.address if resources.allocation else None
    files = etc_files.render_etc_files(proc.hostname, address, checked.network)
    mounts = tuple(mounts_mod.etc_mounts(files)) + checked.mounts
    init = mounts_mod.init_entries(mounts_mod.image_lookup(lowers), mounts_mod.mount_points(list(mounts)))
    own = [containers.init(cid)] if init or opts.read_only else []
    upper, work = ("", "") if opts.read_only else (containers.upper(cid), containers.work(cid))
    plan = overlay.plan(lowers, upper, work, containers.path(cid), own, volatile=remove)
    container_config = ContainerConfig(
        name=name or "", layers=tuple(layer.key for layer in record.layers), id=cid, image=image,
        image_id=image_id, argv=tuple(proc.argv), env=tuple(proc.env), cwd=proc.cwd, user=proc.user,
        hostname=proc.hostname, chroot=proc.chroot, auto_remove=remove, network=checked.network,
        read_only=opts.read_only, privileged=opts.privileged, capabilities=tuple(sorted(checked.caps)),
        init_layer=bool(init or opts.read_only), ambient=tuple(sorted(checked.ambient)),
        no_new_privs=opts.no_new_privs and not opts.privileged, detached=opts.detach,
        seccomp=checked.seccomp.name if checked.seccomp else "unconfined", options=options_record(opts))
    links = overlay.links_to_make(plan, overlay.strategy_from_env())
    return Planned(proc, plan, mounts, container_config, links, tuple(init))


def wants_cgroup(limits, detach: bool = False) -> bool:
    """A cgroup when a limit asks for one, for every -d container (it outlives the
    shell that started it and must not stay in that shell's cgroup, a session scope
    systemd may kill), or with MINIRUN_CGROUPS=always. Joining one is the dearest
    step of a foreground start: the kernel waits for an RCU grace period
    (cgroup_threadgroup_rwsem), ~9 ms here. Without one, the PID namespace still
    ends every process with the container, and an OOM kill shows as signal 9."""
    return (detach or (limits is not None and not limits.empty)
            or os.environ.get("MINIRUN_CGROUPS") == "always")


def _log_choices(checked: Checked, opts: RunOptions, resources: Resources) -> None:
    if resources.cgroup is not None:
        log.debug(f"cgroup {resources.cgroup.version}: {', '.join(resources.cgroup.paths)}")
    else:
        log.debug("no cgroup: not -d, no --memory, --cpus or --pids-limit (MINIRUN_CGROUPS=always makes one)")
    log.debug(f"capabilities kept: {', '.join(sorted(checked.caps)) or 'none'}; ambient: "
              f"{', '.join(sorted(checked.ambient)) or 'none'}; no_new_privs: "
              f"{opts.no_new_privs and not opts.privileged}; network: {checked.network}")


def _allocate(store, cid: str):
    from ..network import ipam
    from ..network.ipam import release_stale_addresses
    release_stale_addresses(store)
    from .. import config
    return ipam.allocate(store.root, cid, config.get("network.subnet"), config.get("network.bridge"))


def release(store, cid: str, resources: Resources) -> None:
    """Give back the published ports, the cgroup, the veth and the address; each may
    already be gone."""
    if resources.proxy:
        from ..network import ports
        ports.stop_proxy(resources.proxy)
        resources.proxy = 0
    if resources.ports is not None:
        resources.ports.close()
    if resources.cgroup is not None:
        try:
            resources.cgroup.remove()
        except Exception:                          # noqa: BLE001 - cleanup must go on
            pass
        resources.cgroup = None
    if resources.allocation is not None:
        from ..network import ipam
        try:
            from ..network import netlink
            netlink.detach(resources.allocation)
        except Exception:                          # noqa: BLE001
            pass
        ipam.release(store.root, cid)
        resources.allocation = None


def _warn_platform(config, warn) -> None:
    host = oci.host_platform()
    if config.platform.architecture and config.platform.architecture != host.architecture:
        from ..errors import shown        # the image's words, not escape sequences
        warn(f"WARNING: The requested image's platform ({shown(str(config.platform), 80)}) does not "
             f"match the detected host platform ({host})")


def lower_dirs(store, record: ImageRecord) -> list[str]:
    """Layer dirs topmost first. A layer listed twice (repeated empty layers are common)
    appears once, at its topmost place: overlayfs refuses a dir stacked twice, and the
    lower copy could only show what the upper copy already shows."""
    lowers: list[str] = []
    seen: set[str] = set()            # a set: 500 layers made the list check quadratic
    for layer in reversed(record.layers):
        path = store.layers.diff_path(layer.key)
        if path in seen:
            continue
        seen.add(path)
        if not store.layers.has(layer.key):
            raise RuntimeFailure(f"layer {layer.key} of this image is missing from the store",
                                 "load or pull the image again")
        lowers.append(path)
    overlay.check_layer_count(len(lowers))     # before the init layer's lookups in them
    return lowers
