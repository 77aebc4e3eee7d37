"""Flags for possibly altered (over-stamped) characters in a text line.

An examiner decides alteration; this module only points at characters that look unlike their
neighbours in ways an over-stamp produces (research notes section 5). Two scorers:

**What the reader uses** (:func:`flag_overstamps`, issue 3): a logistic regression (numpy; coefficients in
``overstamp-flags-v1.4.0.json``, SHA-256 pinned in :data:`OVERSTAMP_MODEL_SHA256` and checked on load) on
the recognizer's own per-step probabilities of each character (:func:`ctc_character_features`): the older
strike under a character leaves rival classes (often a digit) at its time steps and lowers its own
probability, compared with the other characters of the line; and (model format 2, since 1.2.0) on the logit of
the ONNX patch scorer ``marktrace-overstamp-patch`` for the character's 64 x 64 patch of the line crop
(:func:`character_patches`, :func:`patch_features`; ``models/CONTRACT.md`` section 11). Trained by
``marktrace train-overstamp`` (``training/overstamp.py``) on rendered over-stamps, training fonts and seeds;
threshold at 3% false flags out of fold. Flags carry the CTC and patch measures and the shape measures below
as evidence.

**Shape measures** (:func:`flag_alterations`, evidence for the flags; calibrated on toy cv2-Hershey
over-stamps, it flags 20-36% of clean characters on rendered markings, so it no longer decides):

* ``stroke_width`` (scored): a second strike offset by 1-3 px widens strokes (union of two offset
  strokes); the mean of twice the distance-transform value on the ink's medial ridge. Factory
  characters share one stroke width whatever the glyph, so this is nearly identity-free.
* evidence only (too glyph-dependent to score on our generated set): ``stroke_width_median``,
  ``ink_spread`` (inter-quartile range of the grey values inside the ink relative to the line
  contrast: two strikes of different depth), ``edge_ratio`` (Canny edge pixels per medial-ridge
  pixel: doubled rims).
* ``pitch`` / ``baseline`` / ``height``: a restamped character rarely sits on the factory pitch and
  baseline; residuals of the ink box against the line's robust fit.
* ``depth`` (optional, from a photometric height map): depth under the ink unlike the neighbours.

Each feature becomes a leave-one-out robust z-score against the other characters of the line
(median and MAD, with a floor on the spread), and a character's score is the largest positive z
among the scored shape features (stroke width, depth) or ``0.5 x`` the largest among the placement
features; flagged above :data:`DEFAULT_THRESHOLD` (see README.md). Deterministic, numpy + OpenCV only.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

if TYPE_CHECKING:
    from marktrace.inference.onnx_models import LoadedModel

DEFAULT_THRESHOLD = 1.75
"""Score above which a character is flagged (chosen on generated over-stamps; see README.md)."""

SCORED_SHAPE_FEATURES = ("stroke_width", "depth")
"""Features whose z-score makes the score (the others are reported as evidence only)."""
PLACEMENT_FEATURES = ("pitch", "baseline", "height")
PLACEMENT_WEIGHT = 0.5


def _ink_mask(gray: np.ndarray, polarity: Literal["dark", "bright", "auto"]) -> tuple[np.ndarray, bool]:
    """Otsu ink mask of the line and whether the marks are dark."""
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    _t, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    dark = True
    if polarity == "bright" or (polarity == "auto" and np.count_nonzero(mask) > mask.size / 2):
        mask = cv2.bitwise_not(mask)
        dark = False
    return (mask > 0), dark


def _char_features(
    gray: np.ndarray, ink: np.ndarray, edges: np.ndarray, x0: int, x1: int, contrast: float,
    depth: np.ndarray | None,
) -> dict[str, float] | None:
    g = gray[:, x0:x1]
    m = ink[:, x0:x1]
    if np.count_nonzero(m) < 8 or bool(m.all()):
        return None
    mu8 = m.astype(np.uint8)
    dt = cv2.distanceTransform(mu8, cv2.DIST_L2, 5)
    ridge = (dt > 0) & (dt >= cv2.dilate(dt, np.ones((3, 3), np.uint8)) - 1e-6)
    widths = 2.0 * dt[ridge]
    vals = g[m].astype(np.float32)
    q1, q3 = np.percentile(vals, [25, 75])
    ys, xs = np.nonzero(m)
    feats = {
        "stroke_width": float(widths.mean()),
        "stroke_width_median": float(np.median(widths)),
        "ink_spread": float((q3 - q1) / max(contrast, 1.0)),
        "edge_ratio": float(np.count_nonzero(edges[:, x0:x1]) / max(int(np.count_nonzero(ridge)), 1)),
        "center_x": float(x0 + xs.mean()),
        "bottom": float(np.percentile(ys, 98)),
        "top": float(np.percentile(ys, 2)),
    }
    feats["height"] = feats["bottom"] - feats["top"]
    if depth is not None:
        feats["depth"] = float(np.median(depth[:, x0:x1][m]))
    return feats


def _loo_z(values: np.ndarray, floor: float) -> np.ndarray:
    """Leave-one-out robust z-score of each value against the others."""
    z = np.zeros(len(values))
    for i in range(len(values)):
        others = np.delete(values, i)
        med = float(np.median(others))
        mad = 1.4826 * float(np.median(np.abs(others - med)))
        z[i] = (values[i] - med) / max(mad, floor)
    return z


def flag_alterations(
    gray: np.ndarray,
    char_boxes: Sequence[tuple[int, int]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    polarity: Literal["dark", "bright", "auto"] = "auto",
    depth: np.ndarray | None = None,
    return_all: bool = False,
) -> list[dict[str, Any]]:
    """Flag characters of a text line that show signs of over-stamping.

    Args:
        gray: uint8 grey crop of one text line (an original or an enhanced view).
        char_boxes: per character, the column range ``(x_start, x_end)`` (end exclusive) in ``gray``.
        threshold: score above which a character is flagged.
        polarity: whether marks are darker or brighter than the surface ("auto": the minority class).
        depth: optional relative height map of the same crop (e.g. integrated photometric normals).
        return_all: return every scored character, each with ``"flagged"``, not just the flagged ones.

    Returns:
        ``[{"position": i, "score": s, "evidence": {feature: {"value", "z"}, ...}}]``, best first
        (characters without ink, or lines with fewer than 4 characters, are never flagged).

    Raises:
        ValueError: bad image or boxes (the message names the problem).
    """
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"flag_alterations: expected a non-empty uint8 grey image, got "
                         f"{getattr(gray, 'dtype', type(gray))} {getattr(gray, 'shape', '')}")
    if depth is not None and depth.shape != gray.shape:
        raise ValueError(f"flag_alterations: depth shape {depth.shape} differs from image {gray.shape}")
    h, w = gray.shape
    boxes: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(char_boxes):
        x0, x1 = max(0, int(a)), min(w, int(b))
        if x1 - x0 < 2:
            raise ValueError(f"flag_alterations: character {i} box ({a}, {b}) is empty inside width {w}")
        boxes.append((x0, x1))
    ink, dark = _ink_mask(gray, polarity)
    ink_vals = gray[ink]
    bg_vals = gray[~ink]
    contrast = 1.0
    if ink_vals.size and bg_vals.size:
        contrast = abs(float(np.median(bg_vals)) - float(np.median(ink_vals)))
    edges = cv2.Canny(gray, 50, 150) > 0
    feats = [_char_features(gray, ink, edges, x0, x1, contrast, depth) for x0, x1 in boxes]
    present = [(i, f) for i, f in enumerate(feats) if f is not None]
    idx = [i for i, _ in present]
    if len(idx) < 4:
        return []
    F = {k: np.array([f[k] for _, f in present]) for k in present[0][1]}
    med_w = float(np.median(F["stroke_width"]))
    med_h = float(np.median(F["height"]))
    pos = np.array(idx, dtype=np.float64)
    # robust line fit of centre x against position: median slope of pairwise differences
    slopes = [(F["center_x"][b] - F["center_x"][a]) / (pos[b] - pos[a])
              for a in range(len(idx)) for b in range(a + 1, len(idx))]
    pitch = float(np.median(slopes))
    offset = float(np.median(F["center_x"] - pitch * pos))
    values = {
        "stroke_width": (F["stroke_width"], 0.04 * med_w),
        "stroke_width_median": (F["stroke_width_median"], max(0.12 * med_w, 0.3)),
        "ink_spread": (F["ink_spread"], 0.04),
        "edge_ratio": (F["edge_ratio"], 0.15),
        "pitch": (np.abs(F["center_x"] - (offset + pitch * pos)), max(0.04 * abs(pitch), 0.5)),
        "baseline": (np.abs(F["bottom"] - float(np.median(F["bottom"]))), max(0.04 * med_h, 0.5)),
        "height": (np.abs(F["height"] - med_h), max(0.05 * med_h, 0.5)),
    }
    if depth is not None:
        d = F["depth"] if dark else -F["depth"]
        values["depth"] = (np.abs(d - float(np.median(d))), max(0.1 * abs(float(np.median(d))), 1e-3))
    zs = {k: _loo_z(v, floor) for k, (v, floor) in values.items()}
    results: list[dict[str, Any]] = []
    for j, i in enumerate(idx):
        shape = max((zs[k][j] for k in SCORED_SHAPE_FEATURES if k in zs), default=0.0)
        place = max((zs[k][j] for k in PLACEMENT_FEATURES if k in zs), default=0.0)
        score = float(max(shape, PLACEMENT_WEIGHT * place, 0.0))
        evidence = {k: {"value": round(float(values[k][0][j]), 4), "z": round(float(zs[k][j]), 3)}
                    for k in zs}
        entry: dict[str, Any] = {"position": i, "score": round(score, 4), "evidence": evidence}
        if return_all:
            entry["flagged"] = score > threshold
            results.append(entry)
        elif score > threshold:
            results.append(entry)
    results.sort(key=lambda e: (-e["score"], e["position"]))
    return results


# --------------------------------------------------------------------------------------------------
# Learned over-stamp score on the recognizer's per-step probabilities (issue 3)

OVERSTAMP_MODEL_FILE = Path(__file__).with_name("overstamp-flags-v1.4.0.json")
"""The shipped over-stamp model: logistic-regression coefficients in JSON (``training/overstamp.py`` writes it)."""
OVERSTAMP_MODEL_SHA256 = "8cdce3c04f4ec7449cd74f4e94a3f5d9523bef539c012f0e8f8d2e243a691ebc"
"""SHA-256 of :data:`OVERSTAMP_MODEL_FILE`; the file is refused when it differs."""
STEP_COLUMNS = 4
"""Crop columns per recognizer time step."""
MIN_CHARACTERS = 4
"""Lines with fewer non-space characters are not scored (no line to compare a character with)."""

CTC_FEATURES = (
    "p_char",  # probability of the read character at its step
    "p_rival",  # best other non-blank class at that step
    "rival_max",  # best other non-blank class over the character's steps
    "rival_mass_max",  # largest summed other non-blank probability at one step of the character
    "rival_mass_mean",  # summed other non-blank probability per step of the character
    "digit_rival_max",  # best other digit over the character's steps (the older strike is a digit)
    "digit_rival_mass_max",  # largest summed other-digit probability at one step
    "char_mass",  # summed probability of the read character over its steps
    "char_steps",  # steps of the character whose best class is the read character
    "entropy",  # entropy of the step's distribution
    "blank_min",  # lowest blank probability over the character's steps
)
LOG_FEATURES = CTC_FEATURES[:7]
FEATURE_NAMES = (
    CTC_FEATURES + tuple(f"{n}_vs_line" for n in CTC_FEATURES) + tuple(f"log_{n}" for n in LOG_FEATURES)
)
"""The model's input, in order: per character, its CTC features, the same minus the line's median, and the
logarithm of the first seven."""


class OverstampModelError(ValueError):
    """The over-stamp model file is missing, altered (checksum) or malformed; the message names the file."""


def character_spans(steps: Sequence[int], n_steps: int) -> list[tuple[int, int]]:
    """Per character (its best step), the inclusive range of steps that belong to it.

    From halfway to its left neighbour's step to halfway to its right neighbour's (4 steps out at the ends).
    """
    spans = []
    for k, s in enumerate(steps):
        lo = (steps[k - 1] + s) // 2 + 1 if k > 0 else max(0, s - 4)
        hi = (s + steps[k + 1]) // 2 if k + 1 < len(steps) else min(n_steps - 1, s + 4)
        spans.append((min(lo, s), max(hi, s)))
    return spans


def ctc_character_features(
    probs: np.ndarray, text: str, steps: Sequence[int], charset: str
) -> tuple[list[int], np.ndarray]:
    """The model's features (:data:`FEATURE_NAMES`) of each non-space character of a decoded line.

    Args:
        probs: (T, C) per-step class probabilities (class 0 the CTC blank, ``i >= 1`` is ``charset[i - 1]``).
        text: the decoded text; steps: its characters' time steps (``DecodedText.char_steps``).

    Returns:
        (indices into ``text`` of the scored characters, array (n, len(FEATURE_NAMES))); an empty array when
        the line has fewer than :data:`MIN_CHARACTERS` non-space characters.
    """
    probs = np.asarray(probs, np.float32)
    if probs.ndim != 2 or len(steps) != len(text):
        raise ValueError(f"ctc_character_features: probs {probs.shape}, {len(text)} characters, {len(steps)} steps")
    index = [i for i, ch in enumerate(text) if ch != " "]
    if len(index) < MIN_CHARACTERS:
        return index, np.zeros((0, len(FEATURE_NAMES)), np.float64)
    digits = np.array([charset.index(d) + 1 for d in "0123456789" if d in charset], np.int64)
    char_steps = [int(steps[i]) for i in index]
    rows = []
    for (lo, hi), i, s in zip(character_spans(char_steps, len(probs)), index, char_steps, strict=True):
        cls = charset.index(text[i]) + 1 if text[i] in charset else int(probs[s].argmax())
        span = probs[lo : hi + 1]
        rival = span.copy()
        rival[:, 0] = 0.0
        rival[:, cls] = 0.0
        at = probs[s].copy()
        at[0] = 0.0
        at[cls] = 0.0
        digit = rival[:, digits] if digits.size else np.zeros((len(span), 1), np.float32)
        step = probs[s]
        rows.append([
            float(probs[s, cls]),
            float(at.max()),
            float(rival.max()),
            float(rival.sum(1).max()),
            float(rival.sum() / len(span)),
            float(digit.max()),
            float(digit.sum(1).max()),
            float(span[:, cls].sum()),
            float(np.count_nonzero(span.argmax(1) == cls)),
            float(-(step * np.log(step + 1e-8)).sum()),
            float(span[:, 0].min()),
        ])
    a = np.asarray(rows, np.float64)
    feats = np.hstack([a, a - np.median(a, axis=0), np.log(a[:, : len(LOG_FEATURES)] + 1e-4)])
    return index, feats


PATCH_FEATURES = ("patch_logit", "patch_logit_vs_line")
"""Features from the over-stamp patch scorer (format 2): its logit for the character's patch, and the same minus
the line's median."""
FORMAT_CTC = "marktrace-overstamp-logreg-1"
"""Model format 1: the logistic regression over :data:`FEATURE_NAMES` only."""
FORMAT_PATCH = "marktrace-overstamp-logreg-2"
"""Model format 2: :data:`FEATURE_NAMES` plus :data:`PATCH_FEATURES` from an ONNX patch scorer named in the file."""
PATCH_TASK = "overstamp_scoring"
"""The patch scorer's ONNX task (metadata ``task``)."""
PATCH_SIZE = 64
"""Side of the patch scorer's square patches (the recognizer's crop height)."""


def character_columns(steps: Sequence[int]) -> list[int]:
    """The crop column at the centre of each time step (a character's column is that of its CTC step)."""
    return [STEP_COLUMNS * int(s) + STEP_COLUMNS // 2 for s in steps]


def character_patches(gray: np.ndarray, columns: Sequence[int], size: int) -> np.ndarray:
    """Square ``size`` x ``size`` patches of a line crop centred on ``columns``: (n, 1, size, size) uint8.

    The crop is scaled to ``size`` px high first (the recognizer's crops are already); columns beyond the
    crop's ends are filled by edge replication.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8 or min(gray.shape) < 1:
        raise ValueError(f"character_patches: expected a 2-D uint8 crop, got {gray.dtype} {gray.shape}")
    scale = 1.0
    if gray.shape[0] != size:
        scale = size / gray.shape[0]
        gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), size), interpolation=cv2.INTER_AREA)
    padded = np.pad(gray, ((0, 0), (size, size)), mode="edge")
    out = np.empty((len(columns), 1, size, size), np.uint8)
    for k, column in enumerate(columns):
        centre = int(np.clip(round(column * scale), 0, gray.shape[1] - 1)) + size
        out[k, 0] = padded[:, centre - size // 2 : centre - size // 2 + size]
    return out


def patch_features(scorer: LoadedModel, patches: np.ndarray) -> np.ndarray:
    """:data:`PATCH_FEATURES` of the characters of one line: (n, 2), from their (n, 1, S, S) uint8 patches.

    ``scorer`` is the loaded ONNX patch scorer; the second feature is the logit minus the median over the
    line's characters.
    """
    out = scorer.session.run(None, {scorer.input_name: np.ascontiguousarray(patches, np.uint8)})[0]
    logits = np.asarray(out, np.float64).reshape(-1)
    return np.stack([logits, logits - np.median(logits)], axis=1)


@dataclass(frozen=True)
class PatchScorerRef:
    """The ONNX patch scorer a format-2 model needs: its file (next to the model file, or shipped) and checksum."""

    name: str
    version: str
    file: str
    sha256: str


@dataclass(frozen=True)
class OverstampModel:
    """A logistic regression over ``features`` (standardised), with its decision threshold.

    ``features`` is :data:`FEATURE_NAMES` (format 1) or :data:`FEATURE_NAMES` + :data:`PATCH_FEATURES` (format 2,
    whose ``patch_model`` names the ONNX patch scorer, loaded with the model and checksum verified).
    """

    name: str
    version: str
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float
    """Probability above which a character is flagged."""
    training: dict[str, Any] = field(default_factory=dict, compare=False)
    sha256: str = ""
    features: tuple[str, ...] = FEATURE_NAMES
    patch_model: PatchScorerRef | None = None
    patch_scorer: LoadedModel | None = field(default=None, compare=False, repr=False)
    """The loaded patch scorer of a format-2 model."""

    @property
    def label(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Over-stamp probability of each row of ``features``."""
        z = (np.asarray(features, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.coef) + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -40.0, 40.0))))

    def character_features(
        self, gray: np.ndarray, text: str, steps: Sequence[int], probs: np.ndarray, charset: str
    ) -> tuple[list[int], np.ndarray]:
        """This model's input for each scored character of a line: (indices into ``text``, (n, len(features)))."""
        index, feats = ctc_character_features(probs, text, steps, charset)
        if self.patch_model is None or not len(feats):
            return index, feats
        if self.patch_scorer is None:
            raise OverstampModelError(f"{self.label}: its patch scorer is not loaded")
        columns = character_columns([steps[i] for i in index])
        patches = character_patches(gray, columns, self.patch_scorer.meta.input_height)
        return index, np.hstack([feats, patch_features(self.patch_scorer, patches)])

    def to_json(self) -> dict[str, Any]:
        """The file's content (without its checksum, which is the SHA-256 of the written bytes)."""
        data: dict[str, Any] = {
            "format": FORMAT_PATCH if self.patch_model else FORMAT_CTC,
            "name": self.name,
            "version": self.version,
            "features": list(self.features),
        }
        if self.patch_model:
            data["patch_model"] = dataclasses.asdict(self.patch_model)
        data.update({
            "mean": [round(v, 8) for v in self.mean],
            "scale": [round(v, 8) for v in self.scale],
            "coef": [round(v, 8) for v in self.coef],
            "intercept": round(self.intercept, 8),
            "threshold": round(self.threshold, 6),
            "training": self.training,
        })
        return data

    @classmethod
    def load(cls, path: Path | str = OVERSTAMP_MODEL_FILE, sha256: str | None = None) -> OverstampModel:
        """Read a model file, refusing it when its SHA-256 differs from the expected one.

        The expected SHA-256 is ``sha256``, or the pinned :data:`OVERSTAMP_MODEL_SHA256` when ``path`` is the
        shipped file; another file without ``sha256`` is only parsed. A format-2 file's patch scorer is looked
        for next to the file, then among the shipped models, checked against the SHA-256 the file records and
        against its task, and loaded (one onnxruntime thread).

        Raises:
            OverstampModelError: missing file, checksum mismatch, or malformed content (of either file).
        """
        path = Path(path)
        if sha256 is None and path.resolve() == OVERSTAMP_MODEL_FILE.resolve():
            sha256 = OVERSTAMP_MODEL_SHA256
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise OverstampModelError(f"{path}: over-stamp model not readable ({exc})") from None
        actual = hashlib.sha256(blob).hexdigest()
        if sha256 is not None and actual != sha256:
            raise OverstampModelError(f"{path}: SHA-256 {actual} does not match the expected {sha256}")
        try:
            data = json.loads(blob)
            fmt = data.get("format")
            if fmt not in (FORMAT_CTC, FORMAT_PATCH):
                raise ValueError(f"format {fmt!r}")
            features = FEATURE_NAMES + (PATCH_FEATURES if fmt == FORMAT_PATCH else ())
            if tuple(data["features"]) != features:
                raise ValueError("its features are not the ones this marktrace computes")
            n = len(features)
            mean, scale, coef = (tuple(float(v) for v in data[k]) for k in ("mean", "scale", "coef"))
            if not (len(mean) == len(scale) == len(coef) == n) or min(scale) <= 0:
                raise ValueError(f"mean/scale/coef must have {n} entries and positive scales")
            ref = PatchScorerRef(**{k: str(data["patch_model"][k]) for k in ("name", "version", "file", "sha256")}) \
                if fmt == FORMAT_PATCH else None
        except (ValueError, KeyError, TypeError) as exc:
            raise OverstampModelError(f"{path}: malformed over-stamp model ({exc})") from None
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            mean=mean,
            scale=scale,
            coef=coef,
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            training=dict(data.get("training", {})),
            sha256=actual,
            features=features,
            patch_model=ref,
            patch_scorer=_load_patch_scorer(path, ref) if ref else None,
        )


def _load_patch_scorer(model_path: Path, ref: PatchScorerRef) -> LoadedModel:
    """Find, verify (SHA-256 recorded in the model file) and load a format-2 model's ONNX patch scorer."""
    from marktrace.inference.images import sha256_file
    from marktrace.inference.onnx_models import ModelMetadataError, load_model
    from marktrace.models.registry import SHIPPED_DIR

    if Path(ref.file).name != ref.file:
        raise OverstampModelError(f"{model_path}: patch scorer file {ref.file!r} must be a bare file name")
    candidates = [model_path.parent / ref.file, SHIPPED_DIR / ref.file]
    onnx_path = next((c for c in candidates if c.is_file()), None)
    if onnx_path is None:
        raise OverstampModelError(f"{model_path}: its patch scorer {ref.file} is neither next to it nor shipped")
    actual = sha256_file(onnx_path)
    if actual != ref.sha256:
        raise OverstampModelError(f"{onnx_path}: SHA-256 {actual} does not match {ref.sha256} recorded in {model_path}")
    try:
        loaded = load_model(onnx_path, PATCH_TASK, threads=1)
    except (ModelMetadataError, FileNotFoundError) as exc:
        raise OverstampModelError(str(exc)) from None
    if (loaded.meta.name, loaded.meta.version) != (ref.name, ref.version):
        raise OverstampModelError(f"{onnx_path}: is {loaded.meta.name}@{loaded.meta.version}, "
                                  f"{model_path} expects {ref.name}@{ref.version}")
    return loaded


@functools.cache
def shipped_overstamp_model() -> OverstampModel:
    """The shipped model, checksum verified, loaded once."""
    return OverstampModel.load(OVERSTAMP_MODEL_FILE)


def flag_overstamps(
    gray: np.ndarray,
    text: str,
    steps: Sequence[int],
    probs: np.ndarray,
    charset: str,
    *,
    model: OverstampModel | None = None,
    threshold: float | None = None,
    return_all: bool = False,
) -> list[dict[str, Any]]:
    """Flag characters of a recognised line that look over-stamped, from the recognizer's own probabilities.

    Each non-space character gets the model's probability from :func:`ctc_character_features` (a second,
    older digit under a character leaves rival classes at its steps); characters above the threshold are
    flagged. The shape measures of :func:`flag_alterations` (stroke width, pitch, baseline, ...) go into the
    evidence for the examiner. Nothing here changes the text.

    Args:
        gray: the uint8 grey line crop the text was read from (height 64, ``STEP_COLUMNS`` columns per step).
        text, steps: the decoded text and its characters' steps; probs: the (T, C) probabilities decoded;
        charset: the recognizer's charset.
        model: default: the shipped model; threshold: default: the model's.
        return_all: every scored character, each with ``"flagged"``.

    Returns:
        ``[{"position": index in text, "score": probability, "evidence": {...}}]``, best first.
    """
    model = model or shipped_overstamp_model()
    cut = model.threshold if threshold is None else threshold
    index, feats = model.character_features(gray, text, steps, probs, charset)
    if not len(feats):
        return []
    scores = model.probability(feats)
    width = gray.shape[1]
    char_steps = [int(steps[i]) for i in index]
    centres = character_columns(char_steps)
    edges = [0] + [(a + b) // 2 for a, b in itertools.pairwise(centres)] + [width]
    boxes = [(min(edges[k], width - 2), max(edges[k + 1], min(edges[k], width - 2) + 2)) for k in range(len(index))]
    shape: dict[int, Any] = {}
    if return_all or bool((scores > cut).any()):  # the shape measures are evidence for flags only
        try:
            shape = {e["position"]: e["evidence"] for e in flag_alterations(gray, boxes, return_all=True)}
        except ValueError:
            shape = {}
    spans = character_spans(char_steps, len(probs))
    out: list[dict[str, Any]] = []
    for k, i in enumerate(index):
        score = float(scores[k])
        flagged = score > cut
        if not (flagged or return_all):
            continue
        evidence: dict[str, Any] = {
            "model": model.label,
            "threshold": round(cut, 4),
            "character": text[i],
            "columns": [int(boxes[k][0]), int(boxes[k][1])],
            "steps": [int(spans[k][0]), int(spans[k][1])],
            "ctc": {name: round(float(feats[k, j]), 4) for j, name in enumerate(CTC_FEATURES)},
        }
        if model.patch_model is not None:
            evidence["patch"] = {name: round(float(feats[k, len(FEATURE_NAMES) + j]), 4)
                                 for j, name in enumerate(PATCH_FEATURES)}
        if k in shape:
            evidence["shape"] = shape[k]
        entry: dict[str, Any] = {"position": i, "score": round(score, 4), "evidence": evidence}
        if return_all:
            entry["flagged"] = flagged
        out.append(entry)
    out.sort(key=lambda e: (-e["score"], e["position"]))
    return out
