"""Training the learned restorer: aligned (crop, mask) pairs, the loss, the run folder, the config dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from marktrace.training.config import RestorerTrainConfig, TrainConfig, load_any_config, load_restorer_config

torch = pytest.importorskip("torch")


def test_run_folder_records_config_seed_commit_metrics_and_checkpoints(tiny_restorer_run: Path) -> None:
    config = yaml.safe_load((tiny_restorer_run / "config.yaml").read_text())
    assert config["task"] == "restoration" and config["name"] == "tiny-restorer" and config["seed"] == 7
    info = json.loads((tiny_restorer_run / "run.json").read_text())
    assert info["task"] == "restoration" and info["seed"] == 7 and info["commit"] and info["steps"] == 6
    assert "eval_dice" in info["final_metrics"]
    events = [json.loads(line) for line in (tiny_restorer_run / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "train" for e in events) and any(e["event"] == "eval" for e in events)
    for name in ("restorer-best.pt", "restorer-last.pt"):
        state = torch.load(tiny_restorer_run / "checkpoints" / name, map_location="cpu", weights_only=False)
        assert state["size"] == "tiny" and state["height"] == 32


def test_presets_dispatch_on_their_task() -> None:
    assert isinstance(load_any_config("tiny-restorer"), RestorerTrainConfig)
    assert isinstance(load_any_config("tiny"), TrainConfig)
    for name in ("cpu-restorer", "gpu-restorer"):
        cfg = load_restorer_config(name)
        assert cfg.synth.fonts == "train" and cfg.height % 8 == 0 and cfg.window % 8 == 0
    cpu = load_restorer_config("cpu-restorer")
    assert cpu.device == "cpu" and cpu.threads == 1 and cpu.time_limit_s is not None and cpu.time_limit_s <= 900
    with pytest.raises(ValueError, match="extra"):
        load_restorer_config("tiny-restorer", {"nonsense": 1})


def test_pairs_are_aligned_crops_and_glyph_masks() -> None:
    from marktrace.datasets.synth import render_marking
    from marktrace.training.restorer import restorer_pairs, train_seed

    cfg = load_restorer_config("tiny-restorer", {"flip_prob": 0.0, "invert_prob": 0.0, "window": 256})
    seed = train_seed(cfg, 0)
    assert seed < 1_300_000_000
    marking = render_marking(seed, cfg.synth.model_copy(update={"wear": (0.0, 0.1)}))
    pairs = restorer_pairs(marking, cfg, np.random.default_rng(0))
    assert pairs
    for crop, mask in pairs:
        assert crop.dtype == np.uint8 and crop.shape == mask.shape == (cfg.height, cfg.window)
        assert mask.dtype == np.float32 and mask.min() >= 0.0 and mask.max() <= 1.0
    # the mask marks glyphs: where it is on, the photo differs from where it is off
    crop, mask = max(pairs, key=lambda p: float(p[1].mean()))
    assert 0.02 < float((mask > 0.5).mean()) < 0.8
    on, off = crop[mask > 0.5].astype(float).mean(), crop[mask < 0.05].astype(float).mean()
    assert abs(on - off) > 3


def test_training_seeds_never_reach_the_benchmark_or_evaluation_blocks() -> None:
    from marktrace.training.config import PRESETS_DIR
    from marktrace.training.data import EVAL_SEED_BASE as DETECTOR_EVAL_BASE
    from marktrace.training.data import EVAL_SEED_BLOCK as DETECTOR_EVAL_BLOCK
    from marktrace.training.restorer import EVAL_SEED_BASE, TRAIN_SEED_BASE, train_seed

    presets = [p for p in sorted(PRESETS_DIR.glob("*.yaml"))
               if (yaml.safe_load(p.read_text()) or {}).get("task") == "restoration"]
    assert {"tiny-restorer", "cpu-restorer", "gpu-restorer"} <= {p.stem for p in presets}
    for path in presets:
        cfg = load_restorer_config(path)
        # the first 10_000 photos of every rendering worker (worker w of n takes w, w + n, ...)
        seeds = [train_seed(cfg, i) for i in range(max(cfg.workers, 1) * 10_000)]
        assert min(seeds) >= 0 and max(seeds) < EVAL_SEED_BASE, path.stem
        assert not any(DETECTOR_EVAL_BASE <= s < DETECTOR_EVAL_BASE + DETECTOR_EVAL_BLOCK for s in seeds), path.stem
        assert EVAL_SEED_BASE + cfg.eval_images <= 1_300_000_000, path.stem  # evaluation photos too
    # the stream that would run into the evaluation block is stopped there, not let in
    cfg = RestorerTrainConfig(seed=999)
    last = EVAL_SEED_BASE - 1 - TRAIN_SEED_BASE - 999 * 100_000
    assert train_seed(cfg, last) == EVAL_SEED_BASE - 1
    with pytest.raises(RuntimeError, match="evaluation seed block"):
        train_seed(cfg, last + 1)


def test_loss_prefers_the_right_mask() -> None:
    from marktrace.training.restorer import restorer_loss

    target = torch.zeros(1, 1, 8, 16)
    target[..., 2:6, 3:12] = 1
    good = torch.where(target > 0, 6.0, -6.0)
    assert restorer_loss(good, target) < restorer_loss(-good, target)
    assert restorer_loss(good, target) < restorer_loss(torch.zeros_like(good), target)
