"""oci/runtimespec.py: the bundle's config.json as data."""

from minirun.linux.caps import DOCKER_DEFAULT
from minirun.oci import runtimespec


def test_nofile_never_above_the_callers_hard_limit():
    assert runtimespec.nofile_limits(20000) == (1024, 20000)
    assert runtimespec.nofile_limits(512) == (512, 512)
    assert runtimespec.nofile_limits(1 << 30) == (1024, 1 << 20)
    assert runtimespec.nofile_limits(-1) == (1024, 1 << 20)          # RLIM_INFINITY


def test_config_holds_the_process_and_runc_spec_defaults():
    doc = runtimespec.config(("/bin/sh", "-c", "true"), ("PATH=/bin",), "/work", 1000, 100, (100, 27),
                             "abc", DOCKER_DEFAULT, 20000)
    proc = doc["process"]
    assert proc["args"] == ["/bin/sh", "-c", "true"] and proc["cwd"] == "/work"
    assert proc["user"] == {"uid": 1000, "gid": 100, "additionalGids": [27]}
    assert proc["terminal"] is False and proc["noNewPrivileges"] is True
    assert "CAP_SYS_ADMIN" not in proc["capabilities"]["bounding"]
    assert len(proc["capabilities"]["effective"]) == len(DOCKER_DEFAULT)
    assert doc["root"] == {"path": "rootfs", "readonly": False} and doc["hostname"] == "abc"
    assert [m["destination"] for m in doc["mounts"]][:6] == ["/proc", "/dev", "/dev/pts", "/dev/shm",
                                                             "/dev/mqueue", "/sys"]
    assert {ns["type"] for ns in doc["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    assert "/proc/kcore" in doc["linux"]["maskedPaths"] and "/proc/sys" in doc["linux"]["readonlyPaths"]
