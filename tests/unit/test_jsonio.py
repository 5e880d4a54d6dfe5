"""minirun.jsonio must read and write exactly what the json package does."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirun.lib import jsonio

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_dumps_matches_json(doc):
    for indent in (None, 1, 2):
        for sort_keys in (False, True):
            assert jsonio.dumps(doc, indent=indent, sort_keys=sort_keys) == \
                json.dumps(doc, indent=indent, sort_keys=sort_keys)
    assert jsonio.dumps(doc, separators=(",", ":")) == json.dumps(doc, separators=(",", ":"))


@settings(max_examples=400, deadline=None)
@given(documents, st.sampled_from(["", " ", "\n\t ", "\r\n"]))
def test_loads_round_trips_what_json_writes(doc, pad):
    for indent in (None, 1):
        text = pad + json.dumps(doc, indent=indent, ensure_ascii=indent is None) + pad
        assert jsonio.loads(text) == json.loads(text)
        assert jsonio.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ["", " ", "[1,", "{\"a\" 1}", "[1] x", "01", "\"\\x\"", "[1]]",
                                  "{\"a\":1,}", "nul", "\"\x01\"", "1 2",
                                  "\ufeff{}"])
def test_errors_are_jsons_errors(text):
    with pytest.raises(json.JSONDecodeError) as ours:
        jsonio.loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert (ours.value.msg, ours.value.pos) == (theirs.value.msg, theirs.value.pos)


def test_hooks_and_constants():
    pairs = jsonio.loads('{"a": 1, "a": 2}', object_pairs_hook=list)
    assert pairs == [("a", 1), ("a", 2)]
    assert math.isnan(jsonio.loads("NaN"))
    assert jsonio.loads("[-Infinity]") == [float("-inf")]
    with pytest.raises(KeyError):
        jsonio.loads("NaN", parse_constant=lambda name: {}[name])
    for value in (float("nan"), float("inf"), -float("inf")):
        assert jsonio.dumps([value], indent=1) == json.dumps([value], indent=1)
        assert jsonio.dumps({value: 1}, indent=1) == json.dumps({value: 1}, indent=1)
    assert jsonio.dumps({1: 2, True: 3, None: 4}, indent=1) == json.dumps({1: 2, True: 3, None: 4}, indent=1)


def test_unserialisable_is_a_type_error():
    for value in ({1, 2}, object(), b"x"):
        with pytest.raises(TypeError):
            jsonio.dumps(value)
        with pytest.raises(TypeError):
            jsonio.dumps([value], indent=1)


def test_importing_it_does_not_import_json():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, minirun.lib.jsonio as j; j.loads('[1]'); "
                          "j.dumps({'a': 1}, indent=1); print(sorted({'json', 're', 'enum'} & set(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_decode_error_is_jsons():
    assert jsonio.DecodeError is json.JSONDecodeError
    with pytest.raises(AttributeError):
        jsonio.NoSuchThing


# Errors the C scanner raises only when json.decoder is already loaded; in this
# process it is (pytest loads json), so these run in a fresh interpreter.
CUT_SHORT = ["{", "{\"a\": 1", "{\"images\": {\"sha256:x\": {\"layers\": [", "{\"a\"", "[{", "{\"a\": {"]


@pytest.mark.parametrize("text", CUT_SHORT)
def test_a_document_cut_short_is_jsons_error_without_json_loaded(text):
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys; from minirun.lib import jsonio\n"
            "assert 'json.decoder' not in sys.modules\n"
            "try:\n    jsonio.loads(sys.argv[1])\n"
            "except ValueError as exc:\n    print(type(exc).__name__, exc.msg, exc.pos)\n")
    out = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert out.stdout == f"JSONDecodeError {theirs.value.msg} {theirs.value.pos}\n"


@pytest.mark.parametrize("text", ["[" * 100_000, "{\"a\":" * 100_000, "[" * 100_000 + "]" * 100_000])
def test_nesting_deeper_than_the_stack_is_a_value_error(text):
    with pytest.raises(json.JSONDecodeError):
        jsonio.loads(text)
