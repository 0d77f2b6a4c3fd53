"""Find the output schema a prompt asks for.

Prompts carry their schema as JSON somewhere in free text, either as a template
(``{"invoice_no": "Invoice Number", "items": [{"name": "Item Name"}]}``: keys are the output
keys, string values describe them) or as a JSON Schema (``{"type": "object", "properties":
{...}}``). Both become the same tree of ``FieldSpec`` / ``ObjectSpec`` / ``ArraySpec``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# JSON Schema types that change how a leaf is written out.
NUMERIC_TYPES = frozenset({"number", "integer"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A leaf: one value to find. ``description`` is what the prompt says about it."""

    key: str
    description: str
    json_type: str | None = None
    format: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    key: str
    description: str
    fields: tuple[Spec, ...]


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """A list: ``item`` is an ``ObjectSpec`` for table rows, a ``FieldSpec`` for plain values."""

    key: str
    description: str
    item: Spec


Spec = FieldSpec | ObjectSpec | ArraySpec

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _decode_candidates(text: str) -> list[Any]:
    """Every JSON object or array that starts somewhere in ``text``, longest first."""
    decoder = json.JSONDecoder()
    found: list[tuple[int, Any]] = []
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for source in sources:
        for variant in (source, _TRAILING_COMMA.sub(r"\1", source)):
            position = 0
            while True:
                starts = [
                    i for i in (variant.find("{", position), variant.find("[", position)) if i >= 0
                ]
                if not starts:
                    break
                start = min(starts)
                try:
                    value, end = decoder.raw_decode(variant, start)
                except ValueError:
                    position = start + 1
                    continue
                if isinstance(value, dict | list) and value:
                    found.append((end - start, value))
                # Skip past the whole value: nested objects are part of it, not candidates.
                position = end
    found.sort(key=lambda pair: -pair[0])
    return [value for _, value in found]


def is_json_schema(value: Any) -> bool:
    """True for a JSON Schema document rather than a template."""
    if not isinstance(value, dict):
        return False
    properties = value.get("properties")
    if isinstance(properties, dict) and (
        value.get("type") in ("object", None) or "$schema" in value or "required" in value
    ):
        return all(isinstance(v, dict) for v in properties.values())
    return value.get("type") == "array" and isinstance(value.get("items"), dict)


def _humanise(key: str) -> str:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", key)
    return re.sub(r"[_\-.]+", " ", spaced).strip()


def _from_template(key: str, value: Any) -> Spec:
    if isinstance(value, dict):
        fields = tuple(_from_template(str(k), v) for k, v in value.items())
        return ObjectSpec(key=key, description=_humanise(key), fields=fields)
    if isinstance(value, list):
        item = (
            _from_template(key, value[0])
            if value
            else FieldSpec(key=key, description=_humanise(key))
        )
        return ArraySpec(key=key, description=_humanise(key), item=item)
    if isinstance(value, str) and value.strip():
        return FieldSpec(key=key, description=value.strip())
    json_type = None
    if isinstance(value, bool):
        json_type = "boolean"
    elif isinstance(value, int | float):
        json_type = "number"
    return FieldSpec(key=key, description=_humanise(key), json_type=json_type)


def _from_json_schema(key: str, node: dict[str, Any]) -> Spec:
    description = str(node.get("description") or node.get("title") or _humanise(key))
    node_type = node.get("type")
    if isinstance(node_type, list):
        # ["string", "null"] and the like: the non-null member decides.
        node_type = next((t for t in node_type if t != "null"), None)
    properties = node.get("properties")
    if node_type == "object" or isinstance(properties, dict):
        fields = tuple(
            _from_json_schema(str(k), v)
            for k, v in (properties or {}).items()
            if isinstance(v, dict)
        )
        return ObjectSpec(key=key, description=description, fields=fields)
    if node_type == "array":
        items = node.get("items")
        item = (
            _from_json_schema(key, items)
            if isinstance(items, dict)
            else FieldSpec(key=key, description=description)
        )
        return ArraySpec(key=key, description=description, item=item)
    fmt = node.get("format")
    return FieldSpec(
        key=key,
        description=description,
        json_type=str(node_type) if node_type else None,
        format=str(fmt) if fmt else None,
    )


def parse_schema(prompt: str) -> Spec | None:
    """The schema the prompt asks for, or ``None`` when it asks for free text.

    The longest JSON value embedded in the prompt wins; a JSON Schema is recognised by its
    ``properties``. A template that is a list of objects asks for a list of records.
    """
    for candidate in _decode_candidates(prompt):
        if is_json_schema(candidate):
            return _from_json_schema("", candidate)
        if isinstance(candidate, dict):
            return _from_template("", candidate)
        if isinstance(candidate, list) and candidate and isinstance(candidate[0], dict | str):
            return _from_template("", candidate)
    return None


def empty_value(spec: Spec) -> Any:
    """What the output holds for a spec when nothing was found."""
    if isinstance(spec, ObjectSpec):
        return {child.key: empty_value(child) for child in spec.fields}
    if isinstance(spec, ArraySpec):
        return []
    return None


def _leaf_type(spec: FieldSpec) -> str:
    if spec.json_type in ("number", "integer", "boolean"):
        return spec.json_type
    return "string"


def to_json_schema(spec: Spec) -> dict[str, Any]:
    """The JSON Schema an answer must fit: every key required, no others, every leaf
    nullable (a value the image does not show is null). Objects and arrays are never null:
    an object's leaves are, and an array may be empty. This is the subset that OpenAI's
    strict structured outputs accept."""
    if isinstance(spec, ObjectSpec):
        return {
            "type": "object",
            "description": spec.description,
            "properties": {child.key: to_json_schema(child) for child in spec.fields},
            "required": [child.key for child in spec.fields],
            "additionalProperties": False,
        }
    if isinstance(spec, ArraySpec):
        items = to_json_schema(spec.item)
        return {"type": "array", "description": spec.description, "items": items}
    # No "format": strict servers refuse most of them; the description carries the meaning.
    return {"type": [_leaf_type(spec), "null"], "description": spec.description}


def schema_of_prompt(prompt: str) -> dict[str, Any] | None:
    """The JSON Schema of the answer a prompt asks for; None when it asks for free text."""
    spec = parse_schema(prompt)
    return to_json_schema(spec) if spec is not None else None
