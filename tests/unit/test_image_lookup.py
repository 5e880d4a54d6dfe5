"""Image names as Docker users type them: short id prefixes and close names."""

from __future__ import annotations

import pytest

from minirun.errors import ImageNotFound, UsageError
from minirun.store.index import _suggestion

BUSYBOX = "sha256:" + "ab" * 32
OTHER = "sha256:" + "ac" * 32


@pytest.fixture
def index(tmp_path):
    from minirun.store import ImageRecord
    from minirun.store.index import ImageIndex
    idx = ImageIndex(str(tmp_path / "images.json"), None)
    return idx, {BUSYBOX: ImageRecord("", ()), OTHER: ImageRecord("", ())}, \
        {"docker.io/library/busybox:latest": BUSYBOX, "localhost/myapp:v1": OTHER}


def test_a_unique_short_prefix_names_the_image_and_an_ambiguous_one_says_so(index):
    idx, images, tags = index
    assert idx._find("ab", images, tags) == BUSYBOX
    assert idx._find("aca", images, tags) == OTHER
    with pytest.raises(UsageError, match="ambiguous"):
        idx._find("a", images, tags)
    with pytest.raises(ImageNotFound):
        idx._find("abc", images, tags)


def test_a_missing_name_suggests_the_closest_one():
    tags = {"docker.io/library/busybox:latest": BUSYBOX, "localhost/myapp:v1": OTHER}
    assert _suggestion("busybx", tags).startswith("did you mean busybox?")
    assert _suggestion("localhost/myap:v1", tags).startswith("did you mean localhost/myapp:v1?")
    assert not _suggestion("nginx", tags).startswith("did you mean")
