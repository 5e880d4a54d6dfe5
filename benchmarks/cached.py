"""Cached work should be nearly free (as root):

    .venv/bin/python benchmarks/cached.py [RUNS] [FIXTURES_DIR]      (default 15 runs)

In a private store it loads the fixtures, then times, as medians of cold CLI runs:

    minirun load IMAGE          again, every layer already present (target <= 100 ms),
                                for a small image (busybox) and a 200-layer one
    minirun pull REF            again, against a local docker-registry (if installed)
    minirun images / ps -a      with 100 images and 100 containers in the store
                                (target <= 50 ms above `python -c pass`)

The 100 images share busybox's layer and differ in their config (one OCI layout
with 100 manifests); the 100 containers are exited `run`s of busybox.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks import common  # noqa: E402

VENV_BIN = Path(sys.executable).parent
MINIRUN = str(VENV_BIN / "minirun")


# Timed runs use byte-code caches, as an installed minirun does: a shell with
# PYTHONDONTWRITEBYTECODE=1 would recompile every module on every run.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def check(argv: list[str], env: dict) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def median_ms(argv: list[str], env: dict | None, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode().strip()}")
    return statistics.median(times) * 1000


def hundred_images(base: Path, dest: Path, count: int = 100) -> None:
    """An OCI layout of `count` images over base's layers, differing only in config."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (base / "blobs" / "sha256").iterdir():
        shutil.copyfile(blob, blobs / blob.name)

    def put(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    index = json.loads((base / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    descriptors = []
    for i in range(count):
        config.setdefault("config", {})["Env"] = [f"BENCH_IMAGE={i}"]
        manifest["config"] = put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        desc = put(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
        desc["annotations"] = {"org.opencontainers.image.ref.name": f"localhost/bench{i}:latest"}
        descriptors.append(desc)
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": descriptors}))


def main() -> None:
    runs, fixtures, work = common.start("cached.py", 15)
    registry = None
    try:
        env = dict(os.environ, MINIRUN_ROOT=str(work / "store"))
        rows = [("python -c pass", median_ms([sys.executable, "-c", "pass"], None, runs), None)]
        for name, path in (("busybox", fixtures / "oci" / "busybox"),
                           ("layers200 (200 layers)", fixtures / "docker-archive" / "layers200.tar")):
            check([MINIRUN, "load", str(path)], env)
            rows.append((f"load {name}, all cached", median_ms([MINIRUN, "load", str(path)], env, runs), 100))
        from tests.integration.registry import DOCKER_REGISTRY, Registry
        if DOCKER_REGISTRY and shutil.which("skopeo"):
            registry = Registry(work / "registry")
            ref = f"{registry.address}/bench/busybox:latest"
            check(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                   f"oci:{fixtures / 'oci' / 'busybox'}:latest", f"docker://{ref}"], env)
            check([MINIRUN, "pull", ref], env)
            rows.append(("pull busybox, all cached", median_ms([MINIRUN, "pull", ref], env, runs), 100))
        hundred_images(fixtures / "oci" / "busybox", work / "hundred")
        check([MINIRUN, "load", "-q", str(work / "hundred")], env)
        for i in range(100):
            check([MINIRUN, "run", "--name", f"bench{i}", "busybox", "true"], env)
        python = rows[0][1]
        images = median_ms([MINIRUN, "images"], env, runs)
        ps = median_ms([MINIRUN, "ps", "-a"], env, runs)
        listed = len(check([MINIRUN, "images", "-q"], env).split()), len(check([MINIRUN, "ps", "-aq"], env).split())
        rows.append((f"images ({listed[0]} images)", images, None))
        rows.append((f"ps -a ({listed[1]} containers)", ps, None))
        print(f"cached work, medians of {runs} cold CLI runs ({os.cpu_count()} CPUs)")
        print(f"{'command':40} {'median ms':>10}   target")
        for name, value, limit in rows:
            target = f"<= {limit} ms: {'met' if value <= limit else 'MISSED'}" if limit else ""
            print(f"{name:40} {value:10.1f}   {target}")
        for name, value in (("images", images), ("ps -a", ps)):
            above = value - python
            print(f"{name} above python start-up: {above:.1f} ms (target <= 50 ms: "
                  f"{'met' if above <= 50 else 'MISSED'})")
    finally:
        if registry is not None:
            registry.stop()
        env = dict(os.environ, MINIRUN_ROOT=str(work / "store"))
        subprocess.run([MINIRUN, "prune", "-f"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
