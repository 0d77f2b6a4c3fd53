"""Prometheus metrics, read from the database and the broker at scrape time.

Workers run in many processes on many machines; the database already holds every item's
status and model time, so one scrape of any API process sees the whole system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core import broker
from db import metrics as metrics_repository
from db import provider_batches as provider_batches_repository
from db.engine import unit_of_work

if TYPE_CHECKING:
    from api.dependencies import AppState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BOUNDS_MS = [100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


class _DatabaseCollector(Collector):
    def __init__(self, state: AppState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        with unit_of_work(self.state.session_factory) as session:
            jobs = metrics_repository.jobs_by_status(session)
            items = metrics_repository.items_by_status(session)
            failures = metrics_repository.failures_by_code(session)
            waiting = metrics_repository.waiting_by_priority(session)
            batches = provider_batches_repository.open_by_status(session)
            buckets, count, total_ms = metrics_repository.model_latency_buckets(
                session, LATENCY_BOUNDS_MS
            )
        family = GaugeMetricFamily("imageextract_jobs", "Jobs by status", labels=["status"])
        for status, value in sorted(jobs.items()):
            family.add_metric([status], value)
        yield family
        family = GaugeMetricFamily("imageextract_items", "Images by status", labels=["status"])
        for status, value in sorted(items.items()):
            family.add_metric([status], value)
        yield family
        family = GaugeMetricFamily(
            "imageextract_items_by_priority",
            "Images queued and in flight (running), by their job's priority",
            labels=["priority", "status"],
        )
        for priority in ("interactive", "normal", "batch"):
            for status in ("queued", "running"):
                family.add_metric([priority, status], waiting.get((priority, status), 0))
        yield family
        family = GaugeMetricFamily(
            "imageextract_provider_batches_open",
            "Batches at the provider's Batch API whose outcomes are not all recorded yet, by "
            "their status (building: not sent yet)",
            labels=["status"],
        )
        for status, value in sorted(batches.items()):
            family.add_metric([status], value)
        yield family
        family = GaugeMetricFamily(
            "imageextract_item_failures", "Failed images by error code", labels=["code"]
        )
        for code, value in sorted(failures.items()):
            family.add_metric([code], value)
        yield family
        histogram = HistogramMetricFamily(
            "imageextract_model_latency_seconds", "Time spent waiting on the model per image"
        )
        histogram.add_metric(
            [],
            [
                (str(bound / 1000), value)
                for bound, value in zip(LATENCY_BOUNDS_MS, buckets, strict=True)
            ]
            + [("+Inf", count)],
            sum_value=total_ms / 1000,
        )
        yield histogram
        depth = GaugeMetricFamily(
            "imageextract_queue_depth", "Messages waiting in each queue", labels=["queue"]
        )
        for queue, value in broker.queue_depths().items():
            depth.add_metric([queue], value)
        yield depth


def render(state: AppState) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DatabaseCollector(state))
    return bytes(generate_latest(registry))
