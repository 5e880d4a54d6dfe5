"""Pull timings against a local docker-registry (as root):

    .venv/bin/python benchmarks/pull.py [FIXTURES_DIR]

Pushes myapp and myotherapp with skopeo, then in an empty store times
`minirun pull` of myapp, of myotherapp (sharing two layers), and a no-op
re-pull of myapp, printing bytes fetched (from the registry's access log)
and HTTP requests made for each.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.integration.registry import Registry  # noqa: E402


def bytes_served(log: Path, start: int) -> tuple[int, int]:
    """(bytes in blob and manifest responses, requests) logged since offset start."""
    text = log.read_text(errors="replace")[start:]
    total, count = 0, 0
    for m in re.finditer(r'"(?:GET|HEAD) /v2/\S+ HTTP/1.1" \d+ (\d+)', text):
        total += int(m.group(1))
        count += 1
    return total, count


def main() -> None:
    fixtures = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "fixtures-out")
    with tempfile.TemporaryDirectory() as tmp:
        reg = Registry(Path(tmp) / "registry")
        try:
            for name in ("myapp", "myotherapp"):
                subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                f"oci:{fixtures}/oci/{name}:latest", f"docker://{reg.address}/dia/{name}:latest"],
                               check=True)
            env = dict(os.environ, MINIRUN_ROOT=f"{tmp}/store")
            print(f"{'step':<28}{'time':>10}{'bytes':>12}{'requests':>10}")
            for step, name in (("pull myapp (empty store)", "myapp"), ("pull myotherapp", "myotherapp"),
                               ("pull myapp again (no-op)", "myapp")):
                offset = len(reg.log.read_text(errors="replace"))
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "minirun", "pull", "-q", f"{reg.address}/dia/{name}"],
                               env=env, check=True, stdout=subprocess.DEVNULL)
                elapsed = time.perf_counter() - start
                time.sleep(0.2)   # let the registry flush its access log
                size, requests = bytes_served(reg.log, offset)
                print(f"{step:<28}{elapsed * 1000:>8.0f}ms{size:>12}{requests:>10}")
        finally:
            reg.stop()


if __name__ == "__main__":
    main()
