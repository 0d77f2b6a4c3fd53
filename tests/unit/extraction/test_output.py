"""The schema a prompt asks for, and answers repaired, fitted and validated against it."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.errors import InvalidModelOutput
from extraction.output import read_answer
from extraction.schema import schema_of_prompt

INVOICE = (
    'Extract: {"invoice_no": "Invoice Number", "vendor": {"name": "Vendor", "vat_id": "VAT"},'
    ' "items": [{"name": "Item Name", "qty": 0, "total": "Amount"}], "paid": false}'
)


def test_a_template_with_nesting_and_arrays_becomes_a_strict_schema() -> None:
    schema = schema_of_prompt(INVOICE)
    assert schema is not None
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["required"] == ["invoice_no", "vendor", "items", "paid"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["invoice_no"] == {
        "type": ["string", "null"], "description": "Invoice Number",
    }  # fmt: skip
    vendor = schema["properties"]["vendor"]
    assert vendor["required"] == ["name", "vat_id"]
    assert vendor["properties"]["vat_id"]["type"] == ["string", "null"]
    items = schema["properties"]["items"]
    assert items["type"] == "array"
    assert items["items"]["properties"]["qty"]["type"] == ["number", "null"]
    assert items["items"]["additionalProperties"] is False
    assert schema["properties"]["paid"]["type"] == ["boolean", "null"]


def test_a_json_schema_in_the_prompt_is_taken_with_its_types() -> None:
    prompt = (
        'Fill this schema: {"type": "object", "properties": {"total": {"type": "number", '
        '"description": "Grand total"}, "date": {"type": "string", "format": "date"}, '
        '"lines": {"type": "array", "items": {"type": "object", "properties": '
        '{"text": {"type": "string"}}}}}}'
    )
    schema = schema_of_prompt(prompt)
    assert schema is not None
    Draft202012Validator.check_schema(schema)
    total = schema["properties"]["total"]
    assert total == {"type": ["number", "null"], "description": "Grand total"}
    assert schema["properties"]["date"]["type"] == ["string", "null"]
    assert schema["properties"]["lines"]["items"]["required"] == ["text"]


def test_a_prompt_without_json_asks_for_no_shape() -> None:
    assert schema_of_prompt("Describe this picture in two sentences.") is None


@pytest.mark.parametrize(
    "content",
    [
        '{"total": "9.50"}',
        '```json\n{"total": "9.50"}\n```',
        'Here you go: {"total": "9.50"} Hope that helps.',
        '{"total": "9.50",}',
        '{"total": "9.50"',
    ],
)
def test_json_is_found_in_common_model_slips(content: str) -> None:
    assert read_answer(content, None) == {"total": "9.50"}


def test_text_without_json_is_refused() -> None:
    with pytest.raises(InvalidModelOutput, match="did not return valid JSON"):
        read_answer("I could not read the receipt.", None)


def _read(answer: str) -> Any:
    return read_answer(answer, schema_of_prompt(INVOICE))


def test_missing_keys_become_null_and_extra_keys_are_dropped() -> None:
    fitted = _read('{"invoice_no": "A-17", "vendor": {"name": "ACME"}, "note": "extra"}')
    assert fitted == {
        "invoice_no": "A-17",
        "vendor": {"name": "ACME", "vat_id": None},
        "items": [],
        "paid": None,
    }


def test_shapes_with_one_safe_reading_are_corrected() -> None:
    fitted = _read(
        '{"invoice_no": 1017, "vendor": [{"name": "ACME", "vat_id": "DE1"}],'
        ' "items": {"name": "Bolt", "qty": "1,200", "total": 3.5}, "paid": "true"}'
    )
    assert fitted == {
        "invoice_no": "1017",
        "vendor": {"name": "ACME", "vat_id": "DE1"},
        "items": [{"name": "Bolt", "qty": 1200, "total": "3.5"}],
        "paid": True,
    }


def test_shapes_that_cannot_be_read_safely_are_reported_by_path() -> None:
    with pytest.raises(InvalidModelOutput) as raised:
        _read('{"invoice_no": {"value": "A-17"}, "items": [{"qty": "many"}], "vendor": "ACME"}')
    message = raised.value.message
    assert "invoice_no should be string, not an object" in message
    assert "vendor should be an object, not str" in message
    assert "items[0].qty" in message


def test_a_fitted_answer_always_validates() -> None:
    schema = schema_of_prompt(INVOICE)
    assert schema is not None
    for answer in ("{}", "[]", '{"items": null, "vendor": null}', '[{"invoice_no": "X"}]'):
        Draft202012Validator(schema).validate(read_answer(answer, schema))
