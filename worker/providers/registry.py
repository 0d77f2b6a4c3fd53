"""Provider names to implementations.

Each provider module is imported on first use only: the local engine loads ONNX models,
and a worker that only calls remote models should not pay for that.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from core.settings import Settings
from worker.providers.base import Provider

# name -> (module, factory attribute); every factory takes the settings.
PROVIDERS = {
    "openai": ("worker.providers.openai", "OpenAIProvider"),
    "local": ("worker.providers.local", "LocalProvider"),
}


def create_provider(name: str, settings: Settings) -> Provider:
    if name not in PROVIDERS:
        raise ValueError(f"unknown model provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    module_name, attribute = PROVIDERS[name]
    factory = cast(
        Callable[[Settings], Provider], getattr(importlib.import_module(module_name), attribute)
    )
    return factory(settings)
