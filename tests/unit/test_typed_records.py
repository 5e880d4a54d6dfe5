"""store/__init__.py: minirun's own documents as frozen records, each with one
reader and one writer, versioned: what an older minirun wrote still loads, and a
document that does not fit fails at load time as one DamagedRecord line."""

from __future__ import annotations

import json
import os

import pytest

from minirun.errors import DamagedRecord
from minirun.lib.frozen import FrozenInstanceError
import minirun.store as records
from minirun.store import (VERSION, ContainerConfig, ContainerState, ImageRecord, LayerMeta,
                                   LayerRef)

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
CID = "ab" * 32

FULL = [
    ContainerConfig("web", (D1, D2), id=CID, image="busybox", image_id=D1, argv=("sh", "-c", "x"),
                    env=("A=1",), capabilities=("chown",), seccomp="unconfined", detached=True),
    ContainerState("exited", exit_code=3, finished="2024-01-01T00:00:00Z", error=""),
    ContainerState("running", pid=42, pid_start=7, cgroup={"version": "v2", "paths": []}),
    LayerMeta(D1, D2, key=D1, files=3, size=10, blob=D2, media_type="m", implied_dirs=("a",)),
]


@pytest.mark.parametrize("record", FULL, ids=lambda r: type(r).__name__)
def test_what_dump_writes_load_reads_back(record):
    doc = json.loads(json.dumps(records.dump(record)))
    assert doc["version"] == VERSION
    assert type(record).load(doc, "/x") == record


def test_an_image_record_round_trips_with_its_layers_as_records():
    record = ImageRecord(D1, (LayerRef(D1, D1, D2, "m", 5, 9),), os="linux", repositories=("r/x",))
    back = ImageRecord.load(json.loads(json.dumps(record.dump())), "/x", "an image", VERSION)
    assert back == record and isinstance(back.layers[0], LayerRef)


def test_records_are_frozen():
    with pytest.raises(FrozenInstanceError):
        FULL[0].name = "other"


def test_an_unversioned_document_from_an_older_minirun_loads_with_the_defaults_it_had():
    config = ContainerConfig.load({"name": "c", "layers": [D1], "argv": ["true"]}, "/c")
    assert (config.argv, config.cwd, config.user, config.no_new_privs, config.seccomp) == \
        (("true",), "/", "0", True, None)
    state = ContainerState.load({"status": "created"}, "/s")
    assert (state.pid, state.exit_code, state.cgroup) == (0, None, None)
    meta = LayerMeta.load({"diff_id": D1, "size": 4, "ignored": "by version 0"}, "/m")
    assert (meta.size, meta.keyed_by, meta.blob) == (4, "diff_id", None)


def test_an_unversioned_document_still_needs_what_was_always_required():
    with pytest.raises(DamagedRecord, match="has no 'layers'"):
        ContainerConfig.load({"name": "c"}, "/c")


def test_a_renamed_field_fails_at_load_naming_the_file_and_the_field():
    doc = records.dump(FULL[0])
    doc["remove"] = doc.pop("auto_remove")
    with pytest.raises(DamagedRecord) as caught:
        ContainerConfig.load(doc, "/store/containers/x/config.json", "the fix")
    line = caught.value.line()
    assert "/store/containers/x/config.json is damaged" in line and "'auto_remove'" in line
    assert "the fix" in line and "\n" not in line


def test_an_unknown_field_in_a_versioned_document_is_damage():
    doc = dict(records.dump(FULL[1]), colour="blue")
    with pytest.raises(DamagedRecord, match="does not know: 'colour'"):
        ContainerState.load(doc, "/s")


@pytest.mark.parametrize("version, said", [
    (VERSION + 1, "written by a newer minirun"), (-1, "not a version"), ("1", "not a version"),
])
def test_a_version_this_minirun_cannot_read_is_refused(version, said):
    doc = dict(records.dump(FULL[1]), version=version)
    with pytest.raises(DamagedRecord, match=said):
        ContainerState.load(doc, "/s")


def test_a_field_of_the_wrong_type_is_named():
    doc = dict(records.dump(FULL[0]), argv="sh -c x")
    with pytest.raises(DamagedRecord, match="'argv' is a string, not a list of strings"):
        ContainerConfig.load(doc, "/c")


def test_the_store_writes_versioned_records_and_reads_an_old_store(store):
    from minirun.store.index import Catalog
    old = {"images": {D1: {"manifest": D2, "layers": [{"key": D1, "diff_id": D1, "blob": D2,
                                                       "media_type": "m", "size": 1}]}},
           "tags": {"localhost/old:latest": D1}}
    with open(store.images.path, "w") as f:
        json.dump(old, f)
    catalog = store.images.read()
    assert catalog.images[D1].layers[0].unpacked_size == 0
    assert catalog == Catalog(dict(catalog.images), {"localhost/old:latest": D1})
    store.images.add_repository(D1, "docker.io/x")             # any update writes version 1
    with open(store.images.path) as f:
        written = json.load(f)
    assert written["version"] == VERSION and written["images"][D1]["repositories"] == ["docker.io/x"]
    assert written["images"][D1]["layers"][0]["unpacked_size"] == 0
    assert store.images.read().images[D1].repositories == ("docker.io/x",)


def test_a_newer_images_json_is_refused_in_one_line(store):
    with open(store.images.path, "w") as f:
        json.dump({"version": VERSION + 1, "images": {}, "tags": {}}, f)
    with pytest.raises(DamagedRecord, match="newer minirun"):
        store.images.read()


def test_a_container_is_written_as_versioned_records(store):
    store.containers.create(CID, ContainerConfig("", (D1,)), {}, state=None)
    with open(os.path.join(store.containers.path(CID), "config.json")) as f:
        config = json.load(f)
    assert config["version"] == VERSION and config["name"] == CID[:12] and config["id"] == CID
    assert store.containers.state(CID) == ContainerState("created")
    store.containers.set_state(CID, status="exited", exit_code=0)
    with open(os.path.join(store.containers.path(CID), "state.json")) as f:
        assert json.load(f) == dict(records.dump(ContainerState("exited", exit_code=0)))


def test_a_field_added_in_a_later_version_may_be_missing_only_from_older_documents():
    """options came with version 2: a version-1 config.json loads without it (None), a
    version-2 one without it is damage; options round-trip as a JSON object."""
    base = records.dump(ContainerConfig("c", ()))
    del base["options"]
    base["version"] = 1
    assert ContainerConfig.load(dict(base), "config.json").options is None
    with pytest.raises(DamagedRecord, match="has no 'options'"):
        ContainerConfig.load(dict(base, version=2), "config.json")
    full = ContainerConfig("c", (), options={"command": ["sh"], "init": True})
    assert ContainerConfig.load(json.loads(json.dumps(records.dump(full))), "config.json").options == \
        {"command": ["sh"], "init": True}


def test_ports_came_with_version_3():
    """state.json's ports (-p, as bound): a version-2 state loads without them (none), a
    version-3 one without them is damage; they round-trip."""
    base = records.dump(ContainerState("running", pid=1))
    del base["ports"]
    assert ContainerState.load(dict(base, version=2), "state.json").ports == ()
    with pytest.raises(DamagedRecord, match="has no 'ports'"):
        ContainerState.load(dict(base, version=3), "state.json")
    full = ContainerState("running", pid=1, ports=("127.0.0.1:8080->80/tcp",))
    assert ContainerState.load(json.loads(json.dumps(records.dump(full))), "state.json") == full
