"""Fuzz the parsers of untrusted documents with hypothesis: each either returns a
model or raises a MinirunError (one line for the user), never anything else.

Three kinds of input: arbitrary bytes; arbitrary JSON values; and valid
documents with one field dropped, retyped or blown up, which reach deeper
than random data does. tools/fuzz_parsers.py runs the same properties longer.
"""

from __future__ import annotations

import copy
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minirun import oci, reference
from minirun.errors import MinirunError

DIGEST = "sha256:" + "a" * 64
VALID = {
    "manifest": {"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                 "config": {"mediaType": oci.OCI_CONFIG, "digest": DIGEST, "size": 10},
                 "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": DIGEST, "size": 5}]},
    "index": {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
              "manifests": [{"mediaType": oci.OCI_MANIFEST, "digest": DIGEST, "size": 7,
                             "platform": {"os": "linux", "architecture": "amd64"}}]},
    "config": {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
               "config": {"Cmd": ["/bin/sh"], "Env": ["A=1"], "User": "0", "WorkingDir": "/"},
               "rootfs": {"type": "layers", "diff_ids": [DIGEST]}},
}
PARSERS = {"manifest": oci.parse_manifest, "index": oci.parse_index, "config": oci.parse_config}
EXAMPLES = settings(max_examples=int(os.environ.get("MINIRUN_FUZZ_EXAMPLES", "150")), deadline=None,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) |
    st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children,
                                                                      max_size=5),
    max_leaves=25)
weird = st.sampled_from([None, True, 0, -1, 2**70, 1.5, float("inf"), "", "x" * 5000, [], {}, [1, "a"],
                         {"a": {"b": []}}, "sha256:zz", "../../etc", "\udcff"])


def paths(doc, prefix=()):
    """Every (path to a value) in a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from paths(value, prefix + (index,))


def mutate(doc, path, action, value):
    out = copy.deepcopy(doc)
    if not path:
        return value
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if action == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def accepts_or_refuses(parse, data: bytes) -> None:
    try:
        parse(data)
    except MinirunError as err:
        assert err.line() and "\n" not in err.line().strip()


@EXAMPLES
@given(kind=st.sampled_from(sorted(PARSERS)), data=st.binary(max_size=400))
def test_arbitrary_bytes(kind, data):
    accepts_or_refuses(PARSERS[kind], data)


@EXAMPLES
@given(kind=st.sampled_from(sorted(PARSERS)), value=json_values)
def test_arbitrary_json(kind, value):
    accepts_or_refuses(PARSERS[kind], json.dumps(value).encode())


@EXAMPLES
@given(kind=st.sampled_from(sorted(PARSERS)), choice=st.data(), action=st.sampled_from(["drop", "set"]),
       value=weird | json_values)
def test_valid_documents_with_one_field_broken(kind, choice, action, value):
    doc = VALID[kind]
    path = choice.draw(st.sampled_from(list(paths(doc))))
    if action == "drop" and not path:
        action = "set"
    broken = mutate(doc, path, action, value)
    try:
        data = json.dumps(broken).encode("utf-8", "surrogatepass")
    except (ValueError, UnicodeEncodeError):
        return
    accepts_or_refuses(PARSERS[kind], data)


def test_deep_nesting_and_huge_documents_are_refused_cleanly():
    for data in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        for parse in PARSERS.values():
            accepts_or_refuses(parse, data)
    huge = dict(VALID["manifest"], layers=VALID["manifest"]["layers"] * 100_000)
    accepts_or_refuses(oci.parse_manifest, json.dumps(huge).encode())


def test_the_valid_documents_parse():
    """The mutations start from documents the parsers accept (else the test proves little)."""
    for kind, parse in PARSERS.items():
        parse(json.dumps(VALID[kind]).encode())


@EXAMPLES
@given(text=st.text(max_size=300))
def test_references(text):
    try:
        ref = reference.parse(text)
    except MinirunError as err:
        assert err.exit_code == 2
    else:
        assert reference.parse(str(ref)) == ref
