"""Temporary image storage: one interface, two places, chosen by ``IMAGEEXTRACT_STORAGE_URL``.

- ``file:///path`` (the default: ``<data dir>/images``): a directory every API and worker
  process can reach, so one machine or a network filesystem.
- ``s3://bucket/prefix``: any S3-compatible object store (``core/s3_storage.py``), so API
  and worker machines share nothing but the store, Postgres and Redis.

Keys look like ``<job id>/<item index>``. The API writes an image while its upload streams
in (``open_for_write``: its ``finish`` returns a future that resolves once the image is
stored); the worker reads it and deletes it as soon as the item ends.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from core.errors import StorageUnavailable
from core.settings import Settings


class ImageUpload(Protocol):
    """One image being written."""

    def write(self, chunk: bytes) -> None: ...

    def finish(self) -> Future[None]:
        """The image is complete: store it. The future fails with StorageUnavailable."""
        ...

    def abort(self) -> None:
        """Drop what was written (nothing is stored)."""
        ...


class ImageStore(Protocol):
    """What the API, the workers and the sweep need of temporary image storage.

    ``read`` raises FileNotFoundError for a key that is not there. Every method raises
    StorageUnavailable when the store itself cannot be reached or refuses us (down, no such
    bucket, bad credentials), except the deletes: they are best effort everywhere, since
    the orphan sweep deletes what a failed delete left behind.
    """

    description: str

    def open_for_write(self, key: str) -> ImageUpload: ...

    def read(self, key: str) -> bytes: ...

    def open_for_read(self, key: str) -> BinaryIO:
        """A seekable file of the image (Pillow reads headers from it)."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_many(self, keys: Sequence[str]) -> None: ...

    def delete_job(self, job_id: uuid.UUID) -> None: ...

    def job_ids(self) -> list[uuid.UUID]:
        """Jobs that have images stored."""
        ...

    def job_files(self, job_id: uuid.UUID) -> dict[str, datetime]:
        """The job's stored keys, each with when it was written."""
        ...

    def files(self) -> list[str]:
        """Every key present, for tests and tools that check nothing is left."""
        ...

    def check(self) -> None:
        """Write, read and delete a tiny object; StorageUnavailable saying why if not."""
        ...

    def close(self) -> None: ...


def key_for(job_id: uuid.UUID, index: int) -> str:
    return f"{job_id}/{index:05d}"


def job_of(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key.partition("/")[0])
    except ValueError:
        return None


def open_store(settings: Settings) -> ImageStore:
    """The store ``settings.storage_url`` names (default: the data directory's images/)."""
    url = settings.storage_url
    if url is None:
        return FileStore(settings.storage_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"IMAGEEXTRACT_STORAGE_URL {url!r}: a file URL has no host")
        return FileStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from core.s3_storage import S3Store

        return S3Store.from_settings(settings)
    raise ValueError(f"IMAGEEXTRACT_STORAGE_URL {url!r}: use file:///path or s3://bucket/prefix")


def check_store(settings: Settings) -> str:
    """Open the store the settings name, check it (StorageUnavailable, or ValueError for a
    URL we do not take, saying why) and close it; returns its description."""
    store = open_store(settings)
    try:
        store.check()
    finally:
        store.close()
    return store.description


def _done(error: BaseException | None = None) -> Future[None]:
    future: Future[None] = Future()
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
    return future


class _FileUpload:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("wb")

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)

    def finish(self) -> Future[None]:
        try:
            self.file.close()
        except OSError as error:
            return _done(StorageUnavailable(f"could not write {self.path}: {error}"))
        return _done()

    def abort(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class FileStore:
    """Images in a directory: one folder per job."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"file://{root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageUnavailable(f"cannot create image storage {root}: {error}") from error

    def path(self, key: str) -> Path:
        # Keys are made by key_for; refuse anything that would step outside the root.
        if ".." in key or key.startswith("/"):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    def open_for_write(self, key: str) -> ImageUpload:
        return _FileUpload(self.path(key))

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open_for_read(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        # The job's folder goes with its last file; another file may still be there. The
        # root stays, even when empty: every process expects it.
        if path.parent != self.root:
            try:
                path.parent.rmdir()
            except OSError:
                pass

    def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.delete(key)

    def delete_job(self, job_id: uuid.UUID) -> None:
        shutil.rmtree(self.root / str(job_id), ignore_errors=True)

    def job_ids(self) -> list[uuid.UUID]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:  # someone removed the root
            return []
        found = []
        for entry in entries:
            job_id = job_of(entry.name)
            if job_id is not None and entry.is_dir():
                found.append(job_id)
        return found

    def job_files(self, job_id: uuid.UUID) -> dict[str, datetime]:
        found = {}
        try:  # workers delete files (and the emptied folder) all the while
            for entry in os.scandir(self.root / str(job_id)):
                try:
                    if entry.is_file():
                        modified = datetime.fromtimestamp(entry.stat().st_mtime, UTC)
                        found[f"{job_id}/{entry.name}"] = modified
                except FileNotFoundError:
                    continue
        except FileNotFoundError:
            pass
        return found

    def files(self) -> list[str]:
        return sorted(_walk(self.root))

    def check(self) -> None:
        probe = self.root / f".health-{uuid.uuid4()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as error:
            raise StorageUnavailable(f"cannot write to {self.root}: {error}") from error

    def close(self) -> None:
        return


def _walk(root: Path) -> Iterator[str]:
    for directory, _dirs, names in os.walk(root):  # skips folders that vanish meanwhile
        rel = Path(directory).relative_to(root)
        yield from (str(rel / name) for name in names if not name.startswith(".health-"))


__all__ = [
    "FileStore",
    "ImageStore",
    "ImageUpload",
    "StorageUnavailable",
    "job_of",
    "key_for",
    "open_store",
]
