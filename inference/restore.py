"""Learned restoration at inference (torch-free): restore line crops with the restorer ONNX model, draw the result.

The restorer (``models/networks/restorer.py``) maps a gray line crop to a glyph probability map of the
same size. Here the map is drawn as dark glyphs on a light background (:func:`render_mask`) at the
recognizer's crop height, so the ordinary recognizer reads it. What it reads is a *proposal* of what a
faint marking says: the pipeline records it with ``method: "restoration"`` and the recognizer's
per-character confidences, beside (never instead of) the deterministic views.

Training uses :func:`render_mask` too (its evaluation reads restored crops), so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from marktrace.inference.geometry import Quad, quad_size
from marktrace.inference.onnx_models import LoadedModel
from marktrace.inference.recognize import batch_line_crops
from marktrace.inference.schema import Trail, TrailStep, View

RESTORATION_TASK = "restoration"
VIEW_NAME = "restoration"
"""Name of the restored view, and the ``method`` of a reading made on it."""
MAX_LINES = 12
"""At most this many line quads are restored per photo."""
PAPER = 235
"""Gray level of the background of a drawn restoration."""
INK = 20
"""Gray level of a glyph pixel of probability 1."""


def render_mask(prob: np.ndarray, height: int) -> np.ndarray:
    """Draw a glyph probability map (h, w floats in 0..1) as dark glyphs on light, ``height`` pixels high.

    Gray level ``PAPER - (PAPER - INK) * p`` after a bilinear resize that keeps the aspect ratio, rounded
    to uint8: soft edges, no threshold (the recognizer's confidence then reflects the restorer's).
    """
    p = np.clip(np.asarray(prob, np.float32), 0.0, 1.0).astype(np.float32)
    if p.shape[0] != height:
        width = max(1, int(round(p.shape[1] * height / p.shape[0])))
        p = np.asarray(cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    return np.clip(np.round(PAPER - (PAPER - INK) * p), 0, 255).astype(np.uint8)


def restore_crops(model: LoadedModel, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Glyph probability maps (float32, each the size of its crop) for gray crops of the model's input height.

    Each crop runs alone (a batch of one), right-padded by edge replication to a multiple of 8; the padding
    is cut off the output again. Alone, a crop's map does not depend on other crops (the restorer may
    standardise its input per crop), so the restored view replays from its trail.
    """
    height = model.meta.input_height
    out = []
    for crop in crops:
        if crop.ndim != 2 or crop.shape[0] != height:
            raise ValueError(f"restorer input must be gray crops {height} px high, got shape {crop.shape}")
        probs = model.session.run(None, {model.input_name: batch_line_crops([crop], height)})[0]
        out.append(np.ascontiguousarray(probs[0, 0, :, : crop.shape[1]], dtype=np.float32))
    return out


def model_label(model: LoadedModel) -> str:
    """``name@version`` of a loaded restorer."""
    return f"{model.meta.name}@{model.meta.version}"


def unique_quads(quads: Sequence[tuple[Quad, float]], limit: int = MAX_LINES) -> list[tuple[Quad, float]]:
    """Drop quads whose centre lies inside a quad kept before them (the same line found on several views)."""
    kept: list[tuple[Quad, float]] = []
    for quad, score in quads:
        q = np.asarray(quad, np.float32).reshape(4, 2)
        if quad_size(q)[1] < 4:
            continue
        centre = q.mean(0)
        inside = any(
            cv2.pointPolygonTest(k.reshape(-1, 1, 2), (float(centre[0]), float(centre[1])), False) >= 0 for k, _ in kept
        )
        if not inside:
            kept.append((q, score))
        if len(kept) >= limit:
            break
    return kept


def composite(shape: tuple[int, int], crops: Sequence[np.ndarray], quads: Sequence[Quad]) -> np.ndarray:
    """The drawn restorations warped back onto the photo's frame (gray, ``PAPER`` elsewhere, darkest wins).

    ``quads[i]`` is the padded quadrilateral ``crops[i]`` was cut through (corner ``(0, 0)`` of the crop
    maps to ``quads[i][0]``, ``(w, 0)`` to ``quads[i][1]``, as :func:`rectify_line` cuts).
    """
    canvas = np.full(shape, PAPER, np.uint8)
    for crop, quad in zip(crops, quads, strict=True):
        h, w = crop.shape
        rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        matrix = cv2.getPerspectiveTransform(rect, np.asarray(quad, np.float32))
        warped = cv2.warpPerspective(
            crop, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
            borderValue=PAPER,
        )
        np.minimum(canvas, warped, out=canvas)
    return canvas


def restoration_view(
    source_sha256: str, image: np.ndarray, model: dict[str, str], params: dict[str, Any]
) -> View:
    """The restored view with its trail.

    The trail holds the source hash, the model (name, version, file SHA-256) instead of chain parameters, the
    crop geometry, the software, and the image's own hash (the pixel hash of ``chains.image_sha256``).
    """
    from marktrace.inference.enhance.chains import image_sha256, software_version

    trail = Trail(
        source_sha256=[source_sha256],
        steps=[TrailStep(name="restore_lines", params=params)],
        model=model,
        software=software_version() + f"; onnxruntime {_ort_version()}",
        sha256=image_sha256(image),
    )
    return View(name=VIEW_NAME, trail=trail)


def model_record(model: LoadedModel) -> dict[str, str]:
    """What a trail records of the restorer: task, name, version, file name and the file's SHA-256."""
    from marktrace.inference.images import sha256_file

    path = Path(model.meta.path)
    return {
        "task": model.meta.task,
        "name": model.meta.name,
        "version": model.meta.version,
        "file": path.name,
        "sha256": sha256_file(path),
        "training_commit": model.meta.training_commit,
    }


def _ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def suggestion_flag(label: str) -> dict[str, Any]:
    """The flag a serial read on the restored view carries: a proposal, never a fact."""
    return {
        "kind": "learned_restoration",
        "model": label,
        "note": "read on a learned restoration of a faint marking: a proposal to check against the photo and the "
        "deterministic views, never a fact",
    }
