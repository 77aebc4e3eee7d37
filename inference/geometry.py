"""Line geometry shared by training and inference: reading-order quadrilaterals and rectified line crops.

A line's quadrilateral lists its corners in *reading direction*: top-left, top-right, bottom-right,
bottom-left as seen by a reader of the text, whatever the text's rotation in the photo. Training
cuts recognizer crops with :func:`rectify_line` and inference does the same, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Quad = np.ndarray
"""float32 array of shape (4, 2): top-left, top-right, bottom-right, bottom-left in reading order."""


def order_quad(corners: np.ndarray, direction: tuple[float, float]) -> Quad:
    """Order four rectangle corners in reading direction given the unit reading vector (x right, y down)."""
    pts = np.asarray(corners, dtype=np.float32).reshape(4, 2)
    d = np.asarray(direction, dtype=np.float32)
    norm = float(np.hypot(d[0], d[1]))
    d = d / norm if norm > 1e-6 else np.array([1.0, 0.0], np.float32)
    up = np.array([d[1], -d[0]], dtype=np.float32)  # "up" for a reader of the line
    along = pts @ d
    across = pts @ up
    top = np.argsort(-across)[:2]
    bottom = np.array([i for i in range(4) if i not in top])
    tl, tr = (top[0], top[1]) if along[top[0]] <= along[top[1]] else (top[1], top[0])
    bl, br = (bottom[0], bottom[1]) if along[bottom[0]] <= along[bottom[1]] else (bottom[1], bottom[0])
    return pts[[tl, tr, br, bl]]


def quad_size(quad: Quad) -> tuple[float, float]:
    """(length along the reading direction, height across it) of a reading-order quadrilateral."""
    q = np.asarray(quad, dtype=np.float32)
    width = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    return float(width), float(height)


def line_axes(quad: Quad) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of a reading-order quadrilateral: along the line (reading direction) and across it (downwards)."""
    q = np.asarray(quad, dtype=np.float32)
    along = (q[1] - q[0]) + (q[2] - q[3])
    across = (q[3] - q[0]) + (q[2] - q[1])
    along /= max(float(np.linalg.norm(along)), 1e-6)
    across /= max(float(np.linalg.norm(across)), 1e-6)
    return along, across


def pad_quad(quad: Quad, pad_x: float, pad_y: float) -> Quad:
    """Grow a reading-order quadrilateral by fractions of its height along and across the line."""
    q = np.asarray(quad, dtype=np.float32).copy()
    _, height = quad_size(q)
    along, across = line_axes(q)
    dx = along * pad_x * height
    dy = across * pad_y * height
    return np.stack([q[0] - dx - dy, q[1] + dx - dy, q[2] + dx + dy, q[3] - dx + dy]).astype(np.float32)


def to_gray(image: np.ndarray) -> np.ndarray:
    """BGR or gray uint8 image to gray uint8."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def rectify_line(image: np.ndarray, quad: Quad, height: int = 64, max_width: int = 1024) -> np.ndarray:
    """Cut a line out of a photo and warp it upright to a gray crop of the given height.

    The crop's width keeps the line's aspect ratio (at least ``height // 2``), capped at ``max_width``.
    """
    q = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    width, line_height = quad_size(q)
    out_w = int(round(width * height / max(line_height, 1.0)))
    out_w = int(min(max(out_w, height // 2), max_width))
    target = np.array([[0, 0], [out_w, 0], [out_w, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(q, target)
    gray = image if image.ndim == 2 else to_gray(image)  # warpPerspective only reads it: no copy of a gray photo
    return cv2.warpPerspective(
        gray,
        matrix,
        (out_w, height),
        flags=cv2.INTER_AREA if line_height > height else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def quad_to_list(quad: Quad) -> list[tuple[float, float]]:
    """A quadrilateral as a JSON-friendly list of (x, y) pairs rounded to 0.1 px."""
    return [(round(float(x), 1), round(float(y), 1)) for x, y in np.asarray(quad).reshape(4, 2)]


def rotate_quad(quad: Sequence[Sequence[float]], matrix: np.ndarray) -> Quad:
    """Apply a 2x3 affine matrix to a quadrilateral."""
    pts = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    ones = np.ones((4, 1), dtype=np.float32)
    return (np.hstack([pts, ones]) @ np.asarray(matrix, dtype=np.float32).T).astype(np.float32)


def clip_box(box: Sequence[Sequence[float]], width: float, height: float) -> list[tuple[float, float]]:
    """``box``'s corners moved inside ``[0, width] x [0, height]`` (a detected box grown past the photo's edge)."""
    return [(min(max(float(x), 0.0), float(width)), min(max(float(y), 0.0), float(height))) for x, y in box]
