"""The shapes of the names minirun accepts: digests, tags, repository paths,
registry hosts, hostnames and container names.

They are checked with str methods, not regular expressions: `import re` costs
every `minirun run` ~5 ms (it imports enum and functools and compiles its own
tables), more than the checks of a whole run. tests/unit/test_names.py holds
the regular expressions each function is equal to, and compares them.

only(text, chars) is the building block: text.strip(chars) removes characters
from both ends while they are in chars, so it leaves "" exactly when every
character of text is one of them.
"""

from __future__ import annotations

DIGITS = "0123456789"
LOWER_HEX = DIGITS + "abcdef"
HEX = LOWER_HEX + "ABCDEF"
LOWER_ALNUM = DIGITS + "abcdefghijklmnopqrstuvwxyz"
ALNUM = LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def only(text: str, chars: str) -> bool:
    """Every character of text is one of chars (True for "")."""
    return not text.strip(chars)


def is_hex(text: str, low: int = 1, high: int = 64) -> bool:
    """[0-9a-f]{low,high}"""
    return low <= len(text) <= high and only(text, LOWER_HEX)


def is_sha256_digest(text: str) -> bool:
    """sha256:[0-9a-f]{64}"""
    return len(text) == 71 and text.startswith("sha256:") and only(text[7:], LOWER_HEX)


def _led_by(text: str, first: str, rest: str, most: int) -> bool:
    """[first][rest]{0,most-1}"""
    return 0 < len(text) <= most and text[0] in first and only(text[1:], rest)


def is_tag(text: str) -> bool:
    """[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"""
    return _led_by(text, ALNUM + "_", ALNUM + "_.-", 128)


def is_hostname(text: str) -> bool:
    """[A-Za-z0-9][A-Za-z0-9.-]{0,63} (what --hostname accepts)"""
    return _led_by(text, ALNUM, ALNUM + ".-", 64)


def is_container_name(text: str) -> bool:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}"""
    return _led_by(text, ALNUM, ALNUM + "_.-", 128)


def _is_path_component(part: str) -> bool:
    """[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*: runs of lowercase letters and digits,
    joined by one '.', one '_', two '_' or any number of '-'."""
    if not part or not only(part, LOWER_ALNUM + "._-") or \
            part[0] not in LOWER_ALNUM or part[-1] not in LOWER_ALNUM:
        return False
    for separator in part.translate(_ALNUM_TO_SPACE).split():
        if separator not in (".", "_", "__") and not only(separator, "-"):
            return False
    return True


_ALNUM_TO_SPACE = str.maketrans(dict.fromkeys(LOWER_ALNUM, " "))


def is_repository_path(text: str) -> bool:
    """Path components (as above) joined by '/'."""
    return all(_is_path_component(part) for part in text.split("/"))


def _is_dns_label(label: str) -> bool:
    """[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"""
    return bool(label) and only(label, ALNUM + "-") and label[0] != "-" and label[-1] != "-"


def is_registry_host(text: str) -> bool:
    """A DNS name (labels joined by '.') or a bracketed IPv6 address, then an
    optional :port of digits."""
    if text.startswith("["):
        address, bracket, port = text[1:].partition("]")
        if not bracket or not address or not only(address, HEX + ":"):
            return False
    else:
        address, _, _ = text.partition(":")
        if not all(_is_dns_label(label) for label in address.split(".")):
            return False
        port = text[len(address):]
    return not port or (port[0] == ":" and len(port) > 1 and only(port[1:], DIGITS))
