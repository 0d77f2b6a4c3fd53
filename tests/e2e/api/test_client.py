"""The Python SDK and the `imageextract submit` / `jobs` commands against the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import imageextract
from tests import stack
from tests.conftest import ROOT, Caller, Stack
from tests.sample_images import png_for, size_for

# Once, with images in a folder: it does not depend on where the server keeps images.
pytestmark = pytest.mark.one_store

TEMPLATE = {"width": "Width", "height": "Height"}


def _folder(tmp_path: Path, count: int, name: str = "scans") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for index in range(count):
        (folder / f"{index:03d}.png").write_bytes(png_for(index))
    return folder


def _expected(index: int) -> dict[str, str]:
    width, height = size_for(index)
    return {"width": str(width), "height": str(height)}


def test_the_sdk_submits_waits_and_reads_results(
    caller: Caller, api_url: str, tmp_path: Path, image_server: str
) -> None:
    folder = _folder(tmp_path, 3)
    client = imageextract.Client(api_url, caller.key)
    before = client.account.balance()
    job = client.jobs.create(
        images=[folder / "000.png", png_for(1), str(folder / "002.png")],
        schema=TEMPLATE, metadata={"night": "2026-12-02"},
    )  # fmt: skip
    assert job.data.json_mode is True
    assert job.data.metadata == {"night": "2026-12-02"}
    job.wait(timeout=60, poll_interval=0.2)
    assert job.status == "succeeded"
    results = list(job.results())
    assert [item.parsed for item in results] == [_expected(i) for i in range(3)]
    assert [item.index for item in job.items(status="succeeded", page_size=2)] == [0, 1, 2]
    assert client.account.balance() == before - job.data.credits.captured
    charged = [entry for entry in client.account.ledger() if entry.job_id == job.data.id]
    assert sorted(entry.kind for entry in charged) == ["capture", "reserve"]
    # URLs go as JSON for the server to fetch.
    by_url = client.jobs.create(images=[f"{image_server}/img/4.png"], prompt="Size?")
    assert by_url.wait(timeout=60, poll_interval=0.2).status == "succeeded"
    assert by_url.id in {str(summary.id) for summary in client.jobs.list()}
    client.close()


def test_the_sdk_raises_one_exception_per_problem_with_its_fields(
    make_caller: Callable[..., Caller], api_url: str, worker_process: Path
) -> None:
    poor = make_caller("poor", credits=5)
    client = imageextract.Client(api_url, poor.key)
    with pytest.raises(imageextract.InsufficientCredits) as refused:
        client.jobs.create(images=[png_for(0)], prompt="x")
    assert refused.value.status == 402
    assert refused.value.body["balance"] == 5
    with pytest.raises(imageextract.InvalidRequest) as bad:
        client.jobs.create(images=[png_for(0)], prompt="x", mode="overnight")
    assert bad.value.input == "mode"
    with pytest.raises(imageextract.NotFound):
        client.jobs.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(imageextract.Unauthorized):
        imageextract.Client(api_url, "iek_wrong").account.get()
    # Every code of the API has its exception.
    from core.errors import ErrorKind

    assert {kind.code for kind in ErrorKind} <= set(imageextract.errors.BY_CODE)


def test_the_sdk_tries_again_after_retry_after_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        (503, {"Retry-After": "0"}, b"busy"),
        (500, {}, b"oops"),
        (429, {"Retry-After": "0", "Content-Type": "application/json"}, b'{"code":"rate_limited"}'),
    ]  # fmt: skip
    account = json.dumps({
        "id": "5f0c0000-0000-0000-0000-000000000000", "name": "acme", "balance": 7,
        "price": {"per_job": 10, "per_image": 1}, "created_at": "2026-12-02T00:00:00Z",
        "limits": {"rate_limit": {"requests_per_minute": 600}, "max_images_per_job": 3000,
                   "max_image_bytes": 1, "max_job_bytes": 1, "max_prompt_chars": 1,
                   "max_fields_bytes": 1, "max_json_depth": 2},
    }).encode()  # fmt: skip

    def answer(path: str) -> stack.Reply:
        if answers:
            return answers.pop(0)
        return 200, {"Content-Type": "application/json"}, account

    with stack.http_server(answer) as url:
        monkeypatch.setenv("IMAGEEXTRACT_URL", url)
        monkeypatch.setenv("IMAGEEXTRACT_API_KEY", "iek_test")
        assert imageextract.Client().account.balance() == 7
    assert answers == []


def test_the_async_client(caller: Caller, api_url: str) -> None:
    async def run() -> list[Any]:
        async with imageextract.AsyncClient(api_url, caller.key) as client:
            job = await client.jobs.create(images=[png_for(5), png_for(6)], schema=TEMPLATE)
            await job.wait(timeout=60, poll_interval=0.2)
            assert job.status == "succeeded"
            return [item.parsed async for item in job.results()]

    assert asyncio.run(run()) == [_expected(5), _expected(6)]


def _submit(*args: str, key: str, url: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGEEXTRACT_URL": url, "IMAGEEXTRACT_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--poll-interval", "0.2"]
        if args[0] == "submit" else [sys.executable, "-m", "cli", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False, **kwargs,
    )  # fmt: skip


def _ledger(caller: Caller, kind: str) -> list[dict[str, Any]]:
    entries = caller.client.get("/v1/account/ledger", params={"limit": 500}).json()["entries"]
    return [entry for entry in entries if entry["kind"] == kind]


def _reserves(caller: Caller) -> list[dict[str, Any]]:
    return _ledger(caller, "reserve")


def _charged(caller: Caller, job_ids: set[str] | None = None) -> int:
    """Credits captured for the jobs (all of the account's when None)."""
    return sum(
        entry["amount"]
        for entry in _ledger(caller, "capture")
        if job_ids is None or entry["job_id"] in job_ids
    )


def test_submit_splits_by_the_servers_limits_writes_in_input_order_and_resumes_for_free(
    caller: Caller, api_with: Callable[..., str], tmp_path: Path
) -> None:
    url = api_with(max_images_per_job=3)
    folder = _folder(tmp_path, 7)
    out = tmp_path / "results.jsonl"
    args = ("submit", str(folder), "--schema", str(_template(tmp_path)), "--out", str(out))
    done = _submit(*args, key=caller.key, url=url)
    assert done.returncode == 0, done.stderr
    assert "7 images in 3 jobs" in done.stderr
    assert "7 of 7 images succeeded" in done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"{i:03d}" for i in range(7)]
    assert [line["parsed"] for line in lines] == [_expected(i) for i in range(7)]
    assert len({line["job_id"] for line in lines}) == 3
    reserves = _reserves(caller)
    assert len(reserves) == 3
    charged = _charged(caller)
    assert charged > 0
    assert f"7 of 7 images succeeded; {charged} credits charged over 3 jobs\n" in done.stderr
    # Again: the same jobs, found by their Idempotency-Keys; nothing charged twice, and
    # the summary says that this run charged nothing.
    again = _submit(*args, key=caller.key, url=url)
    assert again.returncode == 0, again.stderr
    assert out.read_text().splitlines() == [json.dumps(line) for line in lines]
    assert _reserves(caller) == reserves
    assert (
        "7 of 7 images succeeded; 0 credits charged; 3 jobs already existed, sent by an "
        f"earlier run ({charged} credits charged then)\n"
    ) in again.stderr
    # Without waiting, the same is said of the jobs.
    listed = _submit(*args, "--no-wait", key=caller.key, url=url)
    assert listed.returncode == 0, listed.stderr
    assert "3 of 3 jobs already existed, sent by an earlier run (not charged again)" in (
        listed.stderr
    )


def test_submit_and_the_sdk_send_pdfs_and_jobs_are_cut_by_pages(
    caller: Caller, api_with: Callable[..., str], tmp_path: Path
) -> None:
    from tests.sample_pdfs import scanned_pdf

    url = api_with(max_images_per_job=3)
    folder = _folder(tmp_path, 2)
    # Three pages: with the two images more than a job of 3 takes, so it goes in its own.
    (folder / "002.pdf").write_bytes(scanned_pdf([["one"], ["two"], ["three"]]))
    (folder / "003.pdf").write_bytes(scanned_pdf([["one"]] * 4))
    out = tmp_path / "results.jsonl"
    done = _submit("submit", str(folder), "--schema", str(_template(tmp_path)), "--out", str(out),
                   "--document-mode", "pages", key=caller.key, url=url)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "4 images in 2 jobs" in done.stderr
    lines = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert lines["002"]["page_count"] == 3
    assert len(lines["002"]["parsed"]) == 3  # one result per page
    assert lines["002"]["job_id"] != lines["000"]["job_id"] == lines["001"]["job_id"]
    # Four pages are more than the server takes in a job: refused here, nothing sent.
    assert lines["003"]["error"]["code"] == "too_many_pages"
    assert "003.pdf has 4 pages" in lines["003"]["error"]["message"]

    client = imageextract.Client(url, caller.key)
    job = client.jobs.create(images=[folder / "002.pdf"], schema=TEMPLATE)
    assert job.wait(timeout=60, poll_interval=0.2).status == "succeeded"
    (item,) = job.results()
    assert item.page_count == 3
    assert [page.source for page in item.pages or []] == ["image"] * 3
    with pytest.raises(imageextract.TooManyPages):
        client.jobs.create(images=[folder / "003.pdf"], schema=TEMPLATE)
    client.close()


def _template(tmp_path: Path) -> Path:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(TEMPLATE))
    return path


def test_submit_exits_2_and_lists_the_images_that_failed_and_writes_csv(
    caller: Caller, api_url: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 2)
    (folder / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n cut off here")
    table = tmp_path / "results.csv"
    done = _submit("submit", str(folder), "--schema", str(_template(tmp_path)), "--csv",
                   str(table), key=caller.key, url=api_url)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "1 of 2 images succeeded" in done.stderr
    assert "failed: 1 corrupt_image" in done.stderr
    assert "  001: corrupt_image: images[1]" in done.stderr
    rows = table.read_text().splitlines()
    assert rows[0] == "id,image,job_id,status,error_code,error_message,width,height"
    assert rows[1].startswith("000,")
    assert rows[1].endswith(",succeeded,,,16,16")
    assert ",failed,corrupt_image," in rows[2]


def test_submit_reports_model_failures_with_exit_2(
    caller: Caller, api_url: str, tmp_path: Path, fake_model: Callable[..., Any]
) -> None:
    folder = _folder(tmp_path, 3)
    fake_model(error_rate=1.0)
    done = _submit("submit", str(folder), "--prompt", "Size?", "--out", str(tmp_path / "o"),
                   key=caller.key, url=api_url)  # fmt: skip
    assert done.returncode == 2
    assert "0 of 3 images succeeded" in done.stderr
    assert "failed: 3 upstream_error" in done.stderr
    assert "  000: upstream_error:" in done.stderr
    # The SDK runs them again once the model is back.
    fake_model(error_rate=0.0)
    client = imageextract.Client(api_url, caller.key)
    job_id = json.loads((tmp_path / "o").read_text().splitlines()[0])["job_id"]
    job = client.jobs.get(job_id)
    assert [item.error.code for item in job.items(status="failed") if item.error] == [
        "upstream_error"
    ] * 3
    assert job.retry().wait(timeout=60, poll_interval=0.2).status == "succeeded"
    assert [item.content for item in job.results()] == [
        f"An image of {size_for(i)[0]}x{size_for(i)[1]} pixels." for i in range(3)
    ]


def test_submit_killed_halfway_through_the_upload_and_run_again_charges_each_image_once(
    caller: Caller, api_with: Callable[..., str], tmp_path: Path
) -> None:
    url = api_with(max_images_per_job=4)
    folder = tmp_path / "big"
    folder.mkdir()
    for index in range(12):  # 2 MB of noise each: an upload that takes a moment
        Image.effect_noise((820, 820), 100).convert("RGB").resize((820 + index, 820)).save(
            folder / f"{index:03d}.bmp"
        )
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "IMAGEEXTRACT_URL": url, "IMAGEEXTRACT_API_KEY": caller.key}
    command = [sys.executable, "-m", "cli", "submit", str(folder), "--prompt", "Size?",
               "--out", str(out), "--poll-interval", "0.2"]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("upload: ") and int(line.split()[1].rstrip("%")) >= 40:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    # The first job was made (its answer came before the second's upload began); the
    # second was cut off.
    first = {entry["job_id"] for entry in _reserves(caller)}
    assert len(first) == 1
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [f"{i:03d}" for i in range(12)]
    # Three jobs, each reserved once: no image was charged twice.
    reserves = _reserves(caller)
    assert len(reserves) == 3
    assert sorted(entry["job_id"] for entry in reserves) == sorted(
        {line["job_id"] for line in lines}
    )
    # This run charged the two jobs it made, and says the first was there already.
    made = {entry["job_id"] for entry in reserves} - first
    assert (
        f"12 of 12 images succeeded; {_charged(caller, made)} credits charged over 2 jobs; "
        f"1 job already existed, sent by an earlier run ({_charged(caller, first)} credits "
        "charged then)\n"
    ) in done.stderr


def test_submit_draws_a_progress_bar_per_phase_on_a_terminal(
    caller: Caller, api_url: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 4)
    primary, secondary = pty.openpty()
    env = {**os.environ, "IMAGEEXTRACT_URL": api_url, "IMAGEEXTRACT_API_KEY": caller.key}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "submit", str(folder), "--prompt", "Size?", "--out",
         str(tmp_path / "out.jsonl"), "--poll-interval", "0.2"],
        env=env, cwd=ROOT, stdin=secondary, stdout=secondary, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    process.wait(30)
    os.close(primary)
    text = screen.decode(errors="replace")
    assert process.returncode == 0, text
    assert "\rupload  [" in text
    assert "\rimages  [" in text
    assert "[########################] 100%" in text
    assert "images/s" in text
    assert "4 of 4 images succeeded" in text


def test_jobs_commands_list_show_cancel_and_results(
    caller: Caller, api_url: str, tmp_path: Path, fake_model: Callable[..., Any]
) -> None:
    client = imageextract.Client(api_url, caller.key)
    done = client.jobs.create(images=[png_for(1)], schema=TEMPLATE).wait(60, 0.2)
    fake_model(hold=1)
    held = client.jobs.create(images=[png_for(2), png_for(3)], prompt="Size?")
    listed = _submit("jobs", "list", key=caller.key, url=api_url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith(f"{held.id}\t")
    shown = json.loads(_submit("jobs", "show", done.id, key=caller.key, url=api_url).stdout)
    assert shown["status"] == "succeeded"
    results = _submit("jobs", "results", done.id, key=caller.key, url=api_url).stdout
    assert json.loads(results)["parsed"] == _expected(1)
    cancelled = _submit("jobs", "cancel", held.id, key=caller.key, url=api_url)
    assert cancelled.stdout.strip().endswith("cancelled")
    missing = _submit("jobs", "show", "00000000-0000-0000-0000-000000000000", key=caller.key,
                      url=api_url)  # fmt: skip
    assert missing.returncode == 1
    assert "not_found" in missing.stderr
    httpx.post(f"{caller.client.base_url}/v1/jobs/{held.id}")  # nothing left to wait for


def test_csv_flattens_nested_objects_and_gives_a_row_per_element_of_the_first_list() -> None:
    import io

    from api.results_csv import CsvResults

    stream = io.StringIO()
    prompt = json.dumps({
        "invoice_no": "No", "seller": {"name": "Name"},
        "items": [{"name": "Item", "total": "Amount"}], "tags": ["Tag"],
    })  # fmt: skip
    table = CsvResults(stream, prompt, json_mode=True, base=["id", "image", "job_id"])
    items = [{"name": "pen", "total": "2.00"}, {"name": "ink", "total": "5.00"}]
    parsed = {"invoice_no": "7", "seller": {"name": "Acme"}, "tags": ["x", "y"], "items": items}
    table.write({"id": "a", "status": "succeeded", "parsed": parsed})
    table.write({"id": "b", "status": "failed", "error": {"code": "corrupt_image",
                                                          "message": "bad"}})  # fmt: skip
    rows = stream.getvalue().splitlines()
    assert rows[0] == ("id,image,job_id,status,error_code,error_message,invoice_no,seller.name,"
                       "items.name,items.total,tags")  # fmt: skip
    assert rows[1] == 'a,,,succeeded,,,7,Acme,pen,2.00,"[""x"", ""y""]"'
    assert rows[2] == 'a,,,succeeded,,,7,Acme,ink,5.00,"[""x"", ""y""]"'
    assert rows[3] == "b,,,failed,corrupt_image,bad,,,,,"


def test_csv_of_a_pdf_read_page_by_page_has_a_row_per_page() -> None:
    import io

    from api.results_csv import CsvResults

    stream = io.StringIO()
    table = CsvResults(stream, json.dumps({"total": "Total"}), json_mode=True, base=["id"],
                       by_page=True)  # fmt: skip
    table.write({"id": "scan", "status": "succeeded", "parsed": [{"total": "1"}, {"total": "2"}]})
    table.write({"id": "photo", "status": "succeeded", "parsed": {"total": "3"}})
    assert stream.getvalue().splitlines() == [
        "id,page,status,error_code,error_message,total",
        "scan,1,succeeded,,,1",
        "scan,2,succeeded,,,2",
        "photo,,succeeded,,,3",
    ]


def test_the_sdk_needs_a_server_and_a_key(monkeypatch: pytest.MonkeyPatch, services: Stack) -> None:
    monkeypatch.delenv("IMAGEEXTRACT_URL", raising=False)
    monkeypatch.delenv("IMAGEEXTRACT_API_KEY", raising=False)
    with pytest.raises(ValueError, match="IMAGEEXTRACT_URL"):
        imageextract.Client()


def test_submit_exits_1_on_an_error_with_the_servers_message(
    caller: Caller, api_url: str, tmp_path: Path
) -> None:
    folder = _folder(tmp_path, 1)
    done = _submit("submit", str(folder), "--prompt", "x", key="iek_not-a-key", url=api_url)
    assert done.returncode == 1
    assert "unauthorized" in done.stderr
    nothing = _submit("submit", "--prompt", "x", key=caller.key, url=api_url)
    assert nothing.returncode == 1  # 2 would say that some images failed
    assert "give PATHS or --manifest" in nothing.stderr
    unknown = _submit("submit", str(folder), "--colour", key=caller.key, url=api_url)
    assert unknown.returncode == 1


def test_results_as_csv_from_the_api(caller: Caller, api_url: str) -> None:
    client = imageextract.Client(api_url, caller.key)
    job = client.jobs.create(images=[png_for(3), b"\x89PNG\r\n\x1a\n cut"], schema=TEMPLATE)
    job.wait(timeout=60, poll_interval=0.2)
    response = caller.client.get(f"/v1/jobs/{job.id}/results.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="{job.id}.csv"' in response.headers["content-disposition"]
    rows = response.text.splitlines()
    assert rows[0] == "index,source_name,status,error_code,error_message,width,height"
    assert rows[1] == "0,image-0,succeeded,,,19,16"
    assert rows[2].startswith("1,image-1,failed,corrupt_image,")
