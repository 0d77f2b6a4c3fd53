"""Provider names to implementations. Imports are lazy: the local engine loads ONNX models."""

from __future__ import annotations

from core.settings import Settings
from worker.providers.base import Provider

PROVIDER_NAMES = ("openai", "local")


def create_provider(name: str, settings: Settings) -> Provider:
    if name == "openai":
        from worker.providers.openai import OpenAIProvider

        return OpenAIProvider(settings)
    if name == "local":
        from worker.providers.local import LocalProvider

        return LocalProvider()
    raise ValueError(f"unknown model provider {name!r}; choose one of {', '.join(PROVIDER_NAMES)}")
