"""The CLI with one of minirun's own functions made slower, to hold open the
moment a race needs (between two steps of a run) long enough for a test to act
in it. Nothing of the kernel is replaced: the function runs as always, after a
sleep, in a `python -c` that then calls minirun's main()."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import importlib, os, sys, time
owner = importlib.import_module({module!r})
if {cls!r}:
    owner = getattr(owner, {cls!r})
real = getattr(owner, {function!r})
def slowed(*args, **kwargs):
    # the delay, or until the gate file exists (bounded by the delay)
    deadline = time.monotonic() + {seconds!r}
    while time.monotonic() < deadline and not ({gate!r} and os.path.exists({gate!r})):
        time.sleep(0.005)
    return real(*args, **kwargs)
setattr(owner, {function!r}, slowed)
from minirun.cli import main
sys.argv = ["minirun", *sys.argv[1:]]
main()
"""


def argv(where: str, seconds: float, *args: str, gate: str = "") -> list[str]:
    """where: "module:function" or "module:Class.function". gate: a path whose
    creation ends the delay early, for a window held open until the test is done
    in it (a VM under emulation takes a second to start a CLI)."""
    module, name = where.split(":")
    cls, _, function = name.rpartition(".")
    return [sys.executable, "-c", SCRIPT.format(module=module, cls=cls, function=function, seconds=seconds,
                                                gate=gate), *args]


def popen(mr, where: str, seconds: float, *args: str, gate: str = "", **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv(where, seconds, *args, gate=gate), env=mr.env, **kwargs)


def run(mr, where: str, seconds: float, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv(where, seconds, *args), env=mr.env, check=True, capture_output=True, timeout=60)


def first_record(mr, timeout: float = 20) -> Path:
    """state.json of the store's first container, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list((mr.root / "containers").glob("*/state.json"))
        if found:
            return found[0]
        time.sleep(0.005)
    raise AssertionError("no container was recorded")
