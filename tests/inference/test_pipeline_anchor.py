"""Reading again around the best lines of an unsure large photo (``ReaderSettings.anchor_regions``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marktrace.inference.schema import Line


def _line(text: str, confidence: float, x: float, y: float, w: float, h: float, file: str = "photo.png") -> Line:
    return Line(text=text, confidence=confidence, box=[(x, y), (x + w, y), (x + w, y + h), (x, y + h)], file=file)


@pytest.fixture(scope="module")
def reader() -> Any:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    return MarkingReader.from_settings(ReaderSettings(threads=1, anchor_regions=2))


@pytest.fixture(scope="module")
def marking() -> Any:
    from marktrace.datasets.synth import SynthConfig, render_marking

    return render_marking(1_250_000_322, SynthConfig(fonts="heldout", wear=(0.0, 0.1), rotation="upright"))


def _spy(reader: Any, monkeypatch: pytest.MonkeyPatch, confidence: float) -> list[tuple[tuple[int, ...], Any]]:
    """Record each region read; every read gives a serial of ``confidence`` on one line of its own."""
    from marktrace.inference.pipeline import _Attempt

    calls: list[tuple[tuple[int, ...], Any]] = []

    def attempt(image: np.ndarray, file: str, sha256: str, method: str, view: str, scale: float = 1.0,
                to_original: Any = None, long_side: Any = None) -> Any:
        calls.append((image.shape, to_original))
        record = {"serial_number": {"value": "AB12345", "confidence": confidence, "evidence": {"file": file}}}
        return _Attempt(lines=[], record=record, method=method, view=view)

    monkeypatch.setattr(reader, "_attempt", attempt)
    return calls


def test_regions_around_the_best_lines_skip_lines_already_inside_one(
    reader: Any, as_loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marktrace.inference.pipeline import _Attempt

    photo = as_loaded(np.zeros((3000, 4000, 3), np.uint8))
    lines = [
        _line("XY", 0.7, 1100, 900, 80, 30, photo.path),  # second best (0.47), but inside the first region: skipped
        _line("M", 0.9, 3500, 100, 30, 30, photo.path),  # one character: scores 0.3
        _line("AB12345", 0.6, 1000, 800, 400, 40, photo.path),  # the best: 0.6
        _line("QZ7", 0.4, 3000, 2500, 120, 40, photo.path),  # next: 0.4
        _line("ZZZZ", 0.99, 10, 10, 100, 30, "other.png"),  # another photo's line
    ]
    attempts = [_Attempt(lines=lines, record={}, method="direct", view="original")]
    calls = _spy(reader, monkeypatch, confidence=0.2)
    reader._anchor_attempts(photo, attempts)
    assert len(calls) == 2 and len(attempts) == 3
    # 3 line widths by 8 line heights around the best line, then around QZ7 (24 line heights wide at least)
    (shape, to_original), (shape2, to_original2) = calls
    assert shape[:2] == (320, 1200) and to_original.tolist() == [[1, 0, 600], [0, 1, 660]]
    assert shape2[:2] == (320, 960) and to_original2.tolist() == [[1, 0, 2580], [0, 1, 2360]]
    flags = attempts[1].record["serial_number"]["flags"]
    assert [f["kind"] for f in flags] == ["read_in_region"]
    assert flags[0]["region"] == [600, 660, 1800, 980] and flags[0]["anchor_line"] == "AB12345"


def test_a_confident_region_ends_the_search(reader: Any, as_loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.inference.pipeline import _Attempt

    photo = as_loaded(np.zeros((3000, 4000, 3), np.uint8))
    lines = [_line("AB12345", 0.6, 1000, 800, 400, 40, photo.path), _line("QZ7", 0.4, 3000, 2500, 120, 40, photo.path)]
    attempts = [_Attempt(lines=lines, record={}, method="direct", view="original")]
    calls = _spy(reader, monkeypatch, confidence=0.95)
    reader._anchor_attempts(photo, attempts)
    assert len(calls) == 1


def test_only_an_unsure_photo_twice_the_detector_size_is_read_in_regions(
    reader: Any, marking: Any, as_loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(reader, "_anchor_attempts", lambda image, attempts: seen.append(image.image.shape))
    monkeypatch.setattr(reader, "settings", dataclasses.replace(reader.settings, confident=1.01, chains=()))
    small = marking.image
    reader.read_loaded("small", [as_loaded(small)], None)
    assert seen == []  # smaller than twice the detector's input
    h, w = small.shape[:2]
    side = 2 * reader.long_side
    large = np.pad(small, ((0, max(0, side - h)), (0, max(0, side - w)), (0, 0)), mode="edge")
    reader.read_loaded("large", [as_loaded(large)], None)
    assert seen == [large.shape]
    monkeypatch.setattr(reader, "settings", dataclasses.replace(reader.settings, anchor_regions=0))
    reader.read_loaded("large", [as_loaded(large)], None)
    assert seen == [large.shape]  # off


def test_lines_read_in_a_region_are_boxed_in_the_photos_pixels(reader: Any, marking: Any, as_loaded: Any) -> None:
    """A marking in a corner of a large plain photo: the region around its best line reads it, boxed where it is."""
    h, w = marking.image.shape[:2]
    rng = np.random.default_rng(3)
    plain = np.median(marking.image.reshape(-1, 3), axis=0) + rng.normal(0, 3, (4 * h, 4 * w, 3))
    canvas = plain.clip(0, 255).astype(np.uint8)
    canvas[2 * h : 3 * h, 2 * w : 3 * w] = marking.image
    photo = as_loaded(canvas)
    direct = reader._attempt(photo.image, photo.path, photo.sha256, "direct", "original")
    attempts = [direct]
    reader._anchor_attempts(photo, attempts)
    assert len(attempts) >= 2
    region_lines = [line for attempt in attempts[1:] for line in attempt.lines]
    assert region_lines
    for line in region_lines:
        cx, cy = np.mean(np.asarray(line.box), axis=0)
        assert 2 * w - 0.1 * w <= cx <= 3 * w + 0.1 * w and 2 * h - 0.1 * h <= cy <= 3 * h + 0.1 * h
    serial = attempts[1].record.get("serial_number")
    assert serial is not None and serial["flags"][-1]["kind"] == "read_in_region"
