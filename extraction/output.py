"""An answer in JSON mode: repaired, fitted to the prompt's schema, validated.

The model's text is parsed by json-repair (code fences, prose around the JSON, trailing
commas, unclosed strings), then fitted to the schema: keys the schema has and the answer
lacks become null (an empty list for a list), keys it does not have are dropped, and shapes
that are wrong in a way with one safe reading are corrected (a number where text is asked
becomes its text, "12.50" where a number is asked becomes 12.5, one object where a list is
asked becomes a list of one). What still does not fit is reported, path by path, for the
model to be asked again; jsonschema has the last word.
"""

from __future__ import annotations

import json
from typing import Any

import json_repair
from jsonschema import Draft202012Validator

from core.errors import InvalidModelOutput

# Problems named in a request to try again, at most.
MAX_PROBLEMS = 20


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, list):
        return [str(t) for t in declared]
    return [str(declared)] if declared else []


def _number(text: str) -> float | int | None:
    cleaned = text.strip().replace(",", "") if text.count(".") <= 1 else text.strip()
    try:
        number = float(cleaned)
    except ValueError:
        return None
    return int(number) if number.is_integer() and "." not in cleaned else number


def fit(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> Any:
    """``value`` made to fit ``schema`` where that is safe; what is not goes to ``problems``."""
    types = _types(schema)
    if "object" in types:
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            value = value[0]
        if value is None or value == []:
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{path or 'the answer'} should be an object, not {_kind(value)}")
            value = {}
        properties: dict[str, Any] = schema.get("properties", {})
        return {
            key: fit(value.get(key), child, _path(path, key), problems)
            for key, child in properties.items()
        }
    if "array" in types:
        if value is None:
            return []
        if isinstance(value, dict | str | int | float | bool):
            value = [value]
        if not isinstance(value, list):
            problems.append(f"{path} should be a list, not {_kind(value)}")
            return []
        items = schema.get("items", {})
        return [fit(item, items, _path(path, index), problems) for index, item in enumerate(value)]
    return _fit_leaf(value, types, path, problems)


def _fit_leaf(value: Any, types: list[str], path: str, problems: list[str]) -> Any:
    if value is None or (value == "" and "string" not in types):
        return None
    if "string" in types:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
    if {"number", "integer"} & set(types) and isinstance(value, str):
        number = _number(value)
        if number is not None:
            return int(number) if "integer" in types and float(number).is_integer() else number
    if "boolean" in types and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if types and not any(_is(value, t) for t in types):
        wanted = " or ".join(t for t in types if t != "null") or "a value"
        problems.append(f"{path} should be {wanted}, not {_kind(value)}")
        return None
    return value


def _is(value: Any, json_type: str) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    return json_type == "null" and value is None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {json.dumps(value)[:40]}"


def parse_answer(content: str) -> Any:
    """The JSON value in a model's text, repaired; InvalidModelOutput when there is none."""
    try:
        return json.loads(content)
    except ValueError:
        pass
    repaired = json_repair.loads(content)
    if repaired == "" or (isinstance(repaired, str) and not content.strip().startswith('"')):
        raise InvalidModelOutput(f"the model did not return valid JSON: {content[:200]!r}")
    return repaired


def read_answer(content: str, schema: dict[str, Any] | None) -> Any:
    """The answer parsed and, with a schema, fitted and validated.

    Raises InvalidModelOutput whose message lists what does not fit (to ask again with).
    """
    value = parse_answer(content)
    if schema is None:
        return value
    problems: list[str] = []
    fitted = fit(value, schema, "", problems)
    if not problems:
        validator = Draft202012Validator(schema)
        for error in sorted(validator.iter_errors(fitted), key=lambda e: list(e.absolute_path)):
            where = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
            ).lstrip(".")
            problems.append(f"{where or 'the answer'}: {error.message}")
    if problems:
        listed = "; ".join(problems[:MAX_PROBLEMS])
        raise InvalidModelOutput(f"the answer does not fit the schema: {listed}")
    return fitted
