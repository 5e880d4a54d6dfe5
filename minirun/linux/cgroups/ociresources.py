"""linux.resources of an OCI config as cgroup interface files, for v1 and v2. Pure: no I/O.

plan(resources, version, extra_devices) -> {controller: [(file, value)]} in the order
they are written; a field this version cannot honour raises Unsupported naming it
(the caller turns it into one line). Kernel docs, Documentation/admin-guide/:

  field                    v1 (cgroup-v1/*.rst)                 v2 (cgroup-v2.rst)
  memory.limit             memory.limit_in_bytes                memory.max
  memory.reservation       memory.soft_limit_in_bytes           memory.low
  memory.swap (mem+swap)   memory.memsw.limit_in_bytes          memory.swap.max = swap - limit
  memory.kernelTCP         memory.kmem.tcp.limit_in_bytes       refused
  memory.swappiness        memory.swappiness                    refused
  memory.disableOOMKiller  memory.oom_control 1                 refused
  memory.kernel            refused everywhere: Linux 6.x accepts the write and ignores it
  pids.limit               pids.max ("max" for 0 or less)       pids.max
  cpu.shares               cpu.shares                           cpu.weight = 1 + (shares-2)*9999/262142 (runc's)
  cpu.period, cpu.quota    cpu.cfs_period_us, cpu.cfs_quota_us  cpu.max "QUOTA|max PERIOD"
  cpu.realtime*            cpu.rt_period_us, cpu.rt_runtime_us  refused
  cpu.cpus, cpu.mems       cpuset.cpus, cpuset.mems             cpuset.cpus, cpuset.mems
  cpu.idle                 refused                              cpu.idle
  devices                  devices.deny a, then each rule       a BPF_PROG_TYPE_CGROUP_DEVICE program
                                                                (linux/bpfdevices.py), not a file
  hugepageLimits[]         hugetlb.SIZE.limit_in_bytes          hugetlb.SIZE.max
  network.classID          net_cls.classid                      refused: v2 has no net_cls
  network.priorities[]     net_prio.ifpriomap "NAME PRIO"       refused: v2 has no net_prio
-1 means no limit wherever the spec allows it.
"""

from __future__ import annotations

# the devices every container gets (runtime-spec "Default Devices"): null, zero, full,
# random, urandom, tty, console, ptmx and the pts slaves
DEFAULT_ALLOWED = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
                   "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm")
MEMORY_KEYS = ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
               "useHierarchy", "checkBeforeUpdate")
CPU_KEYS = ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle")
SUPPORTED = ("devices", "memory", "pids", "cpu", "hugepageLimits", "network")   # linux.resources keys honoured at all


class Unsupported(Exception):
    """field, why: a resource this host's cgroup version cannot honour."""

    def __init__(self, field: str, why: str):
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def rule(entry: dict) -> tuple[bool, str]:
    """(allow, "TYPE MAJOR:MINOR ACCESS") of one linux.resources.devices entry."""
    def number(value) -> str:
        return "*" if value is None or value == -1 else str(int(value))
    kind = entry.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device type {kind!r}")
    access = entry.get("access") or "rwm"
    if set(access) - set("rwm"):
        raise ValueError(f"device access {access!r}")
    return bool(entry.get("allow")), f"{kind} {number(entry.get('major'))}:{number(entry.get('minor'))} {access}"


def device_rules(resources: dict, extra_allowed: list[str]) -> list[tuple[bool, str]] | None:
    """The ordered (allow, rule) list: deny all, the config's rules, then the defaults
    and linux.devices; None when the config gives no device rules."""
    rules = resources.get("devices") or []
    if not rules:
        return None
    return [(False, "a *:* rwm"), *map(rule, rules), *((True, text) for text in (*DEFAULT_ALLOWED, *extra_allowed))]


def _limit(value) -> str:
    return "max" if value is None or value < 0 else str(value)


def plan(resources: dict, version: str, extra_allowed: list[str] = ()) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}

    def put(controller: str, name: str, value) -> None:
        out.setdefault(controller, []).append((name, str(value)))
    if version == "v1":
        rules = device_rules(resources, list(extra_allowed))
        if rules:
            out["devices"] = [("devices.deny", "a")] + [
                ("devices.allow" if allow else "devices.deny", text) for allow, text in rules[1:]]
    memory = resources.get("memory") or {}
    if memory.get("kernel") not in (None, 0):
        raise Unsupported("linux.resources.memory.kernel", "kernel memory limits are not enforced by Linux 6.x "
                          "(the v1 file takes the value and ignores it)")
    if version == "v1":
        for key, name in (("limit", "memory.limit_in_bytes"), ("reservation", "memory.soft_limit_in_bytes"),
                          ("swap", "memory.memsw.limit_in_bytes"), ("kernelTCP", "memory.kmem.tcp.limit_in_bytes"),
                          ("swappiness", "memory.swappiness")):
            if memory.get(key) is not None:
                put("memory", name, memory[key] if memory[key] >= 0 else -1)
        if memory.get("disableOOMKiller"):
            put("memory", "memory.oom_control", 1)
        if memory.get("useHierarchy") is not None:
            put("memory", "memory.use_hierarchy", int(bool(memory["useHierarchy"])))
    else:
        for key in ("kernelTCP", "swappiness", "disableOOMKiller", "useHierarchy"):
            if memory.get(key) not in (None, False):
                raise Unsupported(f"linux.resources.memory.{key}", "cgroup v2 has no such setting")
        if memory.get("limit") is not None:
            put("memory", "memory.max", _limit(memory["limit"]))
        if memory.get("reservation") is not None:
            put("memory", "memory.low", _limit(memory["reservation"]))
        swap = memory.get("swap")
        if swap is not None:
            if swap >= 0 and (memory.get("limit") is None or memory["limit"] < 0 or swap < memory["limit"]):
                raise Unsupported("linux.resources.memory.swap", "on cgroup v2 it needs a limit no greater than it")
            put("memory", "memory.swap.max", "max" if swap < 0 else swap - memory["limit"])
    pids = resources.get("pids") or {}
    if pids.get("limit") is not None:
        put("pids", "pids.max", pids["limit"] if pids["limit"] > 0 else "max")
    _cpu(resources.get("cpu") or {}, version, put)
    for entry in resources.get("hugepageLimits") or []:
        # a size the kernel lacks ("3MB") has no file: the write fails and names it
        put("hugetlb", f"hugetlb.{entry['pageSize']}.{'limit_in_bytes' if version == 'v1' else 'max'}",
            entry["limit"])
    network = resources.get("network") or {}
    if network.get("classID") is not None or network.get("priorities"):
        if version != "v1":
            raise Unsupported("linux.resources.network", "cgroup v2 has no net_cls or net_prio controller")
        if network.get("classID") is not None:
            put("net_cls", "net_cls.classid", network["classID"])
        for entry in network.get("priorities") or []:
            put("net_prio", "net_prio.ifpriomap", f"{entry['name']} {entry['priority']}")
    return out


def _cpu(cpu: dict, version: str, put) -> None:
    given = {k: v for k, v in cpu.items() if v not in (None, "")}
    if version == "v1":
        if "idle" in given:
            raise Unsupported("linux.resources.cpu.idle", "cgroup v1 has no idle setting")
        if "burst" in given:
            raise Unsupported("linux.resources.cpu.burst", "minirun-oci sets it on cgroup v2 only")
        # a period before its quota or runtime: the kernel checks each against the other
        for key, name in (("shares", "cpu.shares"), ("period", "cpu.cfs_period_us"), ("quota", "cpu.cfs_quota_us"),
                          ("realtimePeriod", "cpu.rt_period_us"), ("realtimeRuntime", "cpu.rt_runtime_us")):
            if key in given:
                put("cpu", name, given[key])
    else:
        for key in ("realtimePeriod", "realtimeRuntime"):
            if key in given:
                raise Unsupported(f"linux.resources.cpu.{key}", "cgroup v2 has no realtime group scheduling files")
        if "shares" in given:
            put("cpu", "cpu.weight", 1 + (given["shares"] - 2) * 9999 // 262142 if given["shares"] >= 2 else 1)
        if "quota" in given or "period" in given:
            quota = given.get("quota", -1)
            put("cpu", "cpu.max", f"{'max' if quota < 0 else quota} {given.get('period', 100000)}")
        if "burst" in given:
            put("cpu", "cpu.max.burst", given["burst"])
        if "idle" in given:
            put("cpu", "cpu.idle", given["idle"])
    for key in ("cpus", "mems"):
        if key in given:
            put("cpuset", f"cpuset.{key}", given[key])
