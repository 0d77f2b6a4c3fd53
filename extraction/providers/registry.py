"""Provider names to implementations.

Each provider module is imported on first use only: the local engine loads ONNX models,
and a worker that only calls remote models should not pay for that.
"""

from __future__ import annotations

from collections.abc import Callable

from core.settings import Settings
from extraction.contract import Provider


def _openai(settings: Settings) -> Provider:
    from extraction.providers.openai import OpenAIProvider

    return OpenAIProvider(settings)


def _local(settings: Settings) -> Provider:
    from extraction.providers.local import LocalProvider

    return LocalProvider(threads=settings.local_engine_threads)


PROVIDERS: dict[str, Callable[[Settings], Provider]] = {"openai": _openai, "local": _local}


def create_provider(name: str, settings: Settings) -> Provider:
    if name not in PROVIDERS:
        raise ValueError(f"unknown model provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name](settings)
