"""Training configs: presets load, held-out fonts are refused, bounds hold, every error names its file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from marktrace.datasets.synth import SynthConfig
from marktrace.training.config import (
    PRESETS_DIR,
    RestorerTrainConfig,
    TrainConfig,
    apply_overrides,
    load_any_config,
    load_config,
    load_restorer_config,
)


def _task(path: Path) -> object:
    return (yaml.safe_load(path.read_text()) or {}).get("task")


def test_every_detector_and_restorer_preset_still_loads() -> None:
    presets = [p for p in sorted(PRESETS_DIR.glob("*.yaml")) if _task(p) in (None, "restoration")]
    assert {"tiny", "gpu", "gpu-detector", "cpu-restorer"} <= {p.stem for p in presets}
    for path in presets:
        cfg = load_any_config(path.stem)
        assert isinstance(cfg, RestorerTrainConfig if _task(path) == "restoration" else TrainConfig)
        assert cfg.synth.fonts == "train"


@pytest.mark.parametrize("fonts", ["heldout", "all"])
def test_held_out_fonts_are_refused(fonts: str) -> None:
    with pytest.raises(ValueError, match="synth.fonts must be 'train'") as info:
        load_config("tiny", {"synth.fonts": fonts})
    assert "tiny.yaml" in str(info.value) and "synth.fonts=" in str(info.value)  # the file and the override
    with pytest.raises(ValueError, match="synth.fonts must be 'train'"):
        load_restorer_config("tiny-restorer", {"synth.fonts": fonts})
    with pytest.raises(ValueError, match="synth.fonts must be 'train'"):
        load_any_config("tiny-restorer", {"synth.fonts": fonts})
    with pytest.raises(ValidationError, match="held-out fonts"):
        TrainConfig(synth=SynthConfig(fonts=fonts))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="held-out fonts"):
        RestorerTrainConfig(synth=SynthConfig(fonts=fonts))  # type: ignore[arg-type]
    assert load_config("tiny", {"synth.fonts": "train"}).synth.fonts == "train"


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nseed: [1, 2\nworkers: 0\n")
    for loader in (load_config, load_restorer_config, load_any_config):
        with pytest.raises(ValueError, match="not valid YAML") as info:
            loader(bad)
        message = str(info.value)
        assert str(bad) in message and "line" in message and "<unicode string>" not in message


def test_a_top_level_that_is_not_a_mapping_is_a_clear_error(tmp_path: Path) -> None:
    listed = tmp_path / "listed.yaml"
    listed.write_text("- name: x\n- seed: 3\n")
    with pytest.raises(ValueError, match=r"must be a mapping of settings, got a list") as info:
        load_config(listed)
    assert str(listed) in str(info.value)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("5\n")
    with pytest.raises(ValueError, match="got a int"):
        load_any_config(scalar)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set: the defaults\n")
    assert load_config(empty) == TrainConfig()


def test_validation_errors_name_the_file_and_the_override(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nsamples_per_photo: 0\n")
    with pytest.raises(ValueError, match="samples_per_photo") as info:
        load_config(path)
    assert str(path) in str(info.value) and "override" not in str(info.value)
    with pytest.raises(ValueError, match=r"detector\.steps.*from override detector\.steps='many'") as info:
        load_config("tiny", {"detector.steps": "many"})
    assert str(PRESETS_DIR / "tiny.yaml") in str(info.value)
    with pytest.raises(ValueError, match=r"windows_per_line.*from override windows_per_line=0") as info:
        load_restorer_config("tiny-restorer", {"windows_per_line": 0})
    assert str(PRESETS_DIR / "tiny-restorer.yaml") in str(info.value)


def test_overrides_through_a_value_that_is_not_a_section_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"override 'detector\.steps': detector is 5, not a section") as info:
        load_config("tiny", {"detector": 5, "detector.steps": 3})
    assert str(PRESETS_DIR / "tiny.yaml") in str(info.value)
    with pytest.raises(ValueError, match=r"override 'synth\.wear\.low': synth\.wear is \[0\.0, 0\.5\]"):
        load_config("tiny", {"synth.wear.low": 0.1})
    with pytest.raises(ValueError, match="empty key"):
        load_config("tiny", {"detector..steps": 3})
    with pytest.raises(ValueError, match=r"detector.*from override detector=5"):
        load_config("tiny", {"detector": 5})
    # an empty section in the YAML (``detector:``) can still be set key by key
    data = apply_overrides({"detector": None}, {"detector.steps": 3})
    assert data == {"detector": {"steps": 3}}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("samples_per_photo", 0),
        ("eval_every", 0),
        ("log_every", 0),
        ("eval_images", 0),
        ("eval_images", 1_000_001),
        ("clean_fraction", -3),
        ("clean_fraction", 1.5),
        ("real_fraction", 1.5),
        ("real_fraction", -0.1),
        ("curriculum", 2),
        ("workers", -1),
        ("time_limit_s", 0),
        ("detector.batch_size", 0),
        ("detector.steps", -1),
        ("recognizer.batch_size", 0),
        ("recognizer.lr", 0),
    ],
)
def test_train_config_bounds(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key.split(".")[-1]):
        load_config("tiny", {key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("windows_per_line", 0),
        ("batch_size", 0),
        ("eval_every", 0),
        ("log_every", 0),
        ("eval_images", 0),
        ("workers", -1),
        ("threads", 0),
        ("light_fraction", 2),
        ("flip_prob", -0.5),
        ("threshold", 1.0),
    ],
)
def test_restorer_config_bounds(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        load_restorer_config("tiny-restorer", {key: value})


def test_bounds_keep_the_edges_the_recipes_use() -> None:
    cfg = load_config("tiny", {"workers": 0, "clean_fraction": 0.0, "real_fraction": 1.0, "detector.steps": 0})
    assert cfg.workers == 0 and cfg.real_fraction == 1.0 and cfg.detector.steps == 0
    restorer = load_restorer_config("tiny-restorer", {"workers": 0, "steps": 0, "light_fraction": 1.0})
    assert restorer.workers == 0 and restorer.steps == 0
