"""Extraction in this process, for ``imageextract extract``: the nightly batch from disk.

The provider is made once and reused for every image; each image gives one record
``{"id", "image", "output", "usage", "error"}`` whatever happens to it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ImageExtractError, InvalidRequest
from core.settings import Settings
from extraction.contract import ExtractionRequest, PreparedImage, PrintedLine, Provider, Scene
from extraction.grounding import ground
from extraction.images import prepare_image
from extraction.normalize import normalize
from extraction.output import read_answer
from extraction.pdf import PDF_SNIFF_BYTES, count_pages, is_pdf, render_pages
from extraction.providers.local import LocalProvider
from extraction.schema import schema_of_prompt

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".heic",
    ".heif",
    ".gif",
    ".tif",
    ".tiff",
    # Documents: one record per PDF, filled from all its pages.
    ".pdf",
}


@dataclass(frozen=True, slots=True)
class BatchEntry:
    id: str
    image: Path
    prompt: str


def entries_from_paths(paths: Iterable[Path], prompt: str) -> list[BatchEntry]:
    """Images given on the command line; a folder stands for the images in it, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return [BatchEntry(id=path.stem, image=path, prompt=prompt) for path in found]


def entries_from_manifest(manifest: Path, default_prompt: str | None) -> list[BatchEntry]:
    """Manifest lines ``{"id"?, "image", "prompt"?}``.

    A relative image path is found next to the manifest, else from the working directory
    (so a manifest made on the fly, ``--manifest <(jq ...)``, works too).
    """
    entries: list[BatchEntry] = []
    base = manifest.parent
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image = Path(row["image"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f'{manifest}:{number}: expected {{"image": ...}}: {error}') from error
        prompt = row.get("prompt") or default_prompt
        if not prompt:
            raise ValueError(f"{manifest}:{number}: no prompt on the line and none given")
        path = image
        if not image.is_absolute():
            path = base / image if (base / image).exists() or not image.exists() else image
        entries.append(BatchEntry(id=str(row.get("id", path.stem)), image=path, prompt=prompt))
    return entries


Reader = Callable[[bytes], tuple[PrintedLine, ...]]


def _read_entry(entry: BatchEntry) -> bytes:
    try:
        return entry.image.read_bytes()
    except OSError as error:
        raise ImageExtractError(f"{entry.image}: cannot read the file: {error.strerror}") from error


def _request(
    settings: Settings, entry: BatchEntry, json_mode: bool, scene: Scene
) -> ExtractionRequest:
    return ExtractionRequest(
        prompt=entry.prompt, json_mode=json_mode, scene=scene,
        max_tokens=settings.max_output_tokens,
        schema=schema_of_prompt(entry.prompt) if json_mode else None,
    )  # fmt: skip


def prepare_entry(
    settings: Settings, entry: BatchEntry, *, json_mode: bool, scene: Scene
) -> tuple[bytes, PreparedImage, ExtractionRequest]:
    """An entry's image read and prepared, and its request; ImageExtractError naming the
    file when it cannot be read or decoded, or is a PDF (documents run live)."""
    data = _read_entry(entry)
    if is_pdf(data[:PDF_SNIFF_BYTES]):
        raise InvalidRequest(
            f"{entry.image} is a PDF: documents run live, not through the Batch API",
            input=str(entry.image),
        )
    prepared = prepare_image(
        data, max_side=settings.max_image_side, max_pixels=settings.max_image_pixels,
        name=str(entry.image),
    )  # fmt: skip
    return data, prepared, _request(settings, entry, json_mode, scene)


def document_reader(local: LocalProvider, settings: Settings) -> Reader:
    """The printed text of an image or of every page of a PDF (lines carry their page),
    read by the local engine: the evidence of another model's answer."""

    def read(data: bytes) -> tuple[PrintedLine, ...]:
        if is_pdf(data[:PDF_SNIFF_BYTES]):
            pages = render_pages(data, max_side=settings.max_image_side, name="the document")
            return local.read_pages(pages)[0]
        return local.read(data)

    return read


def extract_one(
    provider: Provider,
    settings: Settings,
    entry: BatchEntry,
    *,
    json_mode: bool,
    scene: Scene,
    reader: Reader | None = None,
    typed: bool = False,
) -> dict[str, Any]:
    """One image's record. With ``reader`` (grounding), a JSON output gets ``evidence``:
    from the provider's own reading when it has one (the local engine), else from
    ``reader``'s."""
    record: dict[str, Any] = {"id": entry.id, "image": str(entry.image), "output": None,
                              "usage": None, "error": None}  # fmt: skip
    started = time.perf_counter()
    try:
        data = _read_entry(entry)
        request = _request(settings, entry, json_mode, scene)
        if is_pdf(data[:PDF_SNIFF_BYTES]):
            name = str(entry.image)
            count_pages(data, name=name, limit=settings.max_pages_per_document)
            pages = render_pages(data, max_side=settings.max_image_side, name=name)
            result = provider.extract_pages(pages, request)
            record["pages"] = [
                {"page": number, "source": str(source)}
                for number, source in enumerate(result.page_sources or (), start=1)
            ]
        else:
            prepared = prepare_image(
                data, max_side=settings.max_image_side, max_pixels=settings.max_image_pixels,
                name=str(entry.image),
            )  # fmt: skip
            result = provider.extract(prepared, request)
        output = read_answer(result.content, request.schema) if json_mode else result.content
        record["output"] = output
        if reader is not None and json_mode:
            printed = result.printed if result.printed is not None else reader(data)
            record["evidence"] = ground(output, printed, result.how)
        if typed and json_mode:
            record["normalized"] = normalize(output)
        record["usage"] = {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
            "total_tokens": result.usage.total_tokens,
        }
    except ImageExtractError as error:
        record["error"] = {"code": error.kind.code, "message": error.message}
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def extract_all(
    provider: Provider,
    settings: Settings,
    entries: Iterable[BatchEntry],
    *,
    json_mode: bool,
    scene: Scene,
    reader: Reader | None = None,
    typed: bool = False,
) -> Iterator[dict[str, Any]]:
    for entry in entries:
        yield extract_one(
            provider, settings, entry, json_mode=json_mode, scene=scene, reader=reader,
            typed=typed,
        )  # fmt: skip
