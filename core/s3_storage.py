"""Temporary images in an S3-compatible object store (AWS S3, MinIO, R2, Ceph, Garage).

The client is obstore: Python bindings to the Rust ``object_store`` crate of the Apache
Arrow project (used by DataFusion, Polars and delta-rs). It signs, retries with backoff,
pools connections and does multipart uploads in Rust, outside the GIL, so a request costs
the API a few microseconds of Python: that matters at 3000 uploads per submit and a GET and
a DELETE per image. boto3 would cost ~2 ms of Python per request and ~60 MB per process.

An upload is spooled (in memory while small, else in a temporary file) as the request
streams in, then stored (one PUT, or parts above 8 MB) by a small thread pool while the
request goes on; the API waits for every upload of a job before it creates the job.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store as _ObjectStore

from core.errors import StorageUnavailable
from core.settings import MB, Settings
from core.storage import ImageUpload, job_of

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

log = logging.getLogger(__name__)

# An upload stays in memory up to this size, and only while the API process's uploads that
# wait in memory add up to less than MEMORY_BUDGET; otherwise it goes to a temporary file.
SPOOL_BYTES = 1 * MB
MEMORY_BUDGET = 32 * MB
# An image up to this size goes in one PUT, which holds it in memory twice while it is
# sent; a larger one goes up in parts of PART_BYTES, two at a time, reading the file as
# it goes (S3's smallest part is 5 MB), so a 20 MB scan costs ~10 MB, not 40.
MULTIPART_BYTES = 8 * MB
PART_BYTES = 5 * MB
PARTS_AT_ONCE = 2
# Uploads wait until those being sent hold less than this in memory (one always goes).
SENDING_BUDGET = 40 * MB
HEALTH_PREFIX = ".health/"


def _reason(error: BaseException) -> str:
    """obstore's message without its debug dump: the first line, shortened."""
    text = str(error).split("\n", 1)[0].replace("Generic S3 error: ", "")
    return text if len(text) <= 300 else text[:297] + "..."


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        config: S3Config,
        client_options: ClientConfig,
        retry_config: RetryConfig,
        upload_concurrency: int = 16,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.store = _ObjectStore(
            bucket,
            prefix=self.prefix or None,
            config=config,
            client_options=client_options,
            retry_config=retry_config,
        )
        self._upload_concurrency = upload_concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_memory = 0
        self._sending = 0
        self._sent = threading.Condition(self._lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        url = settings.storage_url or ""
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"IMAGEEXTRACT_STORAGE_URL {url!r}: name the bucket, s3://bucket/...")
        endpoint = settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        config: S3Config = {"virtual_hosted_style_request": settings.s3_virtual_hosted_style}
        if endpoint:
            config["endpoint"] = endpoint
        region = settings.s3_region or os.environ.get("AWS_REGION")
        config["region"] = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if settings.s3_access_key_id:
            config["access_key_id"] = settings.s3_access_key_id
        if settings.s3_secret_access_key is not None:
            config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        timeout = settings.storage_timeout
        client: ClientConfig = {
            "timeout": timeout,
            "connect_timeout": min(timeout, timedelta(seconds=5)),
            "allow_http": bool(endpoint and endpoint.startswith("http://")),
        }
        retry: RetryConfig = {
            "max_retries": settings.storage_max_retries,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
            "retry_timeout": timeout,
        }
        return cls(
            parts.netloc,
            parts.path,
            config=config,
            client_options=client,
            retry_config=retry,
            upload_concurrency=settings.storage_upload_concurrency,
        )

    def _unavailable(self, doing: str, error: BaseException) -> StorageUnavailable:
        return StorageUnavailable(
            f"image storage {self.description} could not {doing}: {_reason(error)}"
        )

    def _is_missing_bucket(self, error: BaseException) -> bool:
        return "NoSuchBucket" in str(error)

    # Writing

    def open_for_write(self, key: str) -> ImageUpload:
        with self._lock:
            spool = SPOOL_BYTES if self._in_memory < MEMORY_BUDGET else 0
        return _S3Upload(self, key, spool)

    def _submit(self, upload: _S3Upload) -> Future[None]:
        with self._lock:
            if upload.in_memory:
                self._in_memory += upload.size
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._upload_concurrency, thread_name_prefix="s3-upload"
                )
            return self._pool.submit(self._put, upload)

    def _put(self, upload: _S3Upload) -> None:
        large = upload.size > MULTIPART_BYTES
        weight = PART_BYTES * PARTS_AT_ONCE if large else 2 * upload.size
        with self._sent:
            self._sent.wait_for(
                lambda: self._sending == 0 or self._sending + weight <= SENDING_BUDGET
            )
            self._sending += weight
        try:
            obstore.put(
                self.store, upload.key, upload.file, use_multipart=large,
                chunk_size=PART_BYTES, max_concurrency=PARTS_AT_ONCE,
            )  # fmt: skip
        except (BaseError, OSError) as error:
            raise self._unavailable(f"store {upload.key}", error) from error
        finally:
            upload.file.close()
            with self._sent:
                self._sending -= weight
                if upload.in_memory:
                    self._in_memory -= upload.size
                self._sent.notify_all()

    # Reading

    def read(self, key: str) -> bytes:
        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError as error:
            if self._is_missing_bucket(error):
                raise self._unavailable(f"read {key}", error) from error
            raise FileNotFoundError(f"{self.description}/{key} is not there") from error
        except (BaseError, OSError) as error:
            raise self._unavailable(f"read {key}", error) from error

    def open_for_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self.read(key))

    # Deleting: best effort, the orphan sweep deletes what is left.

    def delete(self, key: str) -> None:
        self._delete([key])

    def delete_many(self, keys: Sequence[str]) -> None:
        self._delete(keys)

    def delete_job(self, job_id: uuid.UUID) -> None:
        try:
            keys = list(self.job_files(job_id))
        except StorageUnavailable as error:
            log.warning("%s; its images go with the next sweep", error)
            return
        self._delete(keys)

    def _delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            obstore.delete(self.store, keys)
        except FileNotFoundError:
            return
        except (BaseError, OSError) as error:
            log.warning(
                "image storage %s could not delete %d image(s) (%s…): %s; the sweep deletes "
                "them later", self.description, len(keys), keys[0], _reason(error),
            )  # fmt: skip

    # Listing

    def _list(self, prefix: str | None) -> dict[str, datetime]:
        found: dict[str, datetime] = {}
        try:
            for chunk in obstore.list(self.store, prefix, chunk_size=1000):
                for meta in chunk:
                    found[meta["path"]] = meta["last_modified"]
        except (BaseError, OSError) as error:
            raise self._unavailable(f"list {prefix or 'its images'}", error) from error
        return found

    def job_ids(self) -> list[uuid.UUID]:
        try:
            listed = obstore.list_with_delimiter(self.store)
        except (BaseError, OSError) as error:
            raise self._unavailable("list its jobs", error) from error
        found = []
        for prefix in listed["common_prefixes"]:
            job_id = job_of(prefix.rstrip("/").rsplit("/", 1)[-1])
            if job_id is not None:
                found.append(job_id)
        return found

    def job_files(self, job_id: uuid.UUID) -> dict[str, datetime]:
        return self._list(f"{job_id}/")

    def files(self) -> list[str]:
        return sorted(key for key in self._list(None) if not key.startswith(HEALTH_PREFIX))

    def check(self) -> None:
        probe = f"{HEALTH_PREFIX}{uuid.uuid4()}"
        try:
            obstore.put(self.store, probe, b"ok")
            obstore.get(self.store, probe).bytes()
            obstore.delete(self.store, probe)
        except (BaseError, OSError) as error:
            if self._is_missing_bucket(error):
                raise StorageUnavailable(
                    f"image storage {self.description}: the bucket {self.bucket!r} does not "
                    "exist; create it (see the README's multi-machine set-up)"
                ) from error
            raise self._unavailable("write, read and delete a test object", error) from error

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class _S3Upload:
    def __init__(self, store: S3Store, key: str, spool: int) -> None:
        self.store = store
        self.key = key
        self.size = 0
        self.spool = spool
        self.file: BinaryIO = (
            tempfile.SpooledTemporaryFile(max_size=spool)  # type: ignore[assignment]
            if spool
            else tempfile.TemporaryFile()
        )
        self.in_memory = False

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.file.write(chunk)

    def finish(self) -> Future[None]:
        self.file.seek(0)
        # A spooled file moves to disk once it passes its size.
        self.in_memory = self.size <= self.spool
        return self.store._submit(self)

    def abort(self) -> None:
        self.file.close()
