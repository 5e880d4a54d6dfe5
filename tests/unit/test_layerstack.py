"""layer/layerstack.py on hand-built manifests, every number computed by hand."""

from __future__ import annotations

import pytest

from minirun.layer.layerstack import LayerFiles, parse_bytes, stack, which


def f(size: int, h: str, mode: int = 0o644) -> dict:
    return {"type": "file", "mode": mode, "uid": 0, "gid": 0, "size": size, "sha256": h}


def d(opaque: bool = False, mode: int = 0o755) -> dict:
    return {"type": "dir", "mode": mode, "uid": 0, "gid": 0, "opaque": opaque}


WH = {"type": "char", "mode": 0, "uid": 0, "gid": 0, "rdev": [0, 0]}

# L0: the base. /bin/alias is a hard link to /bin/tool (same inode: the API's links).
L0 = LayerFiles("sha256:l0", {
    "/": d(), "/bin": d(), "/bin/alias": f(500, "t"), "/bin/tool": f(500, "t"), "/empty": f(0, "e"),
    "/etc": d(), "/etc/big": f(1000, "b1"), "/opt": d(), "/opt/a": f(50, "a"), "/opt/b": f(70, "b"),
    "/run.sh": f(40, "r"), "/tmp": d(), "/tmp/old": f(300, "o")}, {"/bin/tool": "/bin/alias"})
# L1: /etc/big rewritten, /tmp/old deleted, the 0-byte file written again
L1 = LayerFiles("sha256:l1", {"/": d(), "/empty": f(0, "e"), "/etc": d(), "/etc/big": f(1200, "b2"),
                              "/tmp": d(), "/tmp/old": WH})
# L2: /etc/big a third time; /opt made opaque with one new file
L2 = LayerFiles("sha256:l2", {"/": d(), "/etc": d(), "/etc/big": f(800, "b3"), "/opt": d(opaque=True),
                              "/opt/c": f(10, "c")})
# L3: only a chmod
L3 = LayerFiles("sha256:l3", {"/": d(), "/run.sh": f(40, "r", mode=0o755)})


def test_metrics_by_hand():
    result = stack([L0, L1, L2, L3])
    # occurrences: /etc/big 1000,1200,800; /tmp/old 300,0; /opt/a 50,0; /opt/b 70,0; /opt/c 10;
    # /bin/alias 500; /bin/tool 0 (the link); /empty 0,0; /run.sh 40,40
    smallest = 800 + 0 + 0 + 0 + 10 + 500 + 0 + 0 + 40
    total = 3000 + 300 + 50 + 70 + 10 + 500 + 0 + 0 + 80
    assert (smallest, total) == (1350, 4010)
    assert result.efficiency == pytest.approx(1350 / 4010)
    assert result.wasted_bytes == 3000 + 300 + 50 + 70 + 0 + 80 == 3500
    assert [layer.size for layer in result.layers] == [1960, 1200, 810, 40]
    assert result.user_size == 2050
    assert result.user_wasted == pytest.approx(3500 / 2050)
    assert [(w.path, w.count, w.total) for w in result.waste] == [
        ("/etc/big", 3, 3000), ("/tmp/old", 2, 300), ("/run.sh", 2, 80), ("/opt/b", 2, 70),
        ("/opt/a", 2, 50), ("/empty", 2, 0)]


def test_changes_per_layer():
    base, one, two, three = stack([L0, L1, L2, L3]).layers
    assert (base.added, base.changed, base.deleted) == (1960, 0, 0)
    assert [(c.kind, c.path, c.size, c.note) for c in base.changes if c.path.startswith("/bin/")] == [
        ("A", "/bin/alias", 500, ""), ("A", "/bin/tool", 0, "hard link to /bin/alias")]
    assert [(c.kind, c.path, c.size, c.note) for c in one.changes] == [
        ("C", "/empty", 0, "same content"), ("C", "/etc/big", 1200, ""), ("D", "/tmp/old", 300, "")]
    assert (one.added, one.changed, one.deleted) == (0, 1200, 300)
    assert [(c.kind, c.path, c.size) for c in two.changes] == [
        ("C", "/etc/big", 800), ("C", "/opt", 0), ("D", "/opt/*", 120), ("A", "/opt/c", 10)]
    assert two.changes[1].note.startswith("opaque")
    assert (two.added, two.changed, two.deleted) == (10, 800, 120)
    assert [(c.kind, c.path, c.size, c.note) for c in three.changes] == [
        ("C", "/run.sh", 40, "metadata only")]


def test_one_layer_is_fully_efficient():
    result = stack([L0])
    assert (result.efficiency, result.wasted_bytes, result.user_size, result.user_wasted) == (1.0, 0, 0, 0.0)


def test_deleting_a_directory_charges_its_files():
    top = LayerFiles("sha256:x", {"/": d(), "/opt": WH})
    result = stack([L0, top])
    assert result.wasted_bytes == 50 + 70
    assert result.layers[1].deleted == 120
    assert result.efficiency == pytest.approx((500 + 0 + 1000 + 0 + 0 + 40 + 300) / 1960)


def test_which():
    layers = [L0, L1, L2, L3]
    big = which(layers, "/etc/big")
    assert (big.provider, big.type, big.size) == (2, "file", 800)
    assert big.hidden == ((1, "file", 1200), (0, "file", 1000))
    old = which(layers, "/tmp/old")
    assert (old.provider, old.deleted_by, old.how, old.hidden) == (None, 1, "whiteout", ((0, "file", 300),))
    gone = which(layers, "/opt/a")
    assert (gone.provider, gone.deleted_by, gone.how) == (None, 2, "opaque dir /opt")
    opt = which(layers, "/opt")
    assert (opt.provider, opt.opaque_from, opt.merges) == (2, 2, (2,))
    etc = which(layers, "/etc/")
    assert (etc.provider, etc.opaque_from, etc.merges) == (2, None, (2, 1, 0))
    assert which(layers, "/nowhere").provider is None and which(layers, "/nowhere").deleted_by is None


def test_parse_bytes():
    assert parse_bytes("20MB") == 20_000_000
    assert parse_bytes("1MiB") == 1 << 20
    assert parse_bytes("512") == 512
    assert parse_bytes("1.5kb") == 1500
    with pytest.raises(ValueError):
        parse_bytes("lots")


def test_a_file_over_a_dir_and_a_dir_over_a_file():
    top = LayerFiles("sha256:x", {"/": d(), "/opt": f(5, "n"), "/run.sh": d()})
    result = stack([L0, top])
    kinds = [(c.kind, c.path, c.size, c.note) for c in result.layers[1].changes]
    assert kinds == [("D", "/opt/*", 120, "replaced by a file"), ("A", "/opt", 5, "replaces a dir"),
                     ("A", "/run.sh", 0, "replaces a file"), ("D", "/run.sh", 40, "replaced by a dir")]
    assert result.layers[1].deleted == 160
    # /opt/a 50,0; /opt/b 70,0; /run.sh 40,0; /opt 5
    assert result.wasted_bytes == 160
    assert which([L0, top], "/opt/a").how == "file /opt"
