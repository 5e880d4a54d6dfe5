"""`minirun layers IMAGE --files`, `which` and `diff --stat` on the Debian minbase
image (one layer, ~6,700 files; built by benchmarks/extract.py, cached in
/var/cache/minirun-bench), against `minirun diff` of a run that touched every
file (so its upper dir holds a copy of each). As root:

    .venv/bin/python benchmarks/layerinfo.py [RUNS]

Prints the best of RUNS (default 5) for each, in-process (the API call: what the
issue's target is about) and as a whole command (python start and typer
included), the ratios to diff, and the image's efficiency figures.
Targets: the layer figures in at most 2x diff's time and 0.5 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, start  # noqa: E402

TARGET_VS_DIFF = 2.0
TARGET_SECONDS = 0.5


def best(runs: int, action) -> float:
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        action()
        times.append(time.perf_counter() - begin)
    return min(times)


def main() -> None:
    runs, _, work = start("layerinfo.py", 5, "overlay mounts")
    import extract
    layout = extract.build_layout(extract.build_layer(extract.build_rootfs()))
    os.environ["MINIRUN_ROOT"] = str(work / "store")
    cli = [sys.executable, "-m", "minirun"]
    try:
        subprocess.run([*cli, "load", str(layout)], check=True, stdout=subprocess.DEVNULL)
        image = "localhost/oci:minbase"
        subprocess.run([*cli, "run", "--name", "touched", image, "sh", "-c",
                        "find / -xdev -type f -exec touch -c {} +"], check=True)
        sys.path.insert(0, str(REPO))
        from minirun.api import control, layerinfo
        from minirun.store import open_store
        store = open_store(create=False)
        files = len(store.layers.file_manifest(store.images.resolve(image)[1].layers[0].key))
        timed = {
            "diff": lambda: control.diff(store, "touched"),
            "layers --files": lambda: layerinfo.analyze(store, image),
            "which": lambda: layerinfo.which(store, image, "/usr/bin/bash"),
            "diff --stat": lambda: layerinfo.upper_stat(store, "touched"),
        }
        api = {name: best(runs, action) for name, action in timed.items()}
        commands = {"diff": ["diff", "touched"], "layers --files": ["layers", image, "--files"],
                    "which": ["which", image, "/usr/bin/bash"], "diff --stat": ["diff", "--stat", "touched"]}
        whole = {name: best(max(1, runs // 2), lambda argv=argv: subprocess.run(
            [*cli, *argv], check=True, stdout=subprocess.DEVNULL)) for name, argv in commands.items()}
        _, _, result = layerinfo.analyze(store, image)
        upper = layerinfo.upper_totals(layerinfo.upper_stat(store, "touched"))
        print(f"Debian minbase: {files} manifest entries; the run copied up {upper['CopiedUp']} files "
              f"({upper['CopiedBytes']} bytes), {upper['MetadataOnly']} of them metadata only")
        print(f"efficiency {result.efficiency:.6f}, wasted bytes {result.wasted_bytes}, "
              f"user wasted {result.user_wasted:.6f} (user size {result.user_size})")
        print(f"{'':16} {'in-process':>11} {'x diff':>7} {'command':>9} {'x diff':>7}")
        for name in timed:
            print(f"{name:16} {api[name]:10.3f}s {api[name] / api['diff']:6.2f}x "
                  f"{whole[name]:8.3f}s {whole[name] / whole['diff']:6.2f}x")
        ok = api["layers --files"] <= min(TARGET_SECONDS, TARGET_VS_DIFF * api["diff"])
        print(f"target (layer figures <= {TARGET_VS_DIFF}x diff and <= {TARGET_SECONDS}s): "
              f"{'met' if ok else 'MISSED'}")
    finally:
        subprocess.run([*cli, "rm", "-f", "touched"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
