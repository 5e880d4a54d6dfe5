"""minirun.usage on synthetic store documents: who uses each layer, what sharing
saves, `system df` rows, the tree of images, and the upper dir size walk."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from minirun.lib import fsutil
from minirun.api import disk as usage
from minirun.api.catalog import human_size
from minirun.api.control import Container
from minirun.store.index import Catalog
from minirun.store import ContainerConfig, ContainerState, ImageRecord, LayerMeta, LayerRef
from minirun.store.root import Store


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def short(seed: str) -> str:
    return digest(seed)[7:19]


class Docs:
    """A store's documents, built by hand: images.json, layer metas, containers, blobs."""

    def __init__(self):
        self.images = Catalog()
        self.layers: dict[str, LayerMeta] = {}
        self.containers: list[Container] = []
        self.blobs: dict[str, int] = {}
        self.uppers: dict[str, int] = {}

    def layer(self, name: str, size: int, cached: bool = True, chain_of: str | None = None) -> LayerRef:
        """An image's entry for a layer; cached ones get a meta.json (and their blob)."""
        diff_id = digest(name)
        key = digest(f"chain:{chain_of}:{name}") if chain_of else diff_id
        entry = LayerRef(key, diff_id, digest("blob:" + name + (chain_of or "")),
                         "application/vnd.oci.image.layer.v1.tar+gzip", size // 2 + 1, unpacked_size=size)
        if cached:
            self.layers[key] = LayerMeta(diff_id, key=key, size=size, files=1,
                                         keyed_by="chain_id" if chain_of else "diff_id", blob=entry.blob)
            self.blobs[entry.blob] = entry.size
        return entry

    def image(self, name: str, layers: list[LayerRef], tags: tuple[str, ...] = ()) -> str:
        image_id = digest("config:" + name)
        manifest = digest("manifest:" + name)
        self.images.images[image_id] = ImageRecord(manifest, tuple(layers), created="2024-01-01T00:00:00Z")
        self.images.tags.update({tag: image_id for tag in tags})
        self.blobs[image_id] = 100 + len(name)
        self.blobs[manifest] = 200 + len(name)
        return image_id

    def container(self, name: str, image_id: str, status: str = "exited", upper: int = 0) -> str:
        cid = digest("container:" + name)[7:]
        layers = tuple(layer.key for layer in self.images.images[image_id].layers)
        config = ContainerConfig(name, layers, id=cid, image=name + "-image", image_id=image_id)
        self.containers.append(Container(cid, config, ContainerState(status)))
        self.uppers[cid] = upper
        return cid

    def inventory(self) -> usage.Inventory:
        return usage.Inventory(self.images, self.layers, self.containers, self.blobs, self.uppers)


@pytest.fixture
def world() -> Docs:
    """myapp and other share base+mid; a dangling image has base and a layer of its own;
    one cached layer nothing uses; container c1 (exited) runs myapp."""
    docs = Docs()
    base, mid = docs.layer("base", 1000), docs.layer("mid", 200)
    docs.world = {"base": base, "mid": mid, "app": docs.layer("app", 30), "other": docs.layer("other", 40),
                  "dang": docs.layer("dang", 11)}
    docs.layer("orphan", 7)
    docs.myapp = docs.image("myapp", [base, mid, docs.world["app"]],
                            ("docker.io/library/myapp:latest", "localhost/myapp:v2"))
    docs.other = docs.image("other", [base, mid, docs.world["other"]],
                            ("registry.example.com:5000/team/other:1",))
    docs.dangling = docs.image("dangling", [base, docs.world["dang"]])
    docs.container("c1", docs.myapp, "exited", upper=500)
    return docs


def by_diff_id(uses: list[usage.LayerUse]) -> dict[str, usage.LayerUse]:
    return {use.diff_id: use for use in uses}


# ------------------------------------------------------------------ layers

def test_each_layer_counts_the_images_and_containers_that_use_it(world):
    uses = by_diff_id(usage.layer_uses(world.inventory()))
    myapp = ("localhost/myapp:v2", "myapp:latest")
    other = ("registry.example.com:5000/team/other:1",)
    dangling = (world.dangling[7:19],)
    assert uses[digest("base")].images == myapp + other + dangling
    assert uses[digest("mid")].images == myapp + other
    assert uses[digest("app")].images == myapp
    assert uses[digest("dang")].images == dangling
    assert uses[digest("base")].image_ids == (world.myapp, world.other, world.dangling)
    assert uses[digest("app")].containers == ("c1",)
    assert uses[digest("other")].containers == ()
    assert uses[digest("orphan")].images == () and uses[digest("orphan")].containers == ()


def test_most_used_layers_come_first_and_unused_last(world):
    order = [use.diff_id for use in usage.layer_uses(world.inventory())]
    assert order[:2] == [digest("base"), digest("mid")]
    assert order[-1] == digest("orphan")


def test_no_trunc_gives_a_dangling_image_its_full_id(world):
    uses = by_diff_id(usage.layer_uses(world.inventory(), no_trunc=True))
    assert uses[digest("dang")].images == (world.dangling,)


def test_totals_compare_each_layer_once_with_a_copy_per_image(world):
    inv = world.inventory()
    totals = usage.sharing_totals(inv, usage.layer_uses(inv))
    assert totals.layers == 6
    assert totals.stored == 1000 + 200 + 30 + 40 + 11 + 7
    assert totals.used == 1000 + 200 + 30 + 40 + 11
    assert totals.copy_per_image == (1000 + 200 + 30) + (1000 + 200 + 40) + (1000 + 11)
    assert totals.saved == totals.copy_per_image - totals.used == 2200
    assert totals.ratio == pytest.approx(3481 / 1281)
    assert (totals.unused_layers, totals.unused) == (1, 7)


def test_a_layer_missing_from_the_cache_counts_with_the_size_the_image_recorded():
    docs = Docs()
    docs.image("a", [docs.layer("gone", 50, cached=False), docs.layer("kept", 5)], ("a:1",))
    inv = docs.inventory()
    uses = usage.layer_uses(inv)
    assert [use.diff_id for use in uses] == [digest("kept")]
    totals = usage.sharing_totals(inv, uses)
    assert (totals.stored, totals.copy_per_image) == (5, 55)


def test_a_layer_keyed_by_chain_id_is_its_own_row_showing_its_diff_id():
    docs = Docs()
    base = docs.layer("base", 10)
    plain, chained = docs.layer("top", 3), docs.layer("top", 4, chain_of="base")
    docs.image("a", [base, plain], ("a:1",))
    docs.image("b", [base, chained], ("b:1",))
    uses = usage.layer_uses(docs.inventory())
    tops = sorted((u for u in uses if u.diff_id == digest("top")), key=lambda u: u.size)
    assert [(u.keyed_by, u.images) for u in tops] == [("diff_id", ("a:1",)), ("chain_id", ("b:1",))]
    assert tops[1].key != tops[1].diff_id


def test_an_empty_inventory_has_no_layers_and_no_ratio():
    inv = usage.Inventory(Catalog(), {}, [])
    totals = usage.sharing_totals(inv, usage.layer_uses(inv))
    assert (totals.layers, totals.stored, totals.copy_per_image, totals.ratio) == (0, 0, 0, None)


def test_inventory_of_a_store_that_does_not_exist_yet_is_empty(tmp_path):
    inv = usage.inventory_for(Store(str(tmp_path / "nothing")), sizes=True)
    assert (inv.images.images, inv.layers, inv.containers, inv.blobs) == ({}, {}, [], {})


# ------------------------------------------------------------------ system df

def rows(docs: Docs) -> dict[str, usage.DfRow]:
    return {row.kind: row for row in usage.disk_usage(docs.inventory()).rows}


def test_df_images_row_reclaims_layers_only_images_without_containers_use(world):
    row = rows(world)["Images"]
    assert (row.total, row.active) == (3, 1)
    assert row.size == 1000 + 200 + 30 + 40 + 11
    assert row.reclaimable == 40 + 11          # other's and dangling's own layers


def test_df_containers_row_reclaims_the_upper_dirs_of_containers_not_running(world):
    world.container("c2", world.other, "running", upper=300)
    world.container("c3", world.myapp, "created", upper=0)
    row = rows(world)["Containers"]
    assert (row.total, row.active, row.size, row.reclaimable) == (3, 1, 800, 500)


def test_df_layer_cache_reclaims_layers_no_tagged_image_and_no_container_uses(world):
    row = rows(world)["Layer cache"]
    assert (row.total, row.active) == (6, 4)
    assert row.size == 1000 + 200 + 30 + 40 + 11 + 7
    assert row.reclaimable == 11 + 7           # the dangling image's own layer, the orphan


def test_df_blobs_keep_what_tagged_images_and_kept_layers_need(world):
    stray = digest("stray")
    world.blobs[stray] = 9
    doomed = [world.dangling, world.images.images[world.dangling].manifest,
              world.world["dang"].blob, world.layers[digest("orphan")].blob, stray]
    row = rows(world)["Blobs"]
    assert row.total == len(world.blobs)
    assert row.active == len(world.blobs) - len(doomed)
    assert row.size == sum(world.blobs.values())
    assert row.reclaimable == sum(world.blobs[d] for d in doomed)


def test_df_keeps_a_dangling_image_a_container_uses(world):
    world.container("c9", world.dangling)
    assert rows(world)["Layer cache"].reclaimable == 7
    assert rows(world)["Images"].reclaimable == 40
    assert rows(world)["Blobs"].reclaimable == world.blobs[world.layers[digest("orphan")].blob]


def test_df_keeps_the_layers_of_a_container_whose_image_is_gone(world):
    del world.images.images[world.myapp]
    world.images.tags = {t: i for t, i in world.images.tags.items() if i != world.myapp}
    assert rows(world)["Layer cache"].reclaimable == 11 + 7      # app stays: c1 stacks it


def test_df_details_split_each_image_into_shared_and_unique_bytes(world):
    result = usage.disk_usage(world.inventory())
    images = {u.image_id: u for u in result.images}
    assert (images[world.myapp].size, images[world.myapp].shared, images[world.myapp].unique) == \
        (1230, 1200, 30)
    assert (images[world.dangling].shared, images[world.dangling].unique) == (1000, 11)
    assert images[world.myapp].containers == 1 and images[world.other].containers == 0
    assert [(c.name, c.status, c.size) for c in result.containers] == [("c1", "exited", 500)]


# ------------------------------------------------------------------ images --tree

def stack(seed: str, names: tuple[str, ...], *layers: tuple[str, int]) -> usage.ImageStack:
    return usage.ImageStack(digest(seed), names,
                            tuple(usage.StackLayer(digest(n), digest(n), size) for n, size in layers))


def test_tree_branches_where_images_stop_sharing_layers():
    images = [stack("other", ("other:1",), ("base", 1000), ("mid", 200), ("o", 40)),
              stack("dangling", (), ("base", 1000)),
              stack("myapp", ("myapp:latest",), ("base", 1000), ("mid", 200), ("a", 30)),
              stack("twin", ("twin:1", "twin:2"), ("base", 1000), ("mid", 200), ("a", 30)),
              stack("busybox", ("busybox:latest",), ("bb", 5000))]
    assert usage.tree_lines(images) == [
        f"├─ {short('bb')} 5kB  ← busybox:latest",
        f"└─ {short('base')} 1kB  ← <none> {short('dangling')}",
        f"   {short('mid')} 200B",
        f"   ├─ {short('a')} 30B  ← myapp:latest, twin:1, twin:2",
        f"   └─ {short('o')} 40B  ← other:1",
    ]


def test_tree_of_nested_branches_keeps_the_parent_rule():
    images = [stack("x", ("x:1",), ("r", 1), ("a", 1), ("a1", 1), ("a2", 1)),
              stack("y", ("y:1",), ("r", 1), ("a", 1), ("b1", 1)),
              stack("z", ("z:1",), ("r", 1), ("c", 1))]
    assert usage.tree_lines(images, no_trunc=True) == [
        f"└─ {digest('r')} 1B",
        f"   ├─ {digest('a')} 1B",
        f"   │  ├─ {digest('a1')} 1B",
        f"   │  │  {digest('a2')} 1B  ← x:1",
        f"   │  └─ {digest('b1')} 1B  ← y:1",
        f"   └─ {digest('c')} 1B  ← z:1",
    ]


def test_tree_shows_the_diff_id_of_chain_id_keyed_layers_as_separate_nodes():
    top_plain = usage.StackLayer(digest("top"), digest("top"), 3)
    top_chained = usage.StackLayer(digest("chain:top"), digest("top"), 3)
    base = usage.StackLayer(digest("base"), digest("base"), 10)
    images = [usage.ImageStack(digest("a"), ("a:1",), (base, top_plain)),
              usage.ImageStack(digest("b"), ("b:1",), (base, top_chained))]
    lines = usage.tree_lines(images)
    assert lines[1:] == [f"   ├─ {short('top')} 3B  ← a:1", f"   └─ {short('top')} 3B  ← b:1"]


def test_a_deep_stack_is_one_column_not_a_staircase():
    layers = [(f"l{i}", i) for i in range(1500)]
    lines = usage.tree_lines([stack("deep", ("deep:1",), *layers)])
    assert len(lines) == 1500
    assert lines[0] == f"└─ {short('l0')} 0B"
    assert all(line.startswith("   ") and "─" not in line for line in lines[1:])
    assert lines[-1] == f"   {short('l1499')} {human_size(1499)}  ← deep:1"


def test_an_image_with_no_layers_is_its_own_root_and_no_images_draw_nothing():
    assert usage.tree_lines([]) == []
    lines = usage.tree_lines([stack("empty", ("scratch:1",)), stack("a", ("a:1",), ("x", 1))])
    assert lines == [f"├─ {short('x')} 1B  ← a:1", "└─ (no layers)  ← scratch:1"]


def test_tree_lines_for_reads_the_store(store):
    docs = Docs()
    docs.image("solo", [docs.layer("only", 1)], ("docker.io/library/solo:latest",))
    with store.images.update() as doc:
        doc.images.update(docs.images.images)
        doc.tags.update(docs.images.tags)
    assert usage.tree_lines_for(store) == [f"└─ {short('only')} 1B  ← solo:latest"]


# ------------------------------------------------------------------ upper dir sizes

def test_tree_size_counts_regular_files_once_each(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f").write_bytes(b"x" * 1000)
    (tmp_path / "d" / "g").write_bytes(b"y" * 234)
    (tmp_path / "d" / "e" / "h").write_bytes(b"z" * 5)
    os.link(tmp_path / "f", tmp_path / "d" / "e" / "f-again")
    os.symlink("/etc/passwd", tmp_path / "d" / "link")
    assert fsutil.tree_size(str(tmp_path)) == (1000 + 234 + 5, True)


def test_tree_size_of_a_missing_dir_is_zero(tmp_path):
    assert fsutil.tree_size(str(tmp_path / "absent")) == (0, True)


def test_tree_size_walks_deeper_than_the_stack_and_path_max(tmp_path):
    depth = 1500                               # "ddd/" * 1500: 6000 bytes of path, over PATH_MAX
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("ddd", dir_fd=fd)
            fd = _reopen(fd, "ddd")
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"q" * 77)
        os.close(leaf)
        assert fsutil.tree_size(str(tmp_path)) == (77, True)
        os.unlink("leaf", dir_fd=fd)
        for _ in range(depth):                 # remove it the same way: pytest's rmtree recurses
            fd = _reopen(fd, "..")
            os.rmdir("ddd", dir_fd=fd)
    finally:
        os.close(fd)


def _reopen(fd: int, name: str) -> int:
    new = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    return new


_WITHOUT_DAC_CAPS = """
import os, sys
if os.geteuid() == 0:      # root reads every directory unless it gives up these two
    import prctl
    prctl.cap_effective.dac_override = False
    prctl.cap_effective.dac_read_search = False
from minirun.lib.fsutil import tree_size
print(*tree_size(sys.argv[1]))
"""


def test_tree_size_says_when_a_directory_could_not_be_read(tmp_path):
    (tmp_path / "open").write_bytes(b"a" * 10)
    (tmp_path / "shut").mkdir()
    (tmp_path / "shut" / "hidden").write_bytes(b"b" * 10)
    (tmp_path / "shut").chmod(0)
    try:
        out = subprocess.run([sys.executable, "-c", _WITHOUT_DAC_CAPS, str(tmp_path)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        (tmp_path / "shut").chmod(0o755)
    assert out.split() == ["10", "False"]
