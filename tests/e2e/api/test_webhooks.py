"""Webhooks end to end: real API, worker, beat, Postgres and Redis; receivers are HTTP
servers on loopback that verify signatures with the `standardwebhooks` package."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests import stack
from tests.conftest import Caller, wait_for_job
from tests.sample_images import png_for

# Once, with images in a folder: webhook delivery does not touch the stored images.
pytestmark = pytest.mark.one_store


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1. ``answers[path]`` are the statuses it gives for
    that path, in turn (then 200); ``gone`` paths always answer 410."""

    port: int = 0
    answers: dict[str, list[int]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    requests: list[Received] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {key.lower(): value for key, value in self.headers.items()}
                receiver.requests.append(Received(self.path, headers, body))
                waiting = receiver.answers.get(self.path, [])
                status = 410 if self.path in receiver.gone else waiting.pop(0) if waiting else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def at(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.at(path)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.at(path))} of {count} requests to {path}")
            time.sleep(0.05)
        return self.at(path)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def webhook_caller(caller: Caller, beat_process: Path) -> Caller:
    """The default caller, with beat running the dispatcher (retries need it)."""
    return caller


def _secret(caller: Caller) -> str:
    response = caller.client.get("/v1/webhook-secret")
    assert response.status_code == 200, response.text
    secret = response.json()["secret"]
    assert secret.startswith("whsec_")
    return str(secret)


def _submit(caller: Caller, count: int = 1, **fields: Any) -> str:
    images = [base64.b64encode(png_for(index)).decode() for index in range(count)]
    body = {"input_method": "base64", "images": images, "prompt": "Read it", **fields}
    response = caller.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _deliveries(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    response = caller.client.get(f"/v1/jobs/{job_id}/webhooks")
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def _wait_for_deliveries(
    caller: Caller,
    job_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        deliveries = _deliveries(caller, job_id)
        if done(deliveries):
            return deliveries
        if time.monotonic() > deadline:
            raise TimeoutError(json.dumps(deliveries, indent=1))
        time.sleep(0.05)


def _all_delivered(deliveries: list[dict[str, Any]]) -> bool:
    return bool(deliveries) and all(d["status"] == "delivered" for d in deliveries)


def test_the_job_webhook_url_receives_a_signed_thin_event(
    webhook_caller: Caller, receiver: Receiver
) -> None:
    caller = webhook_caller
    secret = _secret(caller)
    job_id = _submit(
        caller, 2, webhook_url=f"{receiver.url}/hook", metadata={"batch": "nightly-42"}
    )
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"

    [request] = receiver.wait_for("/hook", 1)
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "job.succeeded"
    assert payload["timestamp"].endswith("Z")
    assert payload["data"] == {
        "job_id": job_id,
        "status": "succeeded",
        "item_count": 2,
        "counts": {"succeeded": 2, "failed": 0, "cancelled": 0},
        "job_url": f"http://127.0.0.1:8000/v1/jobs/{job_id}",
        "results_url": f"http://127.0.0.1:8000/v1/jobs/{job_id}/results",
        "metadata": {"batch": "nightly-42"},
    }
    assert request.webhook_id.startswith("msg_")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-signature"].startswith("v1,")
    # A body that was tampered with, or a wrong secret, does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body.replace(b"nightly-42", b"nightly-43"), request.headers)
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)

    [delivery] = _wait_for_deliveries(caller, job_id, _all_delivered)
    assert delivery["id"] == request.webhook_id
    assert delivery["event_type"] == "job.succeeded"
    assert delivery["url"] == f"{receiver.url}/hook"
    assert delivery["endpoint_id"] is None
    assert delivery["payload"] == payload
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["response_excerpt"] == "ok"
    assert attempt["latency_ms"] >= 0
    assert attempt["error"] is None


def _create_endpoint(caller: Caller, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    response = caller.client.post("/v1/webhook-endpoints", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_account_endpoints_receive_the_events_their_filter_names(
    webhook_caller: Caller, receiver: Receiver
) -> None:
    caller = webhook_caller
    secret = _secret(caller)
    every = _create_endpoint(caller, f"{receiver.url}/every")
    assert every["events"] == [
        "job.succeeded",
        "job.partially_succeeded",
        "job.failed",
        "job.cancelled",
    ]
    failures = _create_endpoint(caller, f"{receiver.url}/failures", ["job.failed"])

    ok_job = _submit(caller, 1, webhook_url=f"{receiver.url}/job")
    wait_for_job(caller.client, ok_job)
    deliveries = _wait_for_deliveries(caller, ok_job, _all_delivered)
    assert {(d["endpoint_id"], d["url"]) for d in deliveries} == {
        (None, f"{receiver.url}/job"),
        (every["id"], f"{receiver.url}/every"),
    }
    # Each receiver has a webhook-id of its own.
    assert len({d["id"] for d in deliveries}) == 2

    # An image that cannot be fetched fails the job: job.failed goes to both endpoints.
    response = caller.client.post(
        "/v1/jobs",
        json={"input_method": "url", "images": [f"{receiver.url}/no.png"], "prompt": "x"},
    )
    failed_job = response.json()["id"]
    assert wait_for_job(caller.client, failed_job)["status"] == "failed"
    [failed_event] = receiver.wait_for("/failures", 1)
    assert Webhook(secret).verify(failed_event.body, failed_event.headers)["type"] == "job.failed"
    assert len(receiver.wait_for("/every", 2)) == 2
    assert failures["id"] in {d["endpoint_id"] for d in _deliveries(caller, failed_job)}
    assert [json.loads(r.body)["type"] for r in receiver.at("/every")] == [
        "job.succeeded",
        "job.failed",
    ]


def test_a_receiver_that_fails_then_recovers_gets_the_event_with_the_same_id(
    webhook_caller: Caller, receiver: Receiver
) -> None:
    caller = webhook_caller
    secret = _secret(caller)
    receiver.answers["/flaky"] = [500, 503]
    job_id = _submit(caller, 1, webhook_url=f"{receiver.url}/flaky")
    requests = receiver.wait_for("/flaky", 3)
    assert len({request.webhook_id for request in requests}) == 1
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    [delivery] = _wait_for_deliveries(caller, job_id, _all_delivered)
    assert delivery["id"] == requests[0].webhook_id
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]
    assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3]


def test_a_receiver_that_is_down_then_up_gets_the_event_later_with_the_same_id(
    webhook_caller: Caller,
) -> None:
    caller = webhook_caller
    secret = _secret(caller)
    port = stack.free_port()
    job_id = _submit(caller, 1, webhook_url=f"http://127.0.0.1:{port}/late")
    [down] = _wait_for_deliveries(caller, job_id, lambda d: bool(d and d[0]["attempts"]))
    first = down["attempts"][0]
    assert first["status_code"] is None
    assert "ConnectError" in first["error"]
    assert down["status"] == "pending"

    late = Receiver(port=port).start()
    try:
        [request] = late.wait_for("/late", 1)
        assert request.webhook_id == down["id"]
        Webhook(secret).verify(request.body, request.headers)
        [delivery] = _wait_for_deliveries(caller, job_id, _all_delivered)
        assert delivery["attempts"][-1]["status_code"] == 200
        assert len(delivery["attempts"]) >= 2
    finally:
        late.stop()


def test_410_disables_the_endpoint_and_later_events_are_not_sent(
    webhook_caller: Caller, receiver: Receiver
) -> None:
    caller = webhook_caller
    receiver.gone.add("/gone")
    endpoint = _create_endpoint(caller, f"{receiver.url}/gone")

    first_job = _submit(caller)
    receiver.wait_for("/gone", 1)
    [delivery] = _wait_for_deliveries(
        caller, first_job, lambda d: bool(d) and d[0]["status"] != "pending"
    )
    assert delivery["status"] == "disabled"
    assert [a["status_code"] for a in delivery["attempts"]] == [410]
    shown = caller.client.get(f"/v1/webhook-endpoints/{endpoint['id']}").json()
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    assert shown["disabled_at"] is not None

    second_job = _submit(caller)
    wait_for_job(caller.client, second_job)
    # The event is written when the job ends; a disabled endpoint gets no delivery at all.
    assert _deliveries(caller, second_job) == []
    assert len(receiver.at("/gone")) == 1

    # Turned back on, it receives events again.
    assert caller.client.post(f"/v1/webhook-endpoints/{endpoint['id']}/enable").json()["enabled"]
    receiver.gone.clear()
    third_job = _submit(caller)
    receiver.wait_for("/gone", 2)
    _wait_for_deliveries(caller, third_job, _all_delivered)


def test_after_a_rotation_both_secrets_verify_during_the_overlap(
    webhook_caller: Caller, receiver: Receiver
) -> None:
    caller = webhook_caller
    old = _secret(caller)
    rotated = caller.client.post("/v1/webhook-secret/rotate")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != old
    [previous] = rotated.json()["previous"]
    assert previous["expires_at"] is not None
    assert _secret(caller) == new

    _submit(caller, webhook_url=f"{receiver.url}/rotation")
    [request] = receiver.wait_for("/rotation", 1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)

    # A second rotation ends the first overlap at once: two secrets are valid, never three.
    newest = caller.client.post("/v1/webhook-secret/rotate").json()["secret"]
    _submit(caller, webhook_url=f"{receiver.url}/rotation")
    request = receiver.wait_for("/rotation", 2)[1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(newest).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)


def test_replay_sends_again_with_the_same_webhook_id(
    webhook_caller: Caller, receiver: Receiver, make_caller: Callable[..., Caller]
) -> None:
    caller = webhook_caller
    secret = _secret(caller)
    job_id = _submit(caller, webhook_url=f"{receiver.url}/replay")
    [first] = receiver.wait_for("/replay", 1)
    [delivery] = _wait_for_deliveries(caller, job_id, _all_delivered)

    stranger = make_caller("stranger")
    assert stranger.client.post(f"/v1/webhook-deliveries/{delivery['id']}/replay").status_code == (
        404
    )
    assert caller.client.post("/v1/webhook-deliveries/msg_nothing/replay").status_code == 404

    replayed = caller.client.post(f"/v1/webhook-deliveries/{delivery['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["id"] == delivery["id"]
    second = receiver.wait_for("/replay", 2)[1]
    assert second.webhook_id == first.webhook_id
    assert second.body == first.body
    Webhook(secret).verify(second.body, second.headers)
    [again] = _wait_for_deliveries(
        caller, job_id, lambda d: _all_delivered(d) and len(d[0]["attempts"]) == 2
    )
    assert [a["status_code"] for a in again["attempts"]] == [200, 200]


def test_endpoints_are_validated_and_belong_to_their_account(
    webhook_caller: Caller, make_caller: Callable[..., Caller], receiver: Receiver
) -> None:
    caller = webhook_caller
    refused = caller.client.post(
        "/v1/webhook-endpoints", json={"url": "http://169.254.169.254/latest/meta-data/"}
    )
    assert refused.status_code == 400
    assert refused.json()["input"] == "url"
    assert "169.254.169.254 is a link-local address" in refused.json()["detail"]

    unknown_event = caller.client.post(
        "/v1/webhook-endpoints", json={"url": f"{receiver.url}/x", "events": ["job.exploded"]}
    )
    assert unknown_event.status_code == 400

    endpoint = _create_endpoint(caller, f"{receiver.url}/x", ["job.cancelled"])
    listed = caller.client.get("/v1/webhook-endpoints").json()["endpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]]

    stranger = make_caller("stranger")
    assert stranger.client.get("/v1/webhook-endpoints").json()["endpoints"] == []
    assert stranger.client.get(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert stranger.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 404

    assert caller.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 204
    assert caller.client.get(f"/v1/webhook-endpoints/{endpoint['id']}").status_code == 404
    assert caller.client.get("/v1/webhook-endpoints").json()["endpoints"] == []


def test_an_account_has_at_most_ten_endpoints_each_url_once(
    make_caller: Callable[..., Caller], receiver: Receiver
) -> None:
    """One job must not fan out into hundreds of POSTs: endpoints are capped per account
    (webhook_endpoints_per_account, 10 by default) and a URL is registered once."""
    caller = make_caller()
    first = _create_endpoint(caller, f"{receiver.url}/0", ["job.succeeded"])
    again = caller.client.post("/v1/webhook-endpoints", json={"url": f"{receiver.url}/0"})
    assert again.status_code == 409, again.text
    assert again.json()["input"] == "url"
    assert first["id"] in again.json()["detail"]

    for index in range(1, 10):
        _create_endpoint(caller, f"{receiver.url}/{index}", ["job.succeeded"])
    over = caller.client.post("/v1/webhook-endpoints", json={"url": f"{receiver.url}/10"})
    assert over.status_code == 409, over.text
    assert over.json()["input"] == "url"
    assert "10 webhook endpoints" in over.json()["detail"]
    assert len(caller.client.get("/v1/webhook-endpoints").json()["endpoints"]) == 10

    # Another account has its own ten, and a deleted endpoint frees its place.
    _create_endpoint(make_caller("stranger"), f"{receiver.url}/0", ["job.succeeded"])
    assert caller.client.delete(f"/v1/webhook-endpoints/{first['id']}").status_code == 204
    _create_endpoint(caller, f"{receiver.url}/10", ["job.succeeded"])


HOSTILE_URLS = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://[::1]:8080/hook", "::1 is a loopback address"),
    ("http://0x7f000001/hook", "non-canonical form (it means 127.0.0.1)"),
    ("http://2130706433/hook", "non-canonical form (it means 127.0.0.1)"),
    ("http://0177.0.0.1/hook", "non-canonical form (it means 127.0.0.1)"),
    ("http://localhost:8080/hook", "localhost is this machine"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped form of 169.254.169.254"),
    ("file:///etc/passwd", "only http and https URLs are allowed, not file://"),
    ("gopher://127.0.0.1:70/_x", "only http and https URLs are allowed, not gopher://"),
]


@pytest.mark.parametrize(("url", "reason"), HOSTILE_URLS)
def test_hostile_webhook_urls_are_refused_at_submission(
    caller: Caller, url: str, reason: str
) -> None:
    response = caller.client.post(
        "/v1/jobs",
        json={
            "input_method": "base64",
            "images": [base64.b64encode(png_for(0)).decode()],
            "prompt": "Read it",
            "webhook_url": url,
        },
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["input"] == "webhook_url"
    assert reason in problem["detail"]


@pytest.fixture
def redirector() -> Iterator[str]:
    """/to/<n>: redirects to the n-th hostile URL; /image.png: a real image."""

    def answer(path: str) -> stack.Reply:
        if path.startswith("/to/"):
            return 302, {"Location": HOSTILE_URLS[int(path[4:])][0]}, b""
        return 200, {}, png_for(0)

    with stack.http_server(answer) as url:
        yield url


def test_hostile_image_urls_fail_their_items_with_the_reason(
    caller: Caller, redirector: str
) -> None:
    # Hostile URLs given directly never make it into a job: the API refuses them at
    # submission, with the guard's reason.
    for url, reason in HOSTILE_URLS:
        refused = caller.client.post(
            "/v1/jobs", json={"input_method": "url", "images": [url], "prompt": "Read it"}
        )
        assert refused.status_code == 400, url
        assert refused.json()["input"] == "images[0]"
        if url.startswith("http"):
            assert reason in refused.json()["detail"]
        else:
            assert "is not an http(s) URL" in refused.json()["detail"]
    hostile = [(i, url, reason) for i, (url, reason) in enumerate(HOSTILE_URLS)]
    # Behind a redirect from an allowed server, they are found by the worker, at fetch time.
    direct: list[tuple[str, str, str | None]] = []
    # Every hostile URL, schemes too, as the target of a redirect from an allowed server.
    redirected = [
        (f"{redirector}/to/{i}", reason, f"(a redirect from {redirector}/to/{i})")
        for i, url, reason in hostile
        # httpx cannot even parse this one as a Location: the reason says so instead.
        if "0177" not in url
    ]
    octal = HOSTILE_URLS.index(
        ("http://0177.0.0.1/hook", "non-canonical form (it means 127.0.0.1)")
    )
    redirected.append(
        (
            f"{redirector}/to/{octal}",
            "it redirects to an invalid URL (Invalid IPv4 address: '0177.0.0.1')",
            f"{redirector}/to/{octal} refused: ",
        )
    )
    cases = direct + redirected
    images = [f"{redirector}/image.png", *(url for url, _, _ in cases)]
    response = caller.client.post(
        "/v1/jobs", json={"input_method": "url", "images": images, "prompt": "Read it"}
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["status"] == "partially_succeeded"
    assert job["counts"]["succeeded"] == 1

    lines = caller.client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
    results = [json.loads(line) for line in lines]
    assert results[0]["status"] == "succeeded"
    for row, (_url, reason, via) in zip(results[1:], cases, strict=True):
        assert row["status"] == "failed"
        assert row["error"]["code"] == "image_fetch_failed"
        message = row["error"]["message"]
        assert message.startswith(f"images[{row['index']}]: ")
        assert reason in message
        if via is not None:
            assert via in message
