"""A fake OpenAI-compatible vision model: a real HTTP server for tests and the benchmark.

    python tests/fake_model_server.py --port 9100 [--latency 1.0]

POST /v1/chat/completions answers with what it sees in the image: its width and height
(tests draw images whose size encodes their index). A request with several images (a
document's pages) is answered for all of them: in JSON mode {"width": <first image's>,
"height": <first image's>, "pages": <images>, "page_sizes": [{"width", "height"} per image]},
cut to the schema's own keys under `json_schema` as a strict server would; otherwise
"<n> images of WxH, WxH, ... pixels.", and 85 prompt tokens per image. Behaviour is set
at run time with POST /_control (JSON): latency (s), error_rate, rate_limit_rate, retry_after (s),
timeout_rate (sleeps `hang` s), malformed_rate (content that is not JSON in JSON mode),
misshaped_rate (JSON whose values have the wrong shape: {"width": {"px": 640}, "height":
[480]}), broken_body_rate (an HTTP body that is not JSON), and fail_next / rate_limit_next /
malformed_next / misshaped_next / hang_next to make the next N calls fail that way; hold (1:
every call waits at the door) and release (let N waiting calls through, in arrival order);
json_schema (0: refuse `response_format: json_schema` with a 400, as servers without
structured outputs do). JSON mode is `response_format` `json_object` or `json_schema`. A
call that carries an earlier answer (an assistant message: asked again) is never malformed
or misshaped by the *_next counters. GET /_stats counts calls, the response formats asked
for, and lists the arrivals (each call's first image size, in the order the calls came) and
the images each call carried ("images", in the same order).

The Batch API as OpenAI's: POST /v1/files (multipart, purpose=batch), GET /v1/files/{id},
GET /v1/files/{id}/content, DELETE /v1/files/{id}; POST /v1/batches, GET /v1/batches (newest
first, limit and after), GET /v1/batches/{id}, POST /v1/batches/{id}/cancel. A batch is
validating, then in_progress; its lines are answered as the live endpoint answers
(outcomes counted as batch_ok, batch_error, ...) batch_delay seconds later, or once
batch_hold is set back to 0; then output and error files are written and it is completed
(or expired: batch_expire_next, half its lines answered and the rest batch_expired in the
error file; or cancelled, with the lines answered before the cancel). batch_error_rate and
batch_fail_next make lines fail with a 500. /_stats has "batches": created, lines_run,
statuses and the files held.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
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
    # The Batch API: seconds before a batch's lines are run; 1 keeps batches in progress
    # until set back to 0; the next N batches expire with half their lines run; lines that
    # fail (500 in the error file), by rate or the next N.
    "batch_delay": 0.0,
    "batch_hold": 0,
    "batch_expire_next": 0,
    "batch_error_rate": 0.0,
    "batch_fail_next": 0,
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
        self.images: list[int] = []
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


def image_sizes(body: dict[str, Any]) -> list[tuple[int, int]]:
    """The size of every image in the request, in order; ValueError when there is none."""
    sizes: list[tuple[int, int]] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                data = base64.b64decode(url.split(",", 1)[1])
                with Image.open(io.BytesIO(data)) as image:
                    sizes.append(image.size)
    if not sizes:
        raise ValueError("no image in the request")
    return sizes


def image_size(body: dict[str, Any]) -> tuple[int, int]:
    return image_sizes(body)[0]


def image_count(body: dict[str, Any]) -> int:
    return sum(
        1
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    )


def pages_answer(sizes: list[tuple[int, int]], body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to several images (pages); under ``json_schema`` only the schema's
    top-level keys, as a strict server answers."""
    (width, height), *_ = sizes
    answer: dict[str, Any] = {
        "width": width,
        "height": height,
        "pages": len(sizes),
        "page_sizes": [{"width": w, "height": h} for w, h in sizes],
    }
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema", {})
        answer = {key: answer.get(key) for key in schema.get("properties", {})}
    return answer


def _slips(model: FakeModel, kind: str, asked_again: bool) -> bool:
    """Whether this answer goes wrong in ``kind``'s way: the next-N counter (first asks
    only) or the rate (any call)."""
    with model.lock:
        if not asked_again and model.config[f"{kind}_next"] > 0:
            model.config[f"{kind}_next"] -= 1
            return True
    return model.random.random() < model.config[f"{kind}_rate"]


def answer(model: FakeModel, body: dict[str, Any], kind: str = "") -> tuple[int, dict[str, Any]]:
    """A chat completion for this request body (status, JSON): what the image shows, or a
    400. ``kind`` prefixes the outcome's count (``batch_`` for batch lines)."""
    try:
        sizes = image_sizes(body)
    except Exception as error:
        model.count(f"{kind}bad_request")
        return 400, {"error": {"message": str(error)}}
    response_format = (body.get("response_format") or {}).get("type", "none")
    with model.lock:
        model.formats[response_format] = model.formats.get(response_format, 0) + 1
    if response_format == "json_schema" and not model.config["json_schema"]:
        model.count(f"{kind}format_refused")
        return 400, {"error": {"message": "response_format json_schema is not supported"}}
    json_mode = response_format in ("json_object", "json_schema")
    (width, height), pages = sizes[0], len(sizes)
    asked_again = any(m.get("role") == "assistant" for m in body.get("messages", []))
    if json_mode and _slips(model, "malformed", asked_again):
        model.count(f"{kind}malformed")
        content = "Sure! I could not read that image."
    elif json_mode and _slips(model, "misshaped", asked_again):
        model.count(f"{kind}misshaped")
        content = json.dumps({"width": {"px": width}, "height": [height]})
    elif json_mode and pages > 1:
        content = json.dumps(pages_answer(sizes, body))
    elif json_mode:
        content = json.dumps({"width": width, "height": height})
    elif pages > 1:
        content = f"{pages} images of {', '.join(f'{w}x{h}' for w, h in sizes)} pixels."
    else:
        content = f"An image of {width}x{height} pixels."
    model.count(f"{kind}ok")
    return 200, {
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
            "prompt_tokens": 85 * pages
            + len(json.dumps(body.get("messages", [{}])[-1].get("content", [{}])[0])) // 4,
            "completion_tokens": max(1, len(content) // 4),
            "total_tokens": 0,
        },
    }


class FakeBatches:
    """OpenAI's Files and Batch API over the fake model: files kept on disk, each batch run
    by a thread that answers its lines as the live endpoint would."""

    def __init__(self, model: FakeModel) -> None:
        self.model = model
        self.folder = Path(tempfile.mkdtemp(prefix="fake-batches-"))
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.lines_run = 0
        self.created = 0
        self.serial = 0

    def new_id(self, prefix: str) -> str:
        with self.model.lock:
            self.serial += 1
            return f"{prefix}-{self.serial:06d}-{random.getrandbits(32):08x}"

    def add_file(self, path: Path, filename: str, purpose: str) -> dict[str, Any]:
        file_id = self.new_id("file")
        final = self.folder / file_id
        path.replace(final)
        meta = {
            "id": file_id, "object": "file", "bytes": final.stat().st_size,
            "created_at": int(time.time()), "filename": filename, "purpose": purpose,
            "status": "processed",
        }  # fmt: skip
        with self.model.lock:
            self.files[file_id] = meta
        return meta

    def public(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in batch.items() if not key.startswith("_")}

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file_id = body.get("input_file_id")
        if file_id not in self.files:
            return 404, {"error": {"message": f"No such file: {file_id}"}}
        if body.get("endpoint") != "/v1/chat/completions":
            return 400, {"error": {"message": f"unsupported endpoint {body.get('endpoint')}"}}
        now = int(time.time())
        batch = {
            "id": self.new_id("batch"), "object": "batch", "endpoint": body["endpoint"],
            "errors": None, "input_file_id": file_id,
            "completion_window": body.get("completion_window", "24h"), "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 24 * 3600, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None,
            "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata") or {},
        }  # fmt: skip
        with self.model.lock:
            self.batches[batch["id"]] = batch
            self.created += 1
            expire = self.model.config["batch_expire_next"] > 0
            if expire:
                self.model.config["batch_expire_next"] -= 1
        threading.Thread(target=self.run, args=(batch, expire), daemon=True).start()
        return 200, self.public(batch)

    def run(self, batch: dict[str, Any], expire: bool) -> None:
        config = self.model.config
        source = self.folder / batch["input_file_id"]
        total = sum(1 for _ in source.open("rb"))
        with self.model.lock:
            batch.update(status="in_progress", in_progress_at=int(time.time()))
            batch["request_counts"]["total"] = total
        waited_until = time.monotonic() + float(config["batch_delay"])
        while (config["batch_hold"] or time.monotonic() < waited_until) and batch[
            "status"
        ] != "cancelling":
            time.sleep(0.02)
        outputs = self.folder / f"{batch['id']}-out.partial"
        errors = self.folder / f"{batch['id']}-err.partial"
        answered = failed = 0
        with source.open("rb") as lines, outputs.open("w") as out, errors.open("w") as err:
            for number, raw in enumerate(lines):
                if batch["status"] == "cancelling":
                    break
                line = json.loads(raw)
                custom_id = line.get("custom_id")
                if expire and number >= total // 2:
                    err.write(json.dumps({
                        "id": self.new_id("batch_req"), "custom_id": custom_id,
                        "response": None,
                        "error": {"code": "batch_expired", "message": "This request could "
                                  "not be executed before the completion window expired."},
                    }) + "\n")  # fmt: skip
                    failed += 1
                    continue
                if self.model.take("batch_fail_next", "batch_error_rate"):
                    self.model.count("batch_error")
                    status, payload = 500, {"error": {"message": "boom", "type": "server_error"}}
                else:
                    status, payload = answer(self.model, line.get("body") or {}, "batch_")
                record = {
                    "id": self.new_id("batch_req"), "custom_id": custom_id,
                    "response": {"status_code": status, "request_id": "req-fake",
                                 "body": payload},
                    "error": None,
                }  # fmt: skip
                (out if status == 200 else err).write(json.dumps(record) + "\n")
                with self.model.lock:
                    self.lines_run += 1
                    if status == 200:
                        answered += 1
                        batch["request_counts"]["completed"] = answered
                    else:
                        failed += 1
                        batch["request_counts"]["failed"] = failed
        now = int(time.time())
        output_id = (
            self.add_file(outputs, f"{batch['id']}_output.jsonl", "batch_output")["id"]
            if outputs.stat().st_size
            else None
        )
        error_id = (
            self.add_file(errors, f"{batch['id']}_error.jsonl", "batch_output")["id"]
            if errors.stat().st_size
            else None
        )
        outputs.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)
        with self.model.lock:
            batch["request_counts"].update(completed=answered, failed=failed)
            batch.update(output_file_id=output_id, error_file_id=error_id, finalizing_at=now)
            if batch["status"] == "cancelling":
                batch.update(status="cancelled", cancelled_at=now)
            elif expire:
                batch.update(status="expired", expired_at=now)
            else:
                batch.update(status="completed", completed_at=now)

    def stats(self) -> dict[str, Any]:
        with self.model.lock:
            statuses: dict[str, int] = {}
            for batch in self.batches.values():
                statuses[batch["status"]] = statuses.get(batch["status"], 0) + 1
            return {"created": self.created, "lines_run": self.lines_run,
                    "statuses": statuses, "files": len(self.files)}  # fmt: skip

    def reset(self) -> None:
        with self.model.lock:
            self.files, self.batches = {}, {}
            self.lines_run = self.created = 0
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir()


def batch_routes(batches: FakeBatches) -> list[Route]:
    async def upload(request: Request) -> Response:
        async with request.form(max_files=1) as form:
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "batch" or upload is None or isinstance(upload, str):
                return JSONResponse(
                    {"error": {"message": "expected a file and purpose=batch"}}, status_code=400
                )
            partial = batches.folder / f"upload-{batches.new_id('part')}"
            with partial.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    out.write(chunk)
            return JSONResponse(batches.add_file(partial, upload.filename or "input", "batch"))

    async def file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        meta = batches.files.get(file_id)
        if meta is None:
            return JSONResponse({"error": {"message": f"No such file: {file_id}"}}, 404)
        if request.method == "DELETE":
            with batches.model.lock:
                batches.files.pop(file_id, None)
            (batches.folder / file_id).unlink(missing_ok=True)
            return JSONResponse({"id": file_id, "object": "file", "deleted": True})
        return JSONResponse(meta)

    async def content(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        if file_id not in batches.files:
            return JSONResponse({"error": {"message": f"No such file: {file_id}"}}, 404)
        return FileResponse(batches.folder / file_id, media_type="application/octet-stream")

    async def create(request: Request) -> Response:
        status, payload = batches.create(await request.json())
        return JSONResponse(payload, status_code=status)

    async def listing(request: Request) -> Response:
        limit = int(request.query_params.get("limit", 20))
        after = request.query_params.get("after")
        with batches.model.lock:
            newest = sorted(batches.batches.values(), key=lambda b: b["id"], reverse=True)
        if after:
            newest = [batch for batch in newest if batch["id"] < after]
        page = [batches.public(batch) for batch in newest[:limit]]
        return JSONResponse({
            "object": "list", "data": page, "has_more": len(newest) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        })  # fmt: skip

    async def batch(request: Request) -> Response:
        found = batches.batches.get(request.path_params["batch_id"])
        if found is None:
            return JSONResponse({"error": {"message": "No such batch"}}, status_code=404)
        return JSONResponse(batches.public(found))

    async def cancel(request: Request) -> Response:
        found = batches.batches.get(request.path_params["batch_id"])
        if found is None:
            return JSONResponse({"error": {"message": "No such batch"}}, status_code=404)
        with batches.model.lock:
            if found["status"] in ("validating", "in_progress"):
                found.update(status="cancelling", cancelling_at=int(time.time()))
        return JSONResponse(batches.public(found))

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files/{file_id}", file, methods=["GET", "DELETE"]),
        Route("/v1/files/{file_id}/content", content, methods=["GET"]),
        Route("/v1/batches", create, methods=["POST"]),
        Route("/v1/batches", listing, methods=["GET"]),
        Route("/v1/batches/{batch_id}", batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
    ]


def create_app(model: FakeModel) -> Starlette:
    batches = FakeBatches(model)

    async def completions(request: Request) -> Response:
        body = await request.json()
        with model.lock:
            model.in_flight += 1
            model.max_in_flight = max(model.max_in_flight, model.in_flight)
            try:
                model.arrivals.append(list(image_size(body)))
            except Exception:
                model.arrivals.append([0, 0])
            model.images.append(image_count(body))
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
            status, payload = answer(model, body)
            return JSONResponse(payload, status_code=status)
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
        batches.reset()
        with model.lock:
            model.config = dict(DEFAULTS)
            model.stats = {}
            model.formats = {}
            model.max_in_flight = 0
            model.arrivals = []
            model.images = []
            model.released = 0
        return JSONResponse(model.config)

    async def stats(_request: Request) -> Response:
        batch_stats = batches.stats()
        with model.lock:
            return JSONResponse(
                {"calls": dict(model.stats), "formats": dict(model.formats),
                 "in_flight": model.in_flight, "batches": batch_stats,
                 "max_in_flight": model.max_in_flight, "arrivals": model.arrivals,
                 "images": model.images}
            )  # fmt: skip

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/_control", control, methods=["POST"]),
            Route("/_reset", reset, methods=["POST"]),
            Route("/_stats", stats, methods=["GET"]),
            *batch_routes(batches),
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
