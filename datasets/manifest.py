"""Dataset format: a folder with ``manifest.jsonl`` (one JSON object per image) and the images.

Entry: ``{"image": "relative/path.png", "lines": [{"text": ..., "role": ..., "polygon": [[x, y] x 4]}],
"source": "synthetic" | "real", "meta": {...}}``. ``polygon`` is optional (a real photo may only have texts;
a crop dataset has one line without polygon = the whole image).

Tools: :func:`read_manifest` / :func:`write_manifest`, :func:`validate_dataset` (a readable report of every
problem with its manifest line), :func:`generate_dataset` (render a synthetic set, resumable, parallel).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marktrace.datasets.text import ROLES, Role

MANIFEST = "manifest.jsonl"


class LineLabel(BaseModel):
    """One labelled text line of an image."""

    model_config = ConfigDict(extra="forbid")

    text: str
    role: Role = "other"
    polygon: list[tuple[float, float]] | None = None

    @field_validator("polygon")
    @classmethod
    def _four(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is not None and len(v) != 4:
            raise ValueError(f"polygon must have 4 corners, got {len(v)}")
        return v


class Entry(BaseModel):
    """One image of a dataset."""

    model_config = ConfigDict(extra="forbid")

    image: str
    lines: list[LineLabel] = Field(default_factory=list)
    source: Literal["synthetic", "real"] = "synthetic"
    meta: dict[str, Any] = Field(default_factory=dict)


class ManifestError(ValueError):
    """A manifest line that does not parse; names the file and line."""


def read_manifest(path: str | Path) -> list[Entry]:
    """Read a manifest (a ``manifest.jsonl`` file or a dataset folder); raises ManifestError with the line."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(f"{p}: manifest not found")
    entries: list[Entry] = []
    with p.open(encoding="utf-8") as fh:
        for no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                entries.append(Entry.model_validate_json(raw))
            except ValidationError as exc:
                raise ManifestError(f"{p}:{no}: {_short_error(exc)}") from exc
    return entries


def write_manifest(path: str | Path, entries: Iterable[Entry]) -> Path:
    """Write entries as JSON lines (to ``path``, or ``path/manifest.jsonl`` a folder); return the file."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(e.model_dump_json(exclude_none=True) + "\n")
    os.replace(tmp, p)
    return p


def _short_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ validation


class Issue(BaseModel):
    """One problem found in a dataset."""

    kind: Literal[
        "parse",
        "missing_image",
        "undecodable_image",
        "charset",
        "duplicate_image",
        "polygon_out_of_bounds",
        "empty_text",
        "too_small",
    ]
    line: int | None = None
    image: str | None = None
    detail: str = ""


class ValidationReport(BaseModel):
    """Result of :func:`validate_dataset`."""

    folder: str
    n_entries: int = 0
    n_lines: int = 0
    issues: list[Issue] = Field(default_factory=list)
    per_role: dict[str, int] = Field(default_factory=dict)
    per_source: dict[str, int] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no issue was found."""
        return not self.issues

    def counts(self) -> dict[str, int]:
        """Number of issues per kind."""
        return dict(Counter(i.kind for i in self.issues))


def validate_dataset(
    folder: str | Path, charset: str | None = None, min_size: int = 16, polygon_tolerance: float = 1.0
) -> ValidationReport:
    """Check a dataset folder and return a report of every problem (never raises for bad content).

    Checks: manifest parse errors (with line numbers), missing or undecodable images, characters outside
    ``charset`` (default: printable ASCII), duplicate images (SHA-256), polygons outside the image (beyond
    ``polygon_tolerance`` px), empty texts, images smaller than ``min_size`` px on a side.
    """
    root = Path(folder)
    rep = ValidationReport(folder=str(root))
    mpath = root / MANIFEST
    if not mpath.is_file():
        rep.issues.append(Issue(kind="parse", detail=f"{mpath}: manifest not found"))
        return rep
    allowed = set(charset) if charset is not None else {chr(c) for c in range(32, 127)}
    seen: dict[str, str] = {}
    roles: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    with mpath.open(encoding="utf-8") as fh:
        raw_lines = fh.readlines()
    for no, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            entry = Entry.model_validate_json(raw)
        except ValidationError as exc:
            rep.issues.append(Issue(kind="parse", line=no, detail=_short_error(exc)))
            continue
        rep.n_entries += 1
        sources[entry.source] += 1
        ipath = root / entry.image
        shape: tuple[int, int] | None = None
        if not ipath.is_file():
            rep.issues.append(Issue(kind="missing_image", line=no, image=entry.image, detail=f"{ipath} not found"))
        else:
            data = ipath.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
            if img is None:
                rep.issues.append(
                    Issue(
                        kind="undecodable_image",
                        line=no,
                        image=entry.image,
                        detail=f"{ipath}: not a decodable image",
                    )
                )
            else:
                shape = (int(img.shape[0]), int(img.shape[1]))
                if min(shape) < min_size:
                    rep.issues.append(
                        Issue(
                            kind="too_small",
                            line=no,
                            image=entry.image,
                            detail=f"{shape[1]}x{shape[0]} < {min_size}px",
                        )
                    )
            if digest in seen:
                rep.issues.append(
                    Issue(
                        kind="duplicate_image",
                        line=no,
                        image=entry.image,
                        detail=f"same bytes as {seen[digest]}",
                    )
                )
            else:
                seen[digest] = entry.image
        for li, ln in enumerate(entry.lines):
            rep.n_lines += 1
            roles[ln.role] += 1
            if not ln.text.strip():
                rep.issues.append(Issue(kind="empty_text", line=no, image=entry.image, detail=f"line {li}"))
            bad = sorted({c for c in ln.text if c not in allowed})
            if bad:
                rep.issues.append(
                    Issue(
                        kind="charset",
                        line=no,
                        image=entry.image,
                        detail=f"line {li}: characters {''.join(bad)!r} outside the charset",
                    )
                )
            if ln.polygon is not None and shape is not None:
                h, w = shape
                t = polygon_tolerance
                out = [(x, y) for x, y in ln.polygon if x < -t or y < -t or x > w + t or y > h + t]
                if out:
                    rep.issues.append(
                        Issue(
                            kind="polygon_out_of_bounds",
                            line=no,
                            image=entry.image,
                            detail=f"line {li}: corner(s) {out} outside {w}x{h}",
                        )
                    )
    rep.per_role = {r: roles[r] for r in ROLES if roles[r]}
    rep.per_source = dict(sources)
    return rep


# ------------------------------------------------------------------------------------------ generation


def _entry_name(i: int) -> str:
    return f"images/{i // 1000:04d}/{i:07d}.png"


def _render_one(args: tuple[int, int, str, str]) -> str:
    """Render image ``i`` (seed ``seed + i``) into ``out``; returns the manifest line (JSON)."""
    i, seed, out, config_json = args
    from marktrace.datasets.synth import SynthConfig, render_marking

    config = SynthConfig.model_validate_json(config_json)
    rel = _entry_name(i)
    m = render_marking(seed + i, config)
    path = Path(out) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", m.image)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    meta = {k: v for k, v in m.meta.items() if k not in ("config",)}
    meta.update(
        serial=m.serial,
        index=i,
        char_boxes=[ln.char_boxes for ln in m.lines],
        overstamped=[ln.overstamped for ln in m.lines],
    )
    entry = Entry(
        image=rel,
        source="synthetic",
        meta=meta,
        lines=[LineLabel(text=ln.text, role=ln.role, polygon=ln.polygon) for ln in m.lines],
    )
    line = entry.model_dump_json(exclude_none=True)
    # the entry sidecar makes the run resumable without re-rendering
    path.with_suffix(".json").write_text(line, encoding="utf-8")
    return line


def generate_dataset(
    out_dir: str | Path, n: int, config: Any = None, seed: int = 0, workers: int = 1, progress: bool = True
) -> Path:
    """Render ``n`` synthetic images (seeds ``seed .. seed+n-1``) into ``out_dir`` with a manifest.

    Resumes an interrupted run: images whose PNG and entry sidecar exist are kept, not re-rendered.
    Returns the manifest path.
    """
    from marktrace.datasets.synth import SynthConfig

    cfg = config if config is not None else SynthConfig()
    if not isinstance(cfg, SynthConfig):
        raise TypeError(f"config must be a SynthConfig, got {type(cfg).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synth_config.json").write_text(
        json.dumps({"config": cfg.model_dump(mode="json"), "seed": seed, "n": n}, indent=2), encoding="utf-8"
    )
    lines: dict[int, str] = {}
    todo: list[int] = []
    for i in range(n):
        rel = Path(_entry_name(i))
        png, side = out / rel, (out / rel).with_suffix(".json")
        if png.is_file() and side.is_file():
            lines[i] = side.read_text(encoding="utf-8").strip()
        else:
            todo.append(i)
    cfg_json = cfg.model_dump_json()
    jobs = [(i, seed, str(out), cfg_json) for i in todo]
    _run_jobs(jobs, lines, workers, progress, len(lines), n)
    mpath = out / MANIFEST
    tmp = mpath.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(lines[i] + "\n")
    os.replace(tmp, mpath)
    return mpath


def _run_jobs(
    jobs: Sequence[tuple[int, int, str, str]],
    lines: dict[int, str],
    workers: int,
    progress: bool,
    done0: int,
    total: int,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("rendering", total=total, completed=done0)
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                lines[job[0]] = _render_one(job)
                bar.advance(task)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for job, line in zip(jobs, pool.map(_render_one, jobs, chunksize=8), strict=True):
                lines[job[0]] = line
                bar.advance(task)
