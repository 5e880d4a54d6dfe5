"""Extraction timings on a Debian minbase image, one gzip layer (as root):

    .venv/bin/python benchmarks/extract.py [--runs N] [--only TOOL,...]

The image is built once and cached outside the repo (MINIRUN_BENCH_CACHE,
default /var/cache/minirun-bench): `debootstrap --variant=minbase bookworm`
(debootstrap is installed with apt-get when missing), the rootfs tarred as one
gzip layer (numeric owners, names sorted; the .debs and apt lists removed, as
in Debian's own images), and an OCI layout holding it.

Then each tool extracts that layer RUNS times (median printed), the order of
the tools rotating from run to run:

    tar         GNU `tar -xzf LAYER -C DIR`
    tarfile     Python's tarfile extractall (numeric owners)
    umoci       `umoci unpack --image LAYOUT:TAG BUNDLE`
    minirun     `minirun load -q LAYOUT` into a fresh MINIRUN_ROOT; it returns after
                extraction, the diff_id and blob digests, and the layer's file manifest

Targets (issue 7): minirun <= 1.0x tar, and umoci >= 1.5x minirun.

Root is needed because extraction keeps owners and makes device nodes. The root
filesystem here is ext4 without a journal, where file creation slows 6-9x for
~30 s after a big `rm -rf`: finished output is renamed into a trash dir between
timed runs and deleted only at the end.
"""

from __future__ import annotations

import argparse
import gzip
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
CACHE = Path(os.environ.get("MINIRUN_BENCH_CACHE", "/var/cache/minirun-bench"))
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
TAG = "minbase"
TOOLS = ("tar", "tarfile", "umoci", "minirun")
TARGET_VS_TAR = 1.0
TARGET_VS_UMOCI = 1.5
SETTLE = 35          # seconds for the disk to recover after deleting leftover trash


# ---------------------------------------------------------------- the image

def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


def build_rootfs() -> Path:
    rootfs = CACHE / "rootfs"
    if rootfs.is_dir():
        return rootfs
    if shutil.which("debootstrap") is None:
        print("installing debootstrap", flush=True)
        sh("apt-get", "update", "-qq")
        sh("apt-get", "install", "-y", "-qq", "debootstrap")
    partial = CACHE / "rootfs.partial"
    if partial.exists():
        shutil.rmtree(partial)
    print(f"debootstrap --variant=minbase {SUITE} (once; cached in {CACHE})", flush=True)
    sh("debootstrap", "--variant=minbase", SUITE, str(partial), MIRROR,
       stdout=subprocess.DEVNULL)
    slim(partial)
    partial.rename(rootfs)
    return rootfs


def slim(rootfs: Path) -> None:
    """What Debian's own images leave out: the downloaded .debs and the apt lists."""
    for sub, keep in (("var/cache/apt/archives", {"partial", "lock"}),
                      ("var/lib/apt/lists", {"partial", "lock"})):
        for entry in (rootfs / sub).iterdir():
            if entry.name not in keep and not entry.is_dir():
                entry.unlink()


def build_layer(rootfs: Path) -> Path:
    """One gzip layer of the rootfs; its diff_id is written beside it."""
    layer = CACHE / "layer.tar.gz"
    if layer.exists() and (CACHE / "layer.diff_id").exists():
        return layer
    print("tarring the rootfs into one gzip layer", flush=True)
    partial = CACHE / "layer.tar.gz.partial"
    tar = subprocess.Popen(["tar", "--numeric-owner", "--sort=name", "-C", str(rootfs),
                            "-cf", "-", "."], stdout=subprocess.PIPE)
    diff = hashlib.sha256()
    with gzip.open(partial, "wb", compresslevel=6) as out:
        while chunk := tar.stdout.read(1 << 20):
            diff.update(chunk)
            out.write(chunk)
    if tar.wait() != 0:
        raise SystemExit("tar of the rootfs failed")
    partial.rename(layer)
    (CACHE / "layer.diff_id").write_text("sha256:" + diff.hexdigest())
    return layer


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def build_layout(layer: Path) -> Path:
    """An OCI layout with the layer (hard-linked: the same page cache as tar reads)."""
    layout = CACHE / "oci"
    if (layout / "index.json").exists():
        return layout
    print("writing the OCI layout", flush=True)
    partial = CACHE / "oci.partial"
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "blobs" / "sha256").mkdir(parents=True)
    digest = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    os.link(layer, partial / "blobs" / "sha256" / digest.hexdigest())
    diff_id = (CACHE / "layer.diff_id").read_text().strip()
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Cmd": ["/bin/bash"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "debootstrap minbase"}]}
    config_desc = _blob(partial, json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": "sha256:" + digest.hexdigest(), "size": layer.stat().st_size}]}
    manifest_desc = _blob(partial, json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
        "annotations": {"org.opencontainers.image.ref.name": TAG}}]}
    (partial / "index.json").write_text(json.dumps(index))
    (partial / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    partial.rename(layout)
    return layout


# ---------------------------------------------------------------- the runs

class Bench:
    def __init__(self, layer: Path, layout: Path, work: Path):
        self.layer, self.layout, self.work = layer, layout, work
        self.trash = work / "trash"
        self.trash.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def fresh(self, name: str) -> Path:
        self.count += 1
        path = self.work / f"{name}-{self.count}"
        path.mkdir()
        return path

    def discard(self, path: Path) -> None:
        """Rename, not delete: deleting slows the file creation of the next runs."""
        path.rename(self.trash / path.name)

    def run(self, tool: str) -> float:
        out = self.fresh(tool)
        if tool == "tar":
            argv = ["tar", "-xzf", str(self.layer), "-C", str(out)]
            env = None
        elif tool == "tarfile":
            code = ("import sys, tarfile\n"
                    "with tarfile.open(sys.argv[1], 'r:gz') as t:\n"
                    "    t.extractall(sys.argv[2], numeric_owner=True, filter='fully_trusted')")
            argv = [sys.executable, "-c", code, str(self.layer), str(out)]
            env = None
        elif tool == "umoci":
            argv = ["umoci", "unpack", "--image", f"{self.layout}:{TAG}", str(out / "bundle")]
            env = None
        else:
            argv = [sys.executable, "-m", "minirun", "load", "-q", str(self.layout)]
            env = dict(os.environ, MINIRUN_ROOT=str(out / "root"), PYTHONPATH=str(REPO))
        os.sync()                       # no earlier run's writeback lands in this one
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}")
        self.discard(out)
        return elapsed


def warm(*paths: Path) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 22):
                pass


def empty_trash(work: Path, wait: bool) -> None:
    trash = work / "trash"
    if trash.exists() and any(trash.iterdir()):
        print(f"deleting old output in {trash}", flush=True)
        shutil.rmtree(trash)
        if wait:
            print(f"waiting {SETTLE} s for the disk to recover", flush=True)
            time.sleep(SETTLE)


def report(times: dict[str, list[float]], layer: Path, files: int) -> None:
    print()
    print(f"layer: {layer.stat().st_size / 1e6:.1f} MB gzip, {files} entries; "
          f"medians of {len(next(iter(times.values())))} runs")
    print(f"{'tool':<10} {'median s':>9}   runs")
    medians = {}
    for tool, values in times.items():
        medians[tool] = statistics.median(values)
        print(f"{tool:<10} {medians[tool]:>9.3f}   " + " ".join(f"{v:.3f}" for v in values))
    if "minirun" in medians:
        print()
        if "tar" in medians:
            ratio = medians["minirun"] / medians["tar"]
            verdict = "PASS" if ratio <= TARGET_VS_TAR else "FAIL"
            print(f"minirun / tar   = {ratio:.2f}x   (target <= {TARGET_VS_TAR:.1f}x)  {verdict}")
        if "umoci" in medians:
            ratio = medians["umoci"] / medians["minirun"]
            verdict = "PASS" if ratio >= TARGET_VS_UMOCI else "FAIL"
            print(f"umoci / minirun = {ratio:.2f}x   (target >= {TARGET_VS_UMOCI:.1f}x)  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    args = parser.parse_args()
    tools = [t for t in args.only.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        raise SystemExit("run as root: extraction keeps owners and makes device nodes")
    CACHE.mkdir(parents=True, exist_ok=True)
    layer = build_layer(build_rootfs())
    layout = build_layout(layer)
    files = int(subprocess.run(f"tar -tzf {layer} | wc -l", shell=True, capture_output=True,
                               text=True, check=True).stdout)
    work = CACHE / "work"
    empty_trash(work, wait=True)
    bench = Bench(layer, layout, work)
    warm(layer)
    for tool in tools:                                  # one untimed run each: caches, first-run costs
        bench.run(tool)
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    for i in range(args.runs):
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        if i % 2:
            order.reverse()
        for tool in order:
            times[tool].append(bench.run(tool))
    report(times, layer, files)
    empty_trash(work, wait=False)


if __name__ == "__main__":
    main()
