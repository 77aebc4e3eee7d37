"""Calibrate a line detector's core-to-line geometry on synthetic markings; store it in the ONNX metadata.

The detector is trained to mark each line's *core* (the line shrunk by ``CORE_SHRINK`` line heights on
every side). Its probability map is blurrier than those targets, so a thresholded core comes out fatter
and longer than trained, and growing it back by the exact inverse of the shrink gives boxes about 1.7
times too tall: the crop then holds pieces of the lines above and below and the text is half as tall as
the recognizer was trained on. This module measures, on rendered markings whose line boxes are known,
how a detected core's median thickness and length relate to the true line's height and length, fits
:class:`~marktrace.inference.detect.LineGeometry` by least absolute deviations, and writes it into the
model's ``line_geometry`` metadata, which inference reads.

Calibration markings use training fonts and their own seed block (:data:`CALIBRATION_SEED`): never the
benchmark's held-out fonts or seeds. Torch-free (numpy, OpenCV, onnxruntime, ``onnx`` to write metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from marktrace.datasets.synth import SynthConfig, render_marking
from marktrace.inference.detect import LineGeometry, measure_core, prepare_detector_input
from marktrace.inference.onnx_models import load_model

CALIBRATION_SEED = 1_350_000_000
"""First seed of the calibration markings (training uses seeds below 1_300_000_000, the benchmark 1_700_000_000+)."""
CALIBRATION_CONFIG = SynthConfig(fonts="train", wear=(0.0, 0.5), rotation="small", camera=1.0)
MIN_LINES = 40
"""Fewer matched lines than this and the fit is refused (an untrained detector finds no cores)."""


@dataclass(frozen=True)
class CoreSample:
    """One true line and the detected core that covers its centre, in detector-map pixels."""

    thickness: float
    core_length: float
    height: float
    length: float


def _quad_size_in_map(polygon: np.ndarray) -> tuple[float, float]:
    along = polygon[1] - polygon[0]
    length = float(np.hypot(*along))
    unit = along / max(length, 1e-6)
    normal = np.array([-unit[1], unit[0]])
    height = float(abs((polygon[3] - polygon[0]) @ normal))
    return length, height


def collect_samples(
    detector_path: Path,
    images: int = 200,
    seed: int = CALIBRATION_SEED,
    config: SynthConfig = CALIBRATION_CONFIG,
    on_image: Callable[[int], None] | None = None,
) -> list[CoreSample]:
    """Render ``images`` markings, run the detector, pair each true line with the core under its centre.

    A core under two true lines (merged lines) or under none is left out.
    """
    model = load_model(detector_path, "line_detection", threads=2)
    meta = model.meta
    samples: list[CoreSample] = []
    for index in range(images):
        marking = render_marking(seed + index, config)
        prepared = prepare_detector_input(marking.image, meta.long_side)
        maps = model.session.run(None, {model.input_name: prepared.tensor})[0][0]
        prob = maps[0]
        binary = (prob > meta.threshold).astype(np.uint8)
        _, labels, _, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        to_map = 1.0 / (prepared.scale * meta.stride)
        claims: dict[int, list[tuple[float, float]]] = {}
        for line in marking.lines:
            polygon = np.asarray(line.polygon, np.float64) * to_map
            cx, cy = polygon.mean(axis=0)
            if not (0 <= cy < labels.shape[0] and 0 <= cx < labels.shape[1]):
                continue
            label = int(labels[int(cy), int(cx)])
            if label:
                claims.setdefault(label, []).append(_quad_size_in_map(polygon))
        for label, sizes in claims.items():
            if len(sizes) != 1:
                continue
            ys, xs = np.nonzero(labels == label)
            if prob[ys, xs].mean() < meta.min_score:
                continue
            core = measure_core(np.stack([xs, ys], axis=1).astype(np.float32) + 0.5)
            length, height = sizes[0]
            samples.append(CoreSample(core.thickness, core.length, height, length))
        if on_image:
            on_image(index + 1)
    return samples


def _lad(design: np.ndarray, target: np.ndarray, rounds: int = 60) -> np.ndarray:
    """Least absolute deviations by iteratively reweighted least squares."""
    weights = np.ones_like(target)
    coef = np.zeros(design.shape[1])
    for _ in range(rounds):
        root = np.sqrt(weights)
        coef = np.linalg.lstsq(design * root[:, None], target * root, rcond=None)[0]
        weights = 1.0 / np.maximum(np.abs(target - design @ coef), 0.25)
    return coef


def fit_geometry(samples: list[CoreSample]) -> LineGeometry:
    """Fit :class:`LineGeometry` to ``samples``; raises ``ValueError`` with fewer than :data:`MIN_LINES`."""
    if len(samples) < MIN_LINES:
        raise ValueError(
            f"only {len(samples)} detected lines matched a true line (need {MIN_LINES}); is the detector trained?"
        )
    data = np.array([(s.thickness, s.core_length, s.height, s.length) for s in samples], np.float64)
    thickness, core_length, height, length = data.T
    ones = np.ones_like(thickness)
    slope, offset = _lad(np.stack([thickness, ones], axis=1), height)
    estimated = np.maximum(slope * thickness + offset, 1.0)
    per_core, per_height, length_offset = _lad(np.stack([core_length, estimated, ones], axis=1), length)
    return LineGeometry(float(slope), float(offset), float(per_core), float(per_height), float(length_offset))


def geometry_errors(samples: list[CoreSample], geometry: LineGeometry) -> dict[str, list[float]]:
    """Quartiles (25, 50, 75 %) of estimated / true height and length over ``samples``."""
    est = np.array([geometry.line_size(s.thickness, s.core_length) for s in samples])
    true = np.array([(s.length, s.height) for s in samples])
    ratio = est / true
    return {
        "height_ratio": [round(float(v), 3) for v in np.percentile(ratio[:, 1], [25, 50, 75])],
        "length_ratio": [round(float(v), 3) for v in np.percentile(ratio[:, 0], [25, 50, 75])],
    }


def write_geometry(path: Path, geometry: LineGeometry, images: int, seed: int) -> None:
    """Set ``line_geometry`` (and where it came from) in the ONNX file's metadata; other keys are kept.

    Needs the ``onnx`` package (in the ``[train]`` extra); without it a ``ValueError`` says so.
    """
    try:
        from marktrace.models.onnx_metadata import read_metadata, write_metadata
    except ImportError:
        raise ValueError(
            f"{path}: writing ONNX metadata needs the onnx package (pip install 'marktrace[train]' or onnx); "
            "use --no-write to only print the fit"
        ) from None

    props = read_metadata(path)
    props["line_geometry"] = geometry.to_json()
    props["line_geometry_calibration"] = (
        f"marktrace models calibrate: {images} synthetic markings, training fonts, seeds {seed}+"
    )
    write_metadata(path, props)


def calibrate(
    detector_path: Path,
    images: int = 200,
    seed: int = CALIBRATION_SEED,
    write: bool = True,
    on_image: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Measure, fit and (with ``write``) store a detector's line geometry; returns a summary."""
    samples = collect_samples(detector_path, images, seed, on_image=on_image)
    geometry = fit_geometry(samples)
    summary = {
        "file": str(detector_path),
        "lines": len(samples),
        "geometry": geometry,
        "uncalibrated": geometry_errors(samples, LineGeometry()),
        "calibrated": geometry_errors(samples, geometry),
    }
    if write:
        write_geometry(detector_path, geometry, images, seed)
    return summary
