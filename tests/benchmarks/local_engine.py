"""Speed and accuracy of the embedded ``local`` engine on the shared labelled documents.

    python -m tests.benchmarks.local_engine [--set sroie|funsd|adbuy|both|all] [--limit N]
        [--scale F] [--keep DIR]

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
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.settings import Settings
from extraction.batch import BatchEntry, extract_one
from extraction.contract import ExtractionRequest, PreparedImage, Provider, Scene
from extraction.providers.registry import create_provider

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data"
SCORER = SHARED / "eval" / "score.py"
SROIE_FIELDS = ("company", "date", "address", "total")


@dataclass
class SetResult:
    name: str
    images: int
    failed: int
    wall_s: float
    cpu_s: float
    seconds: list[float]
    summary: dict[str, Any]

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
    wall, cpu = time.perf_counter(), time.process_time()
    with predictions.open("w") as sink:
        for number, entry in enumerate(entries, start=1):
            record = extract_one(provider, settings, entry, json_mode=True, scene=Scene.GENERAL)
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
    return SetResult(name, len(entries), failed, wall, cpu, seconds, score(labels, predictions))


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
    lines += ["", "Accuracy:", "", "| set | field | strict | soft | n |", "|---|---|---|---|---|"]
    for r in results:
        fields = r.summary["fields"]
        names = [f for f in SROIE_FIELDS if f in fields] + sorted(
            f for f in fields if f not in SROIE_FIELDS
        )
        for field in names:
            value = fields[field]
            lines.append(
                f"| {r.name} | {field} | {value['strict']:.3f} | {value['soft']:.3f} "
                f"| {value['n']} |"
            )
        lines.append(
            f"| {r.name} | **mean** | {r.summary['mean_strict']:.3f} "
            f"| {r.summary['mean_soft']:.3f} | |"
        )
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
    args = parser.parse_args(argv)
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
    print(report(results))


if __name__ == "__main__":
    main()
