"""Strict JSON documents from strangers (manifests, indexes, configs, archive
metadata): parsed under a size limit and a depth limit, with one-line errors
naming the document and the field, never a traceback; and typed access to
their fields. oci.py builds its models on these.

parse_json reads strictly: UTF-8 only, no NaN or Infinity, no duplicate keys,
no unpaired surrogate escapes, at most MAX_JSON_DEPTH levels deep.
"""

from __future__ import annotations

from ..lib import jsonio
from ..errors import BadImage, brief

MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 16 << 20
MAX_JSON_DEPTH = 64          # real documents are under 10 levels; commit copies configs recursively

_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "an array", dict: "an object"}


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPES.items() if isinstance(value, kind)),
                type(value).__name__)


def too_large(what: str, size: int | None, limit: int) -> BadImage:
    """The refusal of a document over its limit (size None: it was streamed, size unknown)."""
    said = f"{size} bytes, over" if size is not None else "over"
    return BadImage(f"{what} is {said} the {limit >> 20} MiB limit for such documents",
                    "this is not an image minirun can load; check where it came from")


def parse_json(data: bytes, what: str, limit: int = MAX_MANIFEST_BYTES) -> object:
    """Any JSON value, parsed strictly: UTF-8 only, no NaN or Infinity, no duplicate
    keys, no unpaired surrogate escapes, at most MAX_JSON_DEPTH levels deep."""
    if len(data) > limit:
        raise too_large(what, len(data), limit)
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else str(data)
    except UnicodeDecodeError as exc:
        raise BadImage(f"{what} is not valid JSON: byte {exc.start} is not UTF-8") from None

    def unique(pairs: list) -> dict:
        doc = dict(pairs)
        if len(doc) != len(pairs):
            seen: set = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise BadImage(f"{what} is ambiguous: key {brief(dup)} appears twice in one object")
        return doc

    def constant(name: str):
        raise BadImage(f"{what} is not valid JSON: {name} is not a JSON number")

    try:
        doc = jsonio.loads(text, object_pairs_hook=unique, parse_constant=constant)
    except jsonio.DecodeError as exc:
        if exc.msg == jsonio.TOO_DEEP:
            raise BadImage(f"{what} is nested too deeply to be an image document") from None
        raise BadImage(f"{what} is not valid JSON: {exc.msg.split(' (')[0]} at line {exc.lineno} "
                       f"column {exc.colno}") from None
    except ValueError:      # the only other one: an integer longer than Python converts
        raise BadImage(f"{what} holds a number with thousands of digits") from None
    except RecursionError:
        raise BadImage(f"{what} is nested too deeply to be an image document") from None
    _check_tree(doc, what, _has_surrogate_escape(text))
    return doc


def _has_surrogate_escape(text: str) -> bool:
    """Whether text holds an escape \\uD800-\\uDFFF (which may be unpaired)."""
    at = text.find("\\u")
    while at >= 0:
        if text[at + 2:at + 3] in ("d", "D") and text[at + 3:at + 4] in _SURROGATE_SECOND:
            return True
        at = text.find("\\u", at + 2)
    return False


_SURROGATE_SECOND = frozenset("89abcdefABCDEF")


def _check_tree(doc: object, what: str, check_text: bool) -> None:
    """Depth, and (when the text has surrogate escapes) that every string is valid Unicode."""
    stack = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if check_text:
                _check_unicode(value, what)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise BadImage(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep, "
                           "too deep to be an image document")
        children = value.values() if isinstance(value, dict) else value
        if check_text and isinstance(value, dict):
            for key in value:
                _check_unicode(key, what)
        stack.extend((child, depth + 1) for child in children)


def _check_unicode(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadImage(f"{what} holds an unpaired UTF-16 surrogate "
                       f"({text[exc.start]!r}) in the string {brief(text)}") from None


def load_json(data: bytes, what: str, limit: int = MAX_MANIFEST_BYTES) -> dict:
    """A JSON object, parsed as parse_json does."""
    doc = parse_json(data, what, limit)
    if not isinstance(doc, dict):
        raise BadImage(f"{what} must be a JSON object, got {json_type(doc)}")
    return doc


def get_field(doc: dict, key: str, kind: type, what: str, *, required: bool = False,
           nullable: bool = True, default=None):
    """doc[key] checked against kind; default when absent (or null, where allowed)."""
    if key not in doc or (doc[key] is None and nullable):
        if required:
            raise BadImage(f"{what} has no {key!r}")
        return default
    value = doc[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BadImage(f"{what}: {key!r} must be {_JSON_TYPES[kind]}, got {json_type(value)}")
    return value


def str_list(doc: dict, key: str, what: str, *, no_nul: bool = False) -> tuple[str, ...]:
    value = get_field(doc, key, list, what, default=[])
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadImage(f"{what}: {key!r} must be a list of strings, but item {i} is {json_type(item)}")
        if no_nul and "\0" in item:
            raise BadImage(f"{what}: {key!r} item {i} holds a NUL character, which no command line can")
    return tuple(value)


def str_map(doc: dict, key: str, what: str) -> dict:
    value = get_field(doc, key, dict, what, default={})
    for name, item in value.items():
        if not isinstance(item, str):
            raise BadImage(f"{what}: {key!r} must map strings to strings, but {brief(name)} "
                           f"maps to {json_type(item)}")
    return value


def text_field(doc: dict, key: str, what: str, *, no_nul: bool = False) -> str:
    value = get_field(doc, key, str, what, default="")
    if no_nul and "\0" in value:
        raise BadImage(f"{what}: {key!r} holds a NUL character")
    return value
