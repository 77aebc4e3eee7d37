"""Flags for possibly altered (over-stamped) characters in a text line.

An examiner decides alteration; this module only points at characters that look unlike their
neighbours in ways an over-stamp produces (research notes section 5):

* ``stroke_width`` (scored): a second strike offset by 1-3 px widens strokes (union of two offset
  strokes); the mean of twice the distance-transform value on the ink's medial ridge. Factory
  characters share one stroke width whatever the glyph, so this is nearly identity-free.
* evidence only (too glyph-dependent to score on our generated set): ``stroke_width_median``,
  ``ink_spread`` (inter-quartile range of the grey values inside the ink relative to the line
  contrast: two strikes of different depth), ``edge_ratio`` (Canny edge pixels per medial-ridge
  pixel: doubled rims).
* ``pitch`` / ``baseline`` / ``height``: a restamped character rarely sits on the factory pitch and
  baseline; residuals of the ink box against the line's robust fit.
* ``depth`` (optional, from a photometric height map): depth under the ink unlike the neighbours.

Each feature becomes a leave-one-out robust z-score against the other characters of the line
(median and MAD, with a floor on the spread), and a character's score is the largest positive z
among the scored shape features (stroke width, depth) or ``0.5 x`` the largest among the placement
features. A character
is flagged when its score exceeds :data:`DEFAULT_THRESHOLD`, chosen on generated over-stamps (see
README.md). Deterministic, numpy + OpenCV only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np

DEFAULT_THRESHOLD = 1.75
"""Score above which a character is flagged (chosen on generated over-stamps; see README.md)."""

SCORED_SHAPE_FEATURES = ("stroke_width", "depth")
"""Features whose z-score makes the score (the others are reported as evidence only)."""
PLACEMENT_FEATURES = ("pitch", "baseline", "height")
PLACEMENT_WEIGHT = 0.5


def _ink_mask(gray: np.ndarray, polarity: Literal["dark", "bright", "auto"]) -> tuple[np.ndarray, bool]:
    """Otsu ink mask of the line and whether the marks are dark."""
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    _t, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    dark = True
    if polarity == "bright" or (polarity == "auto" and np.count_nonzero(mask) > mask.size / 2):
        mask = cv2.bitwise_not(mask)
        dark = False
    return (mask > 0), dark


def _char_features(
    gray: np.ndarray, ink: np.ndarray, edges: np.ndarray, x0: int, x1: int, contrast: float,
    depth: np.ndarray | None,
) -> dict[str, float] | None:
    g = gray[:, x0:x1]
    m = ink[:, x0:x1]
    if np.count_nonzero(m) < 8:
        return None
    mu8 = m.astype(np.uint8)
    dt = cv2.distanceTransform(mu8, cv2.DIST_L2, 5)
    ridge = (dt > 0) & (dt >= cv2.dilate(dt, np.ones((3, 3), np.uint8)) - 1e-6)
    widths = 2.0 * dt[ridge]
    vals = g[m].astype(np.float32)
    q1, q3 = np.percentile(vals, [25, 75])
    ys, xs = np.nonzero(m)
    feats = {
        "stroke_width": float(widths.mean()),
        "stroke_width_median": float(np.median(widths)),
        "ink_spread": float((q3 - q1) / max(contrast, 1.0)),
        "edge_ratio": float(np.count_nonzero(edges[:, x0:x1]) / max(int(np.count_nonzero(ridge)), 1)),
        "center_x": float(x0 + xs.mean()),
        "bottom": float(np.percentile(ys, 98)),
        "top": float(np.percentile(ys, 2)),
    }
    feats["height"] = feats["bottom"] - feats["top"]
    if depth is not None:
        feats["depth"] = float(np.median(depth[:, x0:x1][m]))
    return feats


def _loo_z(values: np.ndarray, floor: float) -> np.ndarray:
    """Leave-one-out robust z-score of each value against the others."""
    z = np.zeros(len(values))
    for i in range(len(values)):
        others = np.delete(values, i)
        med = float(np.median(others))
        mad = 1.4826 * float(np.median(np.abs(others - med)))
        z[i] = (values[i] - med) / max(mad, floor)
    return z


def flag_alterations(
    gray: np.ndarray,
    char_boxes: Sequence[tuple[int, int]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    polarity: Literal["dark", "bright", "auto"] = "auto",
    depth: np.ndarray | None = None,
    return_all: bool = False,
) -> list[dict[str, Any]]:
    """Flag characters of a text line that show signs of over-stamping.

    Args:
        gray: uint8 grey crop of one text line (an original or an enhanced view).
        char_boxes: per character, the column range ``(x_start, x_end)`` (end exclusive) in ``gray``.
        threshold: score above which a character is flagged.
        polarity: whether marks are darker or brighter than the surface ("auto": the minority class).
        depth: optional relative height map of the same crop (e.g. integrated photometric normals).
        return_all: return every scored character, each with ``"flagged"``, not just the flagged ones.

    Returns:
        ``[{"position": i, "score": s, "evidence": {feature: {"value", "z"}, ...}}]``, best first
        (characters without ink, or lines with fewer than 4 characters, are never flagged).

    Raises:
        ValueError: bad image or boxes (the message names the problem).
    """
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"flag_alterations: expected a non-empty uint8 grey image, got "
                         f"{getattr(gray, 'dtype', type(gray))} {getattr(gray, 'shape', '')}")
    if depth is not None and depth.shape != gray.shape:
        raise ValueError(f"flag_alterations: depth shape {depth.shape} differs from image {gray.shape}")
    h, w = gray.shape
    boxes: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(char_boxes):
        x0, x1 = max(0, int(a)), min(w, int(b))
        if x1 - x0 < 2:
            raise ValueError(f"flag_alterations: character {i} box ({a}, {b}) is empty inside width {w}")
        boxes.append((x0, x1))
    ink, dark = _ink_mask(gray, polarity)
    ink_vals = gray[ink]
    bg_vals = gray[~ink]
    contrast = 1.0
    if ink_vals.size and bg_vals.size:
        contrast = abs(float(np.median(bg_vals)) - float(np.median(ink_vals)))
    edges = cv2.Canny(gray, 50, 150) > 0
    feats = [_char_features(gray, ink, edges, x0, x1, contrast, depth) for x0, x1 in boxes]
    present = [(i, f) for i, f in enumerate(feats) if f is not None]
    idx = [i for i, _ in present]
    if len(idx) < 4:
        return []
    F = {k: np.array([f[k] for _, f in present]) for k in present[0][1]}
    med_w = float(np.median(F["stroke_width"]))
    med_h = float(np.median(F["height"]))
    pos = np.array(idx, dtype=np.float64)
    # robust line fit of centre x against position: median slope of pairwise differences
    slopes = [(F["center_x"][b] - F["center_x"][a]) / (pos[b] - pos[a])
              for a in range(len(idx)) for b in range(a + 1, len(idx))]
    pitch = float(np.median(slopes))
    offset = float(np.median(F["center_x"] - pitch * pos))
    values = {
        "stroke_width": (F["stroke_width"], 0.04 * med_w),
        "stroke_width_median": (F["stroke_width_median"], max(0.12 * med_w, 0.3)),
        "ink_spread": (F["ink_spread"], 0.04),
        "edge_ratio": (F["edge_ratio"], 0.15),
        "pitch": (np.abs(F["center_x"] - (offset + pitch * pos)), max(0.04 * abs(pitch), 0.5)),
        "baseline": (np.abs(F["bottom"] - float(np.median(F["bottom"]))), max(0.04 * med_h, 0.5)),
        "height": (np.abs(F["height"] - med_h), max(0.05 * med_h, 0.5)),
    }
    if depth is not None:
        d = F["depth"] if dark else -F["depth"]
        values["depth"] = (np.abs(d - float(np.median(d))), max(0.1 * abs(float(np.median(d))), 1e-3))
    zs = {k: _loo_z(v, floor) for k, (v, floor) in values.items()}
    results: list[dict[str, Any]] = []
    for j, i in enumerate(idx):
        shape = max((zs[k][j] for k in SCORED_SHAPE_FEATURES if k in zs), default=0.0)
        place = max((zs[k][j] for k in PLACEMENT_FEATURES if k in zs), default=0.0)
        score = float(max(shape, PLACEMENT_WEIGHT * place, 0.0))
        evidence = {k: {"value": round(float(values[k][0][j]), 4), "z": round(float(zs[k][j]), 3)}
                    for k in zs}
        entry: dict[str, Any] = {"position": i, "score": round(score, 4), "evidence": evidence}
        if return_all:
            entry["flagged"] = score > threshold
            results.append(entry)
        elif score > threshold:
            results.append(entry)
    results.sort(key=lambda e: (-e["score"], e["position"]))
    return results
