"""Service settings: environment (``MARKTRACE_*``), a ``.env`` file or a settings file, validated at start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from marktrace.inference.images import DEFAULT_MAX_PIXELS


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class ServiceSettings(BaseSettings):
    """Everything the service needs to start; defaults give the embedded SQLite + local-folder setup."""

    model_config = SettingsConfigDict(env_prefix="MARKTRACE_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    """Where the embedded default keeps its SQLite database and evidence folder."""
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/marktrace.sqlite3``. PostgreSQL: ``postgresql+psycopg://...``."""
    evidence_dir: Path | None = None
    """Content-addressed evidence folder; default ``<data_dir>/evidence``."""
    reader: str = "marktrace.inference.pipeline:MarkingReader.from_settings"
    """``module:attribute`` of a zero-argument callable returning a Reader (see inference/reader.py)."""
    max_file_bytes: int = Field(default=40 * 1024 * 1024, gt=0)
    """Largest single uploaded file (413 above)."""
    max_request_bytes: int = Field(default=120 * 1024 * 1024, gt=0)
    """Largest request body (413 above), enforced while streaming."""
    max_files: int = Field(default=32, gt=0)
    """Most photos in one identification."""
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)
    """Largest image (width x height), checked from the header before decoding."""
    workers: int = Field(default_factory=_cores, gt=0)
    """Inference threads (default: the cores available)."""
    threads_per_worker: int = Field(default=1, gt=0)
    """onnxruntime intra-op threads of each inference (default 1: the workers already fill the cores, and
    more threads per request would only make them contend)."""
    model_variant: Literal["auto", "fp32", "int8"] = "auto"
    """Shipped model variant for the default reader: ``auto`` (INT8 on the CPU), ``fp32`` or ``int8``."""
    lexicon_makers: bool = True
    """Match the registry's manufacturer marks against the recognizer's probabilities when no maker is read
    (a flagged suggestion, evidence method ``lexicon``; ``ReaderSettings.lexicon_makers``)."""
    queue_size: int = Field(default_factory=lambda: 4 * _cores(), ge=0)
    """Requests allowed to wait for a worker beyond those running (default: 4 per core, so a lab's usual
    handful of concurrent uploads waits instead of bouncing); more get 503 + Retry-After."""
    max_uploads: int | None = Field(default=None, gt=0)
    """Uploads allowed to arrive at once (default: ``workers + queue_size``); more get 503 + Retry-After. An
    arriving upload holds no inference place: it asks for one only once its body is in, so slow links do not
    starve the workers. Temp files on disk stay under ``(max_uploads + workers + queue_size) x
    max_request_bytes``."""
    upload_timeout_s: float = Field(default=600.0, gt=0)
    """Most seconds a request body may take to arrive (408 after it; 120 MB at 200 KB/s fits)."""
    request_timeout_s: float = Field(default=60.0, gt=0)
    """Per-request inference timeout (503 after it)."""
    retry_after_s: int = Field(default=2, ge=1)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """How long in-flight requests may take to finish on SIGTERM."""
    warm_up: bool = True
    """Run the reader once at start; /readyz is false until done."""
    page_size_max: int = Field(default=200, gt=0)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"MARKTRACE_DATABASE_URL must be a sqlite:// or postgresql:// URL, got {value!r}"
            )
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    @model_validator(mode="after")
    def _check_sizes(self) -> ServiceSettings:
        if self.max_file_bytes > self.max_request_bytes:
            raise ValueError("max_file_bytes must not exceed max_request_bytes")
        if ":" not in self.reader:
            raise ValueError(f"MARKTRACE_READER must be 'module:attribute', got {self.reader!r}")
        return self

    @property
    def resolved_max_uploads(self) -> int:
        """Uploads allowed to arrive at once: ``max_uploads``, or ``workers + queue_size``."""
        return self.max_uploads or self.workers + self.queue_size

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'marktrace.sqlite3').resolve()}"

    @property
    def resolved_evidence_dir(self) -> Path:
        """The evidence folder, defaulting to ``<data_dir>/evidence``."""
        return (self.evidence_dir or self.data_dir / "evidence").resolve()


def load_settings(settings_file: str | Path | None = None, **overrides: Any) -> ServiceSettings:
    """Build validated settings from the environment, an optional ``.env``-style file, and overrides.

    Raises:
        pydantic.ValidationError: naming each bad setting.
        FileNotFoundError: if ``settings_file`` is given and missing.
    """
    if settings_file is not None:
        path = Path(settings_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: settings file not found")
        return ServiceSettings(_env_file=str(path), **overrides)  # type: ignore[call-arg]
    return ServiceSettings(**overrides)
