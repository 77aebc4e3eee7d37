"""Torch weights imported from exported ONNX files (continuing training from the shipped models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from marktrace.models.networks.detector import DetectorForExport, build_detector
from marktrace.models.networks.recognizer import RecognizerForExport, build_recognizer
from marktrace.models.onnx_weights import OnnxImportError, freeze_batchnorm, load_onnx_weights

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped"


def _randomise_norms(module: torch.nn.Module, seed: int) -> None:
    """Give every batch norm non-trivial statistics, so export really folds something."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)  # type: ignore[union-attr]
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)  # type: ignore[union-attr]
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def _export(module: torch.nn.Module, probe: torch.Tensor, path: Path) -> None:
    torch.onnx.export(module.eval(), (probe,), str(path), input_names=["pixels"], opset_version=17, dynamo=False,
                      dynamic_axes={"pixels": {0: "batch"}})


def test_detector_round_trips_through_onnx_with_folded_norms(tmp_path: Path) -> None:
    source = build_detector("tiny")
    _randomise_norms(source, 1)
    probe = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "det.onnx"
    _export(DetectorForExport(source), probe, path)
    fresh = build_detector("tiny")
    diff = load_onnx_weights(fresh, path, probe, DetectorForExport, atol=1e-4)
    assert diff <= 1e-4
    other = torch.randint(0, 256, (2, 96, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = DetectorForExport(source).eval()(other)
        got = DetectorForExport(fresh).eval()(other)
    assert torch.allclose(got, expected, atol=1e-4), "imported weights must reproduce the source on other inputs"


def test_recognizer_round_trips_lstm_gate_order(tmp_path: Path) -> None:
    source = build_recognizer(11, "tiny")
    _randomise_norms(source, 4)
    probe = torch.randint(0, 256, (1, 1, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    path = tmp_path / "rec.onnx"
    _export(RecognizerForExport(source), probe, path)
    fresh = build_recognizer(11, "tiny")
    assert load_onnx_weights(fresh, path, probe, RecognizerForExport, atol=1e-4) <= 1e-4
    lstm = next(m for m in fresh.modules() if isinstance(m, torch.nn.LSTM))
    original = next(m for m in source.modules() if isinstance(m, torch.nn.LSTM))
    assert torch.equal(lstm.weight_hh_l0_reverse, original.weight_hh_l0_reverse), "gates must land in torch order"


def test_a_file_for_another_architecture_is_refused(tmp_path: Path) -> None:
    probe = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    path = tmp_path / "det.onnx"
    _export(DetectorForExport(build_detector("tiny")), probe, path)
    with pytest.raises(OnnxImportError, match="shape"):
        load_onnx_weights(build_detector("base"), path, probe, DetectorForExport)


def test_frozen_norms_keep_imported_statistics(tmp_path: Path) -> None:
    net = build_detector("tiny")
    net.train()
    freeze_batchnorm(net)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.training for m in norms)
    assert net.enc1[0].training, "convolutions keep training"


@pytest.mark.skipif(not (SHIPPED / "registry.json").exists(), reason="no shipped models")
def test_shipped_models_import_exactly() -> None:
    import json

    registry = json.loads((SHIPPED / "registry.json").read_text())
    files = {m["task"]: SHIPPED / m["file"] for m in registry["models"] if m.get("variant", "fp32") == "fp32"}
    g = torch.Generator().manual_seed(0)
    det_probe = torch.randint(0, 256, (1, 96, 128, 3), dtype=torch.uint8, generator=g)
    assert load_onnx_weights(build_detector("base"), files["line_detection"], det_probe, DetectorForExport) <= 1e-3
    rec_probe = torch.randint(0, 256, (1, 1, 64, 128), dtype=torch.uint8, generator=g)
    recognizer = build_recognizer(97, "g2")
    assert load_onnx_weights(recognizer, files["line_recognition"], rec_probe, RecognizerForExport) <= 2e-3


def _registered_copy(tmp_path: Path, task: str, corrupt: bool) -> Path:
    """A copy of the shipped fp32 model of ``task`` with the shipped registry beside it (one byte flipped if asked)."""
    import json
    import shutil

    registry = json.loads((SHIPPED / "registry.json").read_text())
    entry = next(m for m in registry["models"] if m["task"] == task and m.get("variant", "fp32") == "fp32")
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    shutil.copy2(SHIPPED / "registry.json", folder / "registry.json")
    copy = folder / entry["file"]
    data = bytearray((SHIPPED / entry["file"]).read_bytes())
    if corrupt:
        data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    return copy


@pytest.mark.skipif(not (SHIPPED / "registry.json").exists(), reason="no shipped models")
def test_a_registered_file_is_checked_before_its_weights_are_imported(tmp_path: Path) -> None:
    from marktrace.models.onnx_weights import verify_if_registered

    good = _registered_copy(tmp_path, "line_detection", corrupt=False)
    assert verify_if_registered(good) is True
    unregistered = tmp_path / "elsewhere.onnx"
    unregistered.write_bytes(b"not a registered model")
    assert verify_if_registered(unregistered) is False
    bad = _registered_copy(tmp_path, "line_detection", corrupt=True)
    probe = torch.randint(0, 256, (1, 96, 128, 3), dtype=torch.uint8)
    with pytest.raises(OnnxImportError, match=r"fails its checksum.*does not match the registry"):
        load_onnx_weights(build_detector("base"), bad, probe, DetectorForExport)


@pytest.mark.skipif(not (SHIPPED / "registry.json").exists(), reason="no shipped models")
@pytest.mark.parametrize("network", ["detector", "recognizer"])
def test_training_refuses_to_start_from_an_altered_registered_onnx_file(tmp_path: Path, network: str) -> None:
    from marktrace.training.config import load_config
    from marktrace.training.train import load_detector, load_recognizer

    task = "line_detection" if network == "detector" else "line_recognition"
    bad = _registered_copy(tmp_path, task, corrupt=True)
    cfg = load_config("tiny", {f"{network}.init_from": str(bad)})
    with pytest.raises(OnnxImportError, match=re.escape(bad.name)):
        load_detector(cfg) if network == "detector" else load_recognizer(cfg)
