"""Commit and save timings for a container whose upper dir holds ~100 MB (as root):

    .venv/bin/python benchmarks/commit.py [MEGABYTES] [FIXTURES_DIR]

The container writes half incompressible bytes (urandom) and half text-like
bytes in 200 files. Each step is timed three times (median printed) and
compared with a reference measured in the same run on the same upper dir:

    minirun commit          vs  cp -a of the upper dir + `tar -cf - | gzip -6`
                                (what commit does: copy into the cache, then pack)
    minirun save            vs  `tar -cf` of the image's blobs (docker-archive decompresses,
                                so `gzip -d` of the new layer is added to its reference)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = 3


def minirun(env: dict, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "minirun", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"minirun {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(fn, before=None) -> float:
    times = []
    for i in range(RUNS):
        if before:
            before(i)
        times.append(timed(lambda: fn(i)))
    return statistics.median(times)


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-c", cmd], check=True)


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    fixtures = Path(sys.argv[2] if len(sys.argv) > 2 else REPO / "fixtures-out")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        env = dict(os.environ, MINIRUN_ROOT=f"{tmp}/store", PYTHONPATH=str(REPO))
        minirun(env, "load", "-q", str(fixtures / "oci" / "busybox"))
        files = 200
        each_kb = megabytes * 1024 // files
        script = (f"mkdir -p /data && i=0; while [ $i -lt {files} ]; do "
                  f"if [ $((i % 2)) = 0 ]; then head -c {each_kb}k /dev/urandom > /data/r$i; "
                  f"else yes \"line $i of some text that compresses\" | head -c {each_kb}k > /data/t$i; fi; "
                  "i=$((i+1)); done")
        minirun(env, "run", "--name", "big", "busybox", "sh", "-c", script)
        upper = json.loads(minirun(env, "inspect", "big"))[0]["UpperDir"]
        size = int(subprocess.run(["du", "-sb", upper], capture_output=True, text=True).stdout.split()[0])

        commit = median_of(lambda i: minirun(env, "commit", "big", f"big:{i}"))
        reference = median_of(lambda i: sh(f"cp -a --reflink=auto {upper} {tmp}/copy{i} && "
                                           f"tar -C {tmp}/copy{i} -cf - . | gzip -6 > {tmp}/ref{i}.tgz"))
        save_times = {}
        for fmt in ("docker-archive", "oci-archive"):
            save_times[fmt] = median_of(lambda i: minirun(env, "save", "--format", fmt, "-o",
                                                          f"{tmp}/{fmt}-{i}.tar", "big:0"))
        blobs = f"{tmp}/store/blobs/sha256"
        tar_ref = median_of(lambda i: sh(f"tar -C {blobs} -cf {tmp}/blobs{i}.tar ."))
        gunzip = median_of(lambda i: sh(f"gzip -dc {tmp}/ref0.tgz > {tmp}/plain{i}.tar"))

        print(f"upper dir: {size / 1e6:.1f} MB in {files} files (half random, half text)")
        print(f"{'step':<28}{'minirun':>10}{'reference':>11}{'ratio':>8}")
        print(f"{'commit':<28}{commit:>9.2f}s{reference:>10.2f}s{commit / reference:>7.2f}x"
              "   ref: cp -a + tar | gzip -6")
        for fmt, took in save_times.items():
            ref = tar_ref + (gunzip if fmt == "docker-archive" else 0)
            print(f"{'save ' + fmt:<28}{took:>9.2f}s{ref:>10.2f}s{took / ref:>7.2f}x"
                  f"   ref: tar of the blobs{' + gzip -d of the layer' if fmt == 'docker-archive' else ''}")
        print(f"{'commit + save docker-archive':<28}{commit + save_times['docker-archive']:>9.2f}s")


if __name__ == "__main__":
    main()
