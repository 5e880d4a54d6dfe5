"""The parser fuzzing of tests/unit/test_fuzz_parsers.py, run much longer:

    .venv/bin/python tools/fuzz_parsers.py [EXAMPLES_PER_PROPERTY]   (default 20000)

Each property (bytes, JSON values, broken valid documents, references) gets that
many inputs; any input that makes a parser fail with something other than a
one-line MinirunError is printed by hypothesis, shrunk to its simplest form.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    examples = sys.argv[1] if len(sys.argv) > 1 else "20000"
    start = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(REPO / "tests" / "unit" / "test_fuzz_parsers.py")],
                           env=dict(os.environ, MINIRUN_FUZZ_EXAMPLES=examples), cwd=REPO)
    print(f"{examples} inputs per property, {time.monotonic() - start:.0f} s, "
          f"{'no failures' if code == 0 else 'FAILURES above'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
