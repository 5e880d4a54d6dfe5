"""Fuzz every parser of untrusted input with hypothesis: each either returns a
valid model or raises a MinirunError whose line is short, printable and one
line; never a KeyError, TypeError, RecursionError, UnicodeError or the like.

The inputs, per parser (TARGETS): arbitrary bytes; arbitrary JSON values; and,
reaching deepest, valid documents with one field dropped, duplicated or replaced
by a raw JSON fragment (each JSON type, 1e400, NaN, 2**70, bad digests, lone
surrogates, huge strings and lists, nesting up to 100000 levels), or with
bytes flipped. The archive targets build a whole docker-archive or OCI archive
around such a document (re-sealing digests so that the fuzz reaches past them)
or break the tar itself (members dropped or turned into links, FIFOs, dirs,
bad sparse headers, truncation, gzip), then read every image and layer.

tools/fuzz_parsers.py runs the same TARGETS much longer and counts inputs.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from minirun import oci
from minirun.oci import reference
from minirun.errors import BadImage, MinirunError, UsageError
from minirun.oci.imageconfig import new_config
from minirun.sources.archive import open_images
from minirun.sources.registry.client import RegistryClient
from minirun.sources.registry.http import Response

EXAMPLES = int(os.environ.get("MINIRUN_FUZZ_EXAMPLES", "300"))


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(doc) -> bytes:
    return json.dumps(doc).encode()


# ---------------------------------------------------------------- valid documents

def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello")
        info.size, info.mtime = 3, 1_600_000_000
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return buf.getvalue()


LAYER = _layer_tar()
CONFIG = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z", "author": "fuzz",
          "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Entrypoint": None, "WorkingDir": "/",
                     "User": "0:0", "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}},
                     "Volumes": {"/data": {}}, "OnBuild": ["RUN x"]},
          "rootfs": {"type": "layers", "diff_ids": [sha(LAYER)]},
          "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "ADD hello", "comment": "c",
                       "empty_layer": False}]}
LAYOUT = {"imageLayoutVersion": "1.0.0"}
CHANGES = ("LABEL x=y", "EXPOSE 8080", "VOLUME /v", "ONBUILD RUN true", "ENV B=2", 'CMD ["sh"]')


def manifest_for(config: bytes) -> dict:
    return {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
            "config": {"mediaType": oci.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": oci.OCI_LAYER, "digest": sha(LAYER), "size": len(LAYER),
                        "annotations": {"k": "v"}}]}


def index_for(manifest: bytes) -> dict:
    return {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
            "manifests": [{"mediaType": oci.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
                           "platform": {"os": "linux", "architecture": "amd64"},
                           "annotations": {oci.ANNOTATION_REF_NAME: "v1"}}]}


def docker_entries(config_name: str) -> list:
    return [{"Config": config_name, "RepoTags": ["fuzz/app:v1"], "Layers": ["layer/layer.tar"]}]


VALID = {"config": CONFIG, "manifest": manifest_for(dumps(CONFIG)),
         "descriptor": index_for(b"")["manifests"][0],
         "index": index_for(dumps(manifest_for(dumps(CONFIG)))), "oci-layout": LAYOUT,
         "manifest.json": docker_entries("config.json"), "repositories": {"fuzz/app": {"v1": "x"}}}

# ---------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats() |
    st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children,
                                                                      max_size=5),
    max_leaves=25)

TYPED = ["null", "true", "false", "0", "-1", "1.5", '"x"', '""', "[]", "{}", '[1, "a"]', '{"a": {"b": []}}']
NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", str(2**63), str(2**63 - 1), str(2**64),
           str(2**70), "-0", "1.0", "5e-400", "9" * 400, "1" * 5000]
DIGESTS = ['"sha256:zz"', f'"sha512:{"a" * 128}"', f'"sha256:{"A" * 64}"', f'"sha256:{"a" * 63}"',
           f'"sha256:{"a" * 64}\\n"', f'"sha256:{"a" * 64}\\u0000"', f'"{"a" * 64}"', '"sha256:"']
UNICODE = ['"\\udcff"', '"\\ud800"', '"a\\udfff\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', '"\u202e"',
           '"\u00e9"', '"\ufeff"', '"\\u001b[31m"', '"../../etc/passwd"', '"/etc/passwd"']

FRAGMENTS = st.one_of(
    st.sampled_from(TYPED + NUMBERS + DIGESTS + UNICODE),
    st.integers(1, 300_000).map(lambda n: json.dumps("x" * n)),                  # huge strings
    st.integers(1, 100_000).map(lambda n: "[" + ",".join(["0"] * n) + "]"),     # huge lists
    st.sampled_from([63, 64, 65, 1_000, 100_000]).map(lambda n: "[" * n + "]" * n),
    st.sampled_from([63, 65, 100_000]).map(lambda n: '{"a":' * n + "1" + "}" * n),
    json_values.map(json.dumps))

HOLE = "@@fuzz-hole@@"


def paths(doc, prefix=()):
    """Every path (a tuple of keys and indexes) to a value in a JSON document, the root first."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from paths(value, prefix + (key,))


def mutate(doc, path: tuple, action: str, fragment: str) -> bytes:
    """doc with the value at path dropped, replaced by a raw JSON fragment, or (dup)
    given a second key of the same name holding the fragment."""
    if not path:
        return fragment.encode()
    out = copy.deepcopy(doc)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "drop":
        del parent[key]
        return dumps(out)
    if action == "dup" and isinstance(parent, dict):
        parent[HOLE] = HOLE
        return json.dumps(out).replace(f'"{HOLE}": "{HOLE}"', f"{json.dumps(key)}: {fragment}").encode()
    parent[key] = HOLE
    return json.dumps(out).replace(f'"{HOLE}"', fragment).encode()


# Fragments aimed at what a field holds, drawn most of the time for such fields.
SIZES = [str(2**63), "1e400", str(2**64), "NaN", str(2**70), "-Infinity", "9" * 400, "-1", "1.0", "-0"]
AIMED = {"size": st.sampled_from(SIZES), "schemaVersion": st.sampled_from(NUMBERS),
         "digest": st.sampled_from(DIGESTS), "diff_ids": st.sampled_from(DIGESTS),
         "mediaType": st.sampled_from(UNICODE + DIGESTS)}


@st.composite
def mutated(draw, doc) -> bytes:
    path = draw(st.sampled_from(list(paths(doc))))
    names = [key for key in path if isinstance(key, str)]
    aimed = AIMED.get(names[-1]) if names else None
    fragment = draw(aimed if aimed is not None and draw(st.integers(0, 3)) else FRAGMENTS)
    return mutate(doc, path, draw(st.sampled_from(["drop", "set", "dup"])), fragment)


@st.composite
def flipped(draw, valid: bytes) -> bytes:
    """valid with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)


def documents(kind: str) -> st.SearchStrategy[bytes]:
    valid = VALID[kind]
    return st.one_of(mutated(valid), st.binary(max_size=300), mutated(valid), json_values.map(dumps),
                     flipped(dumps(valid)), st.just(dumps(valid)))


references = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abcAB09.-_:/@[]", max_size=80),
    st.tuples(st.sampled_from(["busybox", "docker.io/library/a/b", "localhost:5000/x/y:v1",
                               f"quay.io/org/app:1@sha256:{'a' * 64}", "[::1]:5000/a"]),
              st.integers(0, 60), st.text(max_size=3)).map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
    json_values)

# ---------------------------------------------------------------- the checks

def refused_cleanly(err: MinirunError) -> str:
    line = err.line()
    assert "\n" not in line and "\r" not in line and line.isprintable(), line
    assert 0 < len(line) < 600, line
    return "refused"


def check_document(parse, data: bytes) -> str:
    try:
        model = parse(data)
    except MinirunError as err:
        return refused_cleanly(err)
    for desc in _descriptors(model):
        assert oci.check_digest(desc.digest) and 0 <= desc.size < 2**63
        assert all(isinstance(v, str) for v in desc.annotations.values())
    if isinstance(model, oci.Manifest):
        assert oci.parse_manifest(model.to_bytes()) == model
    if isinstance(model, oci.ImageConfig):
        assert all(oci.check_digest(d) for d in model.diff_ids)
        assert not any("\0" in s for s in (*model.env, *model.cmd, *model.entrypoint, model.user))
        _usable_by_commit_and_history(model.raw)
    return "accepted"


def _usable_by_commit_and_history(raw: dict) -> None:
    """What `commit -c` and `history` do with an accepted config must work."""
    doc = new_config(raw, sha(b""), "2024-01-01T00:00:00Z", "fuzz", "c", "a", CHANGES)
    json.dumps(doc)
    for entry in doc["history"]:
        assert all(isinstance(entry.get(key, ""), str) for key in ("created", "created_by", "comment"))


def _descriptors(model) -> tuple:
    if isinstance(model, oci.Manifest):
        return (model.config, *model.layers)
    if isinstance(model, oci.Index):
        return model.manifests
    return (model,) if isinstance(model, oci.Descriptor) else ()


def check_reference(text) -> str:
    try:
        ref = reference.parse(text)
    except MinirunError as err:
        assert isinstance(err, UsageError) and err.exit_code == 2
        return refused_cleanly(err)
    assert reference.parse(str(ref)) == ref
    assert reference.parse(ref.familiar()) == ref, (ref, ref.familiar())
    return "accepted"


# ---------------------------------------------------------------- archives

def blob(data: bytes) -> tuple[str, bytes]:
    return "blobs/sha256/" + sha(data)[7:], data


def oci_members(part: str, data: bytes) -> dict:
    """An OCI archive's files with one part replaced; digests re-sealed above it."""
    config = data if part == "config" else dumps(CONFIG)
    manifest = data if part == "manifest" else dumps(manifest_for(config))
    index = data if part == "index.json" else dumps(index_for(manifest))
    layout = data if part == "oci-layout" else dumps(LAYOUT)
    return dict([("oci-layout", layout), ("index.json", index), blob(manifest), blob(config), blob(LAYER)])


def docker_members(part: str, data: bytes) -> dict:
    config = data if part == "config" else dumps(CONFIG)
    name = sha(config)[7:] + ".json"
    entries = data if part == "manifest.json" else dumps(docker_entries(name))
    repositories = data if part == "repositories" else dumps(VALID["repositories"])
    return {"manifest.json": entries, name: config, "layer/layer.tar": LAYER, "repositories": repositories}


PART_KIND = {"config": "config", "manifest": "manifest", "index.json": "index", "oci-layout": "oci-layout",
             "manifest.json": "manifest.json", "repositories": "repositories"}
SPECIALS = ["drop", "symlink-out", "symlink-self", "hardlink-missing", "dir", "fifo", "sparse"]


def tar_of(members: dict, special: str | None = None, victim: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            if name == victim and special:
                if special == "drop":
                    continue
                kinds = {"symlink-out": (tarfile.SYMTYPE, "../../etc/passwd"),
                         "symlink-self": (tarfile.SYMTYPE, os.path.basename(name)),
                         "hardlink-missing": (tarfile.LNKTYPE, "nowhere"), "dir": (tarfile.DIRTYPE, ""),
                         "fifo": (tarfile.FIFOTYPE, "")}
                if special in kinds:
                    (info.type, info.linkname), info.size = kinds[special], 0
                    tar.addfile(info)
                    continue
                info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                                    "GNU.sparse.map": "x,y", "GNU.sparse.realsize": "z"}
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@st.composite
def archives(draw, fmt: str) -> bytes:
    build = oci_members if fmt == "oci" else docker_members
    parts = ["config", "manifest", "index.json", "oci-layout"] if fmt == "oci" else \
        ["config", "manifest.json", "repositories"]
    part = draw(st.sampled_from(parts + ["tar"]))
    if part == "tar":
        members = build("", b"")
        data = tar_of(members, draw(st.sampled_from(SPECIALS)), draw(st.sampled_from(sorted(members))))
    else:
        data = tar_of(build(part, draw(documents(PART_KIND[part]))))
    if draw(st.integers(0, 4)) == 0:
        data = draw(flipped(data))
    return gzip.compress(data, mtime=0) if draw(st.integers(0, 5)) == 0 else data


def check_archive(data: bytes) -> str:
    with tempfile.TemporaryDirectory(prefix="minirun-fuzz-") as tmp:
        path = os.path.join(tmp, "image.tar")
        with open(path, "wb") as f:
            f.write(data)
        try:
            with open_images(path) as images:
                for image in images:
                    _check_image(image)
        except MinirunError as err:
            return refused_cleanly(err)
    return "accepted"


def _check_image(image) -> None:
    config = oci.parse_config(image.config_bytes)
    assert len(config.diff_ids) == len(image.layers)
    if image.manifest_bytes is not None:
        assert oci.parse_manifest(image.manifest_bytes).config.digest == sha(image.config_bytes)
    assert all(reference.parse(ref) for ref in image.refs)
    for layer in image.layers:
        with layer.open() as stream:
            while stream.read(1 << 16):
                pass


# ---------------------------------------------------------------- targets

def _descriptor(data: bytes) -> str:
    return check_document(lambda d: oci.parse_descriptor(oci.parse_json(d, "descriptor"), "descriptor"), data)


TARGETS = {
    "manifest": (documents("manifest"), lambda data: check_document(oci.parse_manifest, data)),
    "index": (documents("index"), lambda data: check_document(oci.parse_index, data)),
    "config": (documents("config"), lambda data: check_document(oci.parse_config, data)),
    "descriptor": (documents("descriptor"), _descriptor),
    "reference": (references, check_reference),
    "docker-archive": (archives("docker"), check_archive),
    "oci-archive": (archives("oci"), check_archive),
}


def run(name: str, examples: int, seen=None, seed: int | None = None) -> None:
    """Run one target for `examples` inputs; seen(outcome) hears of each."""
    strategy, check = TARGETS[name]

    def one(value):
        outcome = check(value)
        if seen is not None:
            seen(outcome)

    test = given(strategy)(settings(max_examples=examples, deadline=None, database=None,
                                    suppress_health_check=list(HealthCheck))(one))
    (test if seed is None else hypothesis_seed(seed)(test))()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz(name):
    run(name, EXAMPLES if "archive" not in name else max(EXAMPLES // 2, 10))


# ---------------------------------------------------------------- the fuzz can fail

def test_the_valid_inputs_are_accepted():
    """Mutations start from documents and archives the parsers accept."""
    for kind, parse in (("manifest", oci.parse_manifest), ("index", oci.parse_index),
                        ("config", oci.parse_config)):
        assert check_document(parse, dumps(VALID[kind])) == "accepted"
    assert check_archive(tar_of(oci_members("", b""))) == "accepted"
    assert check_archive(tar_of(docker_members("", b""))) == "accepted"
    assert check_archive(gzip.compress(tar_of(docker_members("repositories", b"[[garbage")))) == "accepted"


def _dup_keys(data: bytes) -> bool:
    def hook(pairs):
        if len({k for k, _ in pairs}) != len(pairs):
            raise KeyError("dup")
        return dict(pairs)
    try:
        json.loads(data, object_pairs_hook=hook)
    except KeyError:
        return True
    except (ValueError, RecursionError):
        pass
    return False


def _parses_to(data: bytes, test) -> bool:
    try:
        return test(json.loads(data))
    except (ValueError, RecursionError):
        return False


def _size_of_first_layer(doc):
    return isinstance(doc, dict) and isinstance(doc.get("layers"), list) and doc["layers"] and \
        isinstance(doc["layers"][0], dict) and doc["layers"][0].get("size")


INPUT_CLASSES = {
    "nested 100000 deep": lambda d: d.count(b"[") >= 100_000,
    "duplicate keys": _dup_keys,
    "NaN or 1e400": lambda d: _parses_to(d, lambda doc: isinstance(_size_of_first_layer(doc), float)),
    "size over int64": lambda d: _parses_to(d, lambda doc: type(_size_of_first_layer(doc)) is int
                                            and _size_of_first_layer(doc) >= 2**63),
    "lone surrogate": lambda d: b"\\udcff" in d or b"\\ud800" in d,
    "config not an object": lambda d: _parses_to(d, lambda doc: isinstance(doc, dict) and "layers" in doc
                                                 and not isinstance(doc.get("config"), dict)),
    "invalid UTF-8": lambda d: not _utf8(d),
}


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@pytest.mark.parametrize("name", sorted(INPUT_CLASSES))
def test_the_manifest_inputs_include(name):
    """Each class of hostile input the issue names is generated (else the fuzz proves little)."""
    find(documents("manifest"), INPUT_CLASSES[name],
         settings=settings(max_examples=5000, database=None, suppress_health_check=list(HealthCheck)))


def test_a_planted_escape_is_caught():
    """A parser that lets a KeyError out fails the property."""
    def naive(data: bytes):
        try:
            return json.loads(data)["layers"]
        except ValueError:
            raise BadImage("not JSON") from None
    @settings(max_examples=500, database=None, deadline=None, report_multiple_bugs=False)
    @given(documents("manifest"))
    def fuzz(data):
        check_document(naive, data)
    with pytest.raises((KeyError, TypeError, RecursionError)):
        fuzz()


# ---------------------------------------------------------------- huge inputs

@pytest.mark.parametrize("parse, limit", [(oci.parse_manifest, oci.MAX_MANIFEST_BYTES),
                                          (oci.parse_index, oci.MAX_MANIFEST_BYTES),
                                          (oci.parse_config, oci.MAX_CONFIG_BYTES)])
def test_documents_over_their_limit_are_refused_and_at_the_limit_parsed(parse, limit):
    kind = {oci.parse_manifest: "manifest", oci.parse_index: "index", oci.parse_config: "config"}[parse]
    doc = dumps(VALID[kind])
    at_limit = doc[:-1] + b" " * (limit - len(doc)) + b"}"
    assert len(at_limit) == limit
    parse(at_limit)
    with pytest.raises(BadImage, match="limit"):
        parse(at_limit[:-1] + b" }")


class FakeHttp:
    def __init__(self, body: bytes, headers: dict):
        self.body, self.headers = body, headers

    def request(self, method, url, headers=None, body=None, auth_for=None) -> Response:
        return Response(200, dict(self.headers), url, None, self.body)


@pytest.mark.parametrize("announce", [True, False])
def test_registry_manifests_over_the_limit_are_refused(announce):
    body = b" " * (oci.MAX_MANIFEST_BYTES + 1)
    headers = {"content-type": oci.OCI_MANIFEST, **({"content-length": str(len(body))} if announce else {})}
    client = RegistryClient("localhost:5000", http=FakeHttp(body, headers), creds=("u", "p"))
    with pytest.raises(BadImage, match="4 MiB limit"):
        client.get_manifest("x/y", "v1")
    exact = dumps(VALID["manifest"])
    client = RegistryClient("localhost:5000", http=FakeHttp(exact, {"content-type": oci.OCI_MANIFEST}),
                            creds=("u", "p"))
    assert client.get_manifest("x/y", "v1") == (exact, oci.OCI_MANIFEST, sha(exact))
