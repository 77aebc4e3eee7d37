from pathlib import Path

import numpy as np
import onnx
import pytest

from marktrace.inference.onnx_models import ModelMetadataError, load_model

torch = pytest.importorskip("torch")


def test_exported_models_describe_themselves(tiny_models):
    det = load_model(tiny_models["line_detection"], "line_detection")
    rec = load_model(tiny_models["line_recognition"], "line_recognition")
    assert det.meta.stride == 4 and det.meta.long_side == 640
    assert rec.meta.input_height == 64 and "A" in rec.meta.charset and rec.meta.blank_index == 0
    assert rec.meta.training_commit and rec.meta.version == "0.0.1"
    # uint8 in, decoding outside: the graph takes raw pixels
    assert rec.session.get_inputs()[0].type == "tensor(uint8)"
    assert det.session.get_inputs()[0].type == "tensor(uint8)"
    probs = rec.session.run(None, {"pixels": np.zeros((2, 1, 64, 96), np.uint8)})[0]
    assert probs.shape == (2, 96 // 4 - 1, len(rec.meta.charset) + 1)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)


def test_inference_refuses_a_model_for_another_task(tiny_models):
    with pytest.raises(ModelMetadataError, match="expected line_recognition"):
        load_model(tiny_models["line_detection"], "line_recognition")


def test_inference_refuses_a_model_without_metadata(tiny_models, tmp_path):
    model = onnx.load(str(tiny_models["line_recognition"]))
    del model.metadata_props[:]
    stripped = tmp_path / "stripped.onnx"
    onnx.save(model, str(stripped))
    with pytest.raises(ModelMetadataError, match="not a marktrace model"):
        load_model(stripped, "line_recognition")


@pytest.mark.parametrize("network", ["detector", "restorer"])
def test_export_fails_when_onnxruntime_disagrees(tmp_path, network):
    from marktrace.models import export as export_module
    from marktrace.models.networks.detector import DetectorForExport, build_detector
    from marktrace.models.networks.restorer import RestorerForExport, build_restorer

    rng = np.random.default_rng(0)
    if network == "detector":
        module = DetectorForExport(build_detector("tiny")).eval()
        sample = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    else:
        module = RestorerForExport(build_restorer("tiny")).eval()
        sample = rng.integers(0, 255, (1, 1, 32, 64), dtype=np.uint8)
    path = tmp_path / f"{network}.onnx"
    torch.onnx.export(module, (torch.from_numpy(sample),), str(path), input_names=["pixels"], opset_version=17,
                      dynamo=False)

    class Drifted(torch.nn.Module):
        def forward(self, x):
            return module(x) + 0.01

    with pytest.raises(export_module.ExportParityError, match="differs from torch"):
        export_module.check_parity(Drifted(), path, [sample], atol=1e-3)
    assert not path.exists(), "a model that failed parity must not be left behind"


def test_a_run_that_trained_only_the_recognizer_exports_only_the_recognizer(tiny_run, tiny_models, tmp_path):
    import json
    import shutil

    import yaml

    from marktrace.models.publish import export_run, trained_networks

    run = tmp_path / "recognizer-only"
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["detector"]["steps"] = 0
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert trained_networks(run) == {"recognizer"}
    out = tmp_path / "shipped"
    shutil.copytree(tiny_models["dir"], out)
    results = export_run(run, out, "0.0.2")
    assert set(results) == {"recognizer"}
    assert not (out / "marktrace-line-detector-v0.0.2.onnx").exists()
    registry = json.loads((out / "registry.json").read_text())["models"]
    defaults = {m["task"]: m["version"] for m in registry if m.get("default")}
    assert defaults == {"line_detection": "0.0.1", "line_recognition": "0.0.2"}
    config["recognizer"]["steps"] = 0
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="trained neither network"):
        export_run(run, out, "0.0.3")


def test_an_uncalibrated_tiny_detector_keeps_the_inverse_shrink(tiny_models) -> None:
    """Too few lines to fit (8 markings, an untrained detector): no ``line_geometry``, the default applies."""
    from marktrace.inference.detect import LineGeometry
    from marktrace.inference.onnx_models import load_model
    from marktrace.models.onnx_metadata import read_metadata

    meta = load_model(tiny_models["line_detection"], "line_detection", threads=1).meta
    assert meta.line_geometry == LineGeometry()
    # parse_metadata drops line_geometry from ``extra`` either way: look at the file's own metadata
    props = read_metadata(tiny_models["line_detection"])
    assert "line_geometry" not in props and "line_geometry_calibration" not in props


def test_the_patch_scorer_exports_uint8_in_logits_out_and_checks_its_input(tmp_path):
    from marktrace.models.export import export_patch_scorer
    from marktrace.models.networks.overstamp import build_patch_scorer

    net = build_patch_scorer(4).eval()
    sample = np.random.default_rng(0).integers(0, 255, (3, 1, 64, 64), dtype=np.uint8)
    out = tmp_path / "patch.onnx"
    summary = export_patch_scorer(net, out, "tiny-patch", "0.0.1", "abc", sample)
    assert summary["parity_max_abs_diff"] < 1e-3
    loaded = load_model(out, "overstamp_scoring")
    assert (loaded.meta.input_height, loaded.meta.input_width, loaded.meta.name) == (64, 64, "tiny-patch")
    assert loaded.session.get_inputs()[0].type == "tensor(uint8)"
    logits = loaded.session.run(None, {"pixels": sample})[0]
    with torch.no_grad():
        expected = net(torch.from_numpy(sample).float() / 255.0).numpy()
    assert logits.shape == (3,) and np.allclose(logits, expected, atol=1e-3)
    with pytest.raises(ModelMetadataError, match="expected line_recognition"):
        load_model(out, "line_recognition")
    with pytest.raises(ValueError, match="parity sample"):
        export_patch_scorer(net, tmp_path / "bad.onnx", "tiny-patch", "0.0.1", "abc", sample[:, :, :32])


def _temporaries(folder):
    """Files an interrupted or failed export could leave behind (hidden temporary files)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or ".tmp" in p.name)


def test_exporting_over_an_existing_version_is_refused_and_keeps_the_file(tiny_run, tmp_path):
    import json

    from marktrace.inference.images import sha256_file
    from marktrace.models.export import ExportTargetExistsError
    from marktrace.models.publish import export_run

    out = tmp_path / "shipped"
    first = export_run(tiny_run, out, "0.0.7", calibrate_images=0)
    files = {key: Path(result["path"]) for key, result in first.items()}
    before = {key: path.read_bytes() for key, path in files.items()}
    registry = (out / "registry.json").read_bytes()
    with pytest.raises(ExportTargetExistsError, match=r"marktrace-line-detector-v0\.0\.7\.onnx already exists"):
        export_run(tiny_run, out, "0.0.7", calibrate_images=0)
    assert {key: path.read_bytes() for key, path in files.items()} == before
    assert (out / "registry.json").read_bytes() == registry
    assert _temporaries(out) == []
    # an explicit overwrite replaces the files and re-registers them
    export_run(tiny_run, out, "0.0.7", calibrate_images=0, overwrite=True)
    entries = {m["file"]: m["sha256"] for m in json.loads((out / "registry.json").read_text())["models"]}
    assert entries == {path.name: sha256_file(path) for path in files.values()}
    assert _temporaries(out) == []


def test_export_models_cli_refuses_an_existing_file_and_names_it(tiny_run, tmp_path):
    import typer
    from typer.testing import CliRunner

    from marktrace.training.cli import export

    app = typer.Typer()
    app.command()(export)
    out = tmp_path / "shipped"
    args = [str(tiny_run), "--out", str(out), "--version", "0.0.8", "--calibrate-images", "0"]
    assert CliRunner().invoke(app, args).exit_code == 0
    detector = out / "marktrace-line-detector-v0.0.8.onnx"
    before = detector.read_bytes()
    result = CliRunner().invoke(app, args, terminal_width=300)
    assert result.exit_code == 1
    assert "refused" in result.output and detector.name in result.output and "--overwrite" in result.output
    assert detector.read_bytes() == before
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("failing", ["detector", "recognizer"])
def test_a_failed_parity_check_leaves_no_file_and_no_temporary(tiny_run, tmp_path, monkeypatch, failing):
    from marktrace.models import export as export_module
    from marktrace.models.publish import export_run

    real_check = export_module.check_parity
    calls = []

    def parity(module, path, samples, atol):
        calls.append(path)
        assert path.parent == out and path.name.startswith("."), "parity is checked on a temporary file"
        if len(calls) == (1 if failing == "detector" else 2):
            raise export_module.ExportParityError(f"{path}: onnxruntime differs from torch (simulated)")
        return real_check(module, path, samples, atol)

    monkeypatch.setattr(export_module, "check_parity", parity)
    out = tmp_path / "shipped"
    with pytest.raises(export_module.ExportParityError, match=r"-v0\.0\.9\.onnx: .*\(simulated\)"):
        export_run(tiny_run, out, "0.0.9", calibrate_images=0)
    assert len(calls) == (1 if failing == "detector" else 2)
    # no final file (the detector that passed is removed again with its failed partner), no temporary, no registry
    assert sorted(p.name for p in out.iterdir()) == []


def test_exporting_a_shipped_version_never_touches_its_file(tiny_run, tmp_path):
    """Exporting a version that is already shipped into the shipped folder refuses and changes nothing."""
    import shutil

    from marktrace.models.export import ExportTargetExistsError
    from marktrace.models.publish import RECOGNIZER_NAME, export_run
    from marktrace.models.registry import SHIPPED_DIR, default_model

    version = default_model("line_recognition", variant="fp32").version
    out = tmp_path / "shipped"
    out.mkdir()
    shipped = SHIPPED_DIR / f"{RECOGNIZER_NAME}-v{version}.onnx"
    assert shipped.is_file(), shipped
    shutil.copy2(shipped, out / shipped.name)
    shutil.copy2(SHIPPED_DIR / "registry.json", out / "registry.json")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ExportTargetExistsError, match=shipped.name):
        export_run(tiny_run, out, version, calibrate_images=0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_recognizer_is_exported_at_the_height_it_was_trained_at(tiny_run, tiny_models, tmp_path):
    """A run trained at another line height than 64 exports a graph of that height, which the reader then loads."""
    import shutil

    import torch

    from marktrace.inference.onnx_models import load_model
    from marktrace.models.publish import export_run

    run = tmp_path / "height-32"
    shutil.copytree(tiny_run, run)
    for checkpoint in (run / "checkpoints").glob("recognizer-*.pt"):
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state["height"] = 32  # as if trained with recognizer.height=32 (the network pools any height)
        torch.save(state, checkpoint)
    out = tmp_path / "shipped"
    shutil.copytree(tiny_models["dir"], out)
    export_run(run, out, "0.0.4", calibrate_images=0)
    recognizer = load_model(out / "marktrace-line-recognizer-v0.0.4.onnx", "line_recognition")
    assert recognizer.meta.input_height == 32


@pytest.mark.parametrize(("raw", "problem"), [("5", "JSON string"), ('["AB", "C"]', "JSON string"),
                                              ('"AAB"', "twice")])
def test_inference_refuses_a_charset_that_is_not_distinct_characters(tiny_models, tmp_path, raw, problem):
    model = onnx.load(str(tiny_models["line_recognition"]))
    (prop,) = [p for p in model.metadata_props if p.key == "charset"]
    prop.value = raw  # the metadata as stored: JSON text
    bad = tmp_path / "bad-charset.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelMetadataError, match=problem):
        load_model(bad, "line_recognition")
