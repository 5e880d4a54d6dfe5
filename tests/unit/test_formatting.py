"""--format: json lines, Go-template-like lines, and 'table TEMPLATE'."""

from __future__ import annotations

import json

import pytest

from minirun.cli import formatting
from minirun.errors import UsageError

ROWS = [{"ID": "abc", "Size": 10, "State": {"Status": "running", "Pid": 7}, "Tags": ["a", "b"]},
        {"ID": "defgh", "Size": 2000, "State": {"Status": "exited", "Pid": 0}, "Tags": []}]


def test_json_lines(capsys):
    formatting.print_rows(ROWS, "json")
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == ROWS


def test_a_template_per_row_with_nested_fields_json_and_escapes(capsys):
    formatting.print_rows(ROWS, r"{{.ID}}\t{{ .State.Status }} {{json .Tags}} {{.State}}")
    assert capsys.readouterr().out.splitlines() == [
        'abc\trunning ["a", "b"] {"Status": "running", "Pid": 7}',
        'defgh\texited [] {"Status": "exited", "Pid": 0}']


def test_table_template_aligns_columns_under_a_header(capsys):
    formatting.print_rows(ROWS, r"table {{.ID}}\t{{.Size}}\t{{.State.Status}}")
    assert capsys.readouterr().out.splitlines() == [
        "ID      SIZE   STATUS",
        "abc     10     running",
        "defgh   2000   exited"]


def test_the_whole_row(capsys):
    formatting.print_rows(ROWS[:1], "{{.}}")
    assert json.loads(capsys.readouterr().out) == ROWS[0]


@pytest.mark.parametrize("fmt", ["yaml", "{{.ID | upper}}", "{{range .Tags}}{{.}}{{end}}", "{{ID}}"])
def test_what_is_not_understood_is_refused_before_any_work(fmt):
    with pytest.raises(UsageError):
        formatting.check(fmt)


def test_an_unknown_field_names_the_fields_there_are():
    with pytest.raises(UsageError, match=r"no field \.State\.Nope \(fields here: Pid, Status\)"):
        formatting.print_rows(ROWS, "{{.State.Nope}}")


@pytest.mark.parametrize("fmt", [None, "", "table", "json", "{{.ID}}", "table {{.ID}}"])
def test_formats_that_pass_the_check(fmt):
    formatting.check(fmt)


def test_booleans_and_nulls_print_as_go_prints_them(capsys):
    formatting.print_rows([{"Running": True, "Dead": False, "Error": None}], "{{.Running}} {{.Dead}} {{.Error}}")
    assert capsys.readouterr().out == "true false <nil>\n"


def test_an_unclosed_action_is_refused():
    with pytest.raises(UsageError, match="not closed"):
        formatting.check("{{.ID}")


HOSTILE = "a\x1b[2J\x1b]0;t\x07\r\nb\tc\x00\x7f\x9b1m\u202ed\u2066e\u2028f"


def test_visible_escapes_every_control_character_and_bidi_override():
    shown = formatting.visible(HOSTILE)
    assert shown == ("a\\x1b[2J\\x1b]0;t\\x07\\r\\nb\\tc\\x00\\x7f\\x9b1m\\u202ed\\u2066e\\u2028f")
    assert shown.isprintable()
    for code in [*range(0x20), *range(0x7f, 0xa0), 0x200e, 0x200f, 0x202a, 0x2069]:
        assert formatting.visible(chr(code)).isprintable(), hex(code)


def test_visible_keeps_ordinary_text_and_other_scripts():
    for text in ("plain", "é 日本 ü", "a\\x1b stays a backslash", "nb\u00a0sp", 42):
        assert formatting.visible(text) == str(text)


def test_tables_and_template_values_are_escaped_json_is_exact(capsys):
    rows = [{"ID": "x", "Cmd": HOSTILE}]
    formatting.print_table([("ID", "CMD"), ("x", HOSTILE)])
    formatting.print_rows(rows, r"{{.ID}}\t{{.Cmd}}")          # the template's own tab stays
    formatting.print_rows(rows, r"table {{.ID}}\t{{.Cmd}}")
    formatting.print_lines([HOSTILE])
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "ID   CMD", "x    " + formatting.visible(HOSTILE),
        "x\t" + formatting.visible(HOSTILE),
        "ID   CMD", "x    " + formatting.visible(HOSTILE),
        formatting.visible(HOSTILE)]
    formatting.print_rows(rows, "json")
    formatting.print_rows(rows, "{{json .Cmd}}")
    first, second = capsys.readouterr().out.splitlines()
    assert json.loads(first) == rows[0] and json.loads(second) == HOSTILE
    assert (first + second).isascii() and (first + second).isprintable()
