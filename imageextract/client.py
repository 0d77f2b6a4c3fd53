"""The Python SDK for an imageextract server.

    from imageextract import Client

    client = Client("http://127.0.0.1:8000", "iek_…")   # or IMAGEEXTRACT_URL / _API_KEY
    job = client.jobs.create(images=["a.jpg", "b.png"], schema={"total": "Total"})
    job.wait(timeout=600)
    for item in job.results():              # streamed, in input order
        print(item.index, item.parsed)

Return values are the API's own Pydantic models (``api.schemas``). Every problem the
server answers with raises the exception of its code (``imageextract.errors``). Answers
429 and 5xx and broken connections are tried again (after Retry-After when the
server gives one); a submission always carries an Idempotency-Key (made up when not
given), so trying it again never makes a second job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

from api.schemas.account import AccountOut, LedgerEntryOut, LedgerPage
from api.schemas.jobs import ItemOut, ItemPage, JobAccepted, JobOut, JobPage, JobSummary
from imageextract import requests
from imageextract.errors import APIConnectionError
from imageextract.requests import ImageInput, Submission, UploadProgress


def _fields(
    prompt: str | None,
    schema: Any,
    json_mode: bool | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    if schema is not None:
        prompt = requests.prompt_with_schema(prompt, schema)
        json_mode = True if json_mode is None else json_mode
    if not prompt:
        raise ValueError("give a prompt or a schema")
    return {"prompt": prompt, "json_mode": json_mode, **options}


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
    ) -> None:
        options = requests.http_options(base_url, api_key, timeout)
        self.base_url: str = options["base_url"]
        self.max_retries = max_retries
        self.http = httpx.Client(**options)
        self.jobs = Jobs(self)
        self.account = Account(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        sending: Submission | None = None,
        progress: UploadProgress | None = None,
    ) -> httpx.Response:
        """One call, tried again on 429/5xx from a proxy and on broken connections."""
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                if sending is None:
                    response = self.http.request(method, path, params=params)
                elif sending.json_body is not None:
                    response = self.http.request(
                        method, path, json=sending.json_body, headers=sending.headers
                    )
                else:
                    headers = {**sending.headers, "Content-Length": str(sending.length)}
                    response = self.http.request(
                        method, path, content=sending.body(progress), headers=headers
                    )
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise APIConnectionError(f"{method} {path}: {error}") from error
            else:
                if attempt == self.max_retries or not requests.should_retry(
                    response, submission=sending is not None
                ):
                    requests.raise_for_problem(response)
                    return response
            time.sleep(requests.retry_delay(attempt, response))
        raise AssertionError("unreachable")


class Jobs:
    def __init__(self, client: Client) -> None:
        self.client = client

    def create(
        self,
        images: Sequence[ImageInput],
        prompt: str | None = None,
        *,
        schema: Any = None,
        json_mode: bool | None = None,
        scene: str | None = None,
        model: str | None = None,
        priority: str | None = None,
        mode: str | None = None,
        document_mode: str | None = None,
        grounding: bool | None = None,
        normalize: bool | None = None,
        webhook_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        results_ttl: int | None = None,
        idempotency_key: str | None = None,
        on_upload: UploadProgress | None = None,
    ) -> Job:
        """Submit images or PDFs (paths, bytes, or http(s) URLs) with a prompt or a schema (a
        JSON template or JSON Schema: dict, JSON text or a file; JSON mode follows). A PDF
        gives one result from all its pages, or one per page with ``document_mode="pages"``."""
        fields = _fields(prompt, schema, json_mode, {
            "scene": scene, "model": model, "priority": priority, "mode": mode,
            "document_mode": document_mode, "grounding": grounding, "normalize": normalize,
            "webhook_url": webhook_url, "metadata": metadata, "results_ttl": results_ttl,
        })  # fmt: skip
        sending = requests.submission(images, fields, idempotency_key)
        response = self.client.request("POST", "/v1/jobs", sending=sending, progress=on_upload)
        accepted = JobAccepted.model_validate(requests.read_json(response))
        return self.get(str(accepted.id))

    def get(self, job_id: str) -> Job:
        response = self.client.request("GET", f"/v1/jobs/{job_id}")
        return Job(self.client, JobOut.model_validate(requests.read_json(response)))

    def list(self, status: str | None = None, page_size: int = 100) -> Iterator[JobSummary]:
        """The account's jobs, newest first."""
        cursor: str | None = None
        while True:
            params = {"limit": page_size, "status": status, "cursor": cursor}
            response = self.client.request(
                "GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None}
            )
            page = JobPage.model_validate(requests.read_json(response))
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class Job:
    """A job as last seen (``data``), and what can be done with it."""

    def __init__(self, client: Client, data: JobOut) -> None:
        self.client = client
        self.data = data

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status} {self.data.counts}>"

    @property
    def id(self) -> str:
        return str(self.data.id)

    @property
    def status(self) -> str:
        return self.data.status

    @property
    def ended(self) -> bool:
        return self.data.finished_at is not None

    def refresh(self) -> Job:
        self.data = self.client.jobs.get(self.id).data
        return self

    def wait(self, timeout: float | None = None, poll_interval: float = 1.0) -> Job:
        """Until the job has ended; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().ended:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
            time.sleep(poll_interval)
        return self

    def results(self) -> Iterator[ItemOut]:
        """Every ended image, in input order, read as the server streams them."""
        with self.client.http.stream("GET", f"/v1/jobs/{self.id}/results") as response:
            if response.status_code >= 400:
                response.read()
                requests.raise_for_problem(response)
            for line in response.iter_lines():
                if line.strip():
                    yield ItemOut.model_validate_json(line)

    def items(self, status: str | None = None, page_size: int = 100) -> Iterator[ItemOut]:
        cursor: str | None = None
        while True:
            params = {"limit": page_size, "status": status, "cursor": cursor}
            response = self.client.request(
                "GET", f"/v1/jobs/{self.id}/items",
                params={k: v for k, v in params.items() if v is not None},
            )  # fmt: skip
            page = ItemPage.model_validate(requests.read_json(response))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self) -> Job:
        response = self.client.request("DELETE", f"/v1/jobs/{self.id}")
        self.data = JobOut.model_validate(requests.read_json(response))
        return self

    def retry(self) -> Job:
        response = self.client.request("POST", f"/v1/jobs/{self.id}/retry")
        self.data = JobOut.model_validate(requests.read_json(response))
        return self


class Account:
    def __init__(self, client: Client) -> None:
        self.client = client

    def get(self) -> AccountOut:
        return AccountOut.model_validate(
            requests.read_json(self.client.request("GET", "/v1/account"))
        )

    def balance(self) -> int:
        return self.get().balance

    def ledger(self, page_size: int = 100) -> Iterator[LedgerEntryOut]:
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            response = self.client.request("GET", "/v1/account/ledger", params=params)
            page = LedgerPage.model_validate(requests.read_json(response))
            yield from page.entries
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


# The same, for asyncio.


class AsyncClient:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 4,
    ) -> None:
        options = requests.http_options(base_url, api_key, timeout)
        self.base_url: str = options["base_url"]
        self.max_retries = max_retries
        self.http = httpx.AsyncClient(**options)
        self.jobs = AsyncJobs(self)
        self.account = AsyncAccount(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        sending: Submission | None = None,
        progress: UploadProgress | None = None,
    ) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                if sending is None:
                    response = await self.http.request(method, path, params=params)
                elif sending.json_body is not None:
                    response = await self.http.request(
                        method, path, json=sending.json_body, headers=sending.headers
                    )
                else:
                    headers = {**sending.headers, "Content-Length": str(sending.length)}
                    response = await self.http.request(
                        method, path, content=_aiter(sending, progress), headers=headers
                    )
            except httpx.TransportError as error:
                if attempt == self.max_retries:
                    raise APIConnectionError(f"{method} {path}: {error}") from error
            else:
                if attempt == self.max_retries or not requests.should_retry(
                    response, submission=sending is not None
                ):
                    requests.raise_for_problem(response)
                    return response
            await asyncio.sleep(requests.retry_delay(attempt, response))
        raise AssertionError("unreachable")


async def _aiter(sending: Submission, progress: UploadProgress | None) -> AsyncIterator[bytes]:
    for chunk in sending.body(progress):
        yield chunk


class AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(
        self,
        images: Sequence[ImageInput],
        prompt: str | None = None,
        *,
        schema: Any = None,
        json_mode: bool | None = None,
        scene: str | None = None,
        model: str | None = None,
        priority: str | None = None,
        mode: str | None = None,
        document_mode: str | None = None,
        grounding: bool | None = None,
        normalize: bool | None = None,
        webhook_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        results_ttl: int | None = None,
        idempotency_key: str | None = None,
        on_upload: UploadProgress | None = None,
    ) -> AsyncJob:
        fields = _fields(prompt, schema, json_mode, {
            "scene": scene, "model": model, "priority": priority, "mode": mode,
            "document_mode": document_mode, "grounding": grounding, "normalize": normalize,
            "webhook_url": webhook_url, "metadata": metadata, "results_ttl": results_ttl,
        })  # fmt: skip
        sending = requests.submission(images, fields, idempotency_key)
        response = await self.client.request(
            "POST", "/v1/jobs", sending=sending, progress=on_upload
        )
        accepted = JobAccepted.model_validate(requests.read_json(response))
        return await self.get(str(accepted.id))

    async def get(self, job_id: str) -> AsyncJob:
        response = await self.client.request("GET", f"/v1/jobs/{job_id}")
        return AsyncJob(self.client, JobOut.model_validate(requests.read_json(response)))


class AsyncJob:
    def __init__(self, client: AsyncClient, data: JobOut) -> None:
        self.client = client
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data.id)

    @property
    def status(self) -> str:
        return self.data.status

    @property
    def ended(self) -> bool:
        return self.data.finished_at is not None

    async def refresh(self) -> AsyncJob:
        self.data = (await self.client.jobs.get(self.id)).data
        return self

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 — the same call as Job.wait
        poll_interval: float = 1.0,
    ) -> AsyncJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (await self.refresh()).ended:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
            await asyncio.sleep(poll_interval)
        return self

    async def results(self) -> AsyncIterator[ItemOut]:
        async with self.client.http.stream("GET", f"/v1/jobs/{self.id}/results") as response:
            if response.status_code >= 400:
                await response.aread()
                requests.raise_for_problem(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield ItemOut.model_validate_json(line)

    async def cancel(self) -> AsyncJob:
        response = await self.client.request("DELETE", f"/v1/jobs/{self.id}")
        self.data = JobOut.model_validate(requests.read_json(response))
        return self

    async def retry(self) -> AsyncJob:
        response = await self.client.request("POST", f"/v1/jobs/{self.id}/retry")
        self.data = JobOut.model_validate(requests.read_json(response))
        return self


class AsyncAccount:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def get(self) -> AccountOut:
        response = await self.client.request("GET", "/v1/account")
        return AccountOut.model_validate(requests.read_json(response))

    async def balance(self) -> int:
        return (await self.get()).balance


__all__ = ["AsyncClient", "AsyncJob", "Client", "Job"]
