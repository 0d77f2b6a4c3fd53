"""Repairing JSON out of model output."""

from __future__ import annotations

import pytest

from core.errors import InvalidModelOutput
from core.json_output import parse_json_output


@pytest.mark.parametrize(
    "content",
    [
        '{"total": "9.50"}',
        '```json\n{"total": "9.50"}\n```',
        'Here you go: {"total": "9.50"} Hope that helps.',
        '{"total": "9.50",}',
    ],
)
def test_json_is_found_in_common_model_slips(content: str) -> None:
    assert parse_json_output(content) == {"total": "9.50"}


def test_text_without_json_is_refused() -> None:
    with pytest.raises(InvalidModelOutput, match="did not return valid JSON"):
        parse_json_output("I could not read the receipt.")
