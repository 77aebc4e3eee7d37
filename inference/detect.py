"""Detector pre- and post-processing in numpy: photo -> input tensor, probability maps -> reading-order quads."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from marktrace.inference.geometry import Quad, order_quad, pad_quad

CORE_SHRINK = 0.25
"""The detector is trained on line cores: each line shrunk by this many line heights on every side."""


@dataclass(frozen=True)
class DetectorInput:
    """A photo resized for the detector, and the scale back to original pixels."""

    tensor: np.ndarray
    """uint8 (1, H, W, 3) RGB, H and W multiples of 32, zero padded on the right and bottom."""
    scale: float
    """original pixels per detector-input pixel."""


@dataclass(frozen=True)
class DetectedLine:
    """A detected line in original pixel coordinates."""

    quad: Quad
    score: float
    direction_confidence: float


def prepare_detector_input(image_bgr: np.ndarray, long_side: int, multiple: int = 32) -> DetectorInput:
    """Resize so the longer side is ``long_side`` (never upscale beyond 2x), pad to a multiple of 32."""
    h, w = image_bgr.shape[:2]
    scale = long_side / max(h, w)
    scale = min(scale, 2.0)
    new_w, new_h = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)
    pad_h = (multiple - new_h % multiple) % multiple
    pad_w = (multiple - new_w % multiple) % multiple
    padded = cv2.copyMakeBorder(resized, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    rgb = padded[:, :, ::-1]
    return DetectorInput(tensor=np.ascontiguousarray(rgb[None]), scale=1.0 / scale)


def core_to_line_quad(core: Quad) -> Quad:
    """Grow a detected core back to the full line (inverse of the training shrink)."""
    # The core's height is (1 - 2 * CORE_SHRINK) line heights; pad_quad works in core heights.
    factor = CORE_SHRINK / (1 - 2 * CORE_SHRINK)
    return pad_quad(core, factor, factor)


LONG_LINE_ASPECT = 1.5
"""A core longer than this many times its height reads along its long axis."""


def reading_direction(corners: np.ndarray, predicted: tuple[float, float]) -> tuple[tuple[float, float], float]:
    """The reading direction of a line core and how sure it is.

    A line reads along its long axis; the predicted direction only decides which way along it
    (the 180-degree ambiguity). For a short, squarish core the predicted direction is used as is.
    """
    edges = [corners[1] - corners[0], corners[2] - corners[1]]
    lengths = [float(np.hypot(*e)) for e in edges]
    long_index = int(np.argmax(lengths))
    pred = np.asarray(predicted, dtype=np.float32)
    pred_norm = float(np.hypot(*pred))
    if lengths[long_index] < LONG_LINE_ASPECT * max(lengths[1 - long_index], 1e-6):
        if pred_norm < 1e-6:
            return (1.0, 0.0), 0.0
        return (float(pred[0] / pred_norm), float(pred[1] / pred_norm)), pred_norm
    axis = edges[long_index] / max(lengths[long_index], 1e-6)
    agreement = float(axis @ pred)
    if agreement < 0 or (agreement == 0 and axis[0] < 0):
        axis = -axis
    return (float(axis[0]), float(axis[1])), abs(agreement)


def postprocess_maps(
    maps: np.ndarray,
    stride: int,
    scale: float,
    threshold: float = 0.7,
    min_score: float = 0.75,
    min_area: int = 4,
) -> list[DetectedLine]:
    """Turn the detector's (3, h, w) output into line quads in original pixels.

    Each connected component of the thresholded core map becomes a minimum-area rectangle whose
    corners are ordered by the mean reading direction predicted over the component.
    """
    prob = maps[0]
    binary = (prob > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    lines: list[DetectedLine] = []
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < min_area:
            continue
        ys, xs = np.nonzero(labels == label)
        score = float(prob[ys, xs].mean())
        if score < min_score:
            continue
        vx = float(maps[1, ys, xs].mean())
        vy = float(maps[2, ys, xs].mean())
        points = np.stack([xs, ys], axis=1).astype(np.float32) + 0.5
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(points)
        rect = ((cx, cy), (rw + 1.0, rh + 1.0), angle)
        corners = cv2.boxPoints(rect)
        direction, direction_confidence = reading_direction(corners, (vx, vy))
        core = order_quad(corners * stride, direction)
        quad = core_to_line_quad(core) * scale
        lines.append(DetectedLine(quad=quad.astype(np.float32), score=score, direction_confidence=direction_confidence))
    return lines
