"""The store's records read as what they may have become (store/readers.py), the
one error line for what the kernel says (errors.py), and what a planted or
damaged container state can no longer make `rm` do."""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest

from minirun import errors
from minirun.cli import as_failure
from minirun.api import control as runtime
from minirun.errors import DamagedRecord, MinirunError
from minirun.store import readers as records
from minirun.store.index import Catalog
from minirun.store import ImageRecord, LayerRef

CID = "ab" * 32


def _container(store, state: object, config: dict | None = None) -> str:
    path = os.path.join(store.containers.directory, CID)
    os.mkdir(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config or {"name": "c", "layers": [], "argv": ["true"]}, f)
    with open(os.path.join(path, "state.json"), "w") as f:
        f.write(state if isinstance(state, str) else json.dumps(state))
    return path


# ---------------------------------------------------------------- reading

def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    done = []
    reader = threading.Thread(target=lambda: done.append(pytest.raises(DamagedRecord, records.read_bytes,
                                                                       str(fifo), 100)))
    reader.start()
    reader.join(5)
    assert done, "read_bytes blocked on a FIFO"
    assert "a FIFO" in str(done[0].value)


@pytest.mark.parametrize("make,said", [
    (lambda p: p.symlink_to("/dev/zero"), "a symlink"),
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: os.truncate(p.open("wb").name, 1 << 40), "bytes, more than"),
])
def test_what_is_not_a_small_regular_file_is_damaged(tmp_path, make, said):
    path = tmp_path / "meta.json"
    make(path)
    with pytest.raises(DamagedRecord) as caught:
        records.read_bytes(str(path), 1 << 20)
    assert said in caught.value.line() and str(path) in caught.value.line()


def test_a_directory_above_that_is_not_one_is_named(tmp_path):
    (tmp_path / "containers").write_text("a file")
    with pytest.raises(DamagedRecord) as caught:
        records.read_json(str(tmp_path / "containers" / CID / "state.json"), 100)
    assert caught.value.path == str(tmp_path / "containers")
    with pytest.raises(DamagedRecord) as caught:
        records.list_dir(str(tmp_path / "containers"))
    assert caught.value.path == str(tmp_path / "containers")


def test_absent_is_not_damaged(tmp_path):
    with pytest.raises(FileNotFoundError):
        records.read_json(str(tmp_path / "images.json"), 100)
    assert records.list_dir(str(tmp_path / "nothing")) == []


@pytest.mark.parametrize("data,said", [(b"", "empty"), (b"  \n", "empty"), (b'{"a": [1,', "truncated"),
                                       (b"\xff\xfe{}", "not UTF-8"), (b"{x}", "not valid JSON"),
                                       (b"[" * 100000, "not valid JSON")])
def test_read_json_says_what_is_wrong(tmp_path, data, said):
    path = tmp_path / "images.json"
    path.write_bytes(data)
    with pytest.raises(DamagedRecord) as caught:
        records.read_json(str(path), 1 << 20)
    assert said in caught.value.line()


# ---------------------------------------------------------------- container states

@pytest.mark.parametrize("state", [
    {"status": "running", "pid": -1, "pid_start": 0},       # old code: kill(-1, SIGKILL) on rm -f
    {"status": "running", "pid": 0, "pid_start": 0},
    {"status": "running", "pid": 1, "pid_start": 5},
    {"status": "running"},
    {"status": "exited", "cgroup": {"version": "v2", "paths": ["/etc"], "memory": None}},
    {"status": "exited", "cgroup": {"version": "v2", "paths": ["/sys/fs/cgroup/minirun/../../x"]}},
    {"status": "exited", "cgroup": {"version": "v2", "paths": [f"/sys/fs/cgroup/minirun/{'cd' * 32}"]}},
    {"status": "exited", "pid": True}, {"status": 5}, {"status": "dancing"}, [], "x",
])
def test_a_state_that_could_aim_rm_elsewhere_is_damaged(store, state):
    _container(store, state)
    with pytest.raises(DamagedRecord) as caught:
        store.containers.state(CID)
    assert f"minirun rm -f {CID[:12]}" in caught.value.line()


def test_the_cgroup_minirun_makes_for_the_container_is_accepted(store):
    paths = [f"/sys/fs/cgroup/minirun/{CID}", f"/sys/fs/cgroup/memory/minirun/{CID}"]
    _container(store, {"status": "exited", "cgroup": {"version": "v1", "paths": paths, "memory": paths[1]}})
    assert store.containers.state(CID).cgroup["paths"] == paths     # opaque here: cgroups.py reads it


def test_rm_of_a_planted_state_kills_nothing_and_removes_no_host_directory(store, tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    (canary / "empty").mkdir(parents=True)
    (canary / "cgroup.procs").write_text("1\n")
    _container(store, {"status": "running", "pid": -1, "pid_start": 0,
                       "cgroup": {"version": "v2", "paths": [str(canary)], "memory": None}})
    killed = []
    monkeypatch.setattr(runtime.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    assert runtime.remove(store, CID[:12], force=True) == CID
    assert killed == []
    assert (canary / "empty").is_dir() and not os.path.lexists(store.containers.path(CID))


def test_ps_lists_a_damaged_container_and_keeps_its_layers(store):
    layer = "sha256:" + "ef" * 32
    _container(store, '{"status": "exi', {"name": "c", "layers": [layer], "argv": ["true"]})
    [record] = runtime.container_records(store)
    assert record.state.status == "damaged" and record.config.layers == (layer,)
    errors._warnings.clear()


# ---------------------------------------------------------------- images.json

def test_a_damaged_image_entry_is_left_out_once(store):
    good, bad = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    layer = {"key": good, "diff_id": good, "blob": good, "media_type": "x", "size": 1}
    doc = {"images": {good: {"manifest": good, "layers": [layer]}, bad: {"manifest": 7, "layers": []}},
           "tags": {"localhost/good:latest": good, "localhost/bad:latest": bad, "localhost/x:1": 5}}
    with open(store.images.path, "w") as f:
        json.dump(doc, f)
    sound = store.images.read(warn=False)
    assert sound == Catalog({good: ImageRecord(good, (LayerRef(good, good, good, "x", 1),))},
                            {"localhost/good:latest": good})
    damaged, raw = store.images.damage()
    assert len(damaged) == 2                       # the record, and the tag naming 5; not bad's tag
    assert bad in store.images.mentioned_by_damaged()
    with pytest.raises(DamagedRecord):
        store.images.resolve("localhost/bad:latest")
    store.images.add_repository(good, "x")          # an update keeps the damaged entries as they were
    with open(store.images.path) as f:
        assert json.load(f)["images"][bad] == {"manifest": 7, "layers": []}


@pytest.mark.parametrize("text", ["[]", '{"images": []}', '{"images": {}, "tags": 4}', "", "{"])
def test_images_json_damaged_as_a_whole_stops_reads_and_collection(store, text):
    with open(store.images.path, "w") as f:
        f.write(text)
    with pytest.raises(DamagedRecord):
        store.images.read()
    from minirun.store import gc
    with pytest.raises(DamagedRecord):
        gc.referenced(store)


# ---------------------------------------------------------------- the error line

def test_printable_escapes_what_a_terminal_would_act_on():
    assert errors.printable("a\nb\r\t\x1b[2J\x07\x9b\u2028\u202e\udcff é 中 ok") == \
        "a\\nb\\r\\t\\x1b[2J\\x07\\x9b\\u2028\\u202e\\udcff é 中 ok"


@pytest.mark.parametrize("err,said,code", [
    (OSError(errno.EROFS, "Read-only file system", "/x/y"), "is on a read-only filesystem", 3),
    (OSError(errno.ENAMETOOLONG, "File name too long", "a" * 5000), "(5000 characters)", 1),
    (OSError(errno.EINVAL, "Invalid argument"), "Invalid argument", 1),
    (OSError(errno.EIO, "Input/output error", "bad\nname"), "bad\\nname", 1),
    (MinirunError("no such image: x\x1b[31m\ny"), "x\\x1b[31m\\ny", 1),
])
def test_every_os_error_is_one_printable_line(err, said, code):
    line, exit_code = as_failure(err)
    assert said in line and exit_code == code and line.isprintable() and len(line) < 500
