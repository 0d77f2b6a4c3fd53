"""`imageextract extract`: the nightly batch from disk, in-process with the local engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw, ImageFont

from cli.first_run import write_sample_receipt
from tests.sample_images import png_for, size_for


def _invoice(path: Path, number: str, total: str) -> Path:
    image = Image.new("L", (760, 420), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=30)
    for row, text in enumerate(
        ["NORTHWIND TRADING LTD", f"Invoice No: {number}", "Date: 03/02/2025", f"TOTAL  {total}"]
    ):
        draw.text((40, 40 + row * 80), text, fill=0, font=font)
    image.save(path)
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "extract", *args],
        capture_output=True, text=True, env={**clean, **(env or {})}, check=False,
    )  # fmt: skip


def test_extract_a_folder_to_json_lines_with_errors_per_image(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    _invoice(folder / "a.png", "INV-1001", "45.60")
    _invoice(folder / "b.png", "INV-1002", "12.00")
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out.jsonl"
    done = _run(str(folder), "--prompt", '{"invoice_no": "Invoice Number", "total": "Total"}',
                "--json", "--out", str(out))  # fmt: skip
    # Some images failed: exit status 2, and which ones, by code, on stderr.
    assert done.returncode == 2, done.stderr
    assert "2 of 3 images extracted" in done.stderr
    assert "failed: 1 corrupt_image" in done.stderr
    assert "  c: corrupt_image: " in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a", "b", "c"]
    assert rows[0]["output"] == {"invoice_no": "INV-1001", "total": "45.60"}
    assert rows[1]["output"]["invoice_no"] == "INV-1002"
    assert rows[0]["usage"]["total_tokens"] > 0
    assert rows[2]["output"] is None
    assert rows[2]["error"]["code"] == "corrupt_image"
    assert set(rows[0]) >= {"id", "image", "output", "usage", "error", "evidence"}
    # The local engine grounds its own values: each is where it read it.
    evidence = rows[0]["evidence"]
    assert evidence["invoice_no"]["grounded"]
    assert evidence["total"]["grounded"]
    assert evidence["invoice_no"]["text"] == "INV-1001"
    assert evidence["invoice_no"]["bbox"][1] < evidence["total"]["bbox"][1]
    # With the probability that each is right, from how the engine found it.
    assert all(0 < found["confidence"] < 1 for found in evidence.values())


def test_extract_gives_typed_values_with_normalize_and_no_evidence_without_grounding(
    tmp_path: Path,
) -> None:
    image = _invoice(tmp_path / "a.png", "INV-1001", "45.60")
    out = tmp_path / "out.jsonl"
    prompt = '{"invoice_no": "Invoice Number", "date": "Date", "total": "Total"}'
    done = _run(str(image), "--prompt", prompt, "--json", "--normalize", "--no-grounding",
                "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())
    assert row["output"]["date"] == "03/02/2025"
    assert row["normalized"] == {
        "date": "2025-02-03", "total": {"amount": "45.60", "currency": None},
    }  # fmt: skip
    assert "evidence" not in row


def test_extract_from_a_manifest_with_per_line_prompts_and_a_schema_file(tmp_path: Path) -> None:
    write_sample_receipt(tmp_path / "receipt.png")
    invoice = _invoice(tmp_path / "inv.png", "INV-7", "99.00")
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text(
        json.dumps({"id": "r1", "image": "receipt.png"}) + "\n"
        + json.dumps({"image": str(invoice), "prompt": '{"total": "Total"}'}) + "\n"
    )  # fmt: skip
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"company": "Company", "total": "Total amount"}))
    out = tmp_path / "out.jsonl"
    done = _run("--manifest", str(manifest), "--schema", str(schema), "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["id"] == "r1"
    assert rows[0]["output"]["total"] == "11.50"
    assert "SUNRISE STATIONERY" in rows[0]["output"]["company"]
    assert rows[1]["id"] == "inv"
    assert rows[1]["output"] == {"total": "99.00"}


def test_extract_without_a_prompt_is_a_usage_error(tmp_path: Path) -> None:
    image = _invoice(tmp_path / "a.png", "1", "1.00")
    done = _run(str(image))
    assert done.returncode == 1  # 2 would say that images failed
    assert "give --prompt or --schema" in done.stderr


def test_extract_through_the_batch_api_in_input_order_failed_lines_run_live(
    tmp_path: Path, model_server: str, fake_model: Callable[..., Any]
) -> None:
    """``--mode batch`` against the fake model's Batch API: two provider batches (at most
    3 lines each here), one failed line and one expired half run again live, records in
    the order of the inputs, the provider's files deleted."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for index in range(5):
        (folder / f"{index}.png").write_bytes(png_for(index))
    (folder / "9-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut off")
    fake_model(batch_fail_next=1, batch_expire_next=1)
    out = tmp_path / "out.jsonl"
    env = {
        "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
        "IMAGEEXTRACT_OPENAI_BASE_URL": f"{model_server}/v1",
        "IMAGEEXTRACT_OPENAI_API_KEY": "sk-test",
        "IMAGEEXTRACT_BATCH_MAX_REQUESTS": "3",
        "IMAGEEXTRACT_BATCH_POLL_INTERVAL": "PT0.2S",
    }
    done = _run(str(folder), "--prompt", '{"width": "Width", "height": "Height"}', "--json",
                "--mode", "batch", "--out", str(out), env=env)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "5 images sent in 2 provider batches" in done.stderr
    assert "5 of 6 images extracted" in done.stderr
    assert "failed: 1 corrupt_image" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["0", "1", "2", "3", "4", "9-broken"]
    for index, row in enumerate(rows[:5]):
        width, height = size_for(index)
        assert row["output"] == {"width": str(width), "height": str(height)}
        assert row["usage"]["total_tokens"] > 0
    assert rows[5]["error"]["code"] == "corrupt_image"
    stats = httpx.get(f"{model_server}/_stats").json()
    # The first batch expired after 1 of its 3 lines, the second failed 1 of its 2: three
    # images ran live.
    assert stats["calls"]["batch_ok"] == 2
    assert stats["calls"]["ok"] == 3
    assert stats["batches"]["files"] == 0


def test_extract_in_batch_mode_needs_the_openai_provider(tmp_path: Path) -> None:
    image = _invoice(tmp_path / "a.png", "1", "1.00")
    done = _run(str(image), "--prompt", "x", "--mode", "batch", "--provider", "local")
    # An error, not images that failed: 1, as submit.
    assert done.returncode == 1
    assert "Batch API" in done.stderr


def test_extract_exits_2_when_every_image_failed_0_when_all_succeeded_1_on_a_bad_option(
    tmp_path: Path,
) -> None:
    """A script running the nightly batch can tell a night that produced nothing."""
    broken = tmp_path / "scan.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    failed = _run(str(broken), "--prompt", "Total?")
    assert failed.returncode == 2, failed.stderr
    assert "0 of 1 images extracted" in failed.stderr
    assert "failed: 1 corrupt_image" in failed.stderr
    assert json.loads(failed.stdout)["error"]["code"] == "corrupt_image"

    good = _invoice(tmp_path / "a.png", "INV-1001", "45.60")
    done = _run(str(good), "--prompt", '{"total": "Total"}', "--json")
    assert done.returncode == 0, done.stderr
    assert "1 of 1 images extracted" in done.stderr
    assert "failed:" not in done.stderr
    assert json.loads(done.stdout)["output"] == {"total": "45.60"}

    wrong = _run(str(good), "--prompt", "Total?", "--scene", "no-such-scene")
    assert wrong.returncode == 1
    assert "no-such-scene" in wrong.stderr


def test_extract_in_batch_mode_keeps_a_failed_lines_error_when_told_not_to_run_it_live(
    tmp_path: Path, model_server: str, fake_model: Callable[..., Any]
) -> None:
    for index in range(2):
        (tmp_path / f"{index}.png").write_bytes(png_for(index))
    fake_model(batch_fail_next=1)
    out = tmp_path / "out.jsonl"
    env = {
        "IMAGEEXTRACT_OPENAI_BASE_URL": f"{model_server}/v1",
        "IMAGEEXTRACT_OPENAI_API_KEY": "sk-test",
        "IMAGEEXTRACT_BATCH_POLL_INTERVAL": "PT0.2S",
        "IMAGEEXTRACT_BATCH_FAILED_LINES": "fail",
    }
    done = _run(str(tmp_path / "0.png"), str(tmp_path / "1.png"), "--prompt", "Size?",
                "--provider", "openai", "--mode", "batch", "--out", str(out), env=env)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "failed: 1 upstream_error" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    errors = [row["error"] for row in rows if row["error"] is not None]
    assert len(errors) == 1
    assert errors[0]["code"] == "upstream_error"
    assert "500" in errors[0]["message"]
    assert [row["output"] for row in rows if row["error"] is None] != []
    assert httpx.get(f"{model_server}/_stats").json()["calls"].get("ok", 0) == 0


def test_extract_reads_a_pdf_from_all_its_pages_and_says_how_each_was_read(
    tmp_path: Path,
) -> None:
    from tests.sample_pdfs import encrypted_pdf, scanned_pdf, text_pdf

    folder = tmp_path / "scans"
    folder.mkdir()
    # The number on page 1 of a scan, the total on page 2 of a born-digital PDF.
    (folder / "scan.pdf").write_bytes(
        scanned_pdf([["NORTHWIND TRADING LTD", "Invoice No: INV-2001"], ["Thank you"]])
    )
    (folder / "digital.pdf").write_bytes(
        text_pdf([["NORTHWIND TRADING LTD", "Invoice No: INV-2002"], ["TOTAL 99.50"]])
    )
    (folder / "locked.pdf").write_bytes(encrypted_pdf())
    out = tmp_path / "out.jsonl"
    done = _run(str(folder), "--prompt", '{"invoice_no": "Invoice Number", "total": "Total"}',
                "--json", "--out", str(out))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "failed: 1 encrypted_pdf" in done.stderr
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert rows["scan"]["output"]["invoice_no"] == "INV-2001"
    assert [page["source"] for page in rows["scan"]["pages"]] == ["ocr", "ocr"]
    assert rows["digital"]["output"] == {"invoice_no": "INV-2002", "total": "99.50"}
    # Page 2 prints too little (under 20 characters) to be taken as a text layer: it is
    # OCRed, and the lone line on the blank page is still read.
    assert [page["source"] for page in rows["digital"]["pages"]] == ["text_layer", "ocr"]
    # Evidence names the page each value is printed on.
    assert rows["digital"]["evidence"]["total"]["page"] == 2
    assert rows["locked"]["error"]["code"] == "encrypted_pdf"
