"""Text an image or a container controls never reaches the terminal raw (issue 14, item 13).

An image's Cmd, history (created_by, comment), labels, and the names of files a
container writes can hold escape sequences: clear the screen, retitle the
window, move the cursor to overwrite a line, or reorder text with a bidi
override. Every table, every template and every human line shows them escaped;
JSON stays JSON (its escapes are already visible).
"""

from __future__ import annotations

import json
import re

import pytest

from .imagebuild import busybox_layer, entry, write_layout

# Clear the screen, retitle the window (OSC ... BEL), carriage return, a line of its
# own, a C1 CSI, DEL and a right-to-left override.
EVIL = "\x1b[2J\x1b]0;pwned\x07\r\nINJECTED\x9b31m\x7f\u202eevil"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
FILE_NAME = "f\x1b[2J\nINJECTED\x07"          # what the script names its file
SCRIPT = "/s\x1b[2J\r\nINJECTED"


def assert_shown_safely(result, what: str) -> None:
    assert result.returncode == 0, (what, result.stderr)
    out = result.stdout
    assert not RAW.search(out), f"{what}: raw control character {RAW.search(out).group()!r} in {out!r}"
    assert not any(line.startswith("INJECTED") for line in out.splitlines()), f"{what}: {out!r}"


@pytest.fixture
def evil(mr, tmp_path):
    """An image whose config is hostile text, and two containers of it whose command
    (a script with a hostile name) writes a file with a hostile name."""
    script = entry(SCRIPT[1:], data=b'#!/bin/sh\ntouch "/$(printf \'f\\033[2J\\nINJECTED\\007\')$1"\n',
                   mode=0o755)
    write_layout(tmp_path / "evil", [busybox_layer([script])],
                 {"Entrypoint": [SCRIPT], "Cmd": [EVIL], "Labels": {"evil": EVIL, EVIL: "key"},
                  "Env": [f"E={EVIL}"]},
                 top={"author": EVIL, "history": [
                     {"created": "2024-01-01T00:00:00Z", "created_by": EVIL, "comment": EVIL}]})
    mr.ok("load", str(tmp_path / "evil"))
    mr.ok("run", "--name", "e1", "evil")
    mr.ok("run", "--name", "e2", "evil", "2")
    return mr


@pytest.mark.parametrize("args", [
    ("images",), ("images", "--tree"), ("images", "--format", "{{.Repository}} {{.Tag}}"),
    ("ps", "-a"), ("ps", "-a", "--format", "{{.Command}} {{.Names}}"),
    ("ps", "-a", "--format", "table {{.ID}}\\t{{.Command}}"),
    ("history", "evil"), ("history", "--no-trunc", "evil"),
    ("history", "--format", "{{.CreatedBy}} {{.Comment}}", "evil"),
    ("history", "--format", "table {{.CreatedBy}}\\t{{.Comment}}", "evil"),
    ("inspect", "evil"), ("inspect", "e1"),
    ("inspect", "--format", "{{.Config.Labels.evil}} {{.Config.Cmd}} {{.Author}}", "evil"),
    ("inspect", "--format", "{{json .Config.Labels}}", "evil"),
    ("layers",), ("system", "df", "-v"),
    ("diff", "e1"), ("diff", "--format", "{{.Path}}", "e1"), ("diff", "e1", "e2"),
])
def test_hostile_text_is_escaped_in_every_listing(evil, args):
    assert_shown_safely(evil(*args), " ".join(args))


def test_the_escaped_text_still_says_what_is_there(evil):
    """Visible escapes, not deletion: \\x1b, \\n, \\u202e are shown as such."""
    out = evil.ok("history", "--no-trunc", "evil").stdout
    assert "\\x1b[2J" in out and "\\x07" in out and "\\u202e" in out
    assert "\\x1b[2J" in evil.ok("diff", "e1").stdout
    assert "\\r\\nINJECT" in evil.ok("ps", "-a", "--format", "{{.Command}}").stdout


def test_json_output_keeps_the_exact_text(evil):
    doc = json.loads(evil.ok("inspect", "evil").stdout)[0]
    assert doc["Config"]["Labels"]["evil"] == EVIL
    rows = [json.loads(line) for line in evil.ok("history", "--format", "json", "evil").stdout.splitlines()]
    assert rows[0]["CreatedBy"] == EVIL
    paths = [json.loads(line)["Path"] for line in evil.ok("diff", "--format", "json", "e1").stdout.splitlines()]
    assert "/" + FILE_NAME + EVIL in paths
