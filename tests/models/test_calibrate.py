"""Line-geometry calibration: the robust fit, the shipped detector's calibration, the CLI that writes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from marktrace.inference.detect import LineGeometry
from marktrace.inference.images import sha256_file
from marktrace.inference.onnx_models import load_model
from marktrace.models.calibrate import MIN_LINES, CoreSample, calibrate, collect_samples, fit_geometry, geometry_errors
from marktrace.models.cli import app
from marktrace.models.registry import SHIPPED_DIR, RegisteredModel, default_model, load_registry


def test_fit_recovers_a_known_relation_despite_outliers() -> None:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(200):
        thickness, core_length = float(rng.uniform(3, 15)), float(rng.uniform(10, 120))
        height = 1.7 * thickness - 1.5 + float(rng.normal(0, 0.2))
        length = 0.98 * core_length + 0.1 * height + 2.0 + float(rng.normal(0, 0.3))
        if i % 6 == 0:  # merged or smudged cores: far off
            height *= 2.5
        samples.append(CoreSample(thickness, core_length, height, length))
    geometry = fit_geometry(samples)
    assert geometry.height_per_core == pytest.approx(1.7, abs=0.05)
    assert geometry.height_offset == pytest.approx(-1.5, abs=0.4)
    assert geometry.length_per_core == pytest.approx(0.98, abs=0.02)
    assert geometry_errors(samples, geometry)["height_ratio"][1] == pytest.approx(1.0, abs=0.02)


def test_too_few_lines_are_refused() -> None:
    with pytest.raises(ValueError, match="is the detector trained"):
        fit_geometry([CoreSample(4, 30, 8, 40)] * (MIN_LINES - 1))


def test_the_shipped_detector_is_calibrated_and_a_fit_on_fresh_markings_agrees(tmp_path: Path) -> None:
    shipped = default_model("line_detection", SHIPPED_DIR, "fp32").path(SHIPPED_DIR)
    meta = load_model(shipped, "line_detection", threads=1).meta
    assert meta.line_geometry != LineGeometry(), "shipped detector lacks line_geometry: marktrace models calibrate"
    copy = tmp_path / shipped.name
    shutil.copy2(shipped, copy)
    summary = calibrate(copy, images=30, seed=1_350_500_000)
    # Uncalibrated, boxes are too tall; the shipped calibration and the fresh fit both bring them to size.
    assert summary["uncalibrated"]["height_ratio"][1] > 1.15
    assert summary["calibrated"]["height_ratio"][1] == pytest.approx(1.0, abs=0.05)
    # the shipped fit on 60 fresh markings (30 give a median one face mix can move by 0.09)
    samples = collect_samples(shipped, images=60, seed=1_350_500_000)
    assert geometry_errors(samples, meta.line_geometry)["height_ratio"][1] == pytest.approx(1.0, abs=0.08)
    written = load_model(copy, "line_detection", threads=1).meta
    assert written.line_geometry == LineGeometry.from_json(summary["geometry"].to_json())
    before = {p.key: p.value for p in onnx.load(str(shipped)).metadata_props}
    after = {p.key: p.value for p in onnx.load(str(copy)).metadata_props}
    assert {k: after[k] for k in before if k not in ("line_geometry", "line_geometry_calibration")} == {
        k: v for k, v in before.items() if k not in ("line_geometry", "line_geometry_calibration")
    }


def _registered_copy(tmp_path: Path) -> tuple[Path, RegisteredModel]:
    """A models folder holding the shipped registry and a copy of the shipped FP32 detector it registers."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy2(SHIPPED_DIR / "registry.json", folder / "registry.json")
    model = default_model("line_detection", SHIPPED_DIR, "fp32")
    shutil.copy2(model.path(SHIPPED_DIR), folder / model.file)
    return folder, model


def test_cli_writes_the_fit_and_re_registers_the_file(tmp_path: Path) -> None:
    folder, model = _registered_copy(tmp_path)
    result = CliRunner().invoke(app, ["calibrate", str(folder / model.file), "--images", "45"], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "re-registered" in result.output
    entry = next(m for m in load_registry(folder) if m.file == model.file)
    assert entry.sha256 == sha256_file(folder / model.file) != model.sha256
    assert json.loads((folder / "registry.json").read_text())["models"]  # still a valid registry


def test_cli_names_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["calibrate", str(tmp_path / "nope.onnx")], terminal_width=300)
    assert result.exit_code == 1 and "nope.onnx" in result.output and "no such file" in result.output


def _corrupt(path: Path) -> None:
    """Flip one byte in the middle of the file (its weights), keeping the size."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_cli_refuses_a_registered_file_that_fails_its_checksum(tmp_path: Path) -> None:
    """A corrupted registered file is neither calibrated nor re-registered (its checksum would be laundered)."""
    folder, model = _registered_copy(tmp_path)
    _corrupt(folder / model.file)
    corrupted = (folder / model.file).read_bytes()
    registry = (folder / "registry.json").read_bytes()
    result = CliRunner().invoke(app, ["calibrate", str(folder / model.file), "--images", "4"], terminal_width=300)
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and model.file in result.output and "does not match the registry" in result.output
    assert "re-registered" not in result.output
    assert (folder / model.file).read_bytes() == corrupted
    assert (folder / "registry.json").read_bytes() == registry
