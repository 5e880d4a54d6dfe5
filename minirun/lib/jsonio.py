"""JSON text in and out through `_json`, the C half of the json package, without
the package itself: `import json` compiles regular expressions and imports re,
enum and functools, ~7 ms that every `minirun run` paid before doing anything.
The store's own files and the run path use this; json.loads and json.dumps
give the same results for text (tests/unit/test_jsonio.py compares them).
Bytes must be UTF-8: json.loads would also detect UTF-16 and UTF-32.

Errors are json's own JSONDecodeError (a ValueError with msg, lineno and
colno), and the package loads only when something is wrong. The C scanner
looks json.decoder up in sys.modules to raise one, without importing it: when
it is absent, some errors (an object cut short, `{`) came out as a SystemError
("returned NULL without setting an exception"). loads() then imports
json.decoder and scans again. A document nested deeper than the interpreter's
recursion limit is a JSONDecodeError too, not a RecursionError.
"""

from __future__ import annotations

import _json

_SPACE = " \t\n\r"


class _Context:
    """What _json.make_scanner reads from a json.JSONDecoder."""
    strict = True
    object_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, object_pairs_hook=None, parse_constant=None):
        self.object_pairs_hook = object_pairs_hook
        self.parse_constant = parse_constant or _CONSTANTS.__getitem__


TOO_DEEP = "Nested too deeply"      # the message of a document deeper than the stack
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_PLAIN = _json.make_scanner(_Context())


def _error(message: str, text: str, pos: int) -> ValueError:
    from json import JSONDecodeError
    return JSONDecodeError(message, text, pos)


def __getattr__(name: str):
    """jsonio.DecodeError is json.JSONDecodeError, imported only when an except
    clause naming it meets an exception (Python evaluates it no sooner)."""
    if name == "DecodeError":
        from json import JSONDecodeError
        return JSONDecodeError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loads(text: str | bytes, object_pairs_hook=None, parse_constant=None):
    """json.loads(text): one JSON value, surrounded by nothing but whitespace."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    scan = _PLAIN if object_pairs_hook is None and parse_constant is None else \
        _json.make_scanner(_Context(object_pairs_hook, parse_constant))
    if text.startswith("\ufeff"):
        raise _error("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan(scan, text, start)
    except StopIteration as stop:
        raise _error("Expecting value", text, stop.value) from None
    except RecursionError:
        raise _error(TOO_DEEP, text, start) from None
    end = len(text) - len(text[end:].lstrip(_SPACE))
    if end != len(text):
        raise _error("Extra data", text, end)
    return value


def _scan(scan, text: str, start: int):
    try:
        return scan(text, start)
    except SystemError:
        import sys
        if "json.decoder" in sys.modules:
            raise
        import json.decoder  # noqa: F401 - what the scanner needs to raise its error
        return scan(text, start)


def load(f):
    """json.load(f)."""
    return loads(f.read())


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


_COMPACT = {}            # separators -> the C encoder, made once


def _c_encoder(separators: tuple[str, str], sort_keys: bool):
    key = (separators, sort_keys)
    if key not in _COMPACT:
        _COMPACT[key] = _json.make_encoder(None, _unserialisable, _json.encode_basestring_ascii, None,
                                           separators[1], separators[0], sort_keys, False, True)
    return _COMPACT[key]


def _unserialisable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value, indent: int | None = None, sort_keys: bool = False,
          separators: tuple[str, str] | None = None) -> str:
    """json.dumps(value, indent=..., sort_keys=..., separators=...), ASCII-only as json's default."""
    if separators is None:
        separators = (", ", ": ") if indent is None else (",", ": ")
    if indent is None:
        if isinstance(value, str):
            return _json.encode_basestring_ascii(value)
        return "".join(_c_encoder(separators, sort_keys)(value, 0))
    chunks: list[str] = []
    _indented(value, chunks, " " * indent, "\n", separators, sort_keys)
    return "".join(chunks)


def dump(value, f, indent: int | None = None, sort_keys: bool = False) -> None:
    """json.dump(value, f, ...)."""
    f.write(dumps(value, indent=indent, sort_keys=sort_keys))


def _indented(value, out: list, step: str, newline: str, separators, sort_keys: bool) -> None:
    """json's indented layout: one item a line, nested containers indented one step more."""
    if isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = newline + step
        out.append("[" + inner)
        for i, item in enumerate(value):
            if i:
                out.append(separators[0] + inner)
            _indented(item, out, step, inner, separators, sort_keys)
        out.append(newline + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + step
        out.append("{" + inner)
        items = sorted(value.items()) if sort_keys else value.items()
        for i, (key, item) in enumerate(items):
            if i:
                out.append(separators[0] + inner)
            out.append(_json.encode_basestring_ascii(_key(key)) + separators[1])
            _indented(item, out, step, inner, separators, sort_keys)
        out.append(newline + "}")
    else:
        _unserialisable(value)


def _key(key) -> str:
    """Keys as json writes them: strings as they are, scalars as their JSON text."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return _float(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
