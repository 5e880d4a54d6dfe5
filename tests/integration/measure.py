"""Peak memory of one minirun command, for the tests that bound it."""

from __future__ import annotations

import subprocess
import sys

# Run by a small python of its own: a child forked from pytest would count pytest's
# own pages, which it shares until its exec, in its peak.
_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen([sys.executable, "-m", "minirun", *sys.argv[1:]], stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss // 1024)
sys.stderr.write(err.decode(errors="replace"))
"""


def max_rss_mb(env: dict, *args: str, timeout: float = 120) -> tuple[int, int, str]:
    """(exit code, peak resident memory in MB, stderr) of one `minirun ARGS`, its output dropped."""
    result = subprocess.run([sys.executable, "-c", _MEASURE, *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    code, peak = result.stdout.split()
    return int(code), int(peak), result.stderr
