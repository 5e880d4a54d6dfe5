"""`minirun layers IMAGE` (--files, --ci, json), `which` and `diff --stat` on a
generated image whose figures are known by hand, and on a real copy-up run."""

from __future__ import annotations

import json
import tarfile

import pytest

from .imagebuild import busybox_layer, entry, layer_tar, write_layout

BIG = 2_000_000
IMAGE = "localhost/stacked:latest"


@pytest.fixture
def stacked(mr, tmp_path):
    """busybox | /data/{big,mode,gone,dup 10B,old 300B} | dup 20B, old deleted | dup 30B."""
    data = entry("data", tarfile.DIRTYPE, mode=0o755)
    layers = [busybox_layer(),
              layer_tar([data, entry("data/big", data=b"b" * BIG), entry("data/mode", data=b"m" * 1000),
                         entry("data/gone", data=b"g" * 100), entry("data/dup", data=b"1" * 10),
                         entry("data/old", data=b"o" * 300)]),
              layer_tar([data, entry("data/dup", data=b"2" * 20), entry("data/.wh.old", data=b"")]),
              layer_tar([data, entry("data/dup", data=b"3" * 30)])]
    write_layout(tmp_path / "stacked", layers, config={"Cmd": ["/bin/sh"]})
    mr.ok("load", str(tmp_path / "stacked"))
    return mr


def _figures(mr) -> dict:
    return json.loads(mr.ok("layers", IMAGE, "--format", "json").stdout)


def test_figures_by_hand(stacked):
    doc = _figures(stacked)
    base = doc["Layers"][0]["Size"]
    assert [layer["Size"] for layer in doc["Layers"][1:]] == [BIG + 1000 + 100 + 10 + 300, 20, 30]
    assert doc["WastedBytes"] == 10 + 20 + 30 + 300
    assert doc["UserSize"] == BIG + 1410 + 50
    assert doc["UserWastedPercent"] == pytest.approx(360 / (BIG + 1460), abs=1e-6)
    smallest = base + BIG + 1000 + 100 + 10 + 0
    total = base + BIG + 1000 + 100 + 60 + 300
    assert doc["Efficiency"] == pytest.approx(smallest / total, abs=1e-6)
    assert [(w["Path"], w["Count"], w["WastedBytes"]) for w in doc["Waste"]] == [
        ("/data/old", 2, 300), ("/data/dup", 3, 60)]
    inspected = json.loads(stacked.ok("inspect", IMAGE).stdout)[0]["LayerEfficiency"]
    assert inspected["WastedBytes"] == 360


def test_files_json_and_prefix(stacked):
    doc = json.loads(stacked.ok("layers", IMAGE, "--files", "--path", "/data", "--format", "json").stdout)
    changes = [[(c["Kind"], c["Path"], c["Size"]) for c in layer["Changes"]] for layer in doc["Layers"]]
    assert changes[0] == []
    assert changes[2] == [("C", "/data/dup", 20), ("D", "/data/old", 300)]
    assert changes[3] == [("C", "/data/dup", 30)]
    lines = stacked.ok("layers", IMAGE, "--files", "--path", "/data/old").lines
    assert "D        300 /data/old" in lines
    assert not [line for line in lines if "/bin/" in line]


@pytest.mark.parametrize("flag,field,fails_at,passes_at", [
    ("--lowest-efficiency", "Efficiency", lambda v: f"{v + 0.000002:.6f}", lambda v: f"{v - 0.000002:.6f}"),
    ("--highest-wasted-bytes", "WastedBytes", lambda v: f"{v}B", lambda v: str(v + 1)),
    ("--highest-user-wasted-percent", "UserWastedPercent", lambda v: f"{v - 0.000002:.6f}",
     lambda v: f"{v + 0.000002:.6f}")])
def test_ci_around_each_threshold(stacked, flag, field, fails_at, passes_at):
    value = _figures(stacked)[field]
    others = {"--lowest-efficiency": "disabled", "--highest-user-wasted-percent": "disabled"}
    others.pop(flag, None)
    rest = [arg for name, v in others.items() for arg in (name, v)]
    failed = stacked("layers", IMAGE, "--ci", flag, fails_at(value), *rest)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL" in failed.stdout and "/data/old" in failed.stdout
    passed = stacked("layers", IMAGE, "--ci", flag, passes_at(value), *rest)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Result: PASS" in passed.stdout


def test_ci_bad_limit_is_a_usage_error(stacked):
    result = stacked("layers", IMAGE, "--ci", "--highest-wasted-bytes", "lots")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_which(stacked):
    dup = json.loads(stacked.ok("which", IMAGE, "/data/dup", "--format", "json").stdout)
    assert dup["Provider"]["Index"] == 3 and dup["Size"] == 30
    assert [(h["Index"], h["Size"]) for h in dup["Hidden"]] == [(2, 20), (1, 10)]
    old = stacked("which", IMAGE, "/data/old")
    assert old.returncode == 1
    assert "deleted" in old.stdout and "layer 2" in old.stdout and "whiteout" in old.stdout
    data = json.loads(stacked.ok("which", IMAGE, "/data", "--format", "json").stdout)
    assert data["OpaqueFrom"] is None and [m["Index"] for m in data["Merges"]] == [3, 2, 1]


@pytest.mark.kernel
def test_diff_stat_classifies_a_copy_up_run(stacked):
    stacked.ok("run", "--name", "c1", IMAGE, "sh", "-c",
               "echo x >> /data/big; busybox chmod 600 /data/mode; echo new > /data/new; busybox rm /data/gone")
    lines = [json.loads(line) for line in stacked.ok("diff", "--stat", "c1", "--format", "json").lines]
    totals = lines.pop()["Totals"]
    by_path = {item["Path"]: item for item in lines}
    big, mode, new, gone = (by_path[p] for p in ("/data/big", "/data/mode", "/data/new", "/data/gone"))
    assert (big["Kind"], big["CopiedBytes"], big["Size"], big["MetadataOnly"]) == ("copied-up", BIG, BIG + 2, False)
    assert (mode["Kind"], mode["CopiedBytes"], mode["MetadataOnly"]) == ("copied-up", 1000, True)
    assert (new["Kind"], new["Size"]) == ("created", 4)
    assert (gone["Kind"], gone["HiddenBytes"]) == ("whiteout", 100)
    assert by_path["/data"]["Kind"] == "dir"
    assert (totals["Created"], totals["CopiedUp"], totals["CopiedBytes"], totals["MetadataOnly"],
            totals["Whiteouts"]) == (1, 2, BIG + 1000, 1, 1)
    text = stacked.ok("diff", "--stat", "c1").stdout
    assert "metadata only" in text and "copied up:  2 file(s)" in text


def test_hard_links_count_once_and_names_are_escaped(mr, tmp_path):
    evil = "data/t\x1b]0;owned\x07"
    layers = [busybox_layer(),
              layer_tar([entry("data", tarfile.DIRTYPE, mode=0o755), entry("data/h1", data=b"h" * 1000),
                         entry("data/h2", tarfile.LNKTYPE, linkname="data/h1"), entry(evil, data=b"e" * 7)])]
    write_layout(tmp_path / "linked", layers, config={"Cmd": ["/bin/sh"]})
    mr.ok("load", str(tmp_path / "linked"))
    doc = json.loads(mr.ok("layers", "localhost/linked:latest", "--files", "--format", "json").stdout)
    assert doc["Layers"][1]["Size"] == 1000 + 7
    notes = {c["Path"]: (c["Size"], c.get("Note")) for c in doc["Layers"][1]["Changes"]}
    assert notes["/data/h1"] == (1000, None) and notes["/data/h2"] == (0, "hard link to /data/h1")
    assert notes["/" + evil] == (7, None)                      # JSON keeps the name exact
    for args in (("layers", "localhost/linked:latest", "--files"),
                 ("which", "localhost/linked:latest", "/" + evil)):
        out = mr.ok(*args).stdout
        assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07" in out
