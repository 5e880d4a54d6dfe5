"""Overlay planning as data: options, lower order, short links, limits, strategy.

(How each strategy talks to the kernel is in test_overlay_strategy.py.)"""

from __future__ import annotations

import pytest

from minirun.linux import overlay
from minirun.errors import EnvironmentProblem, MinirunError, UsageError

UPPER, WORK, BASE = "/s/c/upper", "/s/c/work", "/s/c"
SUFFIX = ",index=off,redirect_dir=off,metacopy=off"


def long_lowers(count: int, width: int = 90) -> list[str]:
    """count distinct absolute paths, each `width` characters long."""
    return [f"/store/layers/{i:06d}".ljust(width - len("/diff"), "x") + "/diff" for i in range(count)]


def options_length(lowers: list[str]) -> int:
    """The absolute option string's length, counted by hand."""
    return (len("lowerdir=") + sum(map(len, lowers)) + len(lowers) - 1
            + len(",upperdir=") + len(UPPER) + len(",workdir=") + len(WORK) + len(SUFFIX))


def test_options_for_a_few_layers():
    spec = overlay.plan(["/l/top", "/l/mid", "/l/base"], UPPER, WORK, BASE)
    assert spec.links == ()
    assert overlay.legacy_options(spec) == (
        "lowerdir=/l/top:/l/mid:/l/base,upperdir=/s/c/upper,workdir=/s/c/work"
        ",index=off,redirect_dir=off,metacopy=off")


def test_fixed_options_are_present():
    options = overlay.legacy_options(overlay.plan(["/a"], UPPER, WORK, BASE)).split(",")
    for wanted in ("index=off", "redirect_dir=off", "metacopy=off"):
        assert wanted in options


def test_lowers_keep_their_order_topmost_first():
    lowers = [f"/l/{name}" for name in ("z", "a", "m", "b")]
    spec = overlay.plan(lowers, UPPER, WORK, BASE)
    assert spec.lowers == tuple(lowers)
    assert overlay.legacy_options(spec).startswith("lowerdir=/l/z:/l/a:/l/m:/l/b,")


def test_short_links_for_200_long_paths():
    lowers = long_lowers(200)
    assert options_length(lowers) > 4095
    spec = overlay.plan(lowers, UPPER, WORK, BASE)
    assert len(spec.links) == 200 == len(set(spec.links))
    assert spec.lowers == tuple(lowers)                     # links stand for lowers in the same order
    assert all(link.startswith("l/") and "/" not in link[2:] for link in spec.links)
    options = overlay.legacy_options(spec)
    lower_part, upper_part, work_part, *rest = options.split(",")
    assert lower_part == "lowerdir=" + ":".join(spec.links)
    assert (upper_part, work_part) == ("upperdir=upper", "workdir=work")
    assert rest == ["index=off", "redirect_dir=off", "metacopy=off"]
    assert len(options) <= 4095


@pytest.mark.parametrize("count", [400, 500])
def test_links_fit_in_a_page_for_up_to_500_layers(count):
    spec = overlay.plan(long_lowers(count, width=200), UPPER, WORK, BASE)
    assert len(spec.links) == count
    assert len(overlay.legacy_options(spec).encode()) <= 4095


def _lowers_of_length(total: int) -> list[str]:
    """Ten lowers whose absolute option string is exactly `total` characters."""
    lowers = long_lowers(10, width=300)
    lowers[-1] += "y" * (total - options_length(lowers))
    assert options_length(lowers) == total
    return lowers


def test_no_links_when_string_is_exactly_a_page_minus_nul():
    lowers = _lowers_of_length(4095)
    spec = overlay.plan(lowers, UPPER, WORK, BASE)
    assert spec.links == ()
    assert len(overlay.legacy_options(spec)) == 4095


def test_links_when_string_is_one_byte_too_long():
    spec = overlay.plan(_lowers_of_length(4096), UPPER, WORK, BASE)
    assert len(spec.links) == 10


def test_page_limit_counts_bytes_not_characters():
    lowers = [f"/st\u00f6re/{i:03d}/" + "\u00e9" * 100 for i in range(20)]
    assert options_length(lowers) <= 4095 < len(
        f"lowerdir={':'.join(lowers)},upperdir={UPPER},workdir={WORK}{SUFFIX}".encode())
    spec = overlay.plan(lowers, UPPER, WORK, BASE)
    assert len(overlay.legacy_options(spec).encode()) <= 4095


def test_500_layers_allowed_501_refused():
    assert len(overlay.plan([f"/l/{i}" for i in range(500)], UPPER, WORK, BASE).lowers) == 500
    with pytest.raises(UsageError):
        overlay.plan([f"/l/{i}" for i in range(501)], UPPER, WORK, BASE)


def test_no_layers_refused():
    with pytest.raises(UsageError):
        overlay.plan([], UPPER, WORK, BASE)


@pytest.mark.parametrize("lowers, upper, work", [
    (["/l/a,b"], UPPER, WORK),
    (["/l/a:b"], UPPER, WORK),
    (["/l/ok", "/l/a\\b"], UPPER, WORK),
    (["/l/ok"], "/s/up,per", WORK),
    (["/l/ok"], UPPER, "/s/wo:rk"),
])
def test_separator_characters_in_paths_raise(lowers, upper, work):
    with pytest.raises(EnvironmentProblem):
        overlay.plan(lowers, upper, work, BASE)


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), ("new", "new"), ("legacy", "legacy"), ("", "auto"),
])
def test_strategy_from_env(monkeypatch, value, expected):
    monkeypatch.setenv("MINIRUN_OVERLAY_API", value)
    assert overlay.strategy_from_env() == expected


def test_strategy_defaults_to_auto(monkeypatch):
    monkeypatch.delenv("MINIRUN_OVERLAY_API", raising=False)
    assert overlay.strategy_from_env() == "auto"


@pytest.mark.parametrize("value", ["LEGACY", "old", "new ", "fsopen"])
def test_invalid_strategy_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv("MINIRUN_OVERLAY_API", value)
    with pytest.raises(UsageError) as info:
        overlay.strategy_from_env()
    assert isinstance(info.value, MinirunError) and "MINIRUN_OVERLAY_API" in info.value.message


def test_volatile_only_with_an_upper_dir():
    spec = overlay.plan(["/l/b", "/l/a"], "/c/upper", "/c/work", "/c", volatile=True)
    assert spec.volatile and overlay.legacy_options(spec).endswith(",metacopy=off,volatile")
    assert not overlay.plan(["/l/b", "/l/a"], "/c/upper", "/c/work", "/c").volatile
    read_only = overlay.plan(["/l/b", "/l/a"], "", "", "/c", volatile=True)
    assert not read_only.volatile and "volatile" not in overlay.legacy_options(read_only)
    deep = overlay.plan([f"/l/{i}" for i in range(500)], "/c/upper", "/c/work", "/c", ["/c/init"], volatile=True)
    assert deep.volatile and not deep.below.volatile
