"""Detecting an unsure photo's lines again at other detector input sizes (``ReaderSettings.detector_sides``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from marktrace.datasets.synth import SynthConfig, render_marking

    return render_marking(1_250_000_321, SynthConfig(fonts="train", wear=(0.0, 0.1), rotation="upright")).image




def _spy(reader: Any, monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    sides: list[int | None] = []
    detect = reader.detect

    def spy(image: np.ndarray, long_side: int | None = None) -> Any:
        sides.append(long_side)
        return detect(image, long_side)

    monkeypatch.setattr(reader, "detect", spy)
    return sides


def test_an_unsure_photo_is_detected_again_at_each_side_in_order(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(
        ReaderSettings(threads=1, confident=1.01, detector_sides=(448, 320), chains=(), turn_oblique=False)
    )
    sides = _spy(reader, monkeypatch)
    result = reader.read_loaded("p", [as_loaded(photo)], None)
    assert sides == [None, 448, 320]
    assert "detector_sides_ms" in result.timings_ms
    h, w = photo.shape[:2]
    for line in result.lines:  # whichever attempt won, boxes are in the photo's own pixels
        xs, ys = [p[0] for p in line.box], [p[1] for p in line.box]
        assert min(xs) > -0.25 * w and max(xs) < 1.25 * w and min(ys) > -0.25 * h and max(ys) < 1.25 * h


def test_a_confident_photo_is_detected_once(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, confident=0.0, detector_sides=(448, 320)))
    sides = _spy(reader, monkeypatch)
    result = reader.read_loaded("p", [as_loaded(photo)], None)
    assert sides == [None]
    assert "detector_sides_ms" not in result.timings_ms


def test_lines_found_at_another_side_land_where_the_default_finds_them(photo: np.ndarray) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1))
    default = reader.detect(photo)
    smaller = reader.detect(photo, 448)
    assert default and smaller
    centres = np.array([d.quad.mean(axis=0) for d in default])
    heights = np.array([np.linalg.norm(d.quad[3] - d.quad[0]) for d in default])
    for line in smaller:  # every line found at 448 sits on a line found at the default size
        distance = np.linalg.norm(centres - line.quad.mean(axis=0), axis=1)
        nearest = int(distance.argmin())
        assert distance[nearest] < heights[nearest]


def test_a_side_above_the_default_is_tried_only_on_photos_larger_than_it(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    """The wide pass finds a marking that is a small part of a large photo; it never enlarges a small one."""
    import cv2

    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(
        ReaderSettings(threads=1, confident=1.01, detector_sides=(448, 1280), chains=(), turn_oblique=False,
                       anchor_regions=0)
    )
    sides = _spy(reader, monkeypatch)
    assert max(photo.shape[:2]) < 1280
    reader.read_loaded("small", [as_loaded(photo)], None)
    assert sides == [None, 448]
    sides.clear()
    large = cv2.resize(photo, None, fx=1400 / max(photo.shape[:2]), fy=1400 / max(photo.shape[:2]))
    reader.read_loaded("large", [as_loaded(large)], None)
    assert sides == [None, 448, 1280]


def test_by_default_a_photo_over_2048_px_is_also_detected_at_2048(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    """Reader 0.5.3: a marking that is a small part of a phone photo is found at 2048 px; 2048 px or less: as before."""
    import cv2

    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(
        ReaderSettings(threads=1, confident=1.01, chains=(), turn_oblique=False, anchor_regions=0)
    )
    sides = _spy(reader, monkeypatch)
    for long_side, expected in ((2048, [None, 448, 1280]), (2100, [None, 448, 1280, 2048])):
        scale = long_side / max(photo.shape[:2])
        sides.clear()
        reader.read_loaded("photo", [as_loaded(cv2.resize(photo, None, fx=scale, fy=scale))], None)
        assert sides == expected, long_side


def test_a_large_photo_is_turned_only_after_the_other_sizes_and_only_if_still_unsure(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    """On a large photo the other detector sizes settle most reads; the turned copy (a full-size warp) comes last."""
    import dataclasses

    import cv2

    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(
        ReaderSettings(threads=1, confident=1.01, detector_sides=(448, 1280), chains=(), anchor_regions=0)
    )
    order: list[Any] = _spy(reader, monkeypatch)
    monkeypatch.setattr(reader, "_turned_attempt", lambda image, direct, attempts: order.append("turn"))
    reader.read_loaded("small", [as_loaded(photo)], None)
    assert order == [None, "turn", 448]  # a photo under twice the detector's size: turned first, as before
    order.clear()
    scale = 1400 / max(photo.shape[:2])
    large = as_loaded(cv2.resize(photo, None, fx=scale, fy=scale))
    reader.read_loaded("large", [large], None)
    assert order == [None, 448, 1280, "turn"]
    order.clear()
    monkeypatch.setattr(reader, "settings", dataclasses.replace(reader.settings, confident=0.0))
    reader.read_loaded("large", [large], None)
    assert order == [None]  # confident at once: neither
