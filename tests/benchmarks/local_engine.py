"""Speed and accuracy of the embedded ``local`` engine on the shared labelled documents.

    python -m tests.benchmarks.local_engine [--set sroie|funsd|adbuy|both|all] [--limit N]
        [--scale F] [--keep DIR] [--fit-calibration]

Runs the ``local`` provider (``extraction.providers.local``) in this one process over
``../shared/data/sroie-dev`` (receipts, the set's ``prompt.txt``), ``funsd-dev`` (forms,
each with its own prompt) and ``adbuy-dev`` (US advertising orders and invoices, the set's
``prompt.txt``; ``both`` is SROIE and FUNSD, ``all`` all three), through the same steps
as ``imageextract extract --json``: read, normalise (``prepare_image``), extract, parse the
JSON. Predictions go to a temporary file that ``../shared/eval/score.py`` scores; the file
is deleted afterwards (``--keep DIR`` keeps it for ``score.py --errors``) and no expected
value is printed. ``--scale 2`` reads every image enlarged twice first: adbuy's 150 dpi
pages become letter size at 300 dpi, the large scans users send.

Figures (the model load is done before the clock starts, on a blank image):

- images/s: images / wall time, with onnxruntime's threads as the provider sets them.
- images/s per core: images / CPU-seconds of the process (all its threads), i.e. what one
  fully busy core gets through.
- seconds per image: median wall time of one image (read to parsed JSON).
- peak RSS: the process's VmHWM after the run, models loaded.
- accuracy: SROIE and adbuy per field, strict, and their mean; FUNSD key/value pairs, soft
  (text similarity >= 0.9, see score.py's docstring), strict beside it.
- halves: each set is split in two by a fixed hash of its ids (sorted by SHA-256 of
  "imageextract-half:<id>", the first half is A). Rules are developed looking at A only;
  the strict figure of each half per field and their gap show whether a rule holds on
  documents it was not made on.
- calibration: every value the engine gives carries a confidence (extraction.confidence);
  per set the expected calibration error (10 equal-width bins) over all its values and
  over each half, and the reliability table (per bin: mean confidence, share right).
  ``--fit-calibration`` fits the confidence model on half A of every set run (``--set
  all``) and writes ``extraction/calibration.json`` before reporting.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.settings import Settings
from extraction import confidence
from extraction.batch import BatchEntry, extract_one
from extraction.contract import (
    DocumentPage,
    ExtractionRequest,
    ModelResult,
    PreparedImage,
    PrintedLine,
    Provider,
    Scene,
)
from extraction.grounding import page_confidence
from extraction.providers.registry import create_provider

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data"
SCORER = SHARED / "eval" / "score.py"
SROIE_FIELDS = ("company", "date", "address", "total")


@dataclass
class Value:
    """One value the engine gave, with what its confidence is reckoned from."""

    id: str
    field: str
    half: str
    features: dict[str, float]
    # None for a value of a rule the calibration has no data for (see Calibration.knows).
    confidence: float | None
    right: bool


@dataclass
class SetResult:
    name: str
    images: int
    failed: int
    wall_s: float
    cpu_s: float
    seconds: list[float]
    summary: dict[str, Any]
    halves: dict[str, dict[str, Any]]
    values: list[Value]

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s

    @property
    def images_per_cpu_s(self) -> float:
        return self.images / self.cpu_s


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def entries_for(
    name: str, limit: int | None, scale: float = 1.0, work: Path | None = None
) -> tuple[Path, list[BatchEntry]]:
    folder = DATA / f"{name}-dev"
    labels = folder / "labels.jsonl"
    if not labels.exists():
        raise SystemExit(f"{labels} not found: the shared data sets sit beside the repository")
    # Only the id, image path and prompt are read from the labels; the answers stay there.
    rows = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
    prompt_file = folder / "prompt.txt"
    default_prompt = prompt_file.read_text() if prompt_file.exists() else None
    entries = []
    for row in rows[:limit]:
        prompt = row.get("prompt") or default_prompt
        if not prompt:
            raise SystemExit(f"{labels}: {row['id']} has no prompt and the set has none")
        image = folder / row["image"]
        if scale != 1.0 and work is not None:
            image = enlarged(image, scale, work / f"{name}-x{scale:g}")
        entries.append(BatchEntry(id=str(row["id"]), image=image, prompt=prompt))
    return labels, entries


def enlarged(image: Path, scale: float, folder: Path) -> Path:
    """A copy of ``image`` enlarged ``scale`` times, as a PNG in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{image.stem}.png"
    with Image.open(image) as picture:
        size = (round(picture.width * scale), round(picture.height * scale))
        picture.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(target)
    return target


def halves(ids: list[str]) -> dict[str, str]:
    """Each id's half, "a" or "b": ids sorted by a fixed hash, the first half (rounded up)
    is A. Fixed, so a rule tuned on A's documents shows as a gap on B's."""
    ordered = sorted(ids, key=lambda i: hashlib.sha256(f"imageextract-half:{i}".encode()).digest())
    first = set(ordered[: (len(ordered) + 1) // 2])
    return {i: "a" if i in first else "b" for i in ids}


def scorer() -> Any:
    """``../shared/eval/score.py`` as a module: its per-field comparison judges each value."""
    spec = importlib.util.spec_from_file_location("imageextract_score", SCORER)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{SCORER} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HowRecorder:
    """The provider, keeping how it found each value of its last answer (ModelResult.how),
    which extract_one's record does not carry."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.name = provider.name
        self.how: dict[str, str] = {}
        self.page: float | None = None

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult:
        result = self.provider.extract(image, request)
        self.how = dict(result.how or {})
        self.page = page_confidence(result.printed or ())
        return result

    def extract_pages(
        self, pages: Iterable[DocumentPage], request: ExtractionRequest
    ) -> ModelResult:
        result = self.provider.extract_pages(pages, request)
        self.how = dict(result.how or {})
        return result

    def close(self) -> None:
        self.provider.close()


def no_second_reading(data: bytes) -> tuple[PrintedLine, ...]:
    raise AssertionError("the local engine grounds its values in its own reading")


def warm_up(provider: Provider) -> None:
    """Load the ONNX models now, so the first document's time is not the load time."""
    out = io.BytesIO()
    Image.new("RGB", (64, 32), "white").save(out, "PNG")
    provider.extract(PreparedImage(out.getvalue(), "image/png", 64, 32), ExtractionRequest("x"))


def score(labels: Path, predictions: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(SCORER), "--labels", str(labels), "--pred", str(predictions),
         "--json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return dict(json.loads(result.stdout))


def run_set(
    name: str,
    provider: Provider,
    settings: Settings,
    limit: int | None,
    work: Path,
    scale: float = 1.0,
) -> SetResult:
    labels, entries = entries_for(name, limit, scale, work)
    predictions = work / f"{name}-predictions.jsonl"
    seconds: list[float] = []
    failed = 0
    recorder = HowRecorder(provider)
    records: list[tuple[dict[str, Any], dict[str, str], float | None]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    with predictions.open("w") as sink:
        for number, entry in enumerate(entries, start=1):
            recorder.how = {}
            record = extract_one(
                recorder, settings, entry, json_mode=True, scene=Scene.GENERAL,
                reader=no_second_reading,
            )  # fmt: skip
            records.append((record, recorder.how, recorder.page))
            seconds.append(float(record["seconds"]))
            failed += record["error"] is not None
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            if number % 10 == 0:
                print(f"{name}: {number}/{len(entries)}", file=sys.stderr, flush=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if limit is not None:
        # score.py counts a label without a prediction as wrong: score only what ran.
        kept = {entry.id for entry in entries}
        subset = work / f"{name}-labels.jsonl"
        subset.write_text(
            "".join(
                line + "\n"
                for line in labels.read_text().splitlines()
                if line.strip() and str(json.loads(line)["id"]) in kept
            )
        )
        labels = subset
    rows = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
    split = halves([str(row["id"]) for row in rows])
    score_py = scorer()
    by_half = {
        half: score_py.score(
            [row for row in rows if split[str(row["id"])] == half],
            [record for record, _, _ in records if split.get(record["id"]) == half],
        )[0]
        for half in ("a", "b")
    }
    return SetResult(
        name, len(entries), failed, wall, cpu, seconds, score(labels, predictions), by_half,
        judged_values(score_py, rows, records, split),
    )  # fmt: skip


def judged_values(
    score_py: Any,
    rows: list[dict[str, Any]],
    records: list[tuple[dict[str, Any], dict[str, str], float | None]],
    split: dict[str, str],
) -> list[Value]:
    """Every value given for a labelled field, with its confidence, judged as score.py
    judges it (strict)."""
    by_id = {str(row["id"]): row for row in rows}
    values = []
    for record, how, page in records:
        row = by_id.get(record["id"])
        output = record.get("output")
        if row is None or not isinstance(output, dict):
            continue
        typed = "prompt" not in row
        for field, expected in row["fields"].items():
            got = output.get(field)
            evidence = (record.get("evidence") or {}).get(field)
            if got is None or evidence is None or field not in how:
                continue
            named = confidence.features(
                how[field], ocr_confidence=evidence["ocr_confidence"], match=evidence["match"],
                grounded=evidence["grounded"], value=got, page_confidence=page,
            )  # fmt: skip
            right, _soft = score_py.correct(field, expected, got, typed)
            values.append(
                Value(record["id"], field, split[record["id"]], named,
                      evidence["confidence"], bool(right))
            )  # fmt: skip
    return values


def report(results: list[SetResult]) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"Speed (1 process on {cores} cores, onnxruntime threads as the provider sets them; "
        f"peak RSS {peak_rss_mb():.0f} MB):",
        "",
        "| set | images | failed | images/s | images/s per core | CPU-s per image "
        "| s per image (median) | cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.images} | {r.failed} | {r.images_per_s:.2f} "
            f"| {r.images_per_cpu_s:.2f} | {r.cpu_s / r.images:.2f} "
            f"| {statistics.median(r.seconds):.2f} | {r.cpu_s / r.wall_s:.2f} |"
        )
    lines += [
        "", "Accuracy (strict; halves by a fixed hash of the ids):", "",
        "| set | field | strict | soft | n | half A | half B | gap |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in results:
        fields = r.summary["fields"]
        names = [f for f in SROIE_FIELDS if f in fields] + sorted(
            f for f in fields if f not in SROIE_FIELDS
        )
        a, b = (r.halves[h]["fields"] for h in ("a", "b"))
        for field in names:
            value = fields[field]
            halves_ = (
                (a[field]["strict"], b[field]["strict"]) if field in a and field in b else None
            )
            lines.append(
                f"| {r.name} | {field} | {value['strict']:.3f} | {value['soft']:.3f} "
                f"| {value['n']} | "
                + (
                    f"{halves_[0]:.3f} ({a[field]['n']}) | {halves_[1]:.3f} ({b[field]['n']}) "
                    f"| {abs(halves_[0] - halves_[1]):.3f} |"
                    if halves_
                    else " | | |"
                )
            )
        ma, mb = r.halves["a"]["mean_strict"], r.halves["b"]["mean_strict"]
        lines.append(
            f"| {r.name} | **mean** | {r.summary['mean_strict']:.3f} "
            f"| {r.summary['mean_soft']:.3f} | | {ma:.3f} | {mb:.3f} | {abs(ma - mb):.3f} |"
        )
    lines += [
        "", "Calibration (a confidence per value; expected calibration error, 10 bins):", "",
        "| set | values | share right | mean confidence | ECE | ECE half A | ECE half B |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in results:
        pairs = calibrated(r.values)
        if not pairs:
            continue
        ece = confidence.expected_calibration_error(pairs)[0]
        by_half = [
            confidence.expected_calibration_error(calibrated([v for v in r.values if v.half == h]))[
                0
            ]
            for h in ("a", "b")
        ]
        lines.append(
            f"| {r.name} | {len(pairs)} | {sum(p[1] for p in pairs) / len(pairs):.3f} "
            f"| {sum(p[0] for p in pairs) / len(pairs):.3f} | {ece:.3f} | {by_half[0]:.3f} "
            f"| {by_half[1]:.3f} |"
        )
    lines += [
        "", "Reliability (every set's values; per bin of confidence):", "",
        "| confidence | " + " | ".join(r.name for r in results) + " | all |",
        "|---|" + "---|" * (len(results) + 1),
    ]  # fmt: skip
    tables = [
        dict((row[0], row) for row in confidence.expected_calibration_error(
            calibrated(values))[1])
        for values in [r.values for r in results] + [[v for r in results for v in r.values]]
    ]  # fmt: skip
    for low in sorted({edge for table in tables for edge in table}):
        cells = [
            f"{t[low][2]:.2f} right at {t[low][1]:.2f} (n={t[low][3]})" if low in t else ""
            for t in tables
        ]
        lines.append(f"| {low:.1f} to {low + 0.1:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibrated(values: list[Value]) -> list[tuple[float, bool]]:
    """(confidence, right) of the values that have a confidence."""
    return [(v.confidence, v.right) for v in values if v.confidence is not None]


def refit(results: list[SetResult]) -> None:
    """Fit the confidence model on every value of every set and write it; every value's
    confidence is then reckoned again with it."""
    samples = [(v.features, v.right) for r in results for v in r.values]
    model = confidence.fit(samples)
    confidence.CALIBRATION_FILE.write_text(
        json.dumps(
            {
                "fitted": "sroie-dev, funsd-dev and adbuy-dev "
                "(python -m tests.benchmarks.local_engine --set all --fit-calibration)",
                "values": len(samples),
                "weights": dict(sorted(model.weights.items())),
            },
            indent=1,
        )
        + "\n"
    )
    for r in results:
        for v in r.values:
            v.confidence = model.probability(v.features) if model.knows(v.features) else None


def held_out_calibration(results: list[SetResult]) -> str:
    """How the confidence model does on values it was not fitted on: fitted on half A of
    every set, the ECE on each set's half B, and the other way round; beside it the ECE a
    perfectly calibrated model would show on as many values (outcomes drawn at random
    with the model's own confidences, 200 draws), the noise floor of so few values."""
    rng = random.Random(27)
    lines = [
        "", "Calibration on values the fit did not see (fit on one half of every set):", "",
        "| set | fit on A, ECE on B | fit on B, ECE on A | a perfect model on as many values |",
        "|---|---|---|---|",
    ]  # fmt: skip
    models = {
        half: confidence.fit([(v.features, v.right) for r in results for v in r.values
                              if v.half == half])
        for half in ("a", "b")
    }  # fmt: skip
    for r in results:
        cells = []
        for fit_on, test_on in (("a", "b"), ("b", "a")):
            pairs = [
                (models[fit_on].probability(v.features), v.right)
                for v in r.values if v.half == test_on
            ]  # fmt: skip
            cells.append(f"{confidence.expected_calibration_error(pairs)[0]:.3f} (n={len(pairs)})")
        floor = statistics.mean(
            confidence.expected_calibration_error(
                [(p, rng.random() < p) for p, _right in calibrated(r.values)]
            )[0]
            for _ in range(200)
        )
        lines.append(f"| {r.name} | {cells[0]} | {cells[1]} | {floor:.3f} (n={len(r.values)}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--set", choices=["sroie", "funsd", "adbuy", "both", "all"], default="both")
    parser.add_argument("--limit", type=int, default=None, help="first N images of each set")
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="enlarge every image this many times first (2: 150 dpi pages at 300 dpi)",
    )  # fmt: skip
    parser.add_argument(
        "--keep", type=Path, default=None,
        help="folder to keep each set's predictions in (for score.py --errors)",
    )  # fmt: skip
    parser.add_argument(
        "--fit-calibration", action="store_true",
        help="fit the confidence model on half A of each set and write extraction/calibration.json",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.fit_calibration and (args.set != "all" or args.limit or args.scale != 1.0):
        parser.error("--fit-calibration fits on every set, whole and as it is: --set all only")
    names = {"both": ["sroie", "funsd"], "all": ["sroie", "funsd", "adbuy"]}.get(
        args.set, [args.set]
    )
    settings = Settings()
    # The worker's own path to the provider, so threads and options are the production ones.
    provider = create_provider("local", settings)
    try:
        warm_up(provider)
        with tempfile.TemporaryDirectory(prefix="imageextract-local-") as folder:
            work = args.keep or Path(folder)
            work.mkdir(parents=True, exist_ok=True)
            results = [
                run_set(name, provider, settings, args.limit, work, args.scale) for name in names
            ]
    finally:
        provider.close()
    if args.fit_calibration:
        refit(results)
    print(report(results))
    if args.set == "all" and not args.limit:
        print(held_out_calibration(results))


if __name__ == "__main__":
    main()
