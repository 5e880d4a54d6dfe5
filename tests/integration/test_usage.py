"""`minirun layers` and `minirun system df` on real loads and runs: every count and
total is worked out here from images.json, meta.json and the files on disk."""

from __future__ import annotations

import json
import os
import re

from minirun.api.catalog import human_size

MYAPP = "localhost/myapp:latest"
OTHER = "localhost/myotherapp:latest"


def images_doc(mr) -> dict:
    return json.loads((mr.root / "images.json").read_text())


def layer_keys(doc: dict, image_id: str) -> list[str]:
    return [layer["key"] for layer in doc["images"][image_id]["layers"]]


def layer_size(mr, key: str) -> int:
    return json.loads((mr.root / "layers" / "sha256" / key.split(":")[1] / "meta.json").read_text())["size"]


def blob_size(mr, digest: str) -> int:
    return (mr.root / "blobs" / "sha256" / digest.split(":")[1]).stat().st_size


def cached_keys(mr) -> list[str]:
    return ["sha256:" + name for name in mr.layer_dirs()]


def layers_json(mr) -> tuple[dict[str, dict], dict]:
    objects = [json.loads(line) for line in mr.ok("layers", "--format", "json").lines]
    assert "Totals" in objects[-1] and all("Totals" not in o for o in objects[:-1])
    return {o["Key"]: o for o in objects[:-1]}, objects[-1]["Totals"]


def df_rows(mr, *args: str) -> dict[str, list[str]]:
    lines = mr.ok("system", "df", *args).lines
    assert re.split(r"\s{2,}", lines[0]) == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    rows = {}
    for line in lines[1:5]:
        cells = re.split(r"\s{2,}", line)
        rows[cells[0]] = cells[1:]
    return rows


def reclaimable(n: int, total: int) -> str:
    return human_size(n) + (f" ({100 * n // total}%)" if total else "")


def test_layers_shows_which_images_and_containers_share_each_layer(mr):
    mr.load("myapp", "myotherapp")
    mr.ok("run", "--name", "c1", "myapp", "/bin/true")
    doc = images_doc(mr)
    myapp, other = doc["tags"][MYAPP], doc["tags"][OTHER]
    shared = set(layer_keys(doc, myapp)) & set(layer_keys(doc, other))
    assert len(shared) == 2                      # the fixtures' two base layers

    rows, totals = layers_json(mr)
    assert sorted(rows) == sorted(cached_keys(mr))
    for key, row in rows.items():
        users = sorted(i for i in (myapp, other) if key in layer_keys(doc, i))
        assert sorted(row["ImageIDs"]) == users
        assert row["Containers"] == (["c1"] if key in layer_keys(doc, myapp) else [])
        assert row["Size"] == layer_size(mr, key)
    stored = sum(layer_size(mr, key) for key in cached_keys(mr))
    per_image = sum(layer["unpacked_size"] for i in (myapp, other) for layer in doc["images"][i]["layers"])
    assert totals["StoredBytes"] == stored and totals["UsedBytes"] == stored
    assert totals["CopyPerImageBytes"] == per_image
    assert totals["SavedBytes"] == per_image - stored == sum(layer_size(mr, key) for key in shared)
    assert totals["Layers"] == len(cached_keys(mr)) and totals["UnusedLayers"] == 0

    table = {line.split()[0]: line.split() for line in mr.ok("layers").lines[1:] if line[:1].isalnum()}
    for key in shared:
        diff_id = doc["images"][myapp]["layers"][layer_keys(doc, myapp).index(key)]["diff_id"]
        row = table[diff_id[7:19]]
        assert row[3:5] == ["2", "1"]                             # IMAGES, CONTAINERS
        blob = json.loads((mr.root / "layers" / "sha256" / key[7:] / "meta.json").read_text())["blob"]
        assert row[1] == blob[7:19]                               # BLOB: the id load prints


def test_a_layer_nothing_uses_shows_zero_images_and_zero_containers(mr):
    mr.load("myapp", "myotherapp")
    doc = images_doc(mr)
    myapp = doc["tags"][MYAPP]
    own = (set(layer_keys(doc, myapp)) - set(layer_keys(doc, doc["tags"][OTHER]))).pop()
    mr.ok("run", "--name", "c1", "myapp", "/bin/true")
    mr.ok("rmi", "-f", "myapp")                  # c1 keeps myapp's own layer alive...
    mr.ok("rm", "c1")                            # ...until it goes too
    rows, totals = layers_json(mr)
    assert rows[own]["ImageIDs"] == [] and rows[own]["Containers"] == []
    assert (totals["UnusedLayers"], totals["UnusedBytes"]) == (1, layer_size(mr, own))
    assert df_rows(mr)["Layer cache"][2:] == [human_size(totals["StoredBytes"]),
                                              reclaimable(layer_size(mr, own), totals["StoredBytes"])]


def test_system_df_reclaims_what_no_tagged_image_and_no_container_keeps(mr):
    mr.load("myapp", "myotherapp")
    doc = images_doc(mr)
    myapp, other = doc["tags"][MYAPP], doc["tags"][OTHER]
    own = (set(layer_keys(doc, myapp)) - set(layer_keys(doc, other))).pop()
    mr.ok("run", "--name", "c1", "myapp", "sh", "-c", "head -c 5000 /dev/zero > /big; echo 12345 > /small")
    stored = sum(layer_size(mr, key) for key in cached_keys(mr))
    blobs = {"sha256:" + n: blob_size(mr, "sha256:" + n) for n in os.listdir(mr.root / "blobs" / "sha256")}

    rows = df_rows(mr)
    other_own = (set(layer_keys(doc, other)) - set(layer_keys(doc, myapp))).pop()
    assert rows["Images"] == ["2", "1", human_size(stored), reclaimable(layer_size(mr, other_own), stored)]
    assert rows["Containers"] == ["1", "0", human_size(5006), reclaimable(5006, 5006)]
    assert rows["Layer cache"] == ["4", "4", human_size(stored), reclaimable(0, stored)]
    assert rows["Blobs"][:2] == [str(len(blobs))] * 2

    mr.ok("load", "--tag", MYAPP, mr.fixture_path("myotherapp"))   # myapp's image is dangling now
    assert df_rows(mr)["Layer cache"][1] == "4"                      # but c1 still uses it
    mr.ok("rm", "c1")
    rows = df_rows(mr)
    assert rows["Images"][:2] == ["2", "0"]
    assert rows["Layer cache"] == ["4", "3", human_size(stored), reclaimable(layer_size(mr, own), stored)]
    doomed = {myapp, doc["images"][myapp]["manifest"],
              doc["images"][myapp]["layers"][layer_keys(doc, myapp).index(own)]["blob"]}
    assert rows["Blobs"] == [str(len(blobs)), str(len(blobs) - len(doomed)), human_size(sum(blobs.values())),
                             reclaimable(sum(blobs[d] for d in doomed), sum(blobs.values()))]


def test_system_df_verbose_lists_images_and_containers_even_with_a_deep_upper_dir(mr):
    mr.load("myapp", "myotherapp")
    mr.ok("run", "--name", "deep", "myapp", "sh", "-c",
          "i=0; while [ $i -lt 1100 ]; do mkdir d; cd d; i=$((i+1)); done; head -c 3000 /dev/zero > f")
    lines = mr.ok("system", "df", "-v").lines
    assert "Images:" in lines and "Containers:" in lines
    container_rows = [re.split(r"\s{2,}", line) for line in lines[lines.index("Containers:") + 2:]]
    assert [(row[1], row[3], row[4]) for row in container_rows] == [("deep", "exited", human_size(3000))]
    image_rows = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)
                  for line in lines[lines.index("Images:") + 2:lines.index("Containers:") - 1]}
    assert sorted(image_rows) == sorted([MYAPP, OTHER])
    assert image_rows[MYAPP][5] == "1" and image_rows[OTHER][5] == "0"


def test_layers_and_df_work_on_an_empty_store_and_reject_a_bad_format(mr):
    assert mr.ok("layers").lines[0].startswith("Layers stored:    0B in 0 layer(s)")
    assert df_rows(mr)["Images"] == ["0", "0", "0B", "0B"]
    bad = mr("layers", "--format", "yaml")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "use json" in bad.stderr
