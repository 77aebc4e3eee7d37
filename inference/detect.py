"""Detector pre- and post-processing in numpy: photo -> input tensor, probability maps -> reading-order quads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from marktrace.inference.geometry import Quad, order_quad, quad_size

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


def prepare_detector_input(image: np.ndarray, long_side: int, multiple: int = 32) -> DetectorInput:
    """Resize so the longer side is ``long_side`` (never upscale beyond 2x), pad to a multiple of 32.

    ``image`` is BGR or gray; a gray one is resized first and then given three equal channels (the same
    tensor as resizing its BGR copy, without making that copy at full size).
    """
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    scale = min(scale, 2.0)
    new_w, new_h = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if resized.ndim == 2:
        resized = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
    pad_h = (multiple - new_h % multiple) % multiple
    pad_w = (multiple - new_w % multiple) % multiple
    padded = cv2.copyMakeBorder(resized, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    rgb = padded[:, :, ::-1]
    return DetectorInput(tensor=np.ascontiguousarray(rgb[None]), scale=1.0 / scale)


LONG_LINE_ASPECT = 1.5
"""A line longer than this many times its height reads along its long axis."""


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


@dataclass(frozen=True)
class LineGeometry:
    """How a detected line core (in map pixels) grows back to the whole line.

    ``height = height_per_core * thickness + height_offset`` and
    ``length = length_per_core * core_length + length_per_height * height + length_offset``, where
    ``thickness`` is the median thickness of the core's columns across the line and ``core_length`` its
    extent along it. The defaults are the exact inverse of the training shrink (:data:`CORE_SHRINK`). A
    trained detector's map is blurrier than its targets (thresholded cores come out fatter and longer), so
    ``marktrace models calibrate`` fits these five numbers on synthetic markings and stores them in the
    ONNX metadata (``line_geometry``); inference reads them from there.
    """

    height_per_core: float = 1.0 / (1.0 - 2.0 * CORE_SHRINK)
    height_offset: float = 0.0
    length_per_core: float = 1.0
    length_per_height: float = 2.0 * CORE_SHRINK
    length_offset: float = 0.0

    def to_json(self) -> str:
        """The metadata value (a JSON object of the five numbers)."""
        return json.dumps({k: round(float(v), 4) for k, v in asdict(self).items()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LineGeometry:
        """Parse the metadata value; raises ``ValueError`` on a malformed or implausible one."""
        values = json.loads(text)
        if not isinstance(values, dict) or set(values) != {f.name for f in fields(cls)}:
            raise ValueError(f"line_geometry must be an object with keys {sorted(f.name for f in fields(cls))}")
        geometry = cls(**{k: float(v) for k, v in values.items()})
        if not (0.1 <= geometry.height_per_core <= 10 and 0.1 <= geometry.length_per_core <= 10):
            raise ValueError(f"line_geometry slopes out of range: {geometry}")
        return geometry

    def line_size(self, thickness: float, core_length: float) -> tuple[float, float]:
        """(length, height) of the line, in map pixels, for a core's thickness and length."""
        height = max(self.height_per_core * thickness + self.height_offset, 1.0)
        length = self.length_per_core * core_length + self.length_per_height * height + self.length_offset
        return max(length, height), height


@dataclass(frozen=True)
class CoreShape:
    """A thresholded core measured column by column along its long axis (map pixels)."""

    axis: np.ndarray
    """float64 unit vector along the core's long side (pointing right, or down; not yet the reading direction)."""
    normal: np.ndarray
    centre: np.ndarray
    """Midpoint of the core's extent along the axis, on the median centre line of its columns."""
    thickness: float
    """Median count of core pixels per column: robust to a blob at one end or a touching smudge."""
    length: float


def measure_core(points: np.ndarray) -> CoreShape:
    """Shape of one core from its cell centres ``(n, 2)``: axis, median centre line, median thickness, length.

    The axis is the long side of the minimum-area rectangle, signed so that it points right (or down
    when vertical). Cells fall into columns ``floor(a - min(a) + 0.5)`` by their coordinate ``a`` along
    it; the thickness is the median cell count of the non-empty columns, the centre line the median of
    their mean across-coordinates, and the length the number of columns (``models/CONTRACT.md`` §4).
    """
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(points)
    corners = cv2.boxPoints(((cx, cy), (rw + 1.0, rh + 1.0), angle))
    edges = [corners[1] - corners[0], corners[2] - corners[1]]
    long_edge = edges[int(np.argmax([float(np.hypot(*e)) for e in edges]))]
    axis = (long_edge / max(float(np.hypot(*long_edge)), 1e-6)).astype(np.float64)
    if axis[0] < -1e-6 or (abs(axis[0]) <= 1e-6 and axis[1] < 0):
        axis = -axis
    normal = np.array([-axis[1], axis[0]])
    along = points.astype(np.float64) @ axis
    across = points.astype(np.float64) @ normal
    columns = np.floor(along - along.min() + 0.5).astype(np.int64)
    counts = np.bincount(columns)
    sums = np.bincount(columns, weights=across)
    present = counts > 0
    thickness = float(np.median(counts[present]))
    centre_across = float(np.median(sums[present] / counts[present]))
    length = float(len(counts))
    centre_along = float(along.min()) + (length - 1) / 2
    centre = axis * centre_along + normal * centre_across
    return CoreShape(axis=axis, normal=normal, centre=centre, thickness=thickness, length=length)


ROW_ANGLE_RANGE_DEG = 20
"""Stacked rows: axes tried, in whole degrees either side of the rectangle's (section 4 of CONTRACT.md)."""
ROW_VALLEY = 0.4
"""... a cut where the across profile falls to this share of the lower of the peaks on either side,"""
ROW_MIN_SHARE = 0.15
"""... leaving at least this share of the cells on each side,"""
ROW_OVERLAP = 0.3
"""... between rows that overlap along the axis by this share of the shorter one (else: words of one line),"""
ROW_MIN_CELLS = 12
"""... in components of at least this many cells,"""
ROW_MAX_DEPTH = 3
"""... and cuts nest at most this many plus one deep (16 rows at most)."""


def row_axis(points: np.ndarray) -> np.ndarray:
    """The axis along which the cells' across profile is sharpest: the direction of stacked rows of text.

    Tried from the rectangle's axis (:func:`measure_core`) in one-degree steps up to
    :data:`ROW_ANGLE_RANGE_DEG` either side; the first with the largest sum of squared counts of the
    one-cell bins of ``points · n`` wins. Two lines that the map joins lie parallel; the rectangle around
    both is tilted when they differ in length, which smears their profiles together.
    """
    base = measure_core(points.astype(np.float32)).axis
    thetas = float(np.arctan2(base[1], base[0])) + np.deg2rad(np.arange(-ROW_ANGLE_RANGE_DEG, ROW_ANGLE_RANGE_DEG + 1))
    across = points @ np.stack([-np.sin(thetas), np.cos(thetas)])  # (cells, angles): w for every angle at once
    bins = np.floor(across - across.min(axis=0)).astype(np.int64)
    width = int(bins.max()) + 1
    counts = np.bincount((bins + width * np.arange(len(thetas))).ravel(), minlength=width * len(thetas))
    concentration = (counts.reshape(len(thetas), width).astype(np.float64) ** 2).sum(axis=1)
    theta = thetas[int(np.argmax(concentration))]  # the first of the largest
    return np.array([np.cos(theta), np.sin(theta)])


def split_rows(points: np.ndarray, depth: int = 0) -> list[np.ndarray]:
    """Index arrays of the rows of one core component: one per line where the map joined stacked lines.

    A detector map can bridge two lines set close together (a maker line over an import line), or join
    the first letters of lines set flush left into an ``E``-shaped component; read as one, such a box
    gives nonsense for both lines. Along :func:`row_axis`, the across profile (cells per one-cell bin,
    smoothed with ``[0.25, 0.5, 0.25]``) of stacked lines has a deep valley between them: the deepest bin
    at most :data:`ROW_VALLEY` of the lower peak on either side, with :data:`ROW_MIN_SHARE` of the cells on
    each side, is cut, provided the two sides overlap along the axis (:data:`ROW_OVERLAP`); each side is
    examined again. A single line's profile has one peak and stays whole. ``models/CONTRACT.md`` §4.
    """
    index = np.arange(len(points))
    if depth > ROW_MAX_DEPTH or len(points) < ROW_MIN_CELLS:
        return [index]
    axis = row_axis(points)
    across = points @ np.array([-axis[1], axis[0]])
    hist = np.bincount(np.floor(across - across.min()).astype(np.int64)).astype(np.float64)
    if len(hist) < 4:
        return [index]
    smooth = np.convolve(hist, [0.25, 0.5, 0.25], mode="same")
    total = hist.sum()
    cut: tuple[int, float] | None = None
    for v in range(1, len(smooth) - 1):
        lower_peak = min(smooth[:v].max(), smooth[v + 1 :].max())
        if smooth[v] > ROW_VALLEY * lower_peak:
            continue
        left, right = hist[:v].sum() + hist[v] / 2, hist[v + 1 :].sum() + hist[v] / 2
        if min(left, right) < ROW_MIN_SHARE * total:
            continue
        ratio = float(smooth[v] / lower_peak)
        if cut is None or ratio < cut[1]:
            cut = (v, ratio)
    if cut is None:
        return [index]
    below = across < across.min() + cut[0] + 0.5
    sides = (index[below], index[~below])
    along = points @ axis
    (a0, a1), (b0, b1) = ((float(along[s].min()), float(along[s].max())) for s in sides)
    if min(a1, b1) - max(a0, b0) < ROW_OVERLAP * min(a1 - a0, b1 - b0):
        return [index]  # side by side, not stacked: words of one line on a slant
    return [side[rows] for side in sides for rows in split_rows(points[side], depth + 1)]


def postprocess_maps(
    maps: np.ndarray,
    stride: int,
    scale: float,
    threshold: float = 0.7,
    min_score: float = 0.75,
    min_area: int = 4,
    geometry: LineGeometry | None = None,
    split_stacked: bool = True,
) -> list[DetectedLine]:
    """Turn the detector's (3, h, w) output into line quads in original pixels.

    Each connected component of the thresholded core map is cut into its rows where the map joined
    stacked lines (:func:`split_rows`; not with ``split_stacked=False``); each row is measured column by
    column (:func:`measure_core`), grown to its line by ``geometry`` (default: the inverse of the
    training shrink) and its corners are ordered by the mean reading direction predicted over the row.
    """
    geometry = geometry or LineGeometry()
    prob = maps[0]
    binary = (prob > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    lines: list[DetectedLine] = []
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < min_area:
            continue
        ys, xs = np.nonzero(labels == label)
        if not split_stacked:
            rows.append((ys, xs))
            continue
        cells = np.stack([xs, ys], axis=1).astype(np.float64) + 0.5
        rows += [(ys[row], xs[row]) for row in split_rows(cells)]
    for ys, xs in rows:
        if len(ys) < min_area:
            continue
        score = float(prob[ys, xs].mean())
        if score < min_score:
            continue
        vx = float(maps[1, ys, xs].mean())
        vy = float(maps[2, ys, xs].mean())
        points = np.stack([xs, ys], axis=1).astype(np.float32) + 0.5
        core = measure_core(points)
        length, height = geometry.line_size(core.thickness, core.length)
        half_along, half_across = core.axis * (length / 2), core.normal * (height / 2)
        corners = np.stack([
            core.centre - half_along - half_across,
            core.centre + half_along - half_across,
            core.centre + half_along + half_across,
            core.centre - half_along + half_across,
        ])
        direction, direction_confidence = reading_direction(corners, (vx, vy))
        quad = order_quad(corners * stride, direction) * scale
        lines.append(DetectedLine(quad=quad.astype(np.float32), score=score, direction_confidence=direction_confidence))
    return lines


ZOOM_MAX_SHARE = 0.8
"""The reader detects again on the text region of a photo when that region spans at most this share of the
photo's longer side (and the photo is larger than the detector's input)."""
ZOOM_PAD_LINES = 1.0
"""Margin around the detected lines, in heights of the tallest of them, when the text region is cut."""


def text_region(
    quads: Sequence[Quad],
    image_shape: tuple[int, ...],
    long_side: int,
    max_share: float = ZOOM_MAX_SHARE,
    pad_lines: float = ZOOM_PAD_LINES,
) -> tuple[int, int, int, int] | None:
    """The box ``(x0, y0, x1, y1)`` (pixels, end exclusive) around the detected lines worth detecting again.

    A marking photographed as a small part of a large photo (a whole receiver, a slide with its
    surroundings) reaches the detector as small characters, which it finds and fits worse than the sizes it
    was trained on (markings filling the frame). Cutting the region of the lines it did find, with a margin
    of ``pad_lines`` line heights, and detecting again brings them back to that size.

    Returns None when there is no resolution to gain: no lines, a photo no larger than ``long_side``, or a
    region spanning more than ``max_share`` of the photo's longer side.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if not quads or max(height, width) <= long_side:
        return None
    points = np.concatenate([np.asarray(q, dtype=np.float64).reshape(4, 2) for q in quads])
    pad = pad_lines * max(quad_size(np.asarray(q, dtype=np.float32).reshape(4, 2))[1] for q in quads)
    x0, y0 = np.floor(points.min(axis=0) - pad)
    x1, y1 = np.ceil(points.max(axis=0) + pad)
    box = (max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1)))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    if max(box[2] - box[0], box[3] - box[1]) > max_share * max(height, width):
        return None
    return box
