"""Training samples from the synthetic renderer (and labelled real photos): detector crops with targets, line crops."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from marktrace.datasets.manifest import MANIFEST, read_manifest
from marktrace.datasets.scenes import set_into_scene
from marktrace.datasets.synth import LineTruth, SynthConfig, render_marking, render_stack
from marktrace.inference.detect import CORE_SHRINK
from marktrace.inference.geometry import line_axes, pad_quad, quad_size, rectify_line
from marktrace.inference.recognize import batch_line_crops
from marktrace.models.networks.detector import DETECTOR_STRIDE
from marktrace.training.config import TrainConfig

TRAINING_SEED_LIMIT = 1_300_000_000
"""Training renders seeds below this (development checks use 1.4e9-1.6e9, the benchmark 1_700_000_000 and up)."""
EVAL_SEED_BASE = 900_000_000
"""First seed of ``training.train``'s evaluation photos (it imports this constant)."""
EVAL_SEED_BLOCK = 1_000_000
"""Seeds ``EVAL_SEED_BASE .. EVAL_SEED_BASE + EVAL_SEED_BLOCK - 1`` are never rendered by the training stream
(``TrainConfig.eval_images`` is at most this)."""


def training_render_seed(seed: int) -> int:
    """The renderer seed for a training stream's photo seed ``seed`` (any int, e.g. ``cfg.seed * 1_000_003 + i``).

    ``seed % 2**31`` as the stream always took, folded below :data:`TRAINING_SEED_LIMIT` when it reached it
    (the benchmark's and the development checks' seeds are never rendered) and moved past the evaluation
    block of ``training.train`` when it falls inside it. Seeds already below the limit and off that block are
    unchanged, so the shipped models' streams (presets ``gpu``, ``gpu-detector``) render what they rendered.
    """
    value = seed % (2**31)
    if value >= TRAINING_SEED_LIMIT:
        value %= TRAINING_SEED_LIMIT
    if EVAL_SEED_BASE <= value < EVAL_SEED_BASE + EVAL_SEED_BLOCK:
        value += EVAL_SEED_BLOCK
    return value


@dataclass
class PhotoSample:
    """One photo's training material."""

    det_image: np.ndarray  # (crop, crop, 3) uint8 RGB
    det_target: np.ndarray  # (3, crop/4, crop/4) float32: core, cos, sin
    det_weight: np.ndarray  # (crop/4, crop/4) float32, 0 where the target is unknown
    crops: list[tuple[np.ndarray, str]]


def _quad_direction(quad: np.ndarray) -> tuple[float, float]:
    v = (quad[1] - quad[0]) + (quad[2] - quad[3])
    n = float(np.hypot(v[0], v[1])) or 1.0
    return float(v[0] / n), float(v[1] / n)


def detector_targets(quads: list[np.ndarray], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Core map and direction maps at 1/4 resolution for quads given in input pixels."""
    h, w = size[0] // DETECTOR_STRIDE, size[1] // DETECTOR_STRIDE
    target = np.zeros((3, h, w), np.float32)
    weight = np.ones((h, w), np.float32)
    for quad in quads:
        core = pad_quad(quad, -CORE_SHRINK, -CORE_SHRINK) / DETECTOR_STRIDE
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(core).astype(np.int32)], 1)
        if not mask.any():
            # Too small to have a core at this scale: don't teach either answer there.
            cv2.fillPoly(weight, [np.round(quad / DETECTOR_STRIDE).astype(np.int32)], 0.0)
            continue
        cos, sin = _quad_direction(quad)
        on = mask.astype(bool)
        target[0][on] = 1.0
        target[1][on] = cos
        target[2][on] = sin
    return target, weight


def shift_cut(quad: np.ndarray, height: float, across: float, ends: np.ndarray) -> np.ndarray:
    """``quad`` (reading order) moved ``across`` line heights across the line and each end along it.

    ``ends[0]`` moves the start (corners 0 and 3), ``ends[1]`` the end (corners 1 and 2), in line heights along the
    reading direction (a positive start shift shortens the cut, a positive end shift lengthens it).
    """
    q = np.asarray(quad, np.float32).copy()
    along, down = line_axes(q)
    q += down * float(across) * height
    q[[0, 3]] += along * float(ends[0]) * height
    q[[1, 2]] += along * float(ends[1]) * height
    return q.astype(np.float32)


def random_line_crop(image: np.ndarray, quad: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Cut a line crop the way inference will, with the detector's typical imprecision."""
    rc = cfg.recognizer
    _, height = quad_size(quad)
    q = pad_quad(quad, rng.uniform(*rc.pad_x), rng.uniform(*rc.pad_y))
    if rc.shift_across or rc.shift_ends:
        q = shift_cut(q, height, rng.normal(0.0, rc.shift_across), rng.normal(0.0, rc.shift_ends, size=2))
    q = q + rng.normal(0.0, rc.jitter * height, size=(4, 2)).astype(np.float32)
    crop = rectify_line(image, q, height=rc.height, max_width=rc.max_width)
    if rng.random() < 0.05:
        crop = 255 - crop
    return crop


def _crop_for_detector(
    image: np.ndarray, quads: list[np.ndarray], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    dc = cfg.detector
    if dc.scene_fraction > 0 and rng.random() < dc.scene_fraction:
        return set_into_scene(image, quads, dc.crop, dc.scene_share, rng)
    h, w = image.shape[:2]
    scale = rng.uniform(*dc.long_side) / max(h, w)
    resized = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    quads = [q * scale for q in quads]
    rh, rw = resized.shape[:2]
    size = dc.crop
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:] = rng.integers(0, 256, size=3, dtype=np.uint8)
    x0 = int(rng.integers(0, max(rw - size, 0) + 1))
    y0 = int(rng.integers(0, max(rh - size, 0) + 1))
    ox = int(rng.integers(0, max(size - rw, 0) + 1))
    oy = int(rng.integers(0, max(size - rh, 0) + 1))
    part = resized[y0 : y0 + size, x0 : x0 + size]
    canvas[oy : oy + part.shape[0], ox : ox + part.shape[1]] = part
    shift = np.array([ox - x0, oy - y0], np.float32)
    return canvas, [q + shift for q in quads]


TruthLine = tuple[list[tuple[float, float]], str, str]
"""One labelled line of a training photo: polygon (4 points, reading order), text, role (``other`` if unknown)."""


def _truth_quads(lines: list[TruthLine]) -> list[tuple[np.ndarray, str, str]]:
    return [(np.asarray(polygon, np.float32).reshape(4, 2), text, role) for polygon, text, role in lines]


def crops_for_role(cfg: TrainConfig, role: str) -> int:
    """How many recognizer crops one line of ``role`` gives (``recognizer.crops_per_line``; 1 by default)."""
    table = cfg.recognizer.crops_per_line
    return table.get(role, table.get("*", 1))


def make_photo_sample(
    image_bgr: np.ndarray,
    lines: list[TruthLine],
    cfg: TrainConfig,
    rng: np.random.Generator,
    charset: str,
) -> PhotoSample:
    """Build detector and recognizer material from one photo and its reading-order lines.

    Each line gives :func:`crops_for_role` recognizer crops, each cut with its own padding and jitter.
    """
    truths = _truth_quads(lines)
    crops = []
    allowed = set(charset)
    for quad, text, role in truths:
        if any(c not in allowed for c in text):
            continue  # a label the recognizer cannot spell is not taught misspelt; the detector still sees its box
        text = text.strip()
        if text and quad_size(quad)[1] >= 4:
            for _ in range(crops_for_role(cfg, role)):
                crops.append((random_line_crop(image_bgr, quad, cfg, rng), text))
    det_image, det_quads = _crop_for_detector(image_bgr, [q for q, _, _ in truths], cfg, rng)
    target, weight = detector_targets(det_quads, det_image.shape[:2])
    return PhotoSample(det_image[:, :, ::-1].copy(), target, weight, crops)


def enhanced_copy(image_bgr: np.ndarray, chain: str) -> np.ndarray:
    """``image_bgr`` through the reader's enhancement chain ``chain``, as a 3-channel image (geometry unchanged)."""
    from marktrace.inference.enhance.chains import get_chain, run_chain

    out = run_chain(image_bgr, get_chain(chain))
    return cv2.cvtColor(out, cv2.COLOR_GRAY2BGR) if out.ndim == 2 else out


def rendered_truths(lines: Sequence[LineTruth], untaught_roles: Sequence[str]) -> list[TruthLine]:
    """The truth lines of a rendered marking for training.

    A line of one of ``untaught_roles`` with a character ground flat gets no text: the detector still learns its
    box, the recognizer is not taught it (``TrainConfig.untaught_when_ground_flat``).
    """
    return [(ln.polygon, "" if ln.role in untaught_roles and ln.ground_flat() else ln.text, ln.role) for ln in lines]


def relief_view_copies(
    seed: int, config: SynthConfig, n_lights: int, known_directions: bool, n_views: int
) -> tuple[list[np.ndarray], list[LineTruth]]:
    """The first ``n_views`` relief views the reader computes for a rendered multi-light stack.

    The marking of ``render_marking(seed, config)`` is photographed under ``n_lights`` lights
    (:func:`marktrace.datasets.synth.render_stack`) and passed through the reader's own
    :func:`~marktrace.inference.enhance.photometric.iter_relief_views` (registration included): with
    directions when ``known_directions``, else the direction-free views. Each view is a 3-channel copy in
    the first shot's geometry, so the returned line polygons (of the first shot) hold for all of them.
    """
    from marktrace.inference.enhance.photometric import iter_relief_views, stack_from_arrays

    stack = render_stack(seed, config, n_lights, known_directions=known_directions)
    names = [f"shot_{i:02d}.png" for i in range(len(stack.images))]
    lights = dict(zip(names, stack.lights, strict=True)) if known_directions else None
    relief_stack = stack_from_arrays(list(stack.images), names, ["0" * 64] * len(names), lights)
    views: list[np.ndarray] = []
    for view, _meta in iter_relief_views(relief_stack):
        if relief_stack.scale != 1.0:  # the working copy was shrunk: back to the first shot's pixels
            h, w = stack.images[0].shape[:2]
            view = cv2.resize(view, (w, h), interpolation=cv2.INTER_LINEAR)
        views.append(cv2.cvtColor(view, cv2.COLOR_GRAY2BGR) if view.ndim == 2 else view)
        if len(views) >= n_views:
            break
    return views, list(stack.lines)


def _entry_line_numbers(manifest: Path) -> list[int]:
    """Line numbers of the non-blank lines of ``manifest``: those of :func:`read_manifest`'s entries, in order."""
    with manifest.open(encoding="utf-8") as fh:
        return [no for no, raw in enumerate(fh, start=1) if raw.strip()]


def load_real_entries(folders: list[Path]) -> list[tuple[Path, list[TruthLine]]]:
    """Labelled real photos (datasets format, :mod:`marktrace.datasets.manifest`) that have line polygons.

    Each folder's manifest is read with :func:`~marktrace.datasets.manifest.read_manifest`: a line that does
    not parse is a ``ManifestError`` naming the file and line, a folder without a manifest a
    FileNotFoundError. An entry whose image file is missing is refused here (FileNotFoundError naming the
    manifest lines and files), not when the stream first draws it; so is a file OpenCV cannot decode. Entries
    with a line that has no polygon are skipped (the detector would learn its text as background); a folder with
    no entry left is a ValueError. A line whose text has characters outside the recognizer's charset trains
    the detector only (see :func:`make_photo_sample`).
    """
    entries: list[tuple[Path, list[TruthLine]]] = []
    for folder in folders:
        root = Path(folder)
        manifest = root / MANIFEST
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: real_data folder not found")
        items = read_manifest(root)
        numbers = _entry_line_numbers(manifest)
        missing = [
            f"{manifest}:{no}: {root / item.image}"
            for no, item in zip(numbers, items, strict=True)
            if not (root / item.image).is_file()
        ]
        if missing:
            shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise FileNotFoundError(f"{manifest}: {len(missing)} image file(s) not found:\n  {shown}")
        unreadable = [
            f"{manifest}:{no}: {root / item.image}"
            for no, item in zip(numbers, items, strict=True)
            if not cv2.haveImageReader(str(root / item.image))
        ]
        if unreadable:
            shown = "\n  ".join(unreadable[:10]) + (f"\n  ... and {len(unreadable) - 10} more"
                                                   if len(unreadable) > 10 else "")
            raise ValueError(f"{manifest}: {len(unreadable)} file(s) are not images OpenCV can decode:\n  {shown}")
        found = 0
        for item in items:
            if not item.lines or not all(ln.polygon for ln in item.lines):
                continue  # a line without its box would be taught to the detector as background
            entries.append((root / item.image, [(list(ln.polygon or []), ln.text, str(ln.role)) for ln in item.lines]))
            found += 1
        if not found:
            raise ValueError(
                f"{manifest}: none of its {len(items)} entries has a polygon on every line (real photos need them "
                "to train on)"
            )
    return entries


class PhotoStream(IterableDataset[PhotoSample]):
    """An endless, seeded stream of training photos: synthetic, mixed with real ones when given."""

    def __init__(self, cfg: TrainConfig, charset: str, seed_offset: int = 0) -> None:
        self.cfg = cfg
        self.charset = charset
        self.seed_offset = seed_offset
        self.real = load_real_entries(list(cfg.real_data)) if cfg.real_data else []
        self.started: float | None = None
        """Wall-clock start of training, set by the loop before the workers start."""

    def progress(self) -> float:
        """Share of the run's time limit gone (0 when the run has none): drives the curriculum."""
        limit = self.cfg.time_limit_s
        if not limit or self.started is None:
            return 1.0
        return min(1.0, (time.time() - self.started) / limit)

    def synth_config(self, rng: np.random.Generator) -> SynthConfig:
        """Curriculum: clean, nearly upright markings first, the full mix after ``curriculum`` of the run."""
        base = self.cfg.synth
        if self.progress() < self.cfg.curriculum:
            return base.model_copy(update={"wear": (0.0, 0.15), "camera": 0.4, "rotation": "small"})
        if rng.random() < self.cfg.clean_fraction:
            return base.model_copy(update={"wear": (0.0, 0.15), "camera": 0.4})
        return base

    def photo_seed(self, index: int) -> int:
        """The seed of the stream's ``index``-th photo: the seed of its random generator.

        Its renderer seed is ``training_render_seed(photo_seed(index))``; worker ``w`` of ``n`` takes the
        indices ``w, w + n, w + 2n, ...``.
        """
        return self.cfg.seed * 1_000_003 + self.seed_offset + index

    def __iter__(self) -> Iterator[PhotoSample]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        workers = info.num_workers if info is not None else 1
        index = worker
        while True:
            seed = self.photo_seed(index)
            rng = np.random.default_rng(seed)
            index += workers
            if self.real and rng.random() < self.cfg.real_fraction:
                path, lines = self.real[int(rng.integers(len(self.real)))]
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise RuntimeError(f"{path}: real_data image cannot be read (missing, or not a decodable image)")
            elif self.cfg.relief_fraction > 0 and rng.random() < self.cfg.relief_fraction:
                low, high = self.cfg.relief_lights
                config = self.synth_config(rng).model_copy(update={"wear": self.cfg.relief_wear})
                views, truths = relief_view_copies(
                    training_render_seed(seed), config, int(rng.integers(low, high + 1)),
                    bool(rng.random() < self.cfg.relief_known_directions), self.cfg.relief_views,
                )
                lines = rendered_truths(truths, self.cfg.untaught_when_ground_flat)
                for view in views:
                    for _ in range(self.cfg.samples_per_photo):
                        yield make_photo_sample(view, lines, self.cfg, rng, self.charset)
                continue
            else:
                marking = render_marking(training_render_seed(seed), self.synth_config(rng))
                image = marking.image
                lines = rendered_truths(marking.lines, self.cfg.untaught_when_ground_flat)
            if self.cfg.enhanced_fraction > 0 and rng.random() < self.cfg.enhanced_fraction:
                image = enhanced_copy(image, self.cfg.enhance_chains[int(rng.integers(len(self.cfg.enhance_chains)))])
            for _ in range(self.cfg.samples_per_photo):
                yield make_photo_sample(image, lines, self.cfg, rng, self.charset)


def collate_photos(samples: list[PhotoSample]) -> dict[str, object]:
    """Stack detector material; pass line crops through as a list."""
    return {
        "det_image": torch.from_numpy(np.stack([s.det_image for s in samples])),
        "det_target": torch.from_numpy(np.stack([s.det_target for s in samples])),
        "det_weight": torch.from_numpy(np.stack([s.det_weight for s in samples])),
        "crops": [crop for s in samples for crop in s.crops],
    }


def batch_crops_for_torch(crops: list[tuple[np.ndarray, str]], height: int) -> tuple[torch.Tensor, list[str]]:
    """Pad line crops as inference does and return them with their texts."""
    return torch.from_numpy(batch_line_crops([c for c, _ in crops], height)), [t for _, t in crops]
