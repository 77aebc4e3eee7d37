"""Check a derived image against its trail: decode the originals as the reader does, replay, compare hashes.

A trail (``--save-enhanced`` writes one per derived image, ``<view>.trail.json``) names the SHA-256 of each
source photo, every step and parameter, and the pixel SHA-256 of the image it made
(:func:`marktrace.inference.enhance.chains.image_sha256`). :func:`check_view` finds the sources among the
files it is given (by their SHA-256, never by name), replays the trail with the reader's own code and
reports whether the replayed image, and the saved image if there is one, hash to the recorded value.

Chain views (``chain:*``) and photometric views (``photometric:*``) are replayed; a view made by a learned
model (``restoration``) is reported as not replayable here, with the model's name, version and SHA-256.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from marktrace.inference.enhance.chains import image_sha256, replay, software_version
from marktrace.inference.enhance.photometric import (
    LightFileError,
    find_light_file,
    load_light_file,
    replay_relief_view,
    stack_from_arrays,
)
from marktrace.inference.enhance.steps import StepError
from marktrace.inference.images import DEFAULT_MAX_PIXELS, ImageLoadError, LoadedImage, load_image
from marktrace.inference.items import is_image_name
from marktrace.inference.schema import Trail, View

CheckStatus = Literal["verified", "mismatch", "not_replayable", "error"]


@dataclass(frozen=True)
class ViewCheck:
    """The outcome of checking one derived image against its trail."""

    view: str
    status: CheckStatus
    detail: str
    expected_sha256: str
    """The trail's pixel SHA-256."""
    replayed_sha256: str | None = None
    saved_sha256: str | None = None
    """Pixel SHA-256 of the saved image file, when one was found."""


def load_view(path: str | Path) -> View:
    """A view with its trail from a ``.trail.json`` file (a :class:`View`, or a bare :class:`Trail`).

    Raises:
        ValueError: unreadable or not a trail (the message names the file).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read the trail ({exc})") from None
    try:
        if isinstance(data, dict) and "trail" in data:
            return View.model_validate(data)
        return View(name=p.name.removesuffix(".trail.json"), trail=Trail.model_validate(data))
    except ValueError as exc:
        raise ValueError(f"{p}: not a marktrace trail ({exc.__class__.__name__})") from None


def _candidate_files(originals: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in originals:
        p = Path(item)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and is_image_name(q.name))
        else:
            files.append(p)
    return files


def _saved_image(view: View, saved: Path | None, trail_file: Path | None) -> tuple[Path | None, str | None]:
    """The derived image to check beside the replay, or why the one the view names cannot be found.

    The file next to the trail comes first (trails and images travel together to another lab, where the
    recorded path, absolute or relative to the reader's working folder, may name nothing or a stale copy).
    """
    if saved is not None:
        return (saved, None) if saved.is_file() else (None, f"{saved}: no such file")
    if not view.file:
        return None, None
    recorded = Path(view.file)
    candidates = ([trail_file.parent / recorded.name] if trail_file is not None else []) + [recorded]
    for candidate in candidates:
        if candidate.is_file():
            return candidate, None
    where = f" (looked next to {trail_file} and at {recorded})" if trail_file is not None else ""
    return None, f"the saved image {recorded.name} named by the trail is not found{where}"


def check_view(
    view: View,
    originals: Sequence[str | Path],
    *,
    saved: str | Path | None = None,
    trail_file: str | Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ViewCheck:
    """Replay ``view``'s trail on the originals and compare pixel hashes (see the module docstring).

    Args:
        view: the view and its trail (:func:`load_view`).
        originals: the photos, or folders holding them (a multi-light item's folder with its light file);
            the sources are picked by SHA-256, whatever the files are called.
        saved: the derived image to check too (default: the view's ``file``, looked up next to
            ``trail_file`` first; an error when the view names a file that is found nowhere).
        trail_file: where the trail was read from.
        max_pixels: the decoding limit the read used (``--max-pixels``).
    """
    trail = view.trail
    if trail is None:
        return ViewCheck(view.name, "error", "the view has no trail", "")
    expected = trail.sha256
    saved_path, lost = _saved_image(view, Path(saved) if saved else None, Path(trail_file) if trail_file else None)
    if lost is not None:
        return ViewCheck(view.name, "error", lost, expected)
    saved_sha: str | None = None
    if saved_path is not None:
        pixels = cv2.imread(str(saved_path), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            return ViewCheck(view.name, "error", f"{saved_path}: not a readable image", expected)
        saved_sha = image_sha256(pixels)
    if trail.model is not None:
        detail = (f"made by the learned model {trail.model.get('name')}@{trail.model.get('version')} "
                  f"(SHA-256 {trail.model.get('sha256')}); replay needs that model file")
        status: CheckStatus = "mismatch" if saved_sha not in (None, expected) else "not_replayable"
        if status == "mismatch":
            detail = f"the saved image {saved_path} does not hash to its trail; {detail}"
        return ViewCheck(view.name, status, detail, expected, None, saved_sha)

    by_hash: dict[str, tuple[LoadedImage, Path]] = {}
    problems: list[str] = []
    for f in _candidate_files(originals):
        try:
            loaded = load_image(f, max_pixels, name=f.name)
        except ImageLoadError as exc:
            problems.append(str(exc))
            continue
        by_hash.setdefault(loaded.sha256, (loaded, f))
    missing = [s for s in trail.source_sha256 if s not in by_hash]
    if missing:
        extra = f" ({'; '.join(problems)})" if problems else ""
        return ViewCheck(view.name, "error", f"source photo(s) not among the files given: SHA-256 "
                         f"{', '.join(m[:16] + '...' for m in missing)}{extra}", expected, None, saved_sha)
    sources = [by_hash[s][0] for s in trail.source_sha256]
    try:
        if view.name.startswith("photometric:"):
            # the stack as the reader built it: photos in the trail's order, directions from their folder's file
            light = find_light_file(by_hash[trail.source_sha256[0]][1].parent)
            lights = load_light_file(light) if light is not None else None
            names = [by_hash[s][1].name for s in trail.source_sha256]
            stack = stack_from_arrays([s.image for s in sources], names, [s.sha256 for s in sources], lights)
            replayed = replay_relief_view(trail, stack)
        else:
            if len(sources) != 1:
                raise ValueError(f"a chain view has one source, this trail names {len(sources)}")
            replayed = replay(trail, sources[0].image)
    except (StepError, LightFileError, ValueError) as exc:
        return ViewCheck(view.name, "error", f"replay failed: {exc}", expected, None, saved_sha)
    got = image_sha256(np.ascontiguousarray(replayed))
    if got != expected:
        now = software_version()
        why = "" if trail.software == now else f" (recorded by {trail.software}; replayed by {now})"
        return ViewCheck(view.name, "mismatch", f"the replayed image differs from the one the trail records{why}",
                         expected, got, saved_sha)
    if saved_sha is not None and saved_sha != expected:
        return ViewCheck(view.name, "mismatch", f"the replay matches the trail but the saved image {saved_path} "
                         "does not", expected, got, saved_sha)
    where = f" and the saved image {saved_path}" if saved_sha is not None else ""
    return ViewCheck(view.name, "verified", f"replayed bit for bit{where}", expected, got, saved_sha)

