"""An OCI runtime bundle's config.json (runtime-spec 1.1) as data. Pure: the
caller brings the process (argv, env, cwd, numeric ids, hostname) and the
caller's RLIMIT_NOFILE hard limit; this module adds what every bundle gets.

The defaults are those of a plain `runc spec` and of Docker, written out here:
new pid, ipc, uts, mount and network namespaces (no user namespace, so the ids
are the host's); Docker's default capability set (linux/caps.py DOCKER_DEFAULT,
passed in); /proc, a tmpfs /dev with /dev/pts, /dev/shm and /dev/mqueue, a
read-only /sys and /sys/fs/cgroup; the /proc and /sys paths a container must
not read masked, and the kernel's tunables read-only; no device but the ones
every runtime creates; no new privileges.

RLIMIT_NOFILE: a runtime sets the container's limits with setrlimit, which
cannot raise a hard limit above the caller's without CAP_SYS_RESOURCE (root
lacks it on some hosts, where podman's 1048576 fails). So the hard limit is the
caller's (at most 1048576) and the soft one 1024, as runc spec has it.
"""

from __future__ import annotations

VERSION = "1.1.0"
NOFILE_CEILING = 1 << 20
NOFILE_SOFT = 1024
NAMESPACES = ("pid", "ipc", "uts", "mount", "network")

MASKED = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
          "/sys/firmware", "/sys/devices/virtual/powercap")
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_NO_EXEC = ["nosuid", "noexec", "nodev"]
MOUNTS = (
    ("/proc", "proc", "proc", []),
    ("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                      "mode=0620", "gid=5"]),
    ("/dev/shm", "tmpfs", "shm", [*_NO_EXEC, "mode=1777", "size=65536k"]),
    ("/dev/mqueue", "mqueue", "mqueue", _NO_EXEC),
    ("/sys", "sysfs", "sysfs", [*_NO_EXEC, "ro"]),
    ("/sys/fs/cgroup", "cgroup", "cgroup", [*_NO_EXEC, "relatime", "ro"]),
)


def nofile_limits(caller_hard: int) -> tuple[int, int]:
    """(soft, hard) for the container: never above the caller's hard limit."""
    hard = NOFILE_CEILING if caller_hard < 0 else min(caller_hard, NOFILE_CEILING)   # -1: unlimited
    return min(NOFILE_SOFT, hard), hard


def config(argv: tuple[str, ...], env: tuple[str, ...], cwd: str, uid: int, gid: int,
           groups: tuple[int, ...], hostname: str, caps: frozenset[str] | set[str],
           caller_nofile_hard: int) -> dict:
    """The config.json document, root.path "rootfs" (relative to the bundle)."""
    names = sorted(f"CAP_{cap.upper()}" for cap in caps)
    soft, hard = nofile_limits(caller_nofile_hard)
    user: dict = {"uid": uid, "gid": gid}
    extra = [g for g in groups if g != gid]
    if extra:
        user["additionalGids"] = extra
    return {
        "ociVersion": VERSION,
        "process": {
            "terminal": False,
            "user": user,
            "args": list(argv),
            "env": list(env),
            "cwd": cwd,
            "capabilities": {"bounding": names, "effective": names, "permitted": names},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": hard, "soft": soft}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": hostname,
        "mounts": [{"destination": dest, "type": kind, "source": source, **({"options": list(opts)} if opts else {})}
                   for dest, kind, source, opts in MOUNTS],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": kind} for kind in NAMESPACES],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READ_ONLY),
        },
    }
