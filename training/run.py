"""Run folders: resolved config, seed, commit, metrics and checkpoints of every training run."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``.

    Where the tree is a copy without ``.git`` (a remote training machine), ``MARKTRACE_TRAINING_COMMIT``
    names the commit the copy was made from.
    """
    import os

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
        (self.path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
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
        (self.path / "run.json").write_text(json.dumps(self.info, indent=2))

    def update_info(self, **values: Any) -> None:
        """Add values to ``run.json`` (final metrics, timings)."""
        self.info.update(values)
        self._write_info()

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record to ``metrics.jsonl`` (flushed, so nothing is lost on a crash)."""
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
