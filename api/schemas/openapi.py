"""Request bodies for the OpenAPI document from Pydantic models.

The submit routes stream their bodies (see api/intake.py), so FastAPI cannot derive the
body from a parameter; ``request_body`` describes it from the models instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its $defs put in place: openapi_extra cannot carry a $defs section."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def request_body(content: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is one of these models, by media type."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                media_type: {"schema": _inline_definitions(model.model_json_schema(by_alias=True))}
                for media_type, model in content.items()
            },
        }
    }
