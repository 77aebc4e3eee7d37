"""Run folders: resolved config, seed, commit, metrics and checkpoints of every training run.

Every file of a run folder is written atomically (a temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written config, ``run.json`` or checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from marktrace.inference.atomic import atomic_write_bytes, atomic_write_text, atomic_writer

__all__ = ["RunFolder", "atomic_torch_save", "atomic_write_bytes", "atomic_write_text", "atomic_writer", "git_commit"]


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save(obj)`` onto ``path`` atomically: a crash mid-save never destroys the previous checkpoint.

    torch is imported here, so this module stays torch-free.
    """
    import torch

    with atomic_writer(path) as handle:
        torch.save(obj, handle)


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``.

    Where the tree is a copy without ``.git`` (a remote training machine), ``MARKTRACE_TRAINING_COMMIT``
    names the commit the copy was made from.
    """
    if os.environ.get("MARKTRACE_TRAINING_COMMIT"):
        return os.environ["MARKTRACE_TRAINING_COMMIT"]
    where = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class RunFolder:
    """A training run's folder: ``config.yaml``, ``run.json``, ``metrics.jsonl``, ``checkpoints/``."""

    def __init__(self, root: Path, name: str, config: BaseModel, extra: dict[str, Any] | None = None) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = Path(root) / f"{name}-{stamp}"
        suffix = 1
        while self.path.exists():
            suffix += 1
            self.path = Path(root) / f"{name}-{stamp}-{suffix}"
        (self.path / "checkpoints").mkdir(parents=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        info = {
            "name": name,
            "commit": git_commit(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(),
            "host": platform.node(),
            **(extra or {}),
        }
        self.info = info
        self._write_info()

    def _write_info(self) -> None:
        atomic_write_text(self.path / "run.json", json.dumps(self.info, indent=2))

    def update_info(self, **values: Any) -> None:
        """Add values to ``run.json`` (final metrics, timings); the file is replaced atomically."""
        self.info.update(values)
        self._write_info()

    def mark_failed(self, error: BaseException) -> None:
        """Record in ``run.json`` that the run failed (``status: failed``, the error, the time).

        Never raises: a failure to write the record must not hide the error that ended the run.
        """
        with suppress(Exception):
            self.update_info(
                status="failed",
                error=f"{type(error).__name__}: {error}",
                failed=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )

    @contextmanager
    def failure_recorded(self) -> Iterator[None]:
        """Run the body; if it raises (interrupts included), :meth:`mark_failed` first, then re-raise."""
        try:
            yield
        except BaseException as exc:
            self.mark_failed(exc)
            raise

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record to ``metrics.jsonl`` (flushed, so nothing is lost on a crash)."""
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
