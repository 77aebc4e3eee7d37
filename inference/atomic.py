"""Crash-safe file writes: a file is either absent, its old content, or its whole new content."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a uniquely named temporary file in the same folder.

    The temporary file is flushed to disk before it replaces ``path`` and the folder entry is synced after,
    so a power loss never leaves a half-written or empty file under the final name, and two processes
    writing the same path never rename each other's partial file into place.

    Raises:
        OSError: the file could not be written (the temporary file is removed; ``path`` is unchanged).
    """
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened and synced
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
