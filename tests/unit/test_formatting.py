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
