"""A fake OpenAI-compatible vision model: a real HTTP server for tests and the benchmark.

    python tests/fake_model_server.py --port 9100 [--latency 1.0]

POST /v1/chat/completions answers with what it sees in the image: its width and height
(tests draw images whose size encodes their index). Behaviour is set at run time with
POST /_control (JSON): latency (s), error_rate, rate_limit_rate, retry_after (s),
timeout_rate (sleeps `hang` s), malformed_rate (content that is not JSON in JSON mode),
misshaped_rate (JSON whose values have the wrong shape: {"width": {"px": 640}, "height":
[480]}), broken_body_rate (an HTTP body that is not JSON), and fail_next / rate_limit_next /
malformed_next / misshaped_next / hang_next to make the next N calls fail that way; hold (1:
every call waits at the door) and release (let N waiting calls through, in arrival order);
json_schema (0: refuse `response_format: json_schema` with a 400, as servers without
structured outputs do). JSON mode is `response_format` `json_object` or `json_schema`. A
call that carries an earlier answer (an assistant message: asked again) is never malformed
or misshaped by the *_next counters. GET /_stats counts calls, the response formats asked
for, and lists the arrivals (each call's image size, in the order the calls came).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import threading
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULTS: dict[str, float] = {
    "latency": 0.0,
    "error_rate": 0.0,
    "rate_limit_rate": 0.0,
    "retry_after": 1.0,
    "timeout_rate": 0.0,
    "hang": 30.0,
    "malformed_rate": 0.0,
    "misshaped_rate": 0.0,
    "broken_body_rate": 0.0,
    "json_schema": 1,
    "fail_next": 0,
    "rate_limit_next": 0,
    "malformed_next": 0,
    "misshaped_next": 0,
    "hang_next": 0,
    "hold": 0,
    "release": 0,
}


class FakeModel:
    def __init__(self, latency: float = 0.0, seed: int = 7) -> None:
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.config = dict(DEFAULTS, latency=latency)
        self.stats: dict[str, int] = {}
        self.formats: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[list[int]] = []
        # Calls let through while held (release), not used yet.
        self.released = 0

    def count(self, outcome: str) -> None:
        with self.lock:
            self.stats[outcome] = self.stats.get(outcome, 0) + 1

    def take(self, counter: str, rate: str) -> bool:
        with self.lock:
            if self.config[counter] > 0:
                self.config[counter] -= 1
                return True
            return self.random.random() < self.config[rate]


def image_size(body: dict[str, Any]) -> tuple[int, int]:
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                data = base64.b64decode(url.split(",", 1)[1])
                with Image.open(io.BytesIO(data)) as image:
                    return image.size
    raise ValueError("no image in the request")


def _slips(model: FakeModel, kind: str, asked_again: bool) -> bool:
    """Whether this answer goes wrong in ``kind``'s way: the next-N counter (first asks
    only) or the rate (any call)."""
    with model.lock:
        if not asked_again and model.config[f"{kind}_next"] > 0:
            model.config[f"{kind}_next"] -= 1
            return True
    return model.random.random() < model.config[f"{kind}_rate"]


def create_app(model: FakeModel) -> Starlette:
    async def completions(request: Request) -> Response:
        body = await request.json()
        with model.lock:
            model.in_flight += 1
            model.max_in_flight = max(model.max_in_flight, model.in_flight)
            try:
                model.arrivals.append(list(image_size(body)))
            except Exception:
                model.arrivals.append([0, 0])
        try:
            # Held calls wait here until released, one per released call.
            while model.config["hold"]:
                with model.lock:
                    if model.released > 0:
                        model.released -= 1
                        break
                await asyncio.sleep(0.005)
            if model.config["latency"]:
                await asyncio.sleep(model.config["latency"])
            if model.take("hang_next", "timeout_rate"):
                model.count("hang")
                await asyncio.sleep(model.config["hang"])
            if model.take("rate_limit_next", "rate_limit_rate"):
                model.count("rate_limited")
                return JSONResponse(
                    {"error": {"message": "rate limited"}},
                    status_code=429,
                    headers={"Retry-After": str(model.config["retry_after"])},
                )
            if model.take("fail_next", "error_rate"):
                model.count("error")
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if model.random.random() < model.config["broken_body_rate"]:
                model.count("broken_body")
                return Response("{not json", media_type="application/json")
            try:
                width, height = image_size(body)
            except Exception as error:
                model.count("bad_request")
                return JSONResponse({"error": {"message": str(error)}}, status_code=400)
            response_format = (body.get("response_format") or {}).get("type", "none")
            with model.lock:
                model.formats[response_format] = model.formats.get(response_format, 0) + 1
            if response_format == "json_schema" and not model.config["json_schema"]:
                model.count("format_refused")
                return JSONResponse(
                    {"error": {"message": "response_format json_schema is not supported"}},
                    status_code=400,
                )
            json_mode = response_format in ("json_object", "json_schema")
            asked_again = any(m.get("role") == "assistant" for m in body.get("messages", []))
            if json_mode and _slips(model, "malformed", asked_again):
                model.count("malformed")
                content = "Sure! I could not read that image."
            elif json_mode and _slips(model, "misshaped", asked_again):
                model.count("misshaped")
                content = json.dumps({"width": {"px": width}, "height": [height]})
            elif json_mode:
                content = json.dumps({"width": width, "height": height})
            else:
                content = f"An image of {width}x{height} pixels."
            model.count("ok")
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": body.get("model", "fake"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 85
                        + len(json.dumps(body.get("messages", [{}])[-1].get("content", [{}])[0]))
                        // 4,
                        "completion_tokens": max(1, len(content) // 4),
                        "total_tokens": 0,
                    },
                }
            )
        finally:
            with model.lock:
                model.in_flight -= 1

    async def control(request: Request) -> Response:
        changes = await request.json()
        unknown = set(changes) - set(DEFAULTS)
        if unknown:
            return JSONResponse({"error": f"unknown settings {sorted(unknown)}"}, status_code=400)
        with model.lock:
            model.released += int(changes.pop("release", 0))
            model.config.update(changes)
        return JSONResponse(model.config)

    async def reset(_request: Request) -> Response:
        with model.lock:
            model.config = dict(DEFAULTS)
            model.stats = {}
            model.formats = {}
            model.max_in_flight = 0
            model.arrivals = []
            model.released = 0
        return JSONResponse(model.config)

    async def stats(_request: Request) -> Response:
        with model.lock:
            return JSONResponse(
                {"calls": dict(model.stats), "formats": dict(model.formats),
                 "in_flight": model.in_flight,
                 "max_in_flight": model.max_in_flight, "arrivals": model.arrivals}
            )  # fmt: skip

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/_control", control, methods=["POST"]),
            Route("/_reset", reset, methods=["POST"]),
            Route("/_stats", stats, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(
        create_app(FakeModel(latency=args.latency)),
        host=args.host,
        port=args.port,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
