"""Crash-safe file writes: a file is either absent, its old content, or its whole new content.

A temporary file in the same folder is written, flushed to disk and put in place with ``os.replace``; the
folder entry is synced after. Used by the reader (saved views and their trails) and by training run folders.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO


def _temp_path(path: Path) -> Path:
    """A fresh, hidden temporary name beside ``path`` (same folder, so ``os.replace`` is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows it."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle whose content replaces ``path`` atomically when the block ends without an error.

    The bytes go to a temporary file in the same folder, are flushed to disk, then ``os.replace`` puts it
    in place: readers (and a crash at any moment) see either the old file or the complete new one. On an
    error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file in the same folder, then ``os.replace``)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically (temporary file in the same folder, then ``os.replace``)."""
    atomic_write_bytes(path, text.encode(encoding))
