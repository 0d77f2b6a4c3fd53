"""What a worker process keeps for its whole life: settings, engine, storage, providers.

Made lazily on first use and dropped after fork, so every process has its own engine and
HTTP clients (CONVENTIONS: created once per process, after fork).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx
from sqlalchemy.orm import Session, sessionmaker

from core import url_guard
from core.settings import Settings, get_settings
from core.storage import ImageStore, open_store
from db.engine import make_engine, make_session_factory
from extraction.contract import Provider
from extraction.pixel_budget import PixelBudget
from extraction.providers.registry import create_provider
from worker.image_fetch import FetchSlots
from worker.job_snapshots import JobSnapshots
from worker.model_pool import ModelPool


@dataclass
class WorkerRuntime:
    settings: Settings
    session_factory: sessionmaker[Session]
    store: ImageStore
    fetch_client: httpx.Client
    model_pool: ModelPool
    # Decoded pixels held at once by this process's image preparation (decode_pixel_budget).
    decode_budget: PixelBudget
    snapshots: JobSnapshots = field(default_factory=JobSnapshots)
    # URL downloads in flight per account in this process (url_fetches_per_account).
    fetch_slots: FetchSlots = field(default_factory=FetchSlots)
    _providers: dict[str, Provider] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def provider(self, name: str) -> Provider:
        with self._lock:
            if name not in self._providers:
                self._providers[name] = create_provider(name, self.settings)
            return self._providers[name]

    def close(self) -> None:
        self.model_pool.close()
        self.store.close()
        for provider in self._providers.values():
            provider.close()
        self.fetch_client.close()


def build_runtime(settings: Settings) -> WorkerRuntime:
    engine = make_engine(settings.resolved_database_url, pool_size=settings.model_concurrency)
    timeout = settings.url_fetch_timeout.total_seconds()
    return WorkerRuntime(
        settings=settings,
        session_factory=make_session_factory(engine),
        store=open_store(settings),
        fetch_client=url_guard.guarded_client(timeout),
        model_pool=ModelPool(settings.model_concurrency),
        decode_budget=PixelBudget(settings.decode_pixel_budget),
    )


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> WorkerRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime


def forget_runtime() -> None:
    """Drop the parent's runtime in a forked child without closing its sockets."""
    global _runtime
    _runtime = None
