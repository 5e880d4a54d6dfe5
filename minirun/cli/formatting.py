"""--format for listings, as docker spells it:

    (none) or "table"     the command's own table
    json                  one JSON object per row (per line)
    '{{.ID}} {{.Size}}'   a Go-template-like line per row: {{.Field}}, {{.Field.Sub}},
                          {{.}} (the whole row), {{json .Field}}; \\t and \\n in the
                          template become a tab and a newline
    'table {{.ID}}\\t{{.Image}}'   the same, with a header row of the field names,
                          columns aligned

Only field lookups and `json` are understood: an unknown field or any other
function is a usage error naming the fields there are. Nothing heavy imported.

Text from images and containers (a Cmd, history, labels, the names of files a
container wrote) may hold escape sequences that clear or retitle the terminal,
move the cursor over earlier lines, or reorder text (bidi overrides). Every
table, template and human line goes through visible(), which shows them as
\x1b, \n, \u202e ...; a template's own tabs and newlines stay. JSON output is
left alone: it escapes every control and non-ASCII character already.
"""

from __future__ import annotations

import json
import re

from ..errors import UsageError

_ACTION = re.compile(r"\{\{-?\s*(?:(json)\s+)?\.([A-Za-z_][\w.]*)?\s*-?\}\}")
_ANY_ACTION = re.compile(r"\{\{.*?\}\}")


def check(fmt: str | None) -> None:
    """Refuse a format no command understands, before any work is done."""
    if fmt in (None, "", "table", "json"):
        return
    body = fmt[len("table "):] if fmt.startswith("table ") else fmt
    if "{{" not in body:
        raise UsageError(f"unknown --format {fmt!r}",
                         "use json, a template such as '{{.ID}}', or leave it out for a table")
    actions = _ANY_ACTION.findall(body)
    if body.count("{{") != len(actions) or body.count("}}") != len(actions):
        raise UsageError(f"--format {fmt!r}: an action is not closed (write {{{{.Field}}}})")
    for action in actions:
        if not _ACTION.fullmatch(action):
            raise UsageError(f"--format: {action} is not a field: minirun templates know "
                             "{{.Field}}, {{.Field.Sub}}, {{.}} and {{json .Field}}")


def _escapes() -> dict[int, str]:
    short = {0x09: "\\t", 0x0a: "\\n", 0x0d: "\\r"}
    table = {code: short.get(code, f"\\x{code:02x}") for code in (*range(0x20), *range(0x7f, 0xa0))}
    # bidi marks, embeddings, overrides and isolates; the line and paragraph separators
    for code in (0x061c, 0x200e, 0x200f, *range(0x2028, 0x202f), *range(0x2066, 0x206a)):
        table[code] = f"\\u{code:04x}"
    # a name's bytes that are not UTF-8 (surrogateescape): written out raw, 0x9b is
    # a terminal's CSI; shown as the byte they stand for
    for code in range(0xdc80, 0xdd00):
        table[code] = f"\\x{code - 0xdc00:02x}"
    return table


_ESCAPES = _escapes()


def visible(text) -> str:
    """text as a terminal may show it: control characters (C0, DEL, C1) and bidi
    controls become visible escapes. A backslash stays itself, so the escapes are
    for eyes, not for parsing (use --format json for that)."""
    text = str(text)
    return text if text.isprintable() else text.translate(_ESCAPES)


def print_table(rows: list[tuple]) -> None:
    """Aligned columns, three spaces apart, every cell made visible()."""
    cells = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_json_list(items) -> None:
    """A JSON list (indent 1, as json.dumps gives it) of the items, printed as they come."""
    first = True
    for item in items:
        print("[" if first else ",")
        print(" " + json.dumps(item, indent=1).replace("\n", "\n "), end="")
        first = False
    print("[]" if first else "\n]")


def print_lines(lines) -> None:
    """Human lines that may hold text from an image or a container, one print each."""
    for line in lines:
        print(visible(line))


def is_template(fmt: str | None) -> bool:
    return fmt not in (None, "", "table", "json")


def print_rows(rows, fmt: str) -> None:
    """rows (dicts, any iterable) as JSON lines or through a template (fmt: json or a
    template), each printed as it comes; only a `table ...` template, which aligns
    its columns, holds them all."""
    check(fmt)
    if fmt == "json":
        for row in rows:
            print(json.dumps(row))
        return
    table = fmt.startswith("table ")
    template = (fmt[len("table "):] if table else fmt).replace("\\t", "\t").replace("\\n", "\n")
    if not table:
        for row in rows:
            print(expand(template, row))
        return
    lines = [expand(template, row) for row in rows]
    header = _ACTION.sub(lambda m: _header(m.group(2) or ""), template)
    cells = [line.split("\t") for line in [header, *lines]]
    width = max(len(c) for c in cells)
    widths = [max(len(c[i]) if i < len(c) else 0 for c in cells) for i in range(width)]
    for row in cells:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def expand(template: str, row: dict) -> str:
    def one(match: re.Match) -> str:
        value = lookup(row, match.group(2) or "")
        if match.group(1):
            return json.dumps(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, bool):             # as Go prints them: scripts compare with "true"
            return "true" if value else "false"
        return "<nil>" if value is None else visible(value)
    return _ACTION.sub(one, template)


def lookup(doc, path: str):
    value = doc
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict) or part not in value:
            known = ", ".join(sorted(value)) if isinstance(value, dict) else "none (not an object)"
            raise UsageError(f"--format: no field .{path} (fields here: {known})")
        value = value[part]
    return value


def _header(path: str) -> str:
    """docker's header for a column: the last field name, in capitals."""
    name = path.rsplit(".", 1)[-1] if path else "VALUE"
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()
