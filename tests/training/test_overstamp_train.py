"""The over-stamp flagger's training command: config checks, run folder, reproducible model file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from marktrace.inference.enhance.alteration import OverstampModel
from marktrace.training.overstamp import OverstampTrainConfig, load_overstamp_config, train_overstamp


def test_config_refuses_benchmark_fonts_and_seeds() -> None:
    with pytest.raises(ValidationError, match="fonts"):
        OverstampTrainConfig(synth={"fonts": "heldout", "overstamp_prob": 1.0})
    with pytest.raises(ValidationError, match="below"):
        OverstampTrainConfig(seed_start=1_299_999_990, n_markings=20)
    cfg = load_overstamp_config("overstamp")
    assert cfg.synth.fonts == "train" and cfg.seed_start + cfg.n_markings <= 1_300_000_000
    assert load_overstamp_config("overstamp", {"n_markings": 50}).n_markings == 50


def test_tiny_run_writes_a_loadable_model_and_is_reproducible(tmp_path: Path) -> None:
    cfg = load_overstamp_config("tiny-overstamp", {"n_markings": 14})
    runs = [train_overstamp(cfg, tmp_path / name) for name in ("a", "b")]
    for run in runs:
        assert {"config.yaml", "run.json", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
        info = json.loads((run / "run.json").read_text())
        assert info["seed_start"] == cfg.seed_start and info["commit"] and 0 < info["threshold"] < 1
        assert yaml.safe_load((run / "config.yaml").read_text())["synth"]["fonts"] == "train"
    models = [OverstampModel.load(next((run / "checkpoints").glob("*.json"))) for run in runs]
    assert models[0].coef == models[1].coef and models[0].threshold == models[1].threshold
    assert models[0].training["seeds"] == [cfg.seed_start, cfg.seed_start + 13]


def test_tiny_run_with_the_patch_scorer_writes_both_files_and_is_reproducible(tmp_path: Path) -> None:
    from marktrace.inference.onnx_models import load_model

    cfg = load_overstamp_config("tiny-overstamp-patch")
    assert cfg.patch_scorer is not None
    runs = [train_overstamp(cfg, tmp_path / name) for name in ("a", "b")]
    models = [OverstampModel.load(next((run / "checkpoints").glob("*.json"))) for run in runs]
    for run, model in zip(runs, models, strict=True):
        assert model.patch_model is not None and model.patch_scorer is not None
        assert load_model(run / "checkpoints" / model.patch_model.file, "overstamp_scoring").meta.input_width == 64
        info = json.loads((run / "run.json").read_text())
        assert info["patch_scorer"]["sha256"] == model.patch_model.sha256
        assert info["cross_validation_ctc_only"]["final_lines"]["clean"] > 0
        stages = [json.loads(line)["stage"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert stages[:2] == ["patch_scorer", "patch_scorer_export"] and "cross_validation" in stages
        assert model.training["regression_markings"] == "seed % 3 == 0"
    # the second recipe can start from the first run's collection, and gets the same model
    reused = train_overstamp(cfg.model_copy(update={"examples_from": runs[0]}), tmp_path / "c")
    model_c = OverstampModel.load(next((reused / "checkpoints").glob("*.json")))
    assert model_c.coef == models[0].coef and not (reused / "examples.npz").exists()
    with pytest.raises(ValueError, match="collected with other"):
        train_overstamp(cfg.model_copy(update={"examples_from": runs[0], "max_line_cer": 0.3}), tmp_path / "d")
    patches = np.random.default_rng(0).integers(0, 255, (4, 1, 64, 64), dtype=np.uint8)
    logits = [m.patch_scorer.session.run(None, {m.patch_scorer.input_name: patches})[0] for m in models]
    assert np.array_equal(logits[0], logits[1])  # the same scorer from the same seeds (the files differ in date)
    assert models[0].coef == models[1].coef and models[0].threshold == models[1].threshold
    _installs_only_what_the_model_names(runs[0], models[0], tmp_path)


def _installs_only_what_the_model_names(run: Path, model: OverstampModel, tmp_path: Path) -> None:
    import shutil

    import marktrace.inference.enhance.alteration as alteration
    import marktrace.models.registry as registry
    from marktrace.inference.images import sha256_file
    from marktrace.training.overstamp import install

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy2(registry.SHIPPED_DIR / "registry.json", shipped / "registry.json")
    loader = tmp_path / "enhance" / "overstamp-flags.json"
    loader.parent.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "SHIPPED_DIR", shipped)
        mp.setattr(alteration, "OVERSTAMP_MODEL_FILE", loader)
        assert model.patch_model is not None
        target, sha = install(run)
        assert target.parent == loader.parent and sha == sha256_file(target)
        assert sha256_file(shipped / model.patch_model.file) == model.patch_model.sha256
        entries = json.loads((shipped / "registry.json").read_text())["models"]
        assert any(e["file"] == model.patch_model.file and e["sha256"] == model.patch_model.sha256 for e in entries)
        (run / "checkpoints" / model.patch_model.file).write_bytes(b"not the scorer the model was fitted with")
        (shipped / model.patch_model.file).unlink()
        with pytest.raises(ValueError, match="does not match"):  # refused before anything is copied
            install(run)
        assert not (shipped / model.patch_model.file).exists() and not list(shipped.glob("*.tmp"))


def test_parallel_collection_gives_the_same_examples_in_seed_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.training import overstamp

    monkeypatch.setattr(overstamp, "COLLECT_CHUNK", 4)
    cfg = load_overstamp_config("tiny-overstamp", {"n_markings": 10})
    one = overstamp.collect(cfg)
    two = overstamp.collect(cfg.model_copy(update={"workers": 2}))
    assert [(e.seed, e.final) for e in one] == [(e.seed, e.final) for e in two]
    assert [e.seed for e in one] == sorted(e.seed for e in one)
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a.features, b.features) and np.array_equal(a.patches, b.patches)
