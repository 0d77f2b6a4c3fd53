"""Grounding on labelled receipts: are true values found on the image, and wrong ones not?

    .venv/bin/python -m tests.benchmarks.grounding [--data ../shared/data/sroie-dev] [--limit N]

For each receipt the image is read by the OCR engine we ship (once, at the grounding
reader's scale unless ``--detection-side`` says otherwise), then the labelled
values are grounded as a model's answer would be (extraction.grounding.ground). Figures:

- true values grounded: share of non-null labelled values with ``grounded: true`` whose box
  overlaps a "true line": an OCR line that prints the value (the same amount, the same day,
  or the text with a fuzzy partial ratio of at least 90). The sets carry no boxes of their
  own, so the true line comes from the OCR; what this checks is that the box is where the
  value is printed, not elsewhere.
- wrong values caught: one value per receipt is replaced with a plausible wrong one, in
  turn the company (another receipt's), the date (three days later) and the total (10 %
  more); the share of those with ``grounded: false``.
- CPU per receipt: process CPU seconds of OCR plus grounding (this process only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image
from rapidfuzz import fuzz

from extraction.contract import PrintedLine
from extraction.engine.document import decode_image, printed_lines
from extraction.engine.ocr import TextRecognizer
from extraction.grounding import _plain, amount_of, amounts_in, dates_in, ground
from extraction.providers.local import GROUNDING_DETECTION_SIDE

ROOT = Path(__file__).resolve().parents[2]


def read_lines(recognizer: TextRecognizer, image: Image.Image) -> tuple[PrintedLine, ...]:
    return printed_lines(recognizer.recognise_upright(image))


def prints(line: PrintedLine, value: str) -> bool:
    amount = amount_of(value)
    if amount is not None:
        return amount in amounts_in(line.text)
    days = dates_in(value)
    if days:
        return bool(days & dates_in(line.text))
    return fuzz.partial_ratio(_plain(value), _plain(line.text)) >= 90


def overlaps(box: list[float], line: PrintedLine) -> bool:
    x0, y0, x1, y1 = box
    lx0, ly0, lx1, ly1 = line.box
    return x0 < lx1 and lx0 < x1 and y0 < ly1 and ly0 < y1


def wrong_value(field: str, fields: dict[str, str], other_company: str) -> str | None:
    value = fields.get(field) or ""
    if field == "company":
        return other_company if _plain(other_company) != _plain(value) else None
    if field == "date":
        days = sorted(dates_in(value))
        if not days:
            return None
        later = date.fromordinal(days[0].toordinal() + 3)
        return f"{later.day:02d}/{later.month:02d}/{later.year}"
    amount = amount_of(value)
    if amount is None:
        return None
    return str((amount * Decimal("1.1")).quantize(Decimal("0.01")))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/sroie-dev")
    parser.add_argument("--limit", type=int, default=0)
    # The grounding reader's scale (what the product uses to ground a remote answer).
    parser.add_argument("--detection-side", type=int, default=GROUNDING_DETECTION_SIDE)
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.data / "labels.jsonl").open()]
    if args.limit:
        records = records[: args.limit]
    recognizer = TextRecognizer(threads=1, detection_side=args.detection_side)
    recognizer.warm_up()
    true_total = true_grounded = true_boxed = 0
    wrong_total = wrong_caught = 0
    missed: list[str] = []
    cpu: list[float] = []
    fields_to_break = ["company", "date", "total"]
    for index, record in enumerate(records):
        fields: dict[str, Any] = record["fields"]
        started = time.process_time()
        image = decode_image((args.data / record["image"]).read_bytes())
        lines = read_lines(recognizer, image)
        evidence = ground(fields, lines)
        cpu.append(time.process_time() - started)
        for key, value in fields.items():
            if value in (None, ""):
                continue
            true_total += 1
            found = evidence.get(key)
            if found and found["grounded"]:
                true_grounded += 1
                true_lines = [line for line in lines if prints(line, str(value))]
                if any(overlaps(found["bbox"], line) for line in true_lines):
                    true_boxed += 1
            else:
                missed.append(f"{record['id']} {key}={value!r}: {found}")
        field = fields_to_break[index % len(fields_to_break)]
        other = records[(index + 1) % len(records)]["fields"].get("company") or ""
        wrong = wrong_value(field, fields, other)
        if wrong is not None:
            wrong_total += 1
            broken = {**fields, field: wrong}
            if not ground(broken, lines)[field]["grounded"]:
                wrong_caught += 1
    print(f"receipts: {len(records)} ({args.data})")
    print(
        f"true values grounded: {true_grounded}/{true_total} = {true_grounded / true_total:.3f}; "
        f"with a box on a true line: {true_boxed}/{true_total} = {true_boxed / true_total:.3f} "
        "(target >= 0.95)"
    )
    print(
        f"true values not grounded: {1 - true_grounded / true_total:.3f} (target <= 0.05); "
        f"wrong values caught: {wrong_caught}/{wrong_total} = {wrong_caught / wrong_total:.3f} "
        "(target >= 0.90)"
    )
    print(
        f"CPU per receipt (OCR + grounding): median {statistics.median(cpu):.2f} s, "
        f"max {max(cpu):.2f} s (target <= 1.5 s)"
    )
    for line in missed[:15]:
        print("  not grounded:", line)


if __name__ == "__main__":
    main()
