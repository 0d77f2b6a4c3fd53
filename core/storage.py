"""Temporary image storage: a directory every API and worker process can reach.

Keys look like ``<job id>/<item index>``. Files are written by the API while the upload
streams in and deleted by the worker as soon as the item ends.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key_for(job_id: uuid.UUID, index: int) -> str:
        return f"{job_id}/{index:05d}"

    def path(self, key: str) -> Path:
        # Keys are made by key_for; refuse anything that would step outside the root.
        if ".." in key or key.startswith("/"):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    def open_for_write(self, key: str) -> BinaryIO:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("wb")

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

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

    def delete_job(self, job_id: uuid.UUID) -> None:
        shutil.rmtree(self.root / str(job_id), ignore_errors=True)

    def job_ids(self) -> list[uuid.UUID]:
        """Jobs that have a folder here (none if the root is gone: someone removed it)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            try:
                job_id = uuid.UUID(entry.name)
            except ValueError:
                continue
            if entry.is_dir():
                found.append(job_id)
        return found

    def files(self) -> list[str]:
        """Every key present, for cleanup and for tests that check nothing is left."""
        found: list[str] = []
        for directory, _dirs, names in os.walk(self.root):
            rel = Path(directory).relative_to(self.root)
            found.extend(str(rel / name) for name in names)
        return sorted(found)
