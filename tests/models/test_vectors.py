"""The shipped test vectors: marktrace inference reproduces the raw outputs, text and boxes they record.

Regenerate them after every export with ``python -m marktrace.models.vectors``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marktrace.models.registry import SHIPPED_DIR, default_model

VECTORS = SHIPPED_DIR / "vectors"
EXPECTED = json.loads((VECTORS / "expected.json").read_text()) if (VECTORS / "expected.json").is_file() else None
IMAGES = [img["file"] for img in EXPECTED["images"]] if EXPECTED else []


def _check_summary(actual: np.ndarray, expected: dict[str, Any], tol: dict[str, float], what: str) -> None:
    assert list(actual.shape) == expected["shape"], f"{what}: shape"
    assert abs(float(actual.mean()) - expected["mean"]) <= tol["mean"], f"{what}: mean"
    assert abs(float(actual.std()) - expected["std"]) <= tol["std"], f"{what}: std"
    for sample in expected["samples"]:
        value = float(actual[tuple(sample["index"])])
        assert abs(value - sample["value"]) <= tol["sample"], f"{what}: value at {sample['index']}"


@pytest.fixture(scope="module")
def reader() -> Any:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    return MarkingReader.from_settings(ReaderSettings(threads=2, variant="fp32"))


def test_vectors_exist_and_are_small() -> None:
    assert EXPECTED is not None, "models/shipped/vectors/expected.json missing: run python -m marktrace.models.vectors"
    assert len(IMAGES) >= 3
    assert any(name.startswith("plate-") for name in IMAGES) and any(name.startswith("synth-") for name in IMAGES)
    for img in EXPECTED["images"]:
        data = (VECTORS / img["file"]).read_bytes()
        assert len(data) <= 40 * 1024, img["file"]
        assert hashlib.sha256(data).hexdigest() == img["sha256"], img["file"]


def test_vectors_were_made_with_the_shipped_models() -> None:
    assert EXPECTED is not None
    for key, task in (("detector", "line_detection"), ("recognizer", "line_recognition")):
        shipped = default_model(task)
        recorded = EXPECTED["models"][key]
        assert (recorded["file"], recorded["sha256"]) == (shipped.file, shipped.sha256), (
            f"vectors were generated with another {key} ({recorded['file']} {recorded['sha256'][:12]}); "
            "regenerate: python -m marktrace.models.vectors"
        )


@pytest.mark.parametrize("name", IMAGES)
def test_inference_reproduces_vector(reader: Any, name: str) -> None:
    from marktrace.inference.detect import prepare_detector_input
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.images import load_image
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y
    from marktrace.inference.recognize import batch_line_crops

    assert EXPECTED is not None
    vec = next(img for img in EXPECTED["images"] if img["file"] == name)
    tol = EXPECTED["tolerance"]
    image = load_image(VECTORS / name).image

    prepared = prepare_detector_input(image, reader.long_side)
    assert list(prepared.tensor.shape) == vec["detector_input"]["shape"]
    assert hashlib.sha256(prepared.tensor.tobytes()).hexdigest() == vec["detector_input"]["sha256"]
    maps = reader.detector.session.run(None, {reader.detector.input_name: prepared.tensor})[0]
    _check_summary(maps, vec["detector_output"], tol, f"{name} detector output")

    detected = reader.detect(image)
    assert len(detected) == len(vec["detections"]) == len(vec["crops"])
    for det, exp, crop_exp in zip(detected, vec["detections"], vec["crops"], strict=True):
        assert np.abs(det.quad - np.asarray(exp["quad"])).max() <= tol["box_px"]
        batch = batch_line_crops([rectify_line(image, pad_quad(det.quad, CROP_PAD_X, CROP_PAD_Y), 64)], 64)
        assert list(batch.shape) == crop_exp["input_shape"]
        probs = reader.recognizer.session.run(None, {reader.recognizer.input_name: batch})[0]
        _check_summary(probs, crop_exp["output"], tol, f"{name} recognizer output")

    lines = reader.read_image(image, name, "")
    assert [ln.text for ln in lines] == [ln["text"] for ln in vec["lines"]]
    for line, exp in zip(lines, vec["lines"], strict=True):
        assert np.abs(np.asarray(line.box) - np.asarray(exp["box"])).max() <= tol["box_px"]
        assert abs(line.confidence - exp["confidence"]) <= 1e-3
    result = reader.read_uploaded(name, [(name, (VECTORS / name).read_bytes())])
    serial = result.record.get("serial_number")
    assert isinstance(serial, dict) and serial["value"] == vec["serial"]


def test_int8_variant_reads_the_vector_serials() -> None:
    """The INT8 pair finds every vector's serial inside one of its lines (kernels differ between CPUs: text only)."""
    from marktrace.inference.images import load_image
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    assert EXPECTED is not None
    int8 = MarkingReader.from_settings(ReaderSettings(threads=2, variant="int8"))
    assert "int8" in Path(int8.detector.meta.path).name and "int8" in Path(int8.recognizer.meta.path).name
    misses = []
    for vec in EXPECTED["images"]:
        texts = [ln.text.replace(" ", "") for ln in int8.read_image(load_image(VECTORS / vec["file"]).image, "x", "")]
        if not any(vec["serial"].replace(" ", "") in t for t in texts):
            misses.append((vec["file"], vec["serial"], texts))
    assert len(misses) <= len(EXPECTED["images"]) // 4, misses
