"""Typed settings, read from the environment with the prefix ``IMAGEEXTRACT_``.

The defaults give the embedded mode: SQLite and a filesystem broker under the data
directory, and the ``local`` provider. Production sets the database and broker URLs.

An empty variable means the setting is not set (docker-compose's ``${VAR:-}`` gives an empty
string, and an empty API key would otherwise be sent as a key). Any setting can also be read
from a file named by ``IMAGEEXTRACT_<NAME>_FILE`` (Docker secrets: ``/run/secrets/...``), so
that secrets need not sit in the environment.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

MB = 1024 * 1024
ENV_PREFIX = "IMAGEEXTRACT_"
ProviderName = Literal["openai", "local"]
PROVIDERS: tuple[ProviderName, ...] = get_args(ProviderName)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "imageextract"


class SettingFiles(PydanticBaseSettingsSource):
    """``IMAGEEXTRACT_<NAME>_FILE=/path``: the setting's value is that file's content, less a
    trailing newline (how Docker secrets and most secret stores hand a value over)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"{ENV_PREFIX}{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if os.environ.get(variable):
                raise SettingsError(f"set {variable} or {variable}_FILE, not both")
            try:
                values[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as error:
                raise SettingsError(
                    f"{variable}_FILE: cannot read {path}: {error.strerror}"
                ) from error
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A variable and its _FILE twin are never both set (SettingFiles refuses it), so
        # their order here does not matter.
        return (init_settings, env_settings, SettingFiles(settings_cls), dotenv_settings)

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None

    # Where the temporary images live: file:///path (default: <data dir>/images, which every
    # API and worker process must reach) or s3://bucket/prefix on any S3-compatible store.
    storage_url: str | None = None
    # For s3:// storage; each unset one falls back to the usual AWS_* variable
    # (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    # Requests to https://bucket.host/key instead of https://host/bucket/key (path style,
    # which MinIO, Ceph, Garage and R2 take; AWS takes both).
    s3_virtual_hosted_style: bool = False
    # Per request to the store, and how often one is tried again (with backoff) before the
    # image's upload or read fails as storage_unavailable.
    storage_timeout: timedelta = timedelta(seconds=30)
    storage_max_retries: int = Field(default=3, ge=0)
    # Uploads to an object store in flight per API process (the request goes on reading).
    storage_upload_concurrency: int = Field(default=16, ge=1)

    model_provider: ProviderName = "local"
    openai_base_url: AnyHttpUrl = AnyHttpUrl("https://api.openai.com/v1")
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    model_timeout: timedelta = timedelta(seconds=60)
    model_max_retries: int = 4
    # How the openai provider constrains answers in JSON mode: a strict JSON Schema, any
    # JSON object, or the prompt alone. A server that refuses one gets the next by itself.
    openai_response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    # Model calls in flight per worker process (its model threads).
    model_concurrency: int = 32
    max_output_tokens: int = 8192
    # onnxruntime threads of the local engine per process; None: one (workers run a process
    # per core), and `imageextract extract` uses every core of its single process.
    local_engine_threads: int | None = None
    # Images are downscaled so their longer side is at most this before the model sees them.
    max_image_side: int = 2048
    # A document's pages sent to a remote model in one request, at most: servers cap the
    # images per request (and a long document the context), so a longer one goes in chunks
    # of this many pages whose answers are merged.
    pdf_pages_per_request: int = Field(default=8, ge=1)
    # Decompression-bomb guard: refuse images with more pixels than this.
    max_image_pixels: int = 100_000_000
    # Decoded pixels held at once by one worker process's image preparation (about 3 bytes
    # each in RGB: 600 MB by default); an image that would pass it waits for others. One
    # larger than this still runs, alone.
    decode_pixel_budget: int = Field(default=200_000_000, ge=1)

    # A PDF's pages are rendered one at a time, each to max_image_side; a document has at
    # most this many pages (its pages count towards max_images_per_job too).
    max_pages_per_document: int = Field(default=500, ge=1)

    max_image_bytes: int = 20 * MB
    max_job_bytes: int = 100 * MB
    max_images_per_job: int = 3000
    # The u1 API documents a smaller per-image limit than ours.
    u1_max_image_bytes: int = 10 * MB
    # How long the u1 and DumplingAI endpoints wait for their job to end before answering
    # with a timeout (the job keeps running and stays under /v1/jobs).
    sync_wait: timedelta = timedelta(minutes=10)
    # Hostile-input limits of the API (see README, "Limits"): characters of the prompt;
    # nesting of any JSON value; bytes of every field but the images together (JSON bodies
    # and multipart forms, part headers included); bytes of the request line and headers.
    max_prompt_chars: int = Field(default=100_000, ge=1)
    max_json_depth: int = Field(default=32, ge=2)
    max_fields_bytes: int = Field(default=1 * MB, ge=1024)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    # Bytes of a job's metadata as compact JSON (it is stored, and echoed by GET /v1/jobs/{id}).
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2)
    # Slow and idle clients (api/http_server.py): a request head must arrive within
    # request_read_timeout of its first byte (or of the connection) and a body may pause no
    # longer; a response whose client takes none of it for response_write_timeout is
    # dropped; an idle kept-alive connection closes after keep_alive_timeout. Past
    # max_connections open connections, new requests are answered 503.
    request_read_timeout: timedelta = timedelta(seconds=30)
    response_write_timeout: timedelta = timedelta(seconds=60)
    keep_alive_timeout: timedelta = timedelta(seconds=5)
    max_connections: int = Field(default=1000, ge=1)
    # Results streams (GET /v1/jobs/{id}/results and results.csv) an account may have open
    # at once in one API process; each takes no database connection while its client reads.
    max_result_streams_per_account: int = Field(default=4, ge=1)
    # An image URL's whole download (connecting, waiting for a slot, every read) ends
    # within this; each read also times out after it.
    url_fetch_timeout: timedelta = timedelta(seconds=30)
    # Image URLs of one account downloading at once in a worker process; more wait.
    url_fetches_per_account: int = Field(default=8, ge=1)
    # Hosts or networks that image and webhook URLs may reach although private (tests, intranets).
    url_allow_list: list[str] = Field(default_factory=list)

    # Where clients reach the API; webhook payloads link to results with it.
    public_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    # Delay before each webhook attempt, counted from the previous one (the first from the
    # event); once the last attempt fails the delivery has failed.
    webhook_retry_schedule: list[timedelta] = Field(
        default_factory=lambda: [
            timedelta(0),
            timedelta(seconds=5),
            timedelta(minutes=5),
            timedelta(minutes=30),
            timedelta(hours=2),
            timedelta(hours=5),
            timedelta(hours=10),
            timedelta(hours=10),
        ],
        min_length=1,
    )
    # How often beat runs the webhook dispatcher.
    webhook_dispatch_interval: timedelta = timedelta(seconds=5)
    webhook_timeout: timedelta = timedelta(seconds=10)
    # How long the previous signing secret stays valid after a rotation.
    webhook_secret_overlap: timedelta = timedelta(hours=24)
    # A delivery being sent is hidden from other dispatchers this long; if its sender died,
    # it is due again after that.
    webhook_lease: timedelta = timedelta(minutes=5)
    webhook_batch_size: int = 50
    # Deliveries sent at once by one dispatcher run (threads; each waits on the network).
    webhook_concurrency: int = 8
    # Endpoints one account may register: each job end is one POST per endpoint.
    webhook_endpoints_per_account: int = Field(default=10, ge=1)

    max_item_attempts: int = 3
    item_lease: timedelta = timedelta(minutes=10)
    dispatch_chunk_size: int = 500
    # Images per process_items message on the model queue: one message, one claim and
    # one outcome write serve this many images (the local engine's cpu queue takes one).
    dispatch_batch_size: int = Field(default=16, ge=1, le=500)

    credits_per_job: int = 10
    credits_per_image: int = 1
    # A document's price per page; None: credits_per_image (a page costs what an image does).
    credits_per_page: int | None = Field(default=None, ge=0)
    # The price per image of a job with mode batch; None: half the live price, rounded up.
    batch_price_per_image: int | None = Field(default=None, ge=0)

    # The batch lane (jobs with mode batch, through the provider's Batch API). A provider
    # batch takes at most this many request lines and bytes (OpenAI's documented limits);
    # a job beyond either is split into several.
    batch_max_requests: int = Field(default=50_000, ge=1)
    batch_max_bytes: int = Field(default=200 * MB, ge=1024)
    batch_completion_window: str = "24h"
    # How often beat asks the provider about open batches; a batch whose state has not
    # changed is asked half as often each time, down to once per the max interval.
    batch_poll_interval: timedelta = timedelta(seconds=30)
    batch_poll_max_interval: timedelta = timedelta(minutes=10)
    # A line that failed or expired at the provider (or whose answer does not fit the
    # schema): run once more as a live call ("live"), or fail with its code ("fail").
    batch_failed_lines: Literal["live", "fail"] = "live"
    # A batch being built is taken over by another worker when its builder has not been
    # heard from this long (the builder renews it as it writes lines).
    batch_build_lease: timedelta = timedelta(minutes=5)

    # Results are purged this long after a job ends (a job may ask for its own TTL).
    results_ttl: timedelta = timedelta(days=7)
    # Images that failed with a retryable error keep their file this long, for /retry.
    failed_image_retention: timedelta = timedelta(hours=24)
    # How often beat runs the maintenance sweep (leases, lost messages, files, retention).
    maintenance_interval: timedelta = timedelta(seconds=15)
    # Queued images whose queue is empty this long after dispatch lost their messages.
    lost_message_grace: timedelta = timedelta(minutes=2)
    # A worker whose consumer has not been consuming from the broker this long (connection
    # lost and not re-established, or its event loop stuck) exits with a non-zero code, for
    # its supervisor to restart it (see worker/consumer_watchdog.py).
    consumer_stall_timeout: timedelta = timedelta(minutes=2)

    # Requests per minute per API key (an account may have its own); and per client address
    # for requests without a valid key.
    rate_limit_per_minute: int = 600
    anonymous_rate_limit_per_minute: int = 120
    # Where rate-limit counters live; default: the broker when it is Redis, else memory.
    rate_limit_url: str | None = None
    # Bearer token that /metrics wants (Prometheus' `authorization` setting); without
    # one, /metrics is off: its counts span every account.
    metrics_token: SecretStr | None = None
    idempotency_ttl: timedelta = timedelta(hours=24)
    # A claimed key whose request never finished (the API died) is free again after this.
    idempotency_claim_timeout: timedelta = timedelta(minutes=15)

    @property
    def resolved_batch_price_per_image(self) -> int:
        if self.batch_price_per_image is not None:
            return self.batch_price_per_image
        return -(-self.credits_per_image // 2)

    @property
    def resolved_credits_per_page(self) -> int:
        return self.credits_per_image if self.credits_per_page is None else self.credits_per_page

    @property
    def beat_heartbeat_path(self) -> Path:
        """Touched by beat on every tick; its age is beat's health (worker/beat.py)."""
        return self.data_dir / "beat-heartbeat"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'imageextract.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def resolved_rate_limit_url(self) -> str | None:
        if self.rate_limit_url:
            return self.rate_limit_url
        broker = self.resolved_broker_url
        return broker if broker.startswith(("redis://", "rediss://")) else None

    @property
    def is_embedded_broker(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem://")

    @property
    def worker_threads(self) -> int:
        """Celery threads of a threads-pool worker: enough process_items messages in hand
        to keep every model thread busy, and a few for the default queue's short tasks."""
        return -(-self.model_concurrency // self.dispatch_batch_size) + 4


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; a value that does not fit its setting raises SettingsError,
    which names the variable."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(f"invalid settings: {error}") from error
