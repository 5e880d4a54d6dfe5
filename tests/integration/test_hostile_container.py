"""What a container writes, read back by the host's own commands (diff, top, cp):
a container is hostile and its files are made to hurt the reader, so each
command must stay bounded in memory, show what is there, and escape what could
drive a terminal. From an outside attacker's pass over those commands."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from .conftest import Minirun
from .measure import max_rss_mb


def _max_rss_mb(mr: Minirun, *args: str) -> int:
    code, peak, err = max_rss_mb(mr.env, *args)
    assert code == 0, err
    return peak


def test_diff_of_a_container_with_many_long_paths_stays_small(mr):
    """30,000 files under 3.5 KB paths: `diff` held every change in a list (old code
    152 MB, --json 380 MB, and 1.25 GB for 300,000 files), and `diff A B` both
    trees; now the walks are printed as they go, in every output form."""
    mr.load("busybox")
    mr.ok("run", "--name", "many", "busybox", "sh", "-c",
          'cd /tmp; n=$(printf "%0250d" 0); for i in $(seq 14); do mkdir $n; cd $n; done; '
          'seq 1 30000 | sed "s/^/$(printf "%0200d" 0)/" | xargs touch')
    assert len(mr.ok("diff", "many").lines) == 30000 + 14 + 1          # the files, their dirs, /tmp
    mr.ok("run", "--name", "few", "busybox", "true")
    assert len(mr.ok("diff", "many", "few").lines) == 30000 + 14 + 1   # only in A, each
    for args in (("diff", "many"), ("diff", "--json", "many"), ("diff", "--format", "json", "many"),
                 ("diff", "--stat", "many"), ("diff", "--stat", "--format", "json", "many"),
                 ("diff", "many", "few"), ("diff", "--json", "many", "few")):
        assert _max_rss_mb(mr, *args) < 100, args


def test_diff_and_diff_stat_escape_bytes_that_are_not_utf8(mr):
    """A name's byte 0x9b is a terminal's CSI: `r\\x9b2Jx` cleared the screen of
    whoever ran `diff` on an 8-bit terminal (the name came out raw)."""
    mr.load("busybox")
    mr.ok("run", "--name", "w", "busybox", "sh", "-c", 'touch "/tmp/$(printf "r\\2332Jx")"')
    for args in (("diff", "w"), ("diff", "--stat", "w")):
        out = subprocess.run([sys.executable, "-m", "minirun", *args], env=mr.env, capture_output=True)
        assert out.returncode == 0, out.stderr
        assert b"\x9b" not in out.stdout and b"/tmp/r\\x9b2Jx" in out.stdout, out.stdout


def test_top_lists_a_process_whose_name_is_not_utf8(mr):
    """A process named by bytes that are not UTF-8 was left out of `top` (its
    /proc/PID/stat failed to decode and the process was skipped as gone)."""
    mr.load("busybox")
    mr.ok("run", "-d", "--name", "hide", "busybox", "sh", "-c",
          'printf "#!/bin/sh\\nwhile :; do sleep 1; done\\n" > "/tmp/$(printf "\\377")"; chmod +x /tmp/*; '
          '"/tmp/$(printf "\\377")" & exec sleep 1000')
    deadline = time.monotonic() + 10
    while True:
        commands = [line.split(None, 7)[-1] for line in mr.ok("top", "hide").lines[1:]]
        if any(c.startswith("/bin/sh /tmp/") for c in commands) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert any(c.startswith("/bin/sh /tmp/") for c in commands), commands


def test_cp_of_thousands_of_hard_links_under_the_usual_descriptor_limit(mr, tmp_path):
    """3,000 files each linked twice: cp kept a descriptor open per linked file, up
    to 4,096, and under `ulimit -n 1024` failed half-way with EMFILE. Now it links
    as many as the limit leaves room for and copies the rest."""
    mr.load("busybox")
    mr.ok("run", "--name", "hl", "busybox", "sh", "-c",
          "mkdir /tmp/h; i=0; while [ $i -lt 3000 ]; do echo $i > /tmp/h/$i; ln /tmp/h/$i /tmp/h/l$i; "
          "i=$((i+1)); done")
    mr.ok("cp", "hl:/tmp/h", str(tmp_path / "out"),
          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
    copied = tmp_path / "out"
    assert len(os.listdir(copied)) == 6000
    assert (copied / "2999").read_text() == (copied / "l2999").read_text() == "2999\n"
    linked = sum(1 for i in range(3000) if os.stat(copied / str(i)).st_nlink == 2)
    assert 0 < linked < 3000, linked            # linked while descriptors lasted, copied after
