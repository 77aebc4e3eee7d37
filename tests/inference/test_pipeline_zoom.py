"""Detecting again on the text region of a large photo (``ReaderSettings.zoom_to_text``, ``detect.text_region``)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from marktrace.inference.detect import text_region


def _quad(x: float, y: float, w: float, h: float) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)


def test_a_small_text_region_of_a_large_photo_is_cut_with_a_margin_of_one_line_height() -> None:
    box = text_region([_quad(1000, 800, 400, 40), _quad(1000, 860, 300, 30)], (3000, 4000, 3), 640)
    assert box == (960, 760, 1440, 930)


def test_no_region_when_nothing_is_gained() -> None:
    small_photo = (600, 640, 3)
    assert text_region([_quad(10, 10, 50, 10)], small_photo, 640) is None  # no more pixels to give the detector
    assert text_region([], (3000, 4000, 3), 640) is None
    # lines spread over most of the photo (the marking fills the frame)
    assert text_region([_quad(100, 100, 3500, 200)], (3000, 4000, 3), 640) is None
    # a region clipped at the photo's edges stays inside it
    box = text_region([_quad(0, 0, 300, 50)], (3000, 4000, 3), 640)
    assert box == (0, 0, 350, 100)


def _framed(image: np.ndarray, factor: int, upscale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo enlarged and set into a plain surround ``factor`` times its size, and where it went."""
    big = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    h, w = big.shape[:2]
    rng = np.random.default_rng(7)
    # plain metal: the marking's median colour, a gentle gradient and fine sensor noise
    gradient = np.linspace(-12, 12, w * factor, dtype=np.float32)[None, :, None]
    surround = np.median(big.reshape(-1, 3), axis=0) + gradient + rng.normal(0, 3, (h * factor, w * factor, 3))
    canvas = surround.clip(0, 255).astype(np.uint8)
    y, x = h * (factor - 1) // 3, w * (factor - 1) // 2
    # feathered edges: a pasted rectangle's hard border would itself look like a line to the detector
    ramp = max(4, min(h, w) // 8)
    mask = np.zeros((h, w), np.float32)
    mask[ramp:-ramp, ramp:-ramp] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), ramp / 2)[:, :, None]
    patch = canvas[y : y + h, x : x + w].astype(np.float32)
    canvas[y : y + h, x : x + w] = (mask * big + (1 - mask) * patch).round().astype(np.uint8)
    return canvas, (x, y)


@pytest.fixture(scope="module")
def marking() -> Any:
    from marktrace.datasets.synth import SynthConfig, render_marking

    # held-out faces: the scene stays the same when training faces are added
    return render_marking(1_250_000_322, SynthConfig(fonts="heldout", wear=(0.0, 0.1), rotation="upright"))


def test_lines_of_a_framed_marking_are_found_in_its_region_and_boxed_in_the_photos_pixels(marking: Any) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    photo, (x, y) = _framed(marking.image, 4, 2.0)
    zoomed = MarkingReader.from_settings(ReaderSettings(threads=1)).detect(photo)
    plain = MarkingReader.from_settings(ReaderSettings(threads=1, zoom_to_text=False)).detect(photo)
    assert zoomed
    h, w = (2 * s for s in marking.image.shape[:2])
    for line in zoomed:  # every line lies on the marking, in the large photo's coordinates
        cx, cy = line.quad.mean(axis=0)
        assert x <= cx <= x + w and y <= cy <= y + h
    # the truth lines, moved into the photo: the zoomed boxes' heights fit them better than one pass's
    truths = [np.asarray(ln.polygon, np.float32) * 2 + (x, y) for ln in marking.lines]

    def fit(found: list[Any]) -> float:
        heights = []
        for truth in truths:
            centre = truth.mean(axis=0)
            near = min(found, key=lambda d: float(np.linalg.norm(d.quad.mean(axis=0) - centre)), default=None)
            if near is None or np.linalg.norm(near.quad.mean(axis=0) - centre) > np.linalg.norm(truth[3] - truth[0]):
                heights.append(0.0)
                continue
            ratio = float(np.linalg.norm(near.quad[3] - near.quad[0]) / np.linalg.norm(truth[3] - truth[0]))
            heights.append(min(ratio, 1 / ratio))
        return float(np.mean(heights))

    assert fit(zoomed) > max(fit(plain), 0.7)


def test_a_photo_the_marking_fills_is_detected_once(marking: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1))
    passes: list[tuple[int, ...]] = []
    once = reader._detect_once

    def spy(image: np.ndarray, long_side: int) -> Any:
        passes.append(image.shape)
        return once(image, long_side)

    monkeypatch.setattr(reader, "_detect_once", spy)
    reader.detect(marking.image)
    assert len(passes) == 1
    photo, _ = _framed(marking.image, 4, 2.0)
    passes.clear()
    reader.detect(photo)
    assert len(passes) >= 2 and passes[-1][0] * passes[-1][1] < photo.shape[0] * photo.shape[1] / 4


@pytest.mark.parametrize("max_pixels", [0, 40_000])
def test_chains_on_a_large_photo_are_cut_to_the_text_region_shrunk_to_a_bound_and_replay(
    marking: Any, tmp_path: Any, max_pixels: int
) -> None:
    from marktrace.inference.enhance.chains import source_to_view, verify_replay
    from marktrace.inference.images import decode_image
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    photo, (x, y) = _framed(marking.image, 4, 2.0)
    ok, buf = cv2.imencode(".png", photo)
    assert ok
    loaded = decode_image(bytes(buf), "framed.png")
    reader = MarkingReader.from_settings(ReaderSettings(
        threads=1, confident=1.01, detector_sides=(), turn_oblique=False, save_enhanced=tmp_path,
        chain_max_pixels=max_pixels,
    ))
    attempts = [reader._attempt(loaded.image, loaded.path, loaded.sha256, "direct", "original")]
    chain_views = reader._chain_attempts(loaded, attempts)
    assert chain_views and len(attempts) == 1 + len(chain_views)
    h, w = (2 * s for s in marking.image.shape[:2])
    for view in chain_views:
        assert view.trail is not None and view.trail.steps[0].name == "crop"
        p = view.trail.steps[0].params
        x0, y0 = p["x0"], p["y0"]
        assert x0 <= x + w and y0 <= y + h and p["x1"] >= x and p["y1"] >= y  # the region overlaps the marking
        assert (p["x1"] - x0) * (p["y1"] - y0) < photo.shape[0] * photo.shape[1] / 4
        resized = [step for step in view.trail.steps if step.name == "resize"]
        assert len(resized) == (1 if max_pixels else 0)  # the region is larger than 40,000 pixels
        if resized:
            names = [step.name for step in view.trail.steps]
            assert names[:3] == ["crop", "gray", "resize"]  # the chain's gray step first: one channel to resample
            size = resized[0].params
            assert (size["from_width"], size["from_height"]) == (p["x1"] - x0, p["y1"] - y0)
            assert max_pixels * 0.97 <= size["width"] * size["height"] <= max_pixels * 1.03
        assert verify_replay(view.trail, loaded.image, loaded.sha256)
        # the marking's corners, through the trail's geometry, land inside the view
        corners = source_to_view(view.trail.steps) @ np.array([[x + w / 4, x + 3 * w / 4], [y + h / 4, y + 3 * h / 4],
                                                                [1, 1]])
        enhanced = cv2.imread(view.file or "", cv2.IMREAD_UNCHANGED)
        assert enhanced is not None
        assert (corners >= 0).all()
        assert (corners[0] < enhanced.shape[1]).all() and (corners[1] < enhanced.shape[0]).all()
    # lines read on the cut (and shrunk) views are boxed in the large photo's pixels, on the marking
    chained = [line for attempt in attempts[1:] for line in attempt.lines]
    assert chained
    for line in chained:
        cx, cy = np.mean(np.asarray(line.box), axis=0)
        assert x - 0.1 * w <= cx <= x + 1.1 * w and y - 0.1 * h <= cy <= y + 1.1 * h
