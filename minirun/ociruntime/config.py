"""The bundle's config.json (runtime-spec 1.1), read and checked before anything is made.

load(bundle) reads it with a bound (MAX_CONFIG_BYTES), refuses an ociVersion whose
major is not 1, resolves root.path inside the bundle (a rootfs that is a symlink
leading out of the bundle is refused) and refuses, by name, every field minirun-oci
cannot honour (REFUSED_*): a config is either run as written or not at all.
Properties the spec does not define are ignored, as the spec requires.
"""

from __future__ import annotations

import _signal as signal    # the C module: `signal` imports enum, which every kill would pay
import os
import stat

from ..errors import MinirunError, UsageError
from ..lib import jsonio as json
from ..linux import caps

MAX_CONFIG_BYTES = 4 << 20
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "cgroup", "user")
# defined by the spec, not supported here: refused when present and not empty
REFUSED_TOP = ("solaris", "windows", "vm", "zos")
REFUSED_LINUX = ("intelRdt", "personality", "timeOffsets",
                 "memoryPolicy", "netDevices")
SELINUX_FS = "/sys/fs/selinux"
REFUSED_PROCESS = ("apparmorProfile", "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity")
PROPAGATION = ("", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable")
RLIMITS = {name[len("RLIMIT_"):]: getattr(__import__("resource"), name)
           for name in dir(__import__("resource")) if name.startswith("RLIMIT_")}


class ConfigError(UsageError):
    pass


def _refuse(field: str, why: str = "minirun-oci does not support it") -> ConfigError:
    return ConfigError(f"config.json: {field}: {why}",
                       "remove the field from the bundle's config.json, or use runc or crun")


def _type(value, kind, field: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"config.json: {field} must be {getattr(kind, '__name__', 'of another type')}",
                          "fix the bundle's config.json (runtime-spec 1.1)")
    return value


def load(bundle: str) -> dict:
    """The checked config; root.path is replaced by its absolute resolved path."""
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise MinirunError(f"cannot read {path}: {exc.strerror}",
                           "give --bundle a directory holding config.json") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path} is not a regular file", "give --bundle a directory holding config.json")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MiB", "shrink the bundle's config.json")
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}", "fix the bundle's config.json") from None
    _type(config, dict, "the document")
    check(config, bundle)
    return config


def check(config: dict, bundle: str) -> None:
    version = _type(config.get("ociVersion"), str, "ociVersion")
    if version.split(".")[0] != "1":
        raise ConfigError(f"config.json: ociVersion {version!r} is not a 1.x runtime-spec version",
                          "minirun-oci runs runtime-spec 1.x bundles; regenerate the config")
    for field in REFUSED_TOP:
        if config.get(field):
            raise _refuse(field)
    if config.get("hooks") is not None:
        from . import hooks
        hooks.check(config["hooks"])
    root = _type(config.get("root"), dict, "root")
    _type(root.get("readonly", False), bool, "root.readonly")
    root["path"] = _rootfs(bundle, _type(root.get("path"), str, "root.path"))
    if "hostname" in config:
        _type(config["hostname"], str, "hostname")
    if config.get("domainname"):
        raise _refuse("domainname")
    _type(config.setdefault("annotations", {}), dict, "annotations")
    for i, mount in enumerate(_type(config.setdefault("mounts", []), list, "mounts")):
        _type(mount, dict, f"mounts[{i}]")
        dest = _type(mount.get("destination"), str, f"mounts[{i}].destination")
        if not dest.startswith("/"):
            raise ConfigError(f"config.json: mounts[{i}].destination {dest!r} is not absolute",
                              "give an absolute path inside the container")
        for j, option in enumerate(_type(mount.get("options", []), list, f"mounts[{i}].options")):
            _type(option, str, f"mounts[{i}].options[{j}]")
        for key in ("uidMappings", "gidMappings"):
            if mount.get(key):
                raise _refuse(f"mounts[{i}].{key}")
    if config.get("process") is None:       # allowed at create; start then fails (runtime-spec "start")
        config["process"], config["noProcess"] = {"args": ["/"]}, True
    _process(config["process"])
    _linux(_type(config.setdefault("linux", {}), dict, "linux"))
    if "hostname" in config and not any(ns.get("type") == "uts" for ns in config["linux"]["namespaces"]):
        raise ConfigError("config.json: hostname without a uts namespace would name the host",
                          "add {\"type\": \"uts\"} to linux.namespaces, or drop hostname")


def _rootfs(bundle: str, path: str) -> str:
    """A relative root.path must stay inside the bundle; an absolute one (podman's and
    containerd's, in their own stores) is the caller's choice, as with runc."""
    base = os.path.realpath(bundle)
    full = os.path.realpath(os.path.join(base, path))
    if not path.startswith("/") and full != base and not full.startswith(base + "/"):
        raise ConfigError(f"config.json: root.path {path!r} resolves to {full}, outside the bundle {base}",
                          "put the root filesystem inside the bundle directory")
    if not os.path.isdir(full):
        raise ConfigError(f"config.json: root.path {path!r} is not a directory inside the bundle",
                          "put the root filesystem inside the bundle directory")
    return full


def _process(process) -> None:
    _type(process, dict, "process")
    args = _type(process.get("args"), list, "process.args")
    if not args or not all(isinstance(a, str) for a in args):
        raise ConfigError("config.json: process.args must be a non-empty list of strings",
                          "name the program to run in process.args")
    if process.get("commandLine"):
        raise _refuse("process.commandLine")
    _type(process.setdefault("terminal", False), bool, "process.terminal")
    size = _type(process.get("consoleSize") or {}, dict, "process.consoleSize")
    for key in size:
        _type(size[key], int, f"process.consoleSize.{key}")
    cwd = _type(process.get("cwd", "/"), str, "process.cwd")
    if not cwd.startswith("/"):
        raise ConfigError(f"config.json: process.cwd {cwd!r} is not absolute", "give an absolute path")
    _type(process.setdefault("env", []), list, "process.env")
    user = _type(process.setdefault("user", {}), dict, "process.user")
    for key in ("uid", "gid"):
        _type(user.setdefault(key, 0), int, f"process.user.{key}")
    for gid in _type(user.setdefault("additionalGids", []), list, "process.user.additionalGids"):
        _type(gid, int, "process.user.additionalGids[]")
    if user.get("username"):
        raise _refuse("process.user.username")
    if "umask" in user:
        _type(user["umask"], int, "process.user.umask")
    for field in REFUSED_PROCESS:
        if process.get(field):
            raise _refuse(f"process.{field}")
    capabilities = _type(process.setdefault("capabilities", {}), dict, "process.capabilities")
    known = caps.all_names()
    for kind in ("bounding", "effective", "inheritable", "permitted", "ambient"):
        for name in _type(capabilities.setdefault(kind, []), list, f"process.capabilities.{kind}"):
            if not isinstance(name, str) or caps.normalise(name) not in known:
                raise ConfigError(f"config.json: process.capabilities.{kind}: unknown capability {name!r}",
                                  "use names such as CAP_CHOWN")
    # The kernel raises an ambient capability only if it is permitted and inheritable.
    # `runc spec` writes ambient caps with no inheritable set (inheritable became empty
    # after CVE-2022-29162), and runc skips them: so does minirun-oci, saying so.
    names = {kind: {caps.normalise(n) for n in capabilities[kind]} for kind in ("permitted", "inheritable")}
    skipped = [n for n in capabilities["ambient"]
               if caps.normalise(n) not in names["permitted"] or caps.normalise(n) not in names["inheritable"]]
    if skipped:
        import sys
        print(f"minirun-oci: warning: process.capabilities.ambient: {', '.join(skipped)} not raised: the "
              "kernel raises only what is both permitted and inheritable (runc skips them too)", file=sys.stderr)
        capabilities["ambient"] = [n for n in capabilities["ambient"] if n not in skipped]
    for i, limit in enumerate(_type(process.setdefault("rlimits", []), list, "process.rlimits")):
        kind = _type(limit.get("type"), str, f"process.rlimits[{i}].type")
        if not kind.startswith("RLIMIT_") or kind[len("RLIMIT_"):] not in RLIMITS:
            raise ConfigError(f"config.json: process.rlimits[{i}]: unknown type {kind!r}", "use e.g. RLIMIT_NOFILE")
        _type(limit.get("soft"), int, f"process.rlimits[{i}].soft")
        _type(limit.get("hard"), int, f"process.rlimits[{i}].hard")
    if "oomScoreAdj" in process:
        _type(process["oomScoreAdj"], int, "process.oomScoreAdj")
    _type(process.setdefault("noNewPrivileges", False), bool, "process.noNewPrivileges")


def _linux(linux: dict) -> None:
    for field in REFUSED_LINUX:
        if linux.get(field):
            raise _refuse(f"linux.{field}")
    if linux.get("mountLabel"):
        _type(linux["mountLabel"], str, "linux.mountLabel")
        if os.path.exists(os.path.join(SELINUX_FS, "enforce")):     # a label this host would have to apply
            raise _refuse("linux.mountLabel", "SELinux is enabled here and minirun-oci does not label mounts")
    seccomp = _type(linux.get("seccomp") or {}, dict, "linux.seccomp")
    for field in ("listenerPath", "listenerMetadata"):
        if seccomp.get(field):
            raise _refuse(f"linux.seccomp.{field}")
    from ..linux.cgroups import ocigroup, ociresources as res
    ocigroup.check_path(_type(linux.get("cgroupsPath", ""), str, "linux.cgroupsPath"))
    resources = _type(linux.get("resources") or {}, dict, "linux.resources")
    for key, value in resources.items():
        if value and key not in res.SUPPORTED:
            raise _refuse(f"linux.resources.{key}", "only devices, memory, pids, cpu, hugepageLimits and "
                                                    "network are supported")
    for group, known in (("cpu", res.CPU_KEYS), ("memory", res.MEMORY_KEYS)):
        for key, value in _type(resources.get(group) or {}, dict, f"linux.resources.{group}").items():
            if key not in known:
                if value not in (None, "", 0, False):
                    raise _refuse(f"linux.resources.{group}.{key}")
                continue
            kind = str if key in ("cpus", "mems") else bool if key in ("disableOOMKiller", "useHierarchy",
                                                                        "checkBeforeUpdate") else int
            if value is not None:
                _type(value, kind, f"linux.resources.{group}.{key}")
    for i, entry in enumerate(_type(resources.get("hugepageLimits") or [], list, "linux.resources.hugepageLimits")):
        where = f"linux.resources.hugepageLimits[{i}]"
        size = _type(_type(entry, dict, where).get("pageSize"), str, where + ".pageSize")
        if not (size[:-2].isdigit() and size[-2:] in ("KB", "MB", "GB")):
            raise ConfigError(f"config.json: {where}.pageSize: {size!r} is not a page size",
                              "write it as the kernel does: 2MB, 1GB, 64KB")
        if _type(entry.get("limit"), int, where + ".limit") < 0:
            raise ConfigError(f"config.json: {where}.limit: must not be negative", "give a limit in bytes")
    network = _type(resources.get("network") or {}, dict, "linux.resources.network")
    class_id = network.get("classID")
    if class_id is not None and not 0 <= _type(class_id, int, "linux.resources.network.classID") < 1 << 32:
        raise ConfigError("config.json: linux.resources.network.classID: not a 32-bit class id", "give 0 to 4294967295")
    for i, entry in enumerate(_type(network.get("priorities") or [], list, "linux.resources.network.priorities")):
        where = f"linux.resources.network.priorities[{i}]"
        name = _type(_type(entry, dict, where).get("name"), str, where + ".name")
        if not 0 < len(name) < 16 or any(c.isspace() or c == "/" for c in name):
            raise ConfigError(f"config.json: {where}.name: {name!r} is not an interface name",
                              "give a name of at most 15 characters, with no space or '/'")
        if _type(entry.get("priority"), int, where + ".priority") < 0:
            raise ConfigError(f"config.json: {where}.priority: must not be negative", "give 0 or more")
    pids = _type(resources.get("pids") or {}, dict, "linux.resources.pids")
    if pids:
        _type(pids.get("limit"), int, "linux.resources.pids.limit")
    for i, entry in enumerate(_type(resources.get("devices") or [], list, "linux.resources.devices")):
        try:
            res.rule(_type(entry, dict, f"linux.resources.devices[{i}]"))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"config.json: linux.resources.devices[{i}]: bad {exc}",
                              "use type a, b or c and access made of r, w and m") from None
    seen = set()
    for i, ns in enumerate(_type(linux.setdefault("namespaces", []), list, "linux.namespaces")):
        kind = _type(ns.get("type"), str, f"linux.namespaces[{i}].type")
        if kind == "user" and ns.get("path"):
            raise _refuse("linux.namespaces: user with a path", "minirun-oci makes new user namespaces only")
        if kind == "time":
            raise _refuse("linux.namespaces: time")
        if kind not in NAMESPACE_TYPES:
            raise ConfigError(f"config.json: linux.namespaces[{i}]: unknown type {kind!r}",
                              f"use one of {', '.join(NAMESPACE_TYPES)}")
        if kind in seen:
            raise ConfigError(f"config.json: linux.namespaces: {kind} given twice", "give each type once")
        seen.add(kind)
        if "path" in ns:
            _type(ns["path"], str, f"linux.namespaces[{i}].path")
    for key in ("uidMappings", "gidMappings"):
        for j, entry in enumerate(_type(linux.get(key) or [], list, f"linux.{key}")):
            for field in ("containerID", "hostID", "size"):
                if _type(entry, dict, f"linux.{key}[{j}]").get(field, -1) < 0:
                    raise ConfigError(f"config.json: linux.{key}[{j}].{field} must be a number from 0",
                                      "fix the mapping")
        if linux.get(key) and "user" not in seen:
            raise ConfigError(f"config.json: linux.{key} without a user namespace",
                              "add {\"type\": \"user\"} to linux.namespaces, or drop the mappings")
    if "user" in seen and not (linux.get("uidMappings") and linux.get("gidMappings")):
        raise ConfigError("config.json: a user namespace needs linux.uidMappings and linux.gidMappings",
                          "map the container's root to a host uid and gid range")
    if linux.get("rootfsPropagation", "") not in PROPAGATION:
        raise ConfigError(f"config.json: linux.rootfsPropagation {linux['rootfsPropagation']!r} is unknown",
                          f"use one of {', '.join(PROPAGATION[1:])}")
    for key, value in _type(linux.setdefault("sysctl", {}), dict, "linux.sysctl").items():
        _type(value, str, f"linux.sysctl[{key}]")
        if "/" in key or ".." in key:
            raise ConfigError(f"config.json: linux.sysctl: bad name {key!r}", "use names such as net.ipv4.ip_forward")
        needs = _sysctl_namespace(key)
        if needs is None:
            raise ConfigError(f"config.json: linux.sysctl {key} is not namespaced: it would change the host",
                              "drop it (only net.*, the IPC kernel.* keys, fs.mqueue.* and kernel.hostname "
                              "or domainname can be set)")
        if needs not in seen:
            raise ConfigError(f"config.json: linux.sysctl {key} needs a {needs} namespace of the container's",
                              f"add {{\"type\": \"{needs}\"}} to linux.namespaces, or drop it")
    for field in ("maskedPaths", "readonlyPaths"):
        for path in _type(linux.setdefault(field, []), list, f"linux.{field}"):
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"config.json: linux.{field}: {path!r} is not an absolute path",
                                  "give absolute paths")
    for i, dev in enumerate(_type(linux.setdefault("devices", []), list, "linux.devices")):
        path = _type(dev.get("path"), str, f"linux.devices[{i}].path")
        if not path.startswith("/dev/"):
            raise ConfigError(f"config.json: linux.devices[{i}].path {path!r} is not under /dev",
                              "give paths under /dev")
        if dev.get("type") not in ("c", "b", "u", "p"):
            raise ConfigError(f"config.json: linux.devices[{i}].type must be c, b, u or p", "fix the type")
        for key in ("major", "minor"):
            if dev.get("type") != "p":
                _type(dev.get(key), int, f"linux.devices[{i}].{key}")


def host_id(mappings: list, inside: int) -> int:
    """The host id a user namespace's mappings give the container's id inside."""
    for m in mappings:
        if m["containerID"] <= inside < m["containerID"] + m["size"]:
            return m["hostID"] + inside - m["containerID"]
    raise UsageError(f"config.json: the user namespace maps no host id to the container's {inside}",
                     "map the container's root (containerID 0) in linux.uidMappings and gidMappings")


def signal_number(text: str) -> int:
    """kill's SIGNAL: a number, or a name with or without SIG (TERM, SIGKILL)."""
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signal, name, None) if name[3:4] != "_" else None     # not SIG_DFL, SIG_IGN
        number = number if isinstance(number, int) and 0 < number < signal.NSIG else None
        if number is not None:
            return int(number)
    raise UsageError(f"unknown signal {text!r}", "give a number or a name such as TERM, SIGKILL or 9")


_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _sysctl_namespace(key: str) -> str | None:
    """The namespace whose copy of key a container may set, or None: a key of the
    whole host (runc's rules)."""
    if key.startswith("net."):
        return "network"
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None
