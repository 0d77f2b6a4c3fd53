"""Beat's scheduler, with a heartbeat a health check can read.

Beat answers no pings (it is not a worker), and its schedule file is written only every few
minutes, so neither tells whether it is still ticking. Every tick touches
``Settings.beat_heartbeat_path``; ``imageextract health beat`` reads its age.
"""

from __future__ import annotations

from typing import Any

from celery.beat import PersistentScheduler

from core.settings import get_settings


class HeartbeatScheduler(PersistentScheduler):  # type: ignore[misc]  # celery is untyped
    def tick(self, *args: Any, **kwargs: Any) -> float:
        interval: float = super().tick(*args, **kwargs)
        # Ticks come at least as often as the most frequent entry (seconds apart).
        get_settings().beat_heartbeat_path.touch()
        return interval
