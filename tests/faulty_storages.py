"""Storages that fail the way real ones do, for the orphan-file tests: a disk that fills up
in the middle of a write, and one that stops in the middle of a write until the test has
killed the process writing (the worker tests load it through ``tests.worker_settings``)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage


def _write_half(storage: FileSystemStorage, name: str, content: File[Any]) -> None:
    """What a write cut short leaves: the file, with the first half of its bytes."""
    data = content.read()
    path = Path(storage.path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])


class DiskFullStorage(FileSystemStorage):
    """The disk fills up during the ``fail_on``-th write of this process (counted over
    every instance): half the bytes reach the file, then ``OSError(ENOSPC)``."""

    fail_on = 2
    writes = 0

    def _save(self, name: str, content: File[Any]) -> str:
        type(self).writes += 1
        if type(self).writes == self.fail_on:
            _write_half(self, name, content)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        return super()._save(name, content)


class PausingStorage(FileSystemStorage):
    """Stops in the middle of the ``pause_after``-th thumbnail write of a process while the
    file ``pause_file`` exists: half the bytes are on disk, and ``<pause_file>.reached``
    holds the writing process's pid (RQ's work horse) for the test to kill."""

    def __init__(self, pause_file: str = "", pause_after: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pause_file = pause_file
        self.pause_after = pause_after
        self.thumbnails = 0

    def _save(self, name: str, content: File[Any]) -> str:
        if "/thumbs/" in name and self.pause_file:
            self.thumbnails += 1
            if self.thumbnails == self.pause_after and os.path.exists(self.pause_file):
                _write_half(self, name, content)
                reached = Path(f"{self.pause_file}.reached")
                partial = reached.with_suffix(".tmp")
                partial.write_text(str(os.getpid()))
                partial.rename(reached)
                while os.path.exists(self.pause_file):
                    time.sleep(0.05)
                Path(self.path(name)).unlink()
                content.seek(0)
        return super()._save(name, content)
