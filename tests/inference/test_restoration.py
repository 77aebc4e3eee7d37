"""Learned restoration at inference: torch-free helpers, lazy loading, the attempt and the restored view's trail."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from marktrace.inference.onnx_models import ModelMetadataError, load_model
from marktrace.inference.restore import INK, PAPER, composite, render_mask, restore_crops, unique_quads


def test_render_mask_draws_dark_glyphs_on_light_at_the_recognizer_height() -> None:
    prob = np.zeros((32, 40), np.float32)
    prob[8:24, 10:20] = 1.0
    drawn = render_mask(prob, 64)
    assert drawn.shape == (64, 80) and drawn.dtype == np.uint8
    assert drawn[32, 30] == INK and drawn[2, 2] == PAPER


def test_unique_quads_drops_the_same_line_found_twice() -> None:
    a = np.array([[10, 10], [110, 10], [110, 40], [10, 40]], np.float32)
    b = a + 3  # the same line, read on another view
    c = a + np.array([0, 60], np.float32)
    kept = unique_quads([(a, 0.9), (b, 0.8), (c, 0.7)])
    assert [s for _, s in kept] == [0.9, 0.7]


def test_composite_puts_each_drawing_back_on_its_quad() -> None:
    drawn = np.full((64, 128), PAPER, np.uint8)
    drawn[16:48, 16:112] = INK
    quad = np.array([[20, 30], [148, 30], [148, 94], [20, 94]], np.float32)
    out = composite((120, 200), [drawn], [quad])
    assert out.shape == (120, 200) and out[60, 80] == INK and out[5, 5] == PAPER


def test_restore_crops_keeps_each_crop_size(tiny_restorer) -> None:
    model = load_model(tiny_restorer, "restoration", threads=1)
    crops = [np.full((32, w), 128, np.uint8) for w in (40, 41, 300)]
    probs = restore_crops(model, crops)
    assert [p.shape for p in probs] == [(32, 40), (32, 41), (32, 300)]
    with pytest.raises(ValueError, match="32 px high"):
        restore_crops(model, [np.zeros((64, 40), np.uint8)])


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from marktrace.datasets.synth import SynthConfig, render_marking

    return render_marking(1_250_000_123, SynthConfig(fonts="train", wear=(0.5, 0.6), rotation="upright")).image




def test_restorer_is_loaded_only_when_needed(photo, as_loaded: Callable[..., Any]) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, restoration=False, confident=1.01))
    result = reader.read_loaded("p", [as_loaded(photo)], None)
    assert reader._restorer is None and all(v.name != "restoration" for v in result.views)
    assert "restoration_ms" not in result.timings_ms


def test_restoration_attempt_is_a_flagged_suggestion_with_a_trail(
    photo, tiny_restorer, tmp_path, as_loaded: Callable[..., Any]
) -> None:
    from marktrace.inference.enhance.chains import image_sha256
    from marktrace.inference.images import sha256_file
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    settings = ReaderSettings(
        threads=1, restoration=True, restorer=tiny_restorer, confident=1.01, save_enhanced=tmp_path / "views"
    )
    reader = MarkingReader.from_settings(settings)
    image = as_loaded(photo)
    result = reader.read_loaded("p", [image], None)
    assert "restoration_ms" in result.timings_ms
    view = next(v for v in result.views if v.name == "restoration")
    trail = view.trail
    assert trail is not None and trail.source_sha256 == [image.sha256]
    assert trail.model is not None and trail.model["sha256"] == sha256_file(tiny_restorer)
    assert trail.model["name"] == "marktrace-restorer" and trail.model["version"] == "0.0.1"
    assert "marktrace" in trail.software and "onnxruntime" in trail.software
    assert [s.name for s in trail.steps] == ["restore_lines"] and trail.steps[0].params["quads"]
    saved = cv2.imread(str(view.file), cv2.IMREAD_UNCHANGED)
    assert image_sha256(saved) == trail.sha256, "the saved image is the one the trail describes"
    folder = tmp_path / "views" / f"photo.png-{image.sha256[:12]}"  # source name and hash: never shared
    assert Path(str(view.file)).parent == folder
    on_disk = json.loads((folder / f"restoration-{trail.sha256[:12]}.trail.json").read_text())
    assert on_disk["trail"]["sha256"] == trail.sha256
    # the deterministic views are still there
    assert any(v.name.startswith("chain:") for v in result.views)


def test_restoration_attempt_reads_the_drawing(photo, tiny_restorer, as_loaded: Callable[..., Any]) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings, _Attempt

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, restoration=True, restorer=tiny_restorer))
    attempts: list[_Attempt] = []
    views = reader._restoration_attempt(as_loaded(photo), attempts)
    assert len(views) == 1 and len(attempts) == 1
    attempt = attempts[0]
    assert attempt.method == "restoration" and attempt.view == "restoration"
    for line in attempt.lines:
        assert line.view == "restoration" and line.model and line.model.startswith("marktrace-restorer@0.0.1+")
        assert len(line.char_confidences) == len(line.text)
    serial = attempt.record.get("serial_number")
    if isinstance(serial, dict) and serial.get("value"):
        assert serial["method"] == "restoration"
        assert any(f["kind"] == "learned_restoration" for f in serial["flags"])


def test_a_mismatched_restorer_file_is_refused_when_the_reader_starts(tiny_models) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    # refused at start (not item by item in a batch, where each item would become an error row)
    with pytest.raises(ModelMetadataError, match="expected restoration"):
        MarkingReader.from_settings(
            ReaderSettings(threads=1, restoration=True, restorer=tiny_models["line_recognition"], confident=1.01)
        )
