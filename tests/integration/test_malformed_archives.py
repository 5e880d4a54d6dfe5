"""Malformed docker-archives, OCI layouts and OCI archives, loaded through the real CLI.

Every case is refused with exit 1 and one line on stderr naming the cause
(never a traceback, never a hang), and leaves the store as it was: no layer,
no blob, no image, nothing in tmp/. The unit fuzzing (tests/unit/
test_fuzz_parsers.py) covers the parsers with many more inputs; these cases
prove the whole path, from the CLI to the store, for each kind of damage.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from .imagebuild import entry, layer_tar

LAYER = layer_tar([entry("hello", data=b"hi\n")])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def js(doc) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def config_doc(**over) -> dict:
    return {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(LAYER)]}, **over}


CONFIG = js(config_doc())
CONFIG_NAME = sha(CONFIG)[7:] + ".json"


def write_tar(path: Path, files: dict) -> str:
    """files: name -> bytes, or a TarInfo (a link, a dir, odd headers) with its bytes."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info, data = data if isinstance(data, tuple) else (tarfile.TarInfo(name), data)
            info.name, info.mtime = name, 1_700_000_000
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return str(path)


# ---------------------------------------------------------------- docker-archive

def docker_entry(**over) -> dict:
    return {"Config": CONFIG_NAME, "RepoTags": ["bad/img:v1"], "Layers": ["l/layer.tar"], **over}


def docker(manifest=None, config: bytes = CONFIG, extra: dict | None = None):
    """A docker-archive builder: manifest.json (a doc or raw bytes), one config, one layer."""
    def build(tmp: Path) -> str:
        files = {"manifest.json": js(manifest if manifest is not None else [docker_entry()]),
                 sha(config)[7:] + ".json": config, "l/layer.tar": LAYER, **(extra or {})}
        return write_tar(tmp / "image.tar", files)
    return build


def docker_with_config(config_bytes: bytes):
    name = sha(config_bytes)[7:] + ".json"
    return docker([docker_entry(Config=name)], config=config_bytes)


def sparse_header_archive(tmp: Path) -> str:
    info = tarfile.TarInfo("manifest.json")
    info.pax_headers = {"GNU.sparse.map": "x,y", "GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    return write_tar(tmp / "image.tar", {"manifest.json": (info, js([docker_entry()])), CONFIG_NAME: CONFIG,
                                         "l/layer.tar": LAYER})


def legacy_archive(tmp: Path) -> str:
    return write_tar(tmp / "image.tar", {"repositories": b'{"bad/img": {"v1": "abc"}}',
                                         "abc/layer.tar": LAYER, "abc/json": b"{}", "abc/VERSION": b"1.0"})


def second_image_broken(tmp: Path) -> str:
    broken = js(config_doc(history=[1]))
    files = {"manifest.json": js([docker_entry(), docker_entry(Config="b.json", RepoTags=["bad/two:v1"])]),
             CONFIG_NAME: CONFIG, "b.json": broken, "l/layer.tar": LAYER}
    return write_tar(tmp / "image.tar", files)


def padded(doc, size: int) -> bytes:
    data = js(doc)
    return data[:-1] + b" " * (size - len(data)) + data[-1:]


DOCKER_CASES = {
    "manifest.json not JSON": (docker(b'[{"Config": '), "not valid JSON"),
    "manifest.json nested 100000 deep": (docker(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    "manifest.json an object": (docker({"Config": CONFIG_NAME}), "non-empty list"),
    "manifest.json empty": (docker([]), "non-empty list"),
    "manifest.json entry not an object": (docker([[CONFIG_NAME]]), "entry 0 must be an object"),
    "manifest.json duplicate keys": (docker(b'[{"Config": "a", "Config": "b", "Layers": []}]'), "twice"),
    "Layers not a list": (docker([docker_entry(Layers="l/layer.tar")]), "'Layers' must be a list"),
    "Layers item not a string": (docker([docker_entry(Layers=[7])]), "'Layers item 0' must be a file name"),
    "Config missing": (docker([{"RepoTags": [], "Layers": []}]), "has no 'Config'"),
    "Config null": (docker([docker_entry(Config=None)]), "has no 'Config'"),
    "Config with ..": (docker([docker_entry(Config="../" + CONFIG_NAME)]), "outside the archive"),
    "Config absolute": (docker([docker_entry(Config="/etc/passwd")]), "outside the archive"),
    "layer path with ..": (docker([docker_entry(Layers=["l/../../l/layer.tar"])]), "outside the archive"),
    "Config names no file": (docker([docker_entry(Config="nothere.json")]), "missing 'nothere.json'"),
    "RepoTags not a list": (docker([docker_entry(RepoTags="bad/img:v1")]), "RepoTags"),
    "RepoTags with a number": (docker([docker_entry(RepoTags=[5])]), "RepoTags"),
    "RepoTags invalid reference": (docker([docker_entry(RepoTags=["UP/per:v1"])]), "invalid reference"),
    "manifest.json over 4 MiB": (docker(padded([docker_entry()], (4 << 20) + 1)), "4 MiB limit"),
    "config over 16 MiB": (docker_with_config(padded(config_doc(), (16 << 20) + 1)), "16 MiB limit"),
    "config not JSON": (docker_with_config(b"{config"), "not valid JSON"),
    "config with NaN": (docker_with_config(b'{"rootfs": {"diff_ids": []}, "architecture": NaN}'), "NaN"),
    "config history of numbers": (docker_with_config(js(config_doc(history=[1]))), "history entry 0"),
    "config rootfs missing": (docker_with_config(js({"architecture": "amd64"})), "has no 'rootfs'"),
    "config Env with NUL": (docker_with_config(js(config_doc(config={"Env": ["A=\0"]}))), "NUL"),
    "config diff_ids miscounted": (docker_with_config(js(config_doc(rootfs={"diff_ids": []}))), "diff_ids"),
    "config Labels a list": (docker_with_config(js(config_doc(config={"Labels": ["a"]}))), "'Labels'"),
    "tar header with bad sparse map": (sparse_header_archive, "not a readable tar archive"),
    "legacy repositories-only archive": (legacy_archive, "legacy format"),
    "second image broken, first not loaded": (second_image_broken, "history entry 0"),
}


# ---------------------------------------------------------------- OCI layout

def manifest_doc(config: bytes) -> dict:
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(LAYER),
                        "size": len(LAYER)}]}


def descriptor(data: bytes, media_type: str = "application/vnd.oci.image.manifest.v1+json", **over) -> dict:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **over}


def index_doc(*descs: dict) -> dict:
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list(descs)}


MANIFEST = js(manifest_doc(CONFIG))
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def layout(index=None, *, blobs=(CONFIG, MANIFEST, LAYER), oci_layout=b'{"imageLayoutVersion": "1.0.0"}',
           then=None):
    """An OCI layout dir builder; `then(path)` damages the files afterwards."""
    def build(tmp: Path) -> str:
        path = tmp / "layout"
        (path / "blobs" / "sha256").mkdir(parents=True)
        for data in blobs:
            (path / "blobs" / "sha256" / sha(data)[7:]).write_bytes(data)
        (path / "index.json").write_bytes(js(index if index is not None else index_doc(descriptor(MANIFEST))))
        if oci_layout is not None:
            (path / "oci-layout").write_bytes(oci_layout)
        if then:
            then(path)
        return str(path)
    return build


def blob_path(path: Path, data: bytes) -> Path:
    return path / "blobs" / "sha256" / sha(data)[7:]


def fifo_for_manifest(path: Path) -> None:
    blob_path(path, MANIFEST).unlink()
    os.mkfifo(blob_path(path, MANIFEST))


def config_outside(path: Path) -> None:
    """The config blob's name a symlink to a file beside the layout with the very
    bytes the digest names: a layout someone else made, pointing at a host file."""
    outside = path.parent / "host-file"
    blob_path(path, CONFIG).rename(outside)
    blob_path(path, CONFIG).symlink_to(outside)


def layer_linked_inside(path: Path) -> None:
    """A blob that is a relative symlink to another file of the layout: allowed."""
    kept = path / "blobs" / "layer-data"
    blob_path(path, LAYER).rename(kept)
    blob_path(path, LAYER).symlink_to("../layer-data")


def sparse_index(path: Path) -> None:
    with open(path / "index.json", "r+b") as f:
        f.truncate(10 << 30)          # 10 GiB of holes: refused by its size, never read


def index_as_dir(path: Path) -> None:
    (path / "index.json").unlink()
    (path / "index.json").mkdir()


def nested(depth: int):
    """index.json -> `depth` image indexes -> the manifest."""
    blobs, target = [CONFIG, MANIFEST, LAYER], descriptor(MANIFEST)
    for _ in range(depth):
        data = js(index_doc(target))
        blobs.append(data)
        target = descriptor(data, INDEX_TYPE)
    return layout(index_doc(target), blobs=tuple(blobs))


SELF = js(index_doc({"mediaType": INDEX_TYPE, "digest": "sha256:" + "0" * 64, "size": 1}))


def index_naming_itself(path: Path) -> None:
    """A blob whose file name is the digest its own content lists: a cycle, as far
    as a reader that trusted names would go. Content addressing breaks it."""
    name = "0" * 64
    (path / "blobs" / "sha256" / name).write_bytes(SELF)
    (path / "index.json").write_bytes(js(index_doc({"mediaType": INDEX_TYPE, "digest": "sha256:" + name,
                                                   "size": len(SELF)})))


def manifest_with(**over) -> tuple[bytes, dict]:
    data = js({**manifest_doc(CONFIG), **over})
    return data, index_doc(descriptor(data))


def layout_with_manifest(**over):
    data, index = manifest_with(**over)
    return layout(index, blobs=(CONFIG, data, LAYER))


def layout_with_config(config: bytes):
    manifest = js(manifest_doc(config))
    return layout(index_doc(descriptor(manifest)), blobs=(config, manifest, LAYER))


OCI_CASES = {
    "oci-layout version 2.0.0": (layout(oci_layout=b'{"imageLayoutVersion": "2.0.0"}'), "imageLayoutVersion"),
    "oci-layout version a number": (layout(oci_layout=b'{"imageLayoutVersion": 1}'), "imageLayoutVersion"),
    "oci-layout not JSON": (layout(oci_layout=b"1.0.0"), "oci-layout"),
    "index.json not JSON": (layout(b"{"), "not valid JSON"),
    "index.json nested 100000 deep": (layout(b'{"manifests":' + b"[" * 100_000), "nested too deeply"),
    "index.json manifests not a list": (layout({"manifests": {}}), "'manifests' must be an array"),
    "index.json lists nothing": (layout(index_doc()), "lists no images"),
    "index.json with layers too": (layout({**index_doc(descriptor(MANIFEST)), "layers": []}), "ambiguous"),
    "entry size -1": (layout(index_doc(descriptor(MANIFEST, size=-1))), "out of range"),
    "entry size 2**70": (layout(index_doc(descriptor(MANIFEST, size=2**70))), "out of range"),
    "entry size 1e400": (layout(js(index_doc(descriptor(MANIFEST, size=987654321)))
                                .replace(b": 987654321", b": 1e400")),
                         "must be an integer"),
    "entry size wrong": (layout(index_doc(descriptor(MANIFEST, size=len(MANIFEST) + 1))), "descriptor says"),
    "entry size 100 MiB": (layout(index_doc(descriptor(MANIFEST, size=100 << 20))), "4 MiB limit"),
    "entry digest invalid": (layout(index_doc(descriptor(MANIFEST, digest="sha256:xyz"))), "invalid"),
    "annotation not a string": (layout(index_doc(descriptor(MANIFEST, annotations={"a": 1}))),
                                "map strings to strings"),
    "ref name with a lone surrogate": (layout(js(index_doc(descriptor(
        MANIFEST, annotations={"org.opencontainers.image.ref.name": "@S@"}))).replace(b"@S@", b"\\udcff")),
        "surrogate"),
    "index.json 10 GiB sparse": (layout(then=sparse_index), "4 MiB limit"),
    "index.json a directory": (layout(then=index_as_dir), "not a regular file"),
    "manifest blob a FIFO": (layout(then=fifo_for_manifest), "not a regular file"),
    "config blob a symlink out of the layout": (layout(then=config_outside), "leads out of the layout"),
    "manifest blob missing": (layout(blobs=(CONFIG, LAYER)), "missing"),
    "config blob missing": (layout(blobs=(MANIFEST, LAYER)), "missing"),
    "layer blob missing": (layout(blobs=(CONFIG, MANIFEST)), "missing"),
    "layer size wrong": (layout_with_manifest(layers=[{**manifest_doc(CONFIG)["layers"][0], "size": 5}]),
                         "manifest says"),
    "manifest layers a string": (layout_with_manifest(layers="x"), "'layers' must be an array"),
    "manifest with manifests too": (layout_with_manifest(manifests=[]), "ambiguous"),
    "manifest schemaVersion 3": (layout_with_manifest(schemaVersion=3), "schemaVersion"),
    "config WorkingDir a list": (layout_with_config(js(config_doc(config={"WorkingDir": ["/"]}))),
                                 "'WorkingDir' must be a string"),
    "indexes nested 5 deep": (nested(5), "nested more than 4 deep"),
    "index naming itself": (layout(then=index_naming_itself), "digest"),
}


def oci_archive(build_layout):
    """The same damage inside an OCI archive (a tar of the layout)."""
    def build(tmp: Path) -> str:
        root = Path(build_layout(tmp))
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        return write_tar(tmp / "image.tar", files)
    return build


ARCHIVE_CASES = {
    f"archive: {name}": (oci_archive(OCI_CASES[name][0]), OCI_CASES[name][1])
    for name in ("index.json nested 100000 deep", "entry size wrong", "manifest blob missing",
                 "oci-layout version 2.0.0", "indexes nested 5 deep")
}
CASES = {**DOCKER_CASES, **OCI_CASES, **ARCHIVE_CASES}


# ---------------------------------------------------------------- the tests

def listing(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.is_dir() else []


def assert_refused_and_store_untouched(mr, result, word: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr and word in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0]
    assert "Loaded" not in result.stdout
    assert mr.layer_dirs() == []
    assert listing(mr.root / "blobs" / "sha256") == []
    assert listing(mr.root / "tmp") == []
    images = mr.root / "images.json"
    assert not images.exists() or json.loads(images.read_text())["images"] == {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_is_one_line_and_leaves_the_store_as_it_was(mr, tmp_path, name):
    build, word = CASES[name]
    result = mr("load", build(tmp_path), timeout=60)
    assert_refused_and_store_untouched(mr, result, word)


@pytest.mark.parametrize("build", [docker(), docker(extra={"repositories": b"[[[ not json"}),
                                   layout(), nested(1), nested(4), oci_archive(layout()),
                                   layout(then=layer_linked_inside)],
                         ids=["docker-archive", "garbage repositories", "layout", "nested index",
                              "index 4 deep", "oci-archive", "blob linked inside"])
def test_the_undamaged_inputs_load(mr, tmp_path, build):
    """The cases above start from inputs that load: the damage, not the builder, is refused."""
    result = mr.ok("load", build(tmp_path))
    assert "Loaded image" in result.stdout
    assert len(mr.layer_dirs()) == 1


def test_a_refused_load_leaves_an_existing_store_exactly_as_it_was(mr, tmp_path):
    mr.ok("load", layout()(tmp_path / "good"))
    (tmp_path / "bad").mkdir()
    before = (mr.layer_dirs(), listing(mr.root / "blobs" / "sha256"), (mr.root / "images.json").read_text())
    for name in ("second image broken, first not loaded", "entry size wrong", "manifest blob a FIFO"):
        target = tmp_path / "bad" / name.replace(" ", "-")
        target.mkdir()
        result = mr("load", CASES[name][0](target))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        after = (mr.layer_dirs(), listing(mr.root / "blobs" / "sha256"), (mr.root / "images.json").read_text())
        assert after == before, name


# ---------------------------------------------------------------- one image listed many times (issue 14)

BIG_LABEL = "x" * (15 << 20)           # a 15 MiB config that gzip makes ~15 KB


def big_config(n: int = 0) -> bytes:
    return js(config_doc(config={"Cmd": ["/hello"], "Labels": {"pad": BIG_LABEL, "n": str(n)}}))


def test_a_manifest_listed_many_times_is_one_image_under_all_its_names(mr, tmp_path):
    """index.json listing one manifest (with a 15 MiB config) 200 times: every entry
    was built before any was imported, each holding its own copy of the config,
    3 GB in all for a 15 KB archive (an outside review). Now the repeats only add
    their names. Under a 1 GiB address-space cap, as test_bounds runs the runtime."""
    config = big_config()
    manifest = js(manifest_doc(config))
    names = [descriptor(manifest, annotations={"org.opencontainers.image.ref.name": f"v{i % 3}"})
             for i in range(200)]
    path = layout(index_doc(*names), blobs=(config, manifest, LAYER))(tmp_path)
    result = mr("load", path, prefix=("prlimit", f"--as={1 << 30}", "--"), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(mr.ok("images", "--format", "{{.Tag}}").lines) == ["v0", "v1", "v2"]
    assert len(mr.layer_dirs()) == 1


def test_configs_that_compress_to_nothing_are_bounded_in_all(mr, tmp_path):
    """Five different 15 MiB configs (75 MiB held at once, from a small archive):
    over the 64 MiB an archive's configs and manifests may take together."""
    configs = [big_config(n) for n in range(5)]
    manifests = [js(manifest_doc(c)) for c in configs]
    path = layout(index_doc(*(descriptor(m) for m in manifests)), blobs=(*configs, *manifests, LAYER))(tmp_path)
    assert_refused_and_store_untouched(mr, mr("load", path, timeout=120), "64 MiB in all")


def test_a_docker_archive_hashes_each_layer_file_once(tmp_path, monkeypatch):
    """manifest.json naming one layer file 300 times (and a second entry naming it
    again) had it hashed once per mention: time without bound, from a small archive."""
    from minirun.sources import archive
    layers = [sha(LAYER)] * 300
    config = js(config_doc(rootfs={"type": "layers", "diff_ids": layers}))
    entry_doc = {"Config": sha(config)[7:] + ".json", "Layers": ["l/layer.tar"] * 300}
    path = write_tar(tmp_path / "image.tar", {
        "manifest.json": js([dict(entry_doc, RepoTags=["a/b:1"]), dict(entry_doc, RepoTags=["a/b:2"])]),
        sha(config)[7:] + ".json": config, "l/layer.tar": LAYER})
    hashed = []
    real = archive._docker_layer
    monkeypatch.setattr(archive, "_docker_layer", lambda files, name: hashed.append(name) or real(files, name))
    with archive.open_images(path) as images:
        assert hashed == ["l/layer.tar"]
        assert [image.refs for image in images] == [["docker.io/a/b:1", "docker.io/a/b:2"]]
        assert len(images[0].layers) == 300
