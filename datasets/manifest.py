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
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, field_validator

from marktrace.datasets.text import ROLES, Role
from marktrace.inference.images import ImageLoadError, decode_image

if TYPE_CHECKING:
    from marktrace.datasets.synth import SynthConfig

MANIFEST = "manifest.jsonl"
CONFIG_FILE = "synth_config.json"
"""The settings of a synthetic generation (``config``, ``seed``, ``n``), written next to its manifest."""


class LineLabel(BaseModel):
    """One labelled text line of an image."""

    model_config = ConfigDict(extra="forbid")

    text: str
    role: Role = "other"
    polygon: list[tuple[FiniteFloat, FiniteFloat]] | None = None
    """Four corners in pixels of the image as it is displayed (EXIF orientation applied, as training and the
    reader decode it)."""

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

    @field_validator("image")
    @classmethod
    def _inside(cls, v: str) -> str:
        problem = image_path_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v


def image_path_problem(rel: str) -> str | None:
    """Why ``rel`` is not a path inside the dataset folder (absolute, ``..``, empty), or None when it is."""
    if not rel.strip():
        return "image path is empty"
    if "\x00" in rel:
        return f"image path {rel!r} contains a NUL character"
    posix, win = PurePosixPath(rel), PureWindowsPath(rel)
    if posix.is_absolute() or win.drive or win.root:
        return f"image path {rel!r} is absolute; it must be relative to the dataset folder"
    if ".." in posix.parts or ".." in win.parts:
        return f"image path {rel!r} leaves the dataset folder ('..'); it must stay inside it"
    return None


class ManifestError(ValueError):
    """A manifest line that does not parse; names the file and line."""


def read_manifest(path: str | Path) -> list[Entry]:
    """Read a manifest (a ``manifest.jsonl`` file or a dataset folder).

    Blank lines are skipped; an empty manifest is an empty dataset (``[]``). Raises ManifestError naming
    the file and line for the first line that is not UTF-8 or not a valid entry (one JSON object with a
    relative ``image`` inside the folder), FileNotFoundError when there is no manifest.
    """
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    if not p.is_file():
        raise FileNotFoundError(f"{p}: manifest not found")
    entries: list[Entry] = []
    for no, entry, problem in _parse_lines(p.read_bytes()):
        if entry is None:
            raise ManifestError(f"{p}:{no}: {problem}")
        entries.append(entry)
    return entries


def _parse_lines(data: bytes) -> Iterator[tuple[int, Entry | None, str]]:
    r"""Parse manifest bytes: ``(line number, entry, "")`` per good line, ``(line, None, problem)`` per bad one.

    Blank lines yield nothing. Lines are split on ``\n``, ``\r\n`` and ``\r`` like text-mode reading, and
    decoded one by one, so a line that is not UTF-8 is reported with its number and the others still parse.
    """
    for no, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield no, None, _utf8_problem(raw, exc, first=no == 1)
            continue
        if not text.strip():
            continue
        if text.startswith("\ufeff"):
            yield no, None, "starts with a byte-order mark (BOM); save the manifest as UTF-8 without BOM"
            continue
        try:
            yield no, Entry.model_validate_json(text), ""
        except ValidationError as exc:
            yield no, None, _short_error(exc)


def _utf8_problem(raw: bytes, exc: UnicodeDecodeError, first: bool) -> str:
    """Readable message for a manifest line that is not UTF-8."""
    msg = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
    if first and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        msg += "; the file looks like UTF-16, save it as UTF-8"
    else:
        msg += "; manifests must be UTF-8"
    return msg


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


_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    bool: "true/false",
    int: "a number",
    float: "a number",
}


def _short_error(exc: ValidationError) -> str:
    """The first few errors of a manifest line, readable: ``field: message``."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg"))
        if err.get("type") == "json_invalid":
            # the JSON parser sees one line: its "line 1" is the manifest line named by the caller
            msg = re.sub(r" at line 1 column (\d+)$", r" at column \1", msg)
        elif err.get("type") == "model_type" and not loc:
            got = err.get("input")
            kind = "null" if got is None else _JSON_KINDS.get(type(got), type(got).__name__)
            msg = f"each line must be one JSON object, got {kind}"
        parts.append(f"{loc}: {msg}" if loc else msg)
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
        "degenerate_polygon",
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


def default_charset() -> str:
    """The characters the recognizer can learn: the shipped recognizer's charset (EasyOCR english_g2's), blank aside."""
    from marktrace.models.pretrained import EASYOCR_CHARSET

    return EASYOCR_CHARSET


def polygon_area(polygon: Sequence[tuple[float, float]]) -> float:
    """The area a polygon encloses (shoelace formula, either winding), in square pixels."""
    xs = [x for x, _ in polygon]
    ys = [y for _, y in polygon]
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2.0


def validate_dataset(
    folder: str | Path, charset: str | None = None, min_size: int = 16, polygon_tolerance: float = 1.0
) -> ValidationReport:
    """Check a dataset folder and return a report of every problem (never raises for bad content).

    Checks: manifest parse errors (``path:line: problem``: a line that is not UTF-8, not one JSON object,
    not a valid entry, or whose image path is absolute or leaves the folder), an empty manifest, missing,
    unreadable or undecodable images, characters outside ``charset`` (default: :func:`default_charset`), duplicate
    images (SHA-256), polygons outside the image (beyond ``polygon_tolerance`` px), empty texts, images
    smaller than ``min_size`` px on a side.
    """
    root = Path(folder)
    rep = ValidationReport(folder=str(root))
    mpath = root / MANIFEST
    if not mpath.is_file():
        rep.issues.append(Issue(kind="parse", detail=f"{mpath}: manifest not found"))
        return rep
    try:
        manifest_bytes = mpath.read_bytes()
    except OSError as exc:
        rep.issues.append(Issue(kind="parse", detail=f"{mpath}: cannot read the manifest: {exc}"))
        return rep
    allowed = set(charset if charset is not None else default_charset())
    seen: dict[str, str] = {}
    roles: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    n_rows = 0
    for no, entry, problem in _parse_lines(manifest_bytes):
        n_rows += 1
        if entry is None:
            rep.issues.append(Issue(kind="parse", line=no, detail=f"{mpath}:{no}: {problem}"))
            continue
        rep.n_entries += 1
        sources[entry.source] += 1
        ipath = root / entry.image
        shape: tuple[int, int] | None = None
        data: bytes | None = None
        if not ipath.is_file():
            what = "a folder, not an image" if ipath.is_dir() else "not found"
            rep.issues.append(Issue(kind="missing_image", line=no, image=entry.image, detail=f"{ipath} {what}"))
        else:
            try:
                data = ipath.read_bytes()
            except OSError as exc:
                rep.issues.append(
                    Issue(kind="missing_image", line=no, image=entry.image, detail=f"{ipath}: cannot read: {exc}")
                )
        if data is not None:
            digest = hashlib.sha256(data).hexdigest()
            # decoded as the reader decodes it (EXIF orientation applied, the same pixel limit before decoding):
            # polygons are in that frame
            try:
                img: np.ndarray | None = decode_image(data, str(ipath)).image
            except ImageLoadError as exc:
                img = None
                rep.issues.append(Issue(kind="undecodable_image", line=no, image=entry.image, detail=str(exc)))
            if img is not None:
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
            if ln.polygon is not None and polygon_area(ln.polygon) < 1.0:
                rep.issues.append(Issue(kind="degenerate_polygon", line=no, image=entry.image,
                                        detail=f"line {li}: polygon {ln.polygon} encloses no area"))
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
    if n_rows == 0:
        rep.issues.append(Issue(kind="parse", detail=f"{mpath}: the manifest has no entries (empty file)"))
    rep.per_role = {r: roles[r] for r in ROLES if roles[r]}
    rep.per_source = dict(sources)
    return rep


# ------------------------------------------------------------------------------------------ generation


def _entry_name(i: int) -> str:
    return f"images/{i // 1000:04d}/{i:07d}.png"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a crash leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
    _write_atomic(path, buf.tobytes())
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
    # the entry sidecar makes the run resumable without re-rendering; written after the PNG, atomically
    _write_atomic(path.with_suffix(".json"), line.encode("utf-8"))
    return line


class GenerationConflict(ValueError):
    """:func:`generate_dataset` refused a folder that holds another generation (names folder and differences)."""


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _finished_line(out: Path, i: int, seed: int) -> str | None:
    """The manifest line of item ``i`` when its PNG and sidecar are complete and belong to this run, else None.

    None (re-render) when the PNG is missing or truncated, the sidecar is missing, not UTF-8 or not a valid
    entry, or it names another image, index, seed or generator version.
    """
    from marktrace.datasets.synth import GENERATOR_VERSION

    rel = _entry_name(i)
    png = out / rel
    try:
        with png.open("rb") as fh:
            if fh.seek(0, os.SEEK_END) < len(_PNG_END) + 8:
                return None
            fh.seek(-len(_PNG_END), os.SEEK_END)
            if fh.read() != _PNG_END:
                return None
        entry = Entry.model_validate_json(png.with_suffix(".json").read_bytes())
    except (OSError, ValidationError):
        return None
    meta = entry.meta
    if (
        entry.image != rel
        or meta.get("index") != i
        or meta.get("seed") != seed + i
        or meta.get("generator") != GENERATOR_VERSION
    ):
        return None
    return entry.model_dump_json(exclude_none=True)


def _check_same_generation(out: Path, cfg: SynthConfig, seed: int) -> None:
    """Raise GenerationConflict unless ``out`` is new or holds a generation with this config and seed."""
    from marktrace.datasets.synth import SynthConfig

    cpath = out / CONFIG_FILE
    if not cpath.exists():
        found = [name for name in (MANIFEST, "images") if (out / name).exists()]
        if found:
            raise GenerationConflict(
                f"{out}: holds {' and '.join(found)} but no {CONFIG_FILE}, so its settings are unknown and "
                "resuming could mix datasets; generate into a new folder (nothing was changed)"
            )
        return
    try:
        stored = json.loads(cpath.read_bytes().decode("utf-8"))
        old_cfg = SynthConfig.model_validate(stored["config"])
        old_seed = stored["seed"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        detail = _short_error(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
        raise GenerationConflict(
            f"{cpath}: unreadable generation settings ({detail}); cannot tell whether resuming would mix "
            "datasets; generate into a new folder (nothing was changed)"
        ) from exc
    old, new = old_cfg.model_dump(mode="json"), cfg.model_dump(mode="json")
    diffs = [f"config.{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    if old_seed != seed or isinstance(old_seed, bool):
        diffs.insert(0, f"seed: {old_seed!r} -> {seed!r}")
    if diffs:
        raise GenerationConflict(
            f"{out}: already holds a generation with other settings ({CONFIG_FILE}): {'; '.join(diffs)}. "
            "Resume with the same seed and config, or generate into a new folder (nothing was changed)"
        )


def generate_dataset(
    out_dir: str | Path, n: int, config: Any = None, seed: int = 0, workers: int = 1, progress: bool = True
) -> Path:
    """Render ``n`` synthetic images (seeds ``seed .. seed+n-1``) into ``out_dir`` with a manifest.

    Resumes an interrupted run: items whose PNG and entry sidecar are complete (and name this index, seed
    and generator version) are kept, not re-rendered; any other item is rendered again. ``n`` may differ
    from the earlier run. A folder that holds a generation with another config or seed, or a manifest or
    ``images/`` without ``synth_config.json``, is refused with GenerationConflict before anything is written,
    so two settings never mix in one dataset. Every file is written atomically. Returns the manifest path.
    """
    from marktrace.datasets.synth import SynthConfig

    cfg = config if config is not None else SynthConfig()
    if not isinstance(cfg, SynthConfig):
        raise TypeError(f"config must be a SynthConfig, got {type(cfg).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if out.is_dir():
        _check_same_generation(out, cfg, seed)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"config": cfg.model_dump(mode="json"), "seed": seed, "n": n}
    _write_atomic(out / CONFIG_FILE, json.dumps(settings, indent=2).encode("utf-8"))
    lines: dict[int, str] = {}
    todo: list[int] = []
    for i in range(n):
        line = _finished_line(out, i, seed)
        if line is not None:
            lines[i] = line
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
