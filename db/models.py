"""SQLAlchemy models. The schema itself is made only by the Alembic migrations."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps with time zone that come back aware on every database.

    SQLite keeps no zone, so values are stored in UTC and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a timestamp with time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 — SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
    }


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class JobPriority(enum.StrEnum):
    """Interactive: a caller waits for the answer. Normal: submit and poll (the default).
    Batch: nightly work that may wait for everyone else."""

    INTERACTIVE = "interactive"
    NORMAL = "normal"
    BATCH = "batch"

    @property
    def rank(self) -> int:
        return list(JobPriority).index(self)


class ItemStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobMode(enum.StrEnum):
    """Live: each image is a model call now. Batch: the images go to the provider's Batch
    API (results within 24 hours, at about half the price)."""

    LIVE = "live"
    BATCH = "batch"


class Lane(enum.StrEnum):
    """Which way an item goes to the model: a live call (claimed by the model workers) or a
    line of a provider batch (worker.batch_lane)."""

    LIVE = "live"
    BATCH = "batch"


class ProviderBatchStatus(enum.StrEnum):
    """Ours: building (its request lines are being written and uploaded), submitted (the
    provider has it; its own status is in ``provider_status``), recorded (every line's
    outcome is in). The provider's files are deleted once recorded."""

    BUILDING = "building"
    SUBMITTED = "submitted"
    RECORDED = "recorded"


class SourceKind(enum.StrEnum):
    UPLOAD = "upload"
    BASE64 = "base64"
    URL = "url"


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("credit_balance >= 0", name="credit_balance_not_negative"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Always the sum of the account's credit_ledger deltas; changed in the same transaction.
    credit_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    # Requests per minute per key; None means the rate_limit_per_minute setting.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    # At most this many of the account's images on the model at once; None: no cap.
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="account", lazy="raise")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The first characters of the key, shown in listings so a key can be recognised.
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    revoked_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship(back_populates="api_keys", lazy="raise")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_account_id_created_at", "account_id", "created_at"),
        Index("ix_jobs_status", "status"),
        # The retention sweep's query: jobs still holding results, by when they expire.
        Index(
            "ix_jobs_results_expire_at",
            "results_expire_at",
            postgresql_where=text("purged_at IS NULL"),
            sqlite_where=text("purged_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(32), default=JobStatus.QUEUED)
    # Which API created the job: native, u1 or dumplingai.
    api: Mapped[str] = mapped_column(String(32), default="native")
    # Which images run first (see core.jobs.claim_next): interactive, normal or batch.
    priority: Mapped[str] = mapped_column(
        String(16), default=JobPriority.NORMAL, server_default=JobPriority.NORMAL.value
    )
    prompt: Mapped[str] = mapped_column(Text)
    json_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    # Evidence per value (where on the image each value is printed) for every image.
    grounding: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Dates and amounts of each result also in typed form (extraction.normalize).
    normalize: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    scene: Mapped[str] = mapped_column(String(32), default="general")
    model: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(32))
    # live, or batch: through the provider's Batch API (worker.batch_lane).
    mode: Mapped[str] = mapped_column(
        String(8), default=JobMode.LIVE, server_default=JobMode.LIVE.value
    )
    # A multi-page document (a PDF) gives one result filled from all its pages ("document")
    # or one result per page ("pages").
    document_mode: Mapped[str] = mapped_column(
        String(16), default="document", server_default="document"
    )
    webhook_url: Mapped[str | None] = mapped_column(Text)
    user_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)

    item_count: Mapped[int] = mapped_column(Integer)
    items_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    items_failed: Mapped[int] = mapped_column(Integer, default=0)
    items_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)

    # The price per image when the job was accepted: refunds use it, whatever the price is now.
    credits_per_image: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    credits_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_captured: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_refunded: Mapped[int] = mapped_column(BigInteger, default=0)

    # Results are purged this long after the job ends.
    results_ttl_seconds: Mapped[int] = mapped_column(
        Integer, default=7 * 24 * 3600, server_default=str(7 * 24 * 3600)
    )
    # finished_at + results_ttl_seconds, set when the job ends (None while it runs).
    results_expire_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def items_finished(self) -> int:
        return self.items_succeeded + self.items_failed + self.items_cancelled


class JobItem(Base):
    __tablename__ = "job_items"
    __table_args__ = (
        UniqueConstraint("job_id", "index", name="uq_job_items_job_id_index"),
        # A job's queued items in order: the fair claim takes them from here.
        Index("ix_job_items_job_id_status_index", "job_id", "status", "index"),
        Index("ix_job_items_status_lease_expires_at", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default=ItemStatus.QUEUED)

    source_kind: Mapped[str] = mapped_column(String(16))
    source_name: Mapped[str | None] = mapped_column(Text)
    source_url: Mapped[str | None] = mapped_column(Text)
    # Key of the temporary file in image storage; cleared once the file is deleted.
    storage_key: Mapped[str | None] = mapped_column(String(200))
    byte_size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    media_type: Mapped[str | None] = mapped_column(String(64))
    # A document's pages (None: an image). A URL's document is counted once fetched.
    page_count: Mapped[int | None] = mapped_column(Integer)
    # Once read: each page and how it was read, [{"page": 1, "source": "text_layer"}, ...].
    pages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    # What this item costs: the job's price per image, or per page times its pages. Refunded
    # when it fails or is cancelled.
    credits: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None]
    # Live items are claimed by the model workers; batch items are written into a provider
    # batch, and (running) wait there without a lease: the batch's state is in its row.
    lane: Mapped[str] = mapped_column(String(8), default=Lane.LIVE, server_default=Lane.LIVE.value)
    provider_batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("provider_batches.id", ondelete="SET NULL"), index=True
    )

    content: Mapped[str | None] = mapped_column(Text)
    parsed: Mapped[Any | None] = mapped_column(JSON(none_as_null=True))
    # With grounding: {json path: {bbox, text, ocr_confidence, match, grounded, confidence}}.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # With normalize: {json path: ISO date, or {amount, currency}}.
    normalized: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Milliseconds spent waiting on the model, to tell our own time from the model's.
    model_ms: Mapped[int | None] = mapped_column(Integer)


class ProviderBatch(Base):
    """One batch at the provider's Batch API: a file of request lines, one per item."""

    __tablename__ = "provider_batches"
    __table_args__ = (Index("ix_provider_batches_status_next_poll_at", "status", "next_poll_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=ProviderBatchStatus.BUILDING)
    # The provider's ids and status (validating, in_progress, finalizing, completed, failed,
    # expired, cancelling, cancelled).
    provider_batch_id: Mapped[str | None] = mapped_column(String(200))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    input_file_id: Mapped[str | None] = mapped_column(String(200))
    output_file_id: Mapped[str | None] = mapped_column(String(200))
    error_file_id: Mapped[str | None] = mapped_column(String(200))
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    completed_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    input_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Its job was cancelled or purged: cancel it at the provider.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Building: whoever builds it renews this; past it, the builder died and it is rebuilt.
    # Submitted: when to ask the provider next, and the pause after that (doubling while
    # nothing changes, up to the batch_poll_max_interval setting).
    lease_expires_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime | None]
    poll_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    in_progress_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime | None]
    files_deleted_at: Mapped[datetime | None]


class LedgerKind(enum.StrEnum):
    GRANT = "grant"
    RESERVE = "reserve"
    CAPTURE = "capture"
    REFUND = "refund"


class CreditLedgerEntry(Base):
    """One movement of credits. ``delta`` is its effect on the balance: grant +, reserve -,
    refund +, capture 0 (it turns reserved credits into spent ones)."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        Index("ix_credit_ledger_account_id_created_at", "account_id", "created_at"),
        Index("ix_credit_ledger_job_id", "job_id"),
        Index("ix_credit_ledger_public_id", "public_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # What the API shows and pages by; ``id`` counts every account's entries.
    public_id: Mapped[uuid.UUID] = mapped_column(Uuid, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


class IdempotencyKey(Base):
    """A submit request's Idempotency-Key: claimed while in flight, then bound to its job."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("account_id", "key", name="uq_idempotency_keys_account_id_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the request (route, fields, each image's hash); set once the body is read.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    expires_at: Mapped[datetime]


class WebhookEventType(enum.StrEnum):
    JOB_SUCCEEDED = "job.succeeded"
    JOB_PARTIALLY_SUCCEEDED = "job.partially_succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Every scheduled attempt failed.
    FAILED = "failed"
    # The receiver answered 410 Gone, or its endpoint was disabled or deleted.
    DISABLED = "disabled"


class WebhookSecret(Base):
    """An account's webhook signing secret. The current one has no ``expires_at``; after a
    rotation the previous one keeps signing until its ``expires_at``.

    Kept in clear: HMAC signing needs the secret itself, not a hash of it."""

    __tablename__ = "webhook_secrets"
    __table_args__ = (
        # Two concurrent first uses or rotations cannot both create a generation.
        UniqueConstraint(
            "account_id", "generation", name="uq_webhook_secrets_account_id_generation"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    generation: Mapped[int] = mapped_column(Integer)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    expires_at: Mapped[datetime | None]


class WebhookEndpoint(Base):
    """A URL of the account's that receives the events its filter names, for every job."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    # Event types (WebhookEventType values) this endpoint receives.
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())


class WebhookDelivery(Base):
    """One event for one receiver: the outbox row. Its id is the ``webhook-id`` header,
    the same on every attempt and replay, so receivers can drop duplicates."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_job_id", "job_id"),
        Index("ix_webhook_deliveries_endpoint_id_status", "endpoint_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # None for the job's own webhook_url.
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="SET NULL")
    )
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=WebhookDeliveryStatus.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # The schedule's length at first; a replay allows one attempt more.
    max_attempts: Mapped[int] = mapped_column(Integer)
    # While a dispatcher sends, this is pushed past its lease so no other one takes the row.
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
    delivered_at: Mapped[datetime | None]

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        lazy="raise", order_by="WebhookAttempt.number"
    )


class WebhookAttempt(Base):
    """One HTTP request of a delivery and how it ended."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id", "delivery_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    # Why no answer came (refused by the URL guard, connection refused, timeout).
    error: Mapped[str | None] = mapped_column(Text)
