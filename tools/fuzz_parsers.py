"""The parser fuzzing of tests/unit/test_fuzz_parsers.py, run much longer:

    .venv/bin/python tools/fuzz_parsers.py [--examples N] [--seed S] [TARGET...]

Every target (manifest, index, config, descriptor, reference, docker-archive,
oci-archive; all by default) gets N inputs (default 20000) from the same
strategies as the suite. Prints, per target, how many inputs it ran and how
many the parser accepted or refused with a one-line error; and for a failure,
the exception and hypothesis's shrunk input. Exits 1 if any target failed.
No hypothesis database is written; nothing outside a temp dir is touched.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import configuration  # noqa: E402

configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), f"minirun-fuzz-{os.getuid()}"))

from tests.unit import test_fuzz_parsers as fuzz  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20000, help="inputs per target (default 20000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a run")
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"some of: {', '.join(sorted(fuzz.TARGETS))} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(fuzz.TARGETS))
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    return args


def run_target(name: str, examples: int, seed: int | None, counts: collections.Counter) -> str | None:
    """Run one target; the failure as text, or None."""
    try:
        fuzz.run(name, examples, lambda outcome: counts.update([outcome]), seed)
    except Exception as exc:       # the property failed: report it, go on with the others
        return "".join(traceback.format_exception(exc)[-12:])
    return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    names = args.targets or sorted(fuzz.TARGETS)
    failures = {}
    print(f"{'target':<16} {'inputs':>8} {'accepted':>9} {'refused':>9} {'seconds':>8}  result")
    for name in names:
        counts: collections.Counter = collections.Counter()
        start = time.monotonic()
        failure = run_target(name, args.examples, args.seed, counts)
        total = counts["accepted"] + counts["refused"]
        print(f"{name:<16} {total:>8} {counts['accepted']:>9} {counts['refused']:>9} "
              f"{time.monotonic() - start:>8.1f}  {'FAILED' if failure else 'ok'}", flush=True)
        if failure:
            failures[name] = failure
    for name, failure in failures.items():
        print(f"\n---- {name} failed:\n{failure}")
    print(f"\n{len(names) - len(failures)} of {len(names)} targets held: "
          f"{'no failures' if not failures else 'FAILURES above'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
