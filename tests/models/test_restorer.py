"""The learned restorer: network shapes, ONNX export (parity, self-describing metadata), the shipped file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from marktrace.inference.onnx_models import ModelMetadataError, load_model, parse_metadata
from marktrace.models.registry import SHIPPED_DIR, default_model, verify_file

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("size", ["tiny", "base"])
@pytest.mark.parametrize(("height", "width"), [(32, 8), (32, 200), (64, 96)])
def test_restorer_maps_a_crop_to_a_mask_of_the_same_size(size: str, height: int, width: int) -> None:
    from marktrace.models.networks.restorer import build_restorer

    net = build_restorer(size).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 1, height, width))
    assert out.shape == (2, 1, height, width)


def test_base_restorer_stays_small() -> None:
    from marktrace.models.networks.restorer import build_restorer

    count = sum(p.numel() for p in build_restorer("base").parameters())
    assert 100_000 < count < 2_000_000
    assert sum(p.numel() for p in build_restorer("tiny").parameters()) < 50_000


def test_exported_restorer_describes_itself(tiny_restorer: Path) -> None:
    model = load_model(tiny_restorer, "restoration", threads=1)
    meta = model.meta
    assert meta.task == "restoration" and meta.name == "marktrace-restorer" and meta.version == "0.0.1"
    assert meta.input_height == 32 and 0 < meta.threshold < 1 and meta.training_commit
    extra = dict(meta.extra)
    assert extra["training_run"].startswith("tiny-restorer-") and extra["training_seed"] == "7"
    assert "inside the graph" in meta.normalisation and "suggestion" in extra["status"]
    assert model.session.get_inputs()[0].type == "tensor(uint8)"
    pixels = np.random.default_rng(0).integers(0, 256, (3, 1, 32, 136), dtype=np.uint8)
    mask = model.session.run(None, {"pixels": pixels})[0]
    assert mask.shape == (3, 1, 32, 136) and mask.dtype == np.float32
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


def test_exported_restorer_agrees_with_torch(tiny_restorer: Path, tiny_restorer_run: Path) -> None:
    from marktrace.models.networks.restorer import RestorerForExport
    from marktrace.training.restorer import load_checkpoint

    net, _ = load_checkpoint(tiny_restorer_run / "checkpoints" / "restorer-best.pt")
    model = load_model(tiny_restorer, "restoration", threads=1)
    pixels = np.random.default_rng(1).integers(0, 256, (1, 1, 32, 64), dtype=np.uint8)
    with torch.no_grad():
        expected = RestorerForExport(net).eval()(torch.from_numpy(pixels)).numpy()
    assert np.abs(model.session.run(None, {"pixels": pixels})[0] - expected).max() < 1e-4


def test_inference_refuses_a_mismatched_file(tiny_restorer: Path, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ModelMetadataError, match="is a restoration model, expected line_recognition"):
        load_model(tiny_restorer, "line_recognition")
    with pytest.raises(ModelMetadataError, match="expected restoration"):
        load_model(tiny_models["line_recognition"], "restoration")


RESTORER_LAYOUT = "NCHW uint8 gray, H = input_height, W any multiple of 8 (right-padded by edge replication)"
RESTORER_NORMALISATION = "x / 127.5 - 1 (inside the graph); then per crop (x - mean) / (std + 0.02) over C, H, W"


def test_restoration_metadata_is_checked() -> None:
    props = {
        "marktrace_schema": "1", "task": "restoration", "name": "r", "version": "0", "training_commit": "c",
        "input_layout": RESTORER_LAYOUT, "normalisation": RESTORER_NORMALISATION,
        "input_height": "32", "threshold": "0.5",
    }
    assert parse_metadata("r.onnx", props, "restoration").input_height == 32
    with pytest.raises(ModelMetadataError, match="multiple of 8"):
        parse_metadata("r.onnx", {**props, "input_height": "30"}, "restoration")
    with pytest.raises(ModelMetadataError, match="lacks threshold"):
        parse_metadata("r.onnx", {k: v for k, v in props.items() if k != "threshold"}, "restoration")


def test_restoration_metadata_with_unknown_preprocessing_is_refused() -> None:
    props = {
        "marktrace_schema": "1", "task": "restoration", "name": "r", "version": "0", "training_commit": "c",
        "input_layout": "x", "normalisation": "y", "input_height": "32", "threshold": "0.5",
    }
    with pytest.raises(ModelMetadataError) as info:
        parse_metadata("r.onnx", props, "restoration")
    assert str(info.value) == (
        f"r.onnx: metadata input_layout is 'x', but marktrace's restoration pre-processing expects {RESTORER_LAYOUT!r}"
    )
    with pytest.raises(ModelMetadataError, match=r"r\.onnx: metadata normalisation is 'y', .* expects one of "):
        parse_metadata("r.onnx", {**props, "input_layout": RESTORER_LAYOUT}, "restoration")


def test_a_restorer_file_with_unknown_preprocessing_is_refused_at_load(tiny_restorer: Path, tmp_path: Path) -> None:
    from marktrace.models.onnx_metadata import read_metadata, write_metadata

    bad = tmp_path / "restorer-bad.onnx"
    bad.write_bytes(tiny_restorer.read_bytes())
    write_metadata(bad, {**read_metadata(bad), "input_layout": "x", "normalisation": "y"})
    with pytest.raises(ModelMetadataError, match=re.escape(f"{bad}: metadata input_layout is 'x'")):
        load_model(bad, "restoration", threads=1)


def test_shipped_restorer_is_registered_verified_and_carded() -> None:
    entry = default_model("restoration")
    path = verify_file(entry)
    assert entry.variant == "fp32" and entry.name == "marktrace-restorer"
    model = load_model(path, "restoration", threads=1)
    assert (model.meta.name, model.meta.version) == (entry.name, entry.version)
    card = (SHIPPED_DIR / entry.card).read_text()
    assert entry.sha256 in card and "suggestion" in card.lower()
    extra = dict(model.meta.extra)
    # the file names the run and seed its card describes, and carries the licence and the suggestion-only status
    assert re.fullmatch(r"cpu-restorer-\d{8}-\d{6}", extra["training_run"]) and f"`{extra['training_run']}`" in card
    assert extra["training_seed"].isdigit() and f"seed {extra['training_seed']})" in card
    assert extra["license"] == "Apache-2.0" and extra["status"].startswith("suggestion only")
    assert extra["width_multiple"] == "8" and extra["opset"] == "17"
