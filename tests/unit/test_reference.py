"""Image references: Docker's normalisation, familiar names, malformed input."""

from __future__ import annotations

import pytest

from minirun.oci import reference
from minirun.errors import UsageError

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("busybox", "docker.io", "library/busybox", "latest", ""),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
    ("user/app", "docker.io", "user/app", "latest", ""),
    ("user/app:v2", "docker.io", "user/app", "v2", ""),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", ""),
    ("host:5000/x/y:tag", "host:5000", "x/y", "tag", ""),
    ("quay.io/org/app", "quay.io", "org/app", "latest", ""),
    ("localhost/x", "localhost", "x", "latest", ""),
    ("localhost:5000/x", "localhost:5000", "x", "latest", ""),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", ""),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", ""),
    ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", ""),
    ("registry-1.docker.io/library/alpine", "docker.io", "library/alpine", "latest", ""),
    ("busybox@" + DIGEST, "docker.io", "library/busybox", "", DIGEST),
    ("busybox:1.36@" + DIGEST, "docker.io", "library/busybox", "1.36", DIGEST),
    ("host:5000/x/y@" + DIGEST, "host:5000", "x/y", "", DIGEST),
    ("user/a.b_c__d-e--f", "docker.io", "user/a.b_c__d-e--f", "latest", ""),
    ("busybox:Latest_1.x-Y", "docker.io", "library/busybox", "Latest_1.x-Y", ""),
])
def test_parse_normalises_like_docker(text, registry, repository, tag, digest):
    ref = reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize("text, full", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("host:5000/x/y:tag", "host:5000/x/y:tag"),
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST),
    ("busybox:1.36@" + DIGEST, "docker.io/library/busybox:1.36@" + DIGEST),
])
def test_str_is_the_full_reference(text, full):
    assert str(reference.parse(text)) == full


def test_normalised_form_parses_to_itself():
    for text in ("busybox", "user/app:v1", "host:5000/x/y@" + DIGEST):
        once = str(reference.parse(text))
        assert str(reference.parse(once)) == once


@pytest.mark.parametrize("text, familiar", [
    ("busybox", "busybox:latest"),
    ("docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "user/app:latest"),
    ("quay.io/org/app:v1", "quay.io/org/app:v1"),
    ("quay.io/library/app", "quay.io/library/app:latest"),   # library/ is folded on docker.io only
    ("localhost/x", "localhost/x:latest"),
    ("busybox@" + DIGEST, "busybox@" + DIGEST),
    ("busybox:1@" + DIGEST, "busybox:1@" + DIGEST),
])
def test_familiar(text, familiar):
    assert reference.parse(text).familiar() == familiar


@pytest.mark.parametrize("text", [
    "",
    " busybox",
    "busybox ",
    "busy box",
    "Busybox",
    "user/App",
    "/busybox",
    "busybox/",
    "a//b",
    "busybox:",
    "busybox:-tag",
    "busybox:.tag",
    "busybox:" + "t" * 129,
    "busybox@",
    "busybox@sha256:abc",
    "busybox@sha256:" + HEX.upper(),
    "busybox@sha512:" + HEX,
    "busybox@" + DIGEST + "0",
    "busybox:1@sha256:",
    "host:port/x",
    "docker.io/" + "a" * 250,
])
def test_malformed_references_raise_usage_error(text):
    with pytest.raises(UsageError):
        reference.parse(text)


def test_longest_tag_is_accepted():
    assert reference.parse("busybox:" + "t" * 128).tag == "t" * 128


@pytest.mark.parametrize("text", ["busybox\n:latest", "busybox:v1\n@" + DIGEST])
def test_newline_inside_reference_is_rejected(text):
    with pytest.raises(UsageError):
        reference.parse(text)


def test_non_ascii_tag_is_rejected():
    with pytest.raises(UsageError):
        reference.parse("busybox:caf\u00e9")


@pytest.mark.parametrize("text, expected", [
    ("a" * 12, True),
    ("0123456789ab", True),
    ("sha256:" + "a" * 12, True),
    (HEX, True),
    ("sha256:" + HEX, True),
    ("a" * 11, False),
    ("sha256:" + "a" * 11, False),
    (HEX + "0", False),
    ("A" * 12, False),
    ("g" * 12, False),
    ("busybox", False),
    ("sha256:", False),
    ("", False),
])
def test_is_id_prefix(text, expected):
    assert reference.is_id_prefix(text) is expected
