"""``imageextract extract``: the nightly batch from disk, in this process, no service.

It ends as ``submit`` does (cli/exit_status.py): 0 when every image succeeded, 2 when some
or all failed (summed up by error code on stderr), 1 on an error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from cli.exit_status import Command, UsageError, echo_failures, exit_for
from core.settings import get_settings
from extraction.contract import Scene


@click.command(cls=Command)
@click.argument("images", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--prompt", help="What to extract; may hold a JSON template.")
@click.option(
    "--schema", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON template or JSON Schema file; the prompt asks for it.",
)  # fmt: skip
@click.option(
    "--scene", type=click.Choice([scene.value for scene in Scene]), default=Scene.GENERAL.value
)
@click.option("--json", "json_mode", is_flag=True, help="Output parsed JSON (JSON mode).")
@click.option(
    "--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines: {"id"?, "image", "prompt"?} per line.',
)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="default: stdout")
@click.option("--provider", type=click.Choice(["local", "openai"]), default=None,
              help="default: the model_provider setting")  # fmt: skip
@click.option(
    "--grounding/--no-grounding", default=None,
    help="With --json: evidence per value (where it is printed). Default: on for the local "
    "engine, off for remote models (an OCR pass per image).",
)  # fmt: skip
@click.option(
    "--mode", type=click.Choice(["live", "batch"]), default="live", show_default=True,
    help="batch: through the provider's Batch API (openai): within 24 hours at the batch "
    "price; this command waits for it, saying how far it is.",
)  # fmt: skip
@click.option(
    "--normalize", "typed", is_flag=True,
    help='With --json: dates as ISO 8601 and amounts as {"amount", "currency"} in "normalized".',
)  # fmt: skip
def extract(
    images: tuple[Path, ...],
    prompt: str | None,
    schema: Path | None,
    scene: str,
    json_mode: bool,
    manifest: Path | None,
    out: Path | None,
    provider: str | None,
    grounding: bool | None,
    mode: str,
    typed: bool,
) -> None:
    """Extract from images on disk in this process: one JSON line per image.

    IMAGES are files or folders. Each line: {"id", "image", "output", "usage", "error"},
    and with grounding "evidence". Exit status: 0 when every image succeeded, 2 when some
    failed (counted by error code on stderr), 1 on an error.
    """
    from extraction import batch as batch_extraction
    from extraction.providers.registry import create_provider

    settings = get_settings()
    if schema is not None:
        prompt = (
            f"{prompt or 'Extract the information from the image using this schema:'}\n"
            f"{schema.read_text()}"
        )
        json_mode = True
    if manifest is not None:
        try:
            entries = batch_extraction.entries_from_manifest(manifest, prompt)
        except ValueError as error:
            raise UsageError(str(error)) from error
    elif images:
        if not prompt:
            raise UsageError("give --prompt or --schema")
        entries = batch_extraction.entries_from_paths(images, prompt)
    else:
        raise UsageError("give IMAGES or --manifest")
    if not entries:
        raise UsageError("no images found")

    if settings.local_engine_threads is None:
        # One process does all the work here, so the engine may use every core.
        settings = settings.model_copy(update={"local_engine_threads": os.cpu_count()})
    chosen = provider or settings.model_provider
    if mode == "batch" and chosen != "openai":
        raise UsageError(f"--mode batch needs a provider with a Batch API (openai), not {chosen}")
    model = create_provider(chosen, settings)
    reader = None
    if grounding if grounding is not None else chosen == "local":
        from extraction.providers.local import LocalProvider

        local = (
            model
            if isinstance(model, LocalProvider)
            else LocalProvider(threads=settings.local_engine_threads)
        )
        reader = batch_extraction.document_reader(local, settings)
    sink = out.open("w") if out is not None else sys.stdout
    failures: list[tuple[str, str, str]] = []
    try:
        if mode == "batch":
            from extraction.batch_api import extract_through_batch_api
            from extraction.providers.openai import OpenAIProvider

            if not isinstance(model, OpenAIProvider):
                raise UsageError("--mode batch needs the openai provider")
            records = extract_through_batch_api(
                model, settings, entries, json_mode=json_mode, scene=Scene(scene),
                reader=reader, typed=typed,
                progress=lambda said: click.echo(f"batch: {said}", err=True),
            )  # fmt: skip
        else:
            records = batch_extraction.extract_all(
                model, settings, entries, json_mode=json_mode, scene=Scene(scene),
                reader=reader, typed=typed,
            )  # fmt: skip
        show_bar = sys.stderr.isatty() and (out is not None or not sys.stdout.isatty())
        with click.progressbar(
            records, length=len(entries), label="extracting", file=sys.stderr,
            show_pos=True, show_eta=True, hidden=not show_bar,
        ) as bar:  # fmt: skip
            for record in bar:
                if record["error"] is not None:
                    failures.append((str(record["id"]), str(record["error"]["code"]),
                                     str(record["error"]["message"] or "")))  # fmt: skip
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
    finally:
        model.close()
        if out is not None:
            sink.close()
    click.echo(f"{len(entries) - len(failures)} of {len(entries)} images extracted", err=True)
    echo_failures(failures)
    exit_for(bool(failures))
