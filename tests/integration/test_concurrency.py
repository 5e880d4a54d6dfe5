"""minirun racing with itself: parallel loads of overlapping images, parallel
runs of one image, rmi and prune against starting runs, and a lock wait that
times out naming the holder. Afterwards the store must be whole: fsck clean,
each layer stored once, every image runs, nothing left in tmp/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

from .conftest import overlay_mounts_under


def start(mr, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minirun", *args], env=mr.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str, str]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stdout, stderr))
    return out


def assert_store_whole(mr) -> None:
    fsck = mr("fsck")
    assert fsck.returncode == 0 and " 0 problems" in fsck.stdout, fsck.stdout + fsck.stderr
    assert os.listdir(mr.root / "tmp") == [] or \
        all(n.startswith("empty-lower") for n in os.listdir(mr.root / "tmp"))
    doc = json.loads((mr.root / "images.json").read_text())
    for image_id in doc["images"]:
        mr.ok("run", "--rm", image_id, "true")


def test_eight_parallel_loads_extract_each_layer_once(mr):
    jobs = [("myapp", "oci"), ("myotherapp", "oci"), ("busybox", "oci-archive"), ("myapp", "docker-archive"),
            ("myotherapp", "docker-archive"), ("busybox", "oci"), ("myapp", "oci-archive"),
            ("whiteouts", "oci")]
    began = time.monotonic()
    results = finish([start(mr, "load", mr.fixture_path(name, fmt)) for name, fmt in jobs])
    took = time.monotonic() - began
    assert all(code == 0 for code, _, _ in results), [r[2] for r in results if r[0]]
    extracted = Counter(line.split(":")[0] for _, out, _ in results for line in out.splitlines()
                        if "Extracted" in line)
    assert extracted and max(extracted.values()) == 1, extracted       # each blob extracted once
    keys = [json.loads((mr.root / "layers/sha256" / d / "meta.json").read_text())["diff_id"]
            for d in mr.layer_dirs()]
    assert len(keys) == len(set(keys))                                 # no layer stored twice
    assert_store_whole(mr)
    print(f"8 parallel loads: {took:.2f} s")


def test_sixteen_parallel_runs_of_one_image(mr):
    mr.load("busybox")
    began = time.monotonic()
    results = finish([start(mr, "run", "--rm", "busybox", "sh", "-c", f"echo run-{i} > /mine; cat /mine")
                      for i in range(16)])
    took = time.monotonic() - began
    assert [(code, out) for code, out, _ in results] == [(0, f"run-{i}\n") for i in range(16)]
    assert os.listdir(mr.root / "containers") == []
    assert not overlay_mounts_under(mr.root)
    assert_store_whole(mr)
    print(f"16 parallel runs: {took:.2f} s")


def test_rmi_and_prune_racing_with_starting_runs(mr):
    mr.load("myapp", "busybox")
    run = ("run", "--rm", "--pull", "never", "myapp", "cat", "/app/main.sh")
    runs = [start(mr, *run) for _ in range(6)]
    time.sleep(0.3)
    removers = [start(mr, "rmi", "-f", "myapp"), start(mr, "prune", "-f")]
    runs += [start(mr, *run) for _ in range(4)]
    results = finish(runs + removers)
    for code, out, err in results[:len(runs)]:
        # a run either started fully (and read its file) or never began, saying why in one line
        if code == 0:
            assert out.strip()
        else:
            assert code == 125 and len(err.strip().splitlines()) == 1 and "no such image" in err, err
    assert all(code == 0 for code, _, _ in results[len(runs):]), results[len(runs):]
    assert not overlay_mounts_under(mr.root)
    assert "myapp" not in mr.ok("images").stdout
    assert_store_whole(mr)
    mr.ok("prune", "-f")
    assert len(mr.layer_dirs()) == 1                                   # busybox's only


def test_a_lock_wait_times_out_naming_the_holder(mr):
    mr.load("busybox")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(mr.root / 'locks' / 'gc.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_SH)\n"
        "print('held', flush=True)\n"
        "time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        began = time.monotonic()
        result = mr("prune", "-f", env={"MINIRUN_LOCK_TIMEOUT": "1"})
        waited = time.monotonic() - began
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and f"pid {holder.pid}" in line and "timed out" in line, line
    assert "MINIRUN_LOCK_TIMEOUT" in line and waited < 20
    mr.ok("prune", "-f")                                    # the holder is gone: no stale lock

