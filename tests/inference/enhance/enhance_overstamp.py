"""Generated text lines with over-stamped digits (one glyph struck over another) for the tests."""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _glyph(ch: str, org: tuple[int, int], shape: tuple[int, int], scale: float, thick: int) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.putText(canvas, ch, org, FONT, scale, 255, thick, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def render_line(
    seed: int, n_chars: int = 8, overstamp: int | None = None, pitch: int = 30, scale: float = 1.1
) -> tuple[np.ndarray, list[tuple[int, int]], str]:
    """A dark-marked digit line on a noisy grey surface; returns (gray, char column ranges, text).

    ``overstamp``: position where a '3' is struck over an '8' (the earlier strike fainter, offset by
    1-3 px); the other positions hold random digits other than 3/8 pairs.
    """
    rng = np.random.default_rng(seed)
    thick = int(rng.integers(2, 4))
    h = 60
    w = pitch * n_chars + 20
    depth = np.zeros((h, w), np.float32)
    digits = [str(d) for d in rng.integers(0, 10, n_chars)]
    boxes = []
    base_y = 45
    x0 = 10
    for i, ch in enumerate(digits):
        x = x0 + i * pitch + int(rng.integers(-1, 2))
        y = base_y + int(rng.integers(-1, 2))
        if i == overstamp:
            old = _glyph("8", (x, y), (h, w), scale, thick)
            dx, dy = 0, 0
            while dx == 0 and dy == 0:
                dx, dy = (int(v) for v in rng.integers(-3, 4, 2))
            layer = _glyph("3", (x + dx, y + dy), (h, w), scale, thick)
            layer = np.maximum(layer, old * float(rng.uniform(0.5, 0.9)))
            digits[i] = "3"
        else:
            layer = _glyph(ch, (x, y), (h, w), scale, thick)
        depth = np.maximum(depth, layer)
        boxes.append((x - 3, x + pitch - 5))
    surface = 170.0 + rng.normal(0, 4, (h, w))
    img = surface - depth * float(rng.uniform(60, 100))
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.7)
    return np.clip(img, 0, 255).astype(np.uint8), boxes, "".join(digits)
