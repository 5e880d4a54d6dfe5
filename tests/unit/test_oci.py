"""OCI / Docker manifests, indexes and configs: parsing, validation, fuzzing."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minirun import oci
from minirun.errors import BadImage, UnsupportedMediaType

from .conftest import hexdigest, json_bytes, sha

D1, D2, D3 = hexdigest("1"), hexdigest("2"), hexdigest("3")


def desc(media_type: str = oci.OCI_LAYER_GZIP, digest: str = D1, size: int = 10, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def manifest_doc(**overrides) -> dict:
    doc = {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
           "config": desc(oci.OCI_CONFIG, D3, 500),
           "layers": [desc(oci.OCI_LAYER_GZIP, D1, 100), desc(oci.OCI_LAYER, D2, 200)]}
    doc.update(overrides)
    return doc


# ---------------------------------------------------------------- digests

def test_sha256_digest_matches_hashlib():
    assert oci.sha256_digest(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_chain_ids_by_hand():
    c2 = "sha256:" + hashlib.sha256(f"{D1} {D2}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {D3}".encode()).hexdigest()
    assert oci.chain_ids([D1, D2, D3]) == [D1, c2, c3]


def test_chain_ids_edge_cases():
    assert oci.chain_ids([]) == []
    assert oci.chain_ids([D2]) == [D2]
    # order matters: the chain is not a set
    assert oci.chain_ids([D1, D2])[1] != oci.chain_ids([D2, D1])[1]


def test_short_id_and_digest_hex():
    assert oci.short_id("sha256:" + "ab" * 32) == "ab" * 6
    assert oci.digest_hex(D1) == "1" * 64


@pytest.mark.parametrize("value", [None, 5, "", "sha256:", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
                                   "md5:" + "a" * 64, "a" * 64])
def test_check_digest_rejects(value):
    with pytest.raises(BadImage):
        oci.check_digest(value)


def test_check_digest_rejects_trailing_newline():
    with pytest.raises(BadImage):
        oci.check_digest(D1 + "\n")


# ---------------------------------------------------------------- layer media types

@pytest.mark.parametrize("media_type, compression", [
    (oci.OCI_LAYER, "none"),
    (oci.OCI_LAYER_GZIP, "gzip"),
    (oci.OCI_LAYER_ZSTD, "zstd"),
    (oci.DOCKER_LAYER, "none"),
    (oci.DOCKER_LAYER_GZIP, "gzip"),
])
def test_layer_compression(media_type, compression):
    assert oci.layer_compression(media_type) == compression


@pytest.mark.parametrize("media_type", [
    oci.DOCKER_FOREIGN_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
])
def test_foreign_layers_are_unsupported(media_type):
    with pytest.raises(UnsupportedMediaType, match="foreign"):
        oci.layer_compression(media_type)


@pytest.mark.parametrize("media_type", ["", "application/octet-stream", oci.OCI_CONFIG,
                                        "application/vnd.oci.image.layer.v1.tar+bzip2"])
def test_unknown_layer_types_are_unsupported(media_type):
    with pytest.raises(UnsupportedMediaType, match="unknown"):
        oci.layer_compression(media_type)


# ---------------------------------------------------------------- manifests

def test_parse_oci_manifest():
    m = oci.parse_manifest(json_bytes(manifest_doc()))
    assert m.media_type == oci.OCI_MANIFEST
    assert m.config == oci.Descriptor(oci.OCI_CONFIG, D3, 500)
    assert [(l.media_type, l.digest, l.size) for l in m.layers] == [
        (oci.OCI_LAYER_GZIP, D1, 100), (oci.OCI_LAYER, D2, 200)]


def test_parse_docker_manifest():
    doc = manifest_doc(mediaType=oci.DOCKER_MANIFEST, config=desc(oci.DOCKER_CONFIG, D3, 7),
                       layers=[desc(oci.DOCKER_LAYER_GZIP, D1, 1)])
    m = oci.parse_manifest(json_bytes(doc))
    assert m.media_type == oci.DOCKER_MANIFEST
    assert m.layers[0].media_type == oci.DOCKER_LAYER_GZIP


def test_manifest_without_media_type_is_guessed_oci():
    doc = manifest_doc()
    del doc["mediaType"]
    assert oci.parse_manifest(json_bytes(doc)).media_type == oci.OCI_MANIFEST


def test_manifest_keeps_layer_annotations():
    doc = manifest_doc(layers=[desc(annotations={"k": "v"})])
    assert oci.parse_manifest(json_bytes(doc)).layers[0].annotations == {"k": "v"}


def test_manifest_with_no_layers_parses():
    assert oci.parse_manifest(json_bytes(manifest_doc(layers=[]))).layers == ()


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b"\xff\xfe\x00", b"[]", b'"manifest"', b"42",
                                  b"null"])
def test_manifest_malformed_json(data):
    with pytest.raises(BadImage):
        oci.parse_manifest(data)


@pytest.mark.parametrize("overrides", [
    {"layers": "nope"},
    {"layers": None},
    {"layers": {}},
    {"layers": [5]},
    {"config": None},
    {"config": "sha256:x"},
    {"config": desc(digest="sha256:short")},
    {"config": desc(size="10")},
    {"config": desc(size=-1)},
    {"config": desc(size=True)},
    {"config": desc(size=1.5)},
    {"config": {"mediaType": oci.OCI_CONFIG, "digest": D1}},          # no size
    {"config": {"mediaType": oci.OCI_CONFIG, "size": 1}},             # no digest
    {"config": desc(mediaType=7)},
    {"layers": [desc(annotations=["k"])]},
    {"layers": [desc(platform="linux")]},
])
def test_manifest_wrong_types_or_missing_fields(overrides):
    with pytest.raises(BadImage):
        oci.parse_manifest(json_bytes(manifest_doc(**overrides)))


def test_manifest_missing_layers_key():
    doc = manifest_doc()
    del doc["layers"]   # mediaType is still declared, so the shape is not guessed
    with pytest.raises(BadImage):
        oci.parse_manifest(json_bytes(doc))


@pytest.mark.parametrize("doc", [
    {"schemaVersion": 1, "name": "library/busybox", "tag": "latest", "fsLayers": [], "history": []},
    {"schemaVersion": 1, "mediaType": oci.DOCKER_SCHEMA1, "fsLayers": []},
    {"schemaVersion": 1, "mediaType": oci.DOCKER_SCHEMA1_SIGNED, "fsLayers": [], "signatures": []},
])
def test_schema1_is_unsupported(doc):
    with pytest.raises(UnsupportedMediaType, match="schema 1"):
        oci.parse_manifest(json_bytes(doc))


@pytest.mark.parametrize("media_type", [oci.OCI_INDEX, oci.DOCKER_LIST, "application/json"])
def test_manifest_with_other_media_type_is_unsupported(media_type):
    with pytest.raises(UnsupportedMediaType):
        oci.parse_manifest(json_bytes(manifest_doc(mediaType=media_type)))


def test_manifest_with_neither_shape():
    with pytest.raises(BadImage):
        oci.parse_manifest(json_bytes({"schemaVersion": 2}))


def test_manifest_with_unknown_layer_type():
    doc = manifest_doc(layers=[desc("application/x-tar+lz4")])
    with pytest.raises(UnsupportedMediaType):
        oci.parse_manifest(json_bytes(doc))


def test_manifest_with_foreign_layer():
    doc = manifest_doc(mediaType=oci.DOCKER_MANIFEST,
                       layers=[desc(oci.DOCKER_LAYER_GZIP), desc(oci.DOCKER_FOREIGN_LAYER, D2)])
    with pytest.raises(UnsupportedMediaType, match="foreign"):
        oci.parse_manifest(json_bytes(doc))


def test_manifest_to_bytes_round_trip():
    original = oci.Manifest(
        oci.DOCKER_MANIFEST,
        oci.Descriptor(oci.DOCKER_CONFIG, D3, 1234),
        (oci.Descriptor(oci.DOCKER_LAYER_GZIP, D1, 10, {"a": "b"}),
         oci.Descriptor(oci.DOCKER_LAYER, D2, 0, platform=oci.Platform("linux", "arm64", "v8"))))
    data = original.to_bytes()
    assert json.loads(data)["schemaVersion"] == 2
    parsed = oci.parse_manifest(data)
    assert parsed == original
    assert parsed.layers[0].annotations == {"a": "b"}          # annotations are not compared by ==
    assert parsed.layers[1].platform == oci.Platform("linux", "arm64", "v8")
    assert parsed.to_bytes() == data


# ---------------------------------------------------------------- indexes

def test_parse_oci_index_with_platforms():
    doc = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        desc(oci.OCI_MANIFEST, D1, 5, platform={"os": "linux", "architecture": "amd64"}),
        desc(oci.OCI_MANIFEST, D2, 6, platform={"os": "linux", "architecture": "arm", "variant": "v7"},
             annotations={oci.ANNOTATION_REF_NAME: "v1"}),
    ]}
    index = oci.parse_index(json_bytes(doc))
    assert index.media_type == oci.OCI_INDEX
    assert [d.digest for d in index.manifests] == [D1, D2]
    assert str(index.manifests[0].platform) == "linux/amd64"
    assert str(index.manifests[1].platform) == "linux/arm/v7"
    assert index.manifests[1].annotations[oci.ANNOTATION_REF_NAME] == "v1"


def test_parse_docker_list_and_default_media_type():
    docker = oci.parse_index(json_bytes({"mediaType": oci.DOCKER_LIST, "manifests": []}))
    assert docker.media_type == oci.DOCKER_LIST and docker.manifests == ()
    assert oci.parse_index(json_bytes({"manifests": []})).media_type == oci.OCI_INDEX


def test_index_entry_without_platform():
    index = oci.parse_index(json_bytes({"manifests": [desc(oci.OCI_MANIFEST)]}))
    assert index.manifests[0].platform is None


@pytest.mark.parametrize("doc", [
    {"mediaType": oci.OCI_MANIFEST, "manifests": []},
    {"mediaType": "text/plain", "manifests": []},
])
def test_index_unsupported_media_type(doc):
    with pytest.raises(UnsupportedMediaType):
        oci.parse_index(json_bytes(doc))


@pytest.mark.parametrize("doc", [
    {},
    {"manifests": None},
    {"manifests": "x"},
    {"manifests": [None]},
    {"manifests": [desc(digest="sha256:0")]},
    {"manifests": [desc(platform=["linux"])]},
])
def test_index_malformed(doc):
    with pytest.raises(BadImage):
        oci.parse_index(json_bytes(doc))


@pytest.mark.parametrize("data", [b"", b"{]", b"[1]", b"\x80"])
def test_index_malformed_json(data):
    with pytest.raises(BadImage):
        oci.parse_index(data)


# ---------------------------------------------------------------- configs

CONFIG = {
    "architecture": "arm64", "os": "linux", "variant": "v8", "created": "2024-01-02T03:04:05Z",
    "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
    "config": {"Env": ["PATH=/bin", "A=1"], "Entrypoint": ["/init"], "Cmd": ["-x", "y"],
               "WorkingDir": "/srv", "User": "app:staff", "Labels": {"l": "v"}},
}


def test_parse_config_fields():
    cfg = oci.parse_config(json_bytes(CONFIG))
    assert cfg.diff_ids == (D1, D2)
    assert cfg.env == ("PATH=/bin", "A=1")
    assert cfg.entrypoint == ("/init",)
    assert cfg.cmd == ("-x", "y")
    assert cfg.working_dir == "/srv"
    assert cfg.user == "app:staff"
    assert cfg.created == "2024-01-02T03:04:05Z"
    assert cfg.platform == oci.Platform("linux", "arm64", "v8")
    assert cfg.raw["config"]["Labels"] == {"l": "v"}


def test_parse_config_defaults_when_process_fields_absent():
    cfg = oci.parse_config(json_bytes({"rootfs": {"type": "layers"}}))
    assert (cfg.env, cfg.entrypoint, cfg.cmd, cfg.working_dir, cfg.user, cfg.diff_ids) == \
        ((), (), (), "", "", ())
    assert str(cfg.platform) == ""


def test_parse_config_nulls_are_empty():
    doc = {"rootfs": {"diff_ids": []},
           "config": {"Env": None, "Entrypoint": None, "Cmd": None, "WorkingDir": None, "User": None}}
    cfg = oci.parse_config(json_bytes(doc))
    assert (cfg.env, cfg.entrypoint, cfg.cmd, cfg.working_dir, cfg.user) == ((), (), (), "", "")


@pytest.mark.parametrize("doc", [
    {},
    {"rootfs": None},
    {"rootfs": []},
    {"rootfs": {"diff_ids": "sha256:x"}},
    {"rootfs": {"diff_ids": ["sha256:nothex"]}},
    {"rootfs": {"diff_ids": [D1, 3]}},
    {"rootfs": {}, "config": ["Cmd"]},
    {"rootfs": {}, "config": {"Cmd": "echo hi"}},
    {"rootfs": {}, "config": {"Entrypoint": ["/bin/sh", 1]}},
    {"rootfs": {}, "config": {"Env": {"A": "1"}}},
    {"rootfs": {}, "config": {"WorkingDir": ["/"]}},
    {"rootfs": {}, "config": {"User": 1000}},
])
def test_parse_config_malformed(doc):
    with pytest.raises(BadImage):
        oci.parse_config(json_bytes(doc))


@pytest.mark.parametrize("parse", [oci.parse_manifest, oci.parse_index, oci.parse_config])
def test_deeply_nested_json_is_bad_image(parse):
    with pytest.raises(BadImage):
        parse(b"[" * 100_000 + b"]" * 100_000)


# ---------------------------------------------------------------- fuzz

PARSERS = [oci.parse_manifest, oci.parse_index, oci.parse_config]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from([D1, oci.OCI_MANIFEST, oci.OCI_INDEX, oci.OCI_LAYER_GZIP, oci.DOCKER_FOREIGN_LAYER,
                       oci.DOCKER_SCHEMA1]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

KEYS = ["schemaVersion", "mediaType", "config", "layers", "manifests", "digest", "size", "platform",
        "annotations", "rootfs", "diff_ids", "Env", "Cmd", "Entrypoint", "WorkingDir", "User"]

# Objects whose keys are the ones the parsers look at, nested, so the fuzz reaches past the top level.
shaped = st.recursive(
    json_values,
    lambda children: st.dictionaries(st.sampled_from(KEYS), children, max_size=6) | st.lists(children, max_size=3),
    max_leaves=25)


def _only_bad_image(parse, data: bytes) -> None:
    try:
        parse(data)
    except BadImage:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    for parse in PARSERS:
        _only_bad_image(parse, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=json_values)
def test_fuzz_random_json(doc):
    data = json.dumps(doc).encode()
    for parse in PARSERS:
        _only_bad_image(parse, data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=shaped)
def test_fuzz_shaped_json(doc):
    data = json.dumps(doc).encode()
    for parse in PARSERS:
        _only_bad_image(parse, data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=st.fixed_dictionaries({}, optional={k: json_values for k in
                                                 ("mediaType", "digest", "size", "annotations", "platform")}))
def test_fuzz_one_descriptor_in_valid_manifest(layer):
    """A valid manifest with one fuzzed layer descriptor: parses or raises BadImage."""
    data = json_bytes(manifest_doc(layers=[layer]))
    _only_bad_image(oci.parse_manifest, data)


def test_sha_helper_agrees():
    # guards the helper the other unit tests rely on
    assert sha(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
