"""The streaming JSON body reader agrees with json.loads on every body it takes, in any
split, and refuses what breaks a limit before reading past it."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from api.json_body import JsonObjectReader
from core.errors import FieldTooLarge, ImageExtractError, InvalidRequest


class _Collected:
    """Images as the reader hands them over: whole strings, or streams of bytes."""

    def __init__(self) -> None:
        self.images: list[str] = []

    def whole(self, _key: str, text: str) -> None:
        self.images.append(text)

    def stream(self, _key: str, head: str) -> Any:
        if head.startswith("http"):
            return None
        collected = self
        parts: list[bytes] = []

        class Stream:
            def write(self, text: bytes) -> None:
                parts.append(text)

            def finish(self) -> None:
                collected.images.append(b"".join(parts).decode())

        return Stream()


def _read(body: bytes, pieces: int = 1, **limits: int) -> tuple[dict[str, Any], list[str]]:
    images = _Collected()
    reader = JsonObjectReader(
        image_keys={"images": True, "image": False},
        images=images,
        max_depth=limits.get("max_depth", 32),
        max_fields_bytes=limits.get("max_fields_bytes", 1 << 20),
        max_whole_chars=4096 * 6,
    )
    cuts = sorted(random.sample(range(1, len(body)), min(pieces - 1, len(body) - 1)))
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        reader.feed(body[start:end])
    return reader.close(), images.images


def test_any_body_in_any_split_reads_as_json_loads_reads_it() -> None:
    generator = random.Random(7)
    random.seed(7)
    for _ in range(200):
        image = base64.b64encode(generator.randbytes(generator.choice([3, 400, 3000]))).decode()
        body_object = {
            "prompt": 'Extract {"total": "Total"} \u00e9\u4e2d "quoted" \\ back',
            "images": [image, "https://example.com/a b.png"],
            "metadata": {"nested": [1, 2.5, None, True, {"k": "[{]}"}]},
            "json_mode": generator.choice([True, False]),
            "results_ttl": 3600,
        }
        body = json.dumps(
            body_object, ensure_ascii=generator.random() < 0.5, indent=generator.choice([None, 2])
        ).encode()
        if generator.random() < 0.5:  # as PHP and .NET encoders escape base64
            body = body.replace(b"/", b"\\/").replace(b"+", b"\\u002B")
        fields, images = _read(body, pieces=generator.randint(1, 40))
        expected = dict(body_object)
        assert images == expected.pop("images")
        assert fields == expected


@pytest.mark.parametrize(
    ("body", "error", "names"),
    [
        (b'{"z": ' + b"[" * 100_000, InvalidRequest, "z"),
        (b'{"junk": [' + b"[]," * 400_000, FieldTooLarge, "junk"),
        (b'{"images": [1]}', InvalidRequest, "images"),
        (b'{"image": ["a"]}', InvalidRequest, "image"),
        (b'{"images": ["a"], "image": "b"}', InvalidRequest, "image"),
        (b'{"a": "\\ud800"}', InvalidRequest, "a"),
        (b'{"a": 1} trailing', InvalidRequest, None),
        (b'["not an object"]', InvalidRequest, None),
    ],
)
def test_a_body_that_breaks_a_rule_is_refused_naming_the_member(
    body: bytes, error: type[ImageExtractError], names: str | None
) -> None:
    with pytest.raises(error) as raised:
        _read(body + b"}", max_fields_bytes=1 << 20)
    assert raised.value.input == names
