"""Reading JSON out of model output in JSON mode, repairing the usual slips.

Models wrap JSON in code fences, add a sentence before it, or leave a trailing comma.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import InvalidModelOutput

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _candidates(content: str) -> list[str]:
    found = [content.strip()]
    found.extend(match.strip() for match in _FENCE.findall(content))
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = content.find(opener), content.rfind(closer)
        if 0 <= start < end:
            found.append(content[start : end + 1])
    return found


def parse_json_output(content: str) -> Any:
    """The JSON value in ``content``, or InvalidModelOutput."""
    for candidate in _candidates(content):
        for text in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                return json.loads(text)
            except ValueError:
                continue
    raise InvalidModelOutput(f"the model did not return valid JSON: {content[:200]!r}")
