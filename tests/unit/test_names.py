"""minirun.names checks shapes without re; here each function meets the regular
expression it stands for, on generated text drawn from the characters that matter."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirun.lib import names

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
PATTERNS = {
    names.is_sha256_digest: r"sha256:[0-9a-f]{64}",
    names.is_tag: r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
    names.is_hostname: r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}",
    names.is_container_name: r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}",
    names.is_repository_path: rf"{_COMPONENT}(?:/{_COMPONENT})*",
    names.is_registry_host: rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?",
    names.is_hex: r"[0-9a-f]{1,64}",
}

# few characters, so that generated text often has the shape and often just misses it
alphabet = st.sampled_from(list("aZ09f_.-:/[]@ \nAé"))
texts = st.text(alphabet, max_size=12) | st.text(alphabet, min_size=60, max_size=140)


def near_digests():
    hexes = st.text(st.sampled_from(list("0123456789abcdefA:g")), min_size=62, max_size=66)
    return st.builds(lambda prefix, body: prefix + body, st.sampled_from(["sha256:", "sha256", "sha512:", ""]), hexes)


@pytest.mark.parametrize("check", list(PATTERNS), ids=lambda f: f.__name__)
@settings(max_examples=1500, deadline=None)
@given(text=texts | near_digests())
def test_same_as_the_regular_expression(check, text):
    assert check(text) == bool(re.fullmatch(PATTERNS[check], text)), text


@pytest.mark.parametrize("check,text,expected", [
    (names.is_repository_path, "library/busybox", True),
    (names.is_repository_path, "a__b/c---d/e.f_g", True),
    (names.is_repository_path, "a___b", False),
    (names.is_repository_path, "a._b", False),
    (names.is_repository_path, "a//b", False),
    (names.is_repository_path, "A", False),
    (names.is_registry_host, "localhost:5000", True),
    (names.is_registry_host, "[::1]:5000", True),
    (names.is_registry_host, "[::1]", True),
    (names.is_registry_host, "[]", False),
    (names.is_registry_host, "a-.b", False),
    (names.is_registry_host, "host:", False),
    (names.is_registry_host, "host:5000:1", False),
    (names.is_container_name, "web\n", False),
    (names.is_tag, "_v1.0-rc", True),
    (names.is_tag, "x" * 129, False),
    (names.is_hostname, "-x", False),
    (names.is_sha256_digest, "sha256:" + "a" * 64, True),
    (names.is_sha256_digest, "sha256:" + "A" * 64, False),
])
def test_examples(check, text, expected):
    assert check(text) is expected
    assert bool(re.fullmatch(PATTERNS[check], text)) is expected
