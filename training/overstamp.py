"""Train the over-stamp flagger (issue 3): a logistic regression on the recognizer's probabilities (and a CNN's).

The regression reads the recognizer's per-step probabilities and, with ``patch_scorer`` set, the logits of a
small CNN over each character's patch of the line crop.

One command reproduces the shipped files (``inference/enhance/overstamp-flags-v1.4.0.json`` and its patch scorer
``models/shipped/marktrace-overstamp-patch-v1.4.0.onnx``)::

    marktrace train-overstamp --config overstamp --out runs            # or: python -m marktrace.training.overstamp
    marktrace train-overstamp --config overstamp --out runs --install  # also replace the shipped files

What it does:

1. Renders ``n_markings`` photos (``datasets.synth.render_marking``, training fonts, seeds from
   ``seed_start``; every seed stays below 1_300_000_000, the benchmark's seeds and held-out fonts are never
   rendered) and reads each with the shipped reader exactly as ``marktrace read`` does (detector,
   recognizer, 180-degree retry, enhancement chains when unsure; ``workers`` processes). Every recognised
   line that aligns to the marking's serial line (edit distance at most ``max_line_cer`` of its length)
   gives one example per character: the features of
   :func:`marktrace.inference.enhance.alteration.ctc_character_features`, the character's patch, and the
   label "over-stamped" when the character aligns to the renderer's over-stamped index. The collection is
   kept in the run folder (``examples.npz``); ``examples_from`` starts another recipe from it.
2. With ``patch_scorer``: trains the CNN (``training/overstamp_patch.py``, torch) on the markings whose seed
   is not a multiple of ``stack_every``, exports it to ONNX (parity checked) and computes its two features
   for the other markings through the exported file; the regression is fitted on those only.
3. Cross-validates by marking (``folds``), picks the threshold at which ``target_false_flag_rate`` of the
   clean characters of the record's serial lines score above it (out-of-fold), and fits the final model
   (Newton iterations, L2 ``l2``; deterministic).
4. Writes a run folder (``config.yaml`` resolved config, ``run.json`` with commit, seeds and metrics,
   ``metrics.jsonl``, ``checkpoints/``: the model JSON, the scorer's ``.pt`` and ``.onnx``). ``--install``
   copies the model next to its loader and the scorer into the shipped models (registered), and prints the
   SHA-256 to pin in ``OVERSTAMP_MODEL_SHA256``.

Collection is numpy + onnxruntime (one onnxruntime thread per process by default); only the patch scorer
needs torch (the ``train`` extra).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from marktrace.datasets.synth import SynthConfig, render_marking
from marktrace.inference.assemble import edit_distance

PRESET_DIR = Path(__file__).parent / "presets"
TRAINING_SEED_LIMIT = 1_300_000_000
"""Training seeds stay below this (the benchmark's start at 1_700_000_000)."""


class PatchScorerTrainConfig(BaseModel):
    """Recipe of the over-stamp patch scorer (a small CNN on each character's patch of the line crop; torch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "marktrace-overstamp-patch"
    width: int = Field(16, ge=4)
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.01, gt=0)
    """Peak learning rate of the one-cycle schedule (AdamW)."""
    weight_decay: float = Field(1e-4, ge=0)
    stack_every: int = Field(3, ge=2)
    """Markings whose seed is a multiple of this fit the logistic regression on the scorer's logits (and choose
    the threshold); the others train the scorer, so the regression sees logits of patches the scorer never saw."""
    seed: int = 0
    threads: int = Field(2, ge=1)
    """torch threads."""


class OverstampTrainConfig(BaseModel):
    """Recipe of the over-stamp flagger (``training/presets/overstamp.yaml`` is the shipped one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = "overstamp_flags"
    name: str = "marktrace-overstamp-flags"
    version: str = "1.0.0"
    seed_start: int = 1_200_000_000
    n_markings: int = 3000
    synth: SynthConfig = Field(
        default_factory=lambda: SynthConfig(fonts="train", wear=(0.0, 0.25), camera=0.75, overstamp_prob=0.85)
    )
    max_line_cer: float = 0.4
    """A recognised line is used when its edit distance to the serial line is at most this share of its length."""
    folds: int = 5
    l2: float = 1.0
    target_false_flag_rate: float = 0.03
    """Out-of-fold share of clean serial characters flagged at the chosen threshold (issue 3 asks < 5%)."""
    threads: int = 1
    """onnxruntime threads of each reader (the development machine's cores are shared)."""
    workers: int = Field(1, ge=1)
    """Processes that render and read markings in parallel (each with its own reader)."""
    patch_scorer: PatchScorerTrainConfig | None = None
    """Also train the patch scorer and use its logits as features (model format 2); ``None``: format 1."""
    examples_from: Path | None = None
    """A previous run's ``examples.npz`` (or its folder) to use instead of rendering and reading again; refused
    unless it was collected with the same seeds, renderer settings, line filter and recognizer."""

    @model_validator(mode="after")
    def _check(self) -> OverstampTrainConfig:
        if self.synth.fonts != "train":
            raise ValueError("synth.fonts must be 'train' (held-out fonts are for the benchmark)")
        if self.seed_start < 0 or self.seed_start + self.n_markings > TRAINING_SEED_LIMIT:
            raise ValueError(f"seeds {self.seed_start}..{self.seed_start + self.n_markings} must stay below "
                             f"{TRAINING_SEED_LIMIT}")
        if self.synth.overstamp_prob <= 0:
            raise ValueError("synth.overstamp_prob must be > 0 (no over-stamps, nothing to learn)")
        if not 0 < self.target_false_flag_rate < 0.5 or self.folds < 2 or self.n_markings < 10:
            raise ValueError("need 0 < target_false_flag_rate < 0.5, folds >= 2, n_markings >= 10")
        return self


def load_overstamp_config(name_or_path: str | Path, overrides: dict[str, object] | None = None) -> OverstampTrainConfig:
    """A preset by name (``overstamp``, ``tiny-overstamp``) or a YAML file, with dotted overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{name_or_path}: no such over-stamp training config")
    from marktrace.training.config import apply_overrides

    data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return OverstampTrainConfig.model_validate(apply_overrides(data, overrides))


# -- data --------------------------------------------------------------------------------------------


def align(read: str, truth: str) -> dict[int, int]:
    """Index pairs (read -> truth) of a minimum edit-distance alignment (matches and substitutions)."""
    from marktrace.inference.assemble import align_characters

    return align_characters(read, truth)


@dataclass
class LineExample:
    """The characters of one recognised serial line: features, labels, and where it came from."""

    seed: int
    final: bool
    """The line the record's serial was read from (what a user sees flags on)."""
    features: np.ndarray
    labels: np.ndarray
    patches: np.ndarray
    """(n_all, 1, S, S) uint8: the patch of every scored character of the line, aligned or not."""
    scored: np.ndarray
    """Boolean (n_all,): which of them have a label (``features`` and ``labels`` hold only those)."""


@contextlib.contextmanager
def _recording_alterations(calls: list[tuple[np.ndarray, Any]]) -> Iterator[None]:
    """Make the reader hand every (line crop, decoded text) to ``calls`` instead of flagging it.

    The line's ``alterations`` then hold one marker (``{"position": -1, "call": k}``) naming its call, so the
    line the record's serial comes from can be found; the marker is never a flag (position -1).
    """
    import marktrace.inference.pipeline as pipeline

    original = pipeline._alterations

    def record(crop: np.ndarray, text: Any, warning: str | None = None) -> list[dict[str, Any]]:
        calls.append((crop, text))
        return [{"position": -1, "call": len(calls) - 1, "score": 0.0}]

    pipeline._alterations = record
    try:
        yield
    finally:
        pipeline._alterations = original


def _collect_range(cfg: OverstampTrainConfig, first: int, count: int) -> list[LineExample]:
    """Render and read markings ``first .. first + count - 1`` with a reader of this process."""
    from marktrace.inference.enhance.alteration import (
        PATCH_SIZE,
        character_columns,
        character_patches,
        ctc_character_features,
    )

    reader = _reader(cfg.threads)
    examples: list[LineExample] = []
    calls: list[tuple[np.ndarray, Any]] = []
    with _recording_alterations(calls):
        for seed in range(first, first + count):
            marking = render_marking(seed, cfg.synth)
            serial_line = next((ln for ln in marking.lines if ln.role == "serial"), None)
            if serial_line is None:
                continue
            calls.clear()
            ok, buf = cv2.imencode(".png", marking.image)
            if not ok:
                raise RuntimeError(f"seed {seed}: could not encode the rendered photo")
            result = reader.read_uploaded(f"seed-{seed}", [("photo.png", buf.tobytes())])
            final_call = _serial_call(result)
            truth = serial_line.text
            over = set(serial_line.overstamped)
            for k, (crop, text) in enumerate(calls):
                if text.probs is None:
                    continue
                distance = edit_distance(text.text, truth)
                if distance > cfg.max_line_cer * len(truth) and k != final_call:
                    continue
                index, feats = ctc_character_features(text.probs, text.text, text.char_steps, text.charset)
                if not len(feats):
                    continue
                pairs = align(text.text, truth)
                labels = np.array([int(pairs[i] in over) if i in pairs and truth[pairs[i]] != " " else -1
                                   for i in index])
                keep = labels >= 0
                if keep.any():
                    columns = character_columns([text.char_steps[i] for i in index])
                    patches = character_patches(crop, columns, PATCH_SIZE)
                    examples.append(LineExample(seed, k == final_call, feats[keep], labels[keep], patches, keep))
    return examples


@functools.cache
def _reader(threads: int) -> Any:
    """One reader per process (loaded once)."""
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    return MarkingReader.from_settings(ReaderSettings(threads=threads, flag_alterations=True))


def _collect_chunk(job: tuple[OverstampTrainConfig, int, int]) -> list[LineExample]:
    return _collect_range(*job)


COLLECT_CHUNK = 100
"""Markings per job of the collecting processes."""


def collect(cfg: OverstampTrainConfig, progress: Callable[[str], None] | None = None) -> list[LineExample]:
    """Render and read ``cfg.n_markings`` photos (``cfg.workers`` processes); their serial lines' examples.

    The examples come in seed order whatever the number of processes.
    """
    jobs = [(cfg, first, min(COLLECT_CHUNK, cfg.seed_start + cfg.n_markings - first))
            for first in range(cfg.seed_start, cfg.seed_start + cfg.n_markings, COLLECT_CHUNK)]
    examples: list[LineExample] = []
    t0 = time.perf_counter()
    done = 0

    def report(chunk: list[LineExample], size: int) -> None:
        nonlocal done
        examples.extend(chunk)
        done += size
        if progress and (done % 500 < COLLECT_CHUNK or done == cfg.n_markings):
            progress(f"{done}/{cfg.n_markings} markings read, {len(examples)} lines, {time.perf_counter() - t0:.0f} s")

    if cfg.workers == 1:
        for job in jobs:
            report(_collect_chunk(job), job[2])
        return examples
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cfg.workers) as pool:
        for job, chunk in zip(jobs, pool.imap(_collect_chunk, jobs), strict=True):
            report(chunk, job[2])
    return examples


EXAMPLES_FILE = "examples.npz"
"""What a run collected (features, labels, patches), so another recipe can reuse it (``examples_from``)."""


def _collection_key(cfg: OverstampTrainConfig) -> str:
    """What determines the collected examples: seeds, renderer settings, line filter and the shipped reader."""
    return json.dumps({"seed_start": cfg.seed_start, "n_markings": cfg.n_markings,
                       "synth": cfg.synth.model_dump(mode="json"), "max_line_cer": cfg.max_line_cer,
                       "recognizer": _recognizer_label()}, sort_keys=True)


def save_examples(path: Path, examples: list[LineExample], cfg: OverstampTrainConfig) -> None:
    """Write the collected examples (at least one; uncompressed ``.npz``, to a temporary name, then renamed)."""
    counts = np.array([[len(e.labels), len(e.scored)] for e in examples], np.int64)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(
        tmp,
        key=np.array(_collection_key(cfg)),
        seeds=np.array([e.seed for e in examples], np.int64),
        final=np.array([e.final for e in examples], bool),
        counts=counts,
        features=np.vstack([e.features for e in examples]),
        labels=np.concatenate([e.labels for e in examples]),
        patches=np.concatenate([e.patches for e in examples]),
        scored=np.concatenate([e.scored for e in examples]),
    )
    tmp.replace(path)


def load_examples(source: Path, cfg: OverstampTrainConfig) -> list[LineExample]:
    """Read examples written by :func:`save_examples`; refuse them when they were collected differently."""
    path = Path(source) / EXAMPLES_FILE if Path(source).is_dir() else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no collected examples there")
    with np.load(path) as data:
        if str(data["key"]) != _collection_key(cfg):
            raise ValueError(f"{path}: collected with other seeds, renderer settings, line filter or recognizer "
                             "than this config asks for")
        counts = data["counts"]
        ends = np.cumsum(counts, axis=0)
        starts = ends - counts
        features, labels, patches, scored = data["features"], data["labels"], data["patches"], data["scored"]
        return [
            LineExample(int(seed), bool(final), features[a:b], labels[a:b], patches[c:d], scored[c:d])
            for seed, final, (a, c), (b, d) in zip(data["seeds"], data["final"], starts, ends, strict=True)
        ]


def _serial_call(result: Any) -> int | None:
    """The recording call of the line the record's serial was read from."""
    serial = result.record.get("serial_number") if result.status == "ok" else None
    if not isinstance(serial, dict):
        return None
    line_text = (serial.get("evidence") or {}).get("line_text")
    line = next((ln for ln in result.lines if ln.text == line_text or (line_text and line_text in ln.text)), None)
    if line is None:
        return None
    marker = next((a for a in line.alterations if "call" in a), None)
    return int(marker["call"]) if marker else None


# -- fitting -----------------------------------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 30) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method on standardised ``x``; (coef, intercept)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    ridge = l2 * np.r_[np.ones(d), 0.0]
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + ridge * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(ridge + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w[:-1], float(w[-1])


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-9, scale, 1.0)


def _predict(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    z = ((x - mean) / scale) @ coef + intercept
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40, 40))))


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Recall of over-stamped characters and false-flag rate of clean ones at a threshold."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return {
        "overstamped": int(len(pos)),
        "clean": int(len(neg)),
        "recall": round(float(np.mean(pos > threshold)), 4) if len(pos) else None,
        "false_flag_rate": round(float(np.mean(neg > threshold)), 4) if len(neg) else None,
    }


def cross_validate(
    x: np.ndarray, y: np.ndarray, seeds: np.ndarray, final: np.ndarray, cfg: OverstampTrainConfig
) -> tuple[float, dict[str, Any]]:
    """Out-of-fold scores by marking (``seed % folds``); the threshold and the rates there.

    The threshold flags ``target_false_flag_rate`` of the clean characters of the record's serial lines.
    """
    oof = np.zeros(len(y))
    fold = seeds % cfg.folds
    for f in range(cfg.folds):
        train, test = fold != f, fold == f
        if not test.any():
            continue
        mean, scale = _standardise(x[train])
        coef, intercept = fit_logistic((x[train] - mean) / scale, y[train], cfg.l2)
        oof[test] = _predict(x[test], mean, scale, coef, intercept)
    clean_final = np.sort(oof[final & (y == 0)])[::-1]
    if not len(clean_final):
        raise RuntimeError("no clean character on a record's serial line; nothing to set the threshold on")
    threshold = float(clean_final[min(int(cfg.target_false_flag_rate * len(clean_final)), len(clean_final) - 1)])
    return threshold, {"final_lines": rates(oof[final], y[final], threshold), "all_lines": rates(oof, y, threshold)}


def _patch_features(
    cfg: OverstampTrainConfig, examples: list[LineExample], run: Any, say: Callable[[str], None]
) -> tuple[list[LineExample], np.ndarray, dict[str, Any]]:
    """Train and export the patch scorer on some markings; the others' examples and their two patch features.

    Returns (the stacking examples, their (n, 2) patch features computed through the exported ONNX file exactly as
    inference does, the scorer's reference and training summary).
    """
    from marktrace.inference.enhance.alteration import PATCH_TASK, patch_features
    from marktrace.inference.images import sha256_file
    from marktrace.inference.onnx_models import load_model
    from marktrace.models.export import export_patch_scorer
    from marktrace.training.overstamp_patch import train_patch_scorer
    from marktrace.training.run import atomic_torch_save, git_commit

    ps = cfg.patch_scorer
    assert ps is not None
    scorer_lines = [e for e in examples if e.seed % ps.stack_every]
    stack_lines = [e for e in examples if not e.seed % ps.stack_every]
    if not scorer_lines or not stack_lines:
        raise RuntimeError(f"need markings with and without seed % {ps.stack_every} == 0 (scorer and stacking)")
    patches = np.concatenate([e.patches[e.scored] for e in scorer_lines])
    labels = np.concatenate([e.labels for e in scorer_lines])
    say(f"patch scorer: {len(labels)} patches ({int(labels.sum())} over-stamped) of "
        f"{len({e.seed for e in scorer_lines})} markings, {ps.epochs} epochs")
    def log_epoch(record: dict[str, Any]) -> None:
        run.log(record)
        say(f"patch scorer epoch {record['epoch'] + 1}/{ps.epochs}: loss {record['loss']:.4f}, "
            f"{record['seconds']:.0f} s")

    net = train_patch_scorer(patches, labels, ps, log_epoch)

    atomic_torch_save({"state_dict": net.state_dict(), "width": ps.width}, run.path / "checkpoints" / f"{ps.name}.pt")
    onnx_path = run.path / "checkpoints" / f"{ps.name}-v{cfg.version}.onnx"
    sample = np.concatenate([e.patches for e in stack_lines[:4]])
    export = export_patch_scorer(net, onnx_path, ps.name, cfg.version, git_commit(), sample,
                                 extra={"training_seeds": f"{cfg.seed_start}-{cfg.seed_start + cfg.n_markings - 1} "
                                                          f"(seed % {ps.stack_every} != 0)"})
    scorer = load_model(onnx_path, PATCH_TASK, threads=cfg.threads)
    rows = [patch_features(scorer, e.patches)[e.scored] for e in stack_lines]
    ref = {"name": ps.name, "version": cfg.version, "file": onnx_path.name, "sha256": sha256_file(onnx_path)}
    summary = {"patches": int(len(labels)), "overstamped": int(labels.sum()),
               "parity_max_abs_diff": export["parity_max_abs_diff"], **ref}
    run.log({"stage": "patch_scorer_export", **summary})
    return stack_lines, np.vstack(rows), {"ref": ref, "summary": summary}


def train_overstamp(
    cfg: OverstampTrainConfig, out: Path, progress: Callable[[str], None] | None = None
) -> Path:
    """Collect, (train the patch scorer,) cross-validate, fit and write the model; return the run folder."""
    from marktrace.inference.enhance.alteration import (
        FEATURE_NAMES,
        PATCH_FEATURES,
        OverstampModel,
        PatchScorerRef,
    )
    from marktrace.training.run import RunFolder, atomic_write_text, git_commit

    say = progress or (lambda _msg: None)
    run = RunFolder(out, cfg.name, cfg, extra={"seed_start": cfg.seed_start, "n_markings": cfg.n_markings,
                                               "task": cfg.task})
    t0 = time.perf_counter()
    if cfg.examples_from is not None:
        examples = load_examples(cfg.examples_from, cfg)
        say(f"{len(examples)} lines from {cfg.examples_from}")
    else:
        examples = collect(cfg, say)
    if not examples:
        raise RuntimeError("no serial line was read; nothing to train on")
    if cfg.examples_from is None:
        save_examples(run.path / EXAMPLES_FILE, examples, cfg)
    patch: dict[str, Any] | None = None
    feature_names = FEATURE_NAMES
    baseline: dict[str, Any] | None = None
    if cfg.patch_scorer is not None:
        examples, patch_x, patch = _patch_features(cfg, examples, run, say)
        feature_names = FEATURE_NAMES + PATCH_FEATURES
    x = np.vstack([e.features for e in examples])
    y = np.concatenate([e.labels for e in examples]).astype(np.float64)
    seeds = np.concatenate([np.full(len(e.labels), e.seed) for e in examples])
    final = np.concatenate([np.full(len(e.labels), e.final) for e in examples])
    if y.sum() < 10 or (1 - y).sum() < 10:
        raise RuntimeError(f"too few examples: {int(y.sum())} over-stamped, {int((1 - y).sum())} clean characters")
    if patch is not None:
        _t, base_cv = cross_validate(x, y, seeds, final, cfg)
        baseline = {"features": "ctc only (format 1)", **base_cv}
        run.log({"stage": "cross_validation_ctc_only", **base_cv})
        say(f"same markings, CTC features only: out-of-fold {base_cv['final_lines']}")
        x = np.hstack([x, patch_x])
    say(f"{len(y)} characters ({int(y.sum())} over-stamped) from {len(examples)} lines; cross-validating")
    threshold, cv = cross_validate(x, y, seeds, final, cfg)
    run.log({"stage": "cross_validation", "threshold": threshold, **cv})
    say(f"threshold {threshold:.4f}: out-of-fold {cv['final_lines']}")
    mean, scale = _standardise(x)
    coef, intercept = fit_logistic((x - mean) / scale, y, cfg.l2)
    fit = rates(_predict(x, mean, scale, coef, intercept), y, threshold)
    commit = git_commit()
    training: dict[str, Any] = {
        "commit": commit,
        "seeds": [cfg.seed_start, cfg.seed_start + cfg.n_markings - 1],
        "synth": cfg.synth.model_dump(mode="json"),
        "l2": cfg.l2,
        "target_false_flag_rate": cfg.target_false_flag_rate,
        "lines": len(examples),
        "characters": int(len(y)),
        "overstamped": int(y.sum()),
        "cross_validation": cv,
        "recognizer": _recognizer_label(),
    }
    if patch is not None:
        assert cfg.patch_scorer is not None
        training["regression_markings"] = f"seed % {cfg.patch_scorer.stack_every} == 0"
        training["patch_scorer"] = {**patch["summary"], "recipe": cfg.patch_scorer.model_dump(mode="json")}
        training["cross_validation_ctc_only"] = baseline
    model = OverstampModel(
        name=cfg.name,
        version=cfg.version,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in coef),
        intercept=intercept,
        threshold=threshold,
        training=training,
        features=feature_names,
        patch_model=PatchScorerRef(**patch["ref"]) if patch else None,
    )
    assert len(feature_names) == x.shape[1]
    path = run.path / "checkpoints" / f"overstamp-flags-v{cfg.version}.json"
    atomic_write_text(path, json.dumps(model.to_json(), indent=1) + "\n")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    run.log({"stage": "fit", **fit})
    run.update_info(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_s=round(time.perf_counter() - t0, 1),
                    threshold=threshold, cross_validation=cv, cross_validation_ctc_only=baseline, fit=fit,
                    model=path.name, model_sha256=sha,
                    patch_scorer=patch["ref"] if patch else None)
    return run.path


def _recognizer_label() -> str:
    from marktrace.models.registry import default_model

    model = default_model("line_recognition", variant="int8")
    return f"{model.name}@{model.version}-int8 ({model.sha256[:16]})"


def install(run: Path) -> tuple[Path, str]:
    """Copy a run's model next to its loader (and its patch scorer into the shipped models, registered).

    Returns the installed model file and the SHA-256 to pin in ``OVERSTAMP_MODEL_FILE`` /
    ``OVERSTAMP_MODEL_SHA256``. The patch scorer's registry entry names a card
    ``<name>-v<version>.md`` that a person writes (data, recipe, measured figures, limits).
    """
    from marktrace.inference.enhance.alteration import OVERSTAMP_MODEL_FILE, PATCH_TASK, OverstampModel
    from marktrace.inference.images import sha256_file
    from marktrace.models.publish import update_registry
    from marktrace.models.registry import SHIPPED_DIR

    source = next((run / "checkpoints").glob("overstamp-flags-v*.json"))
    model = OverstampModel.load(source)  # refuse a malformed file before it replaces the shipped one
    if model.patch_model is not None:
        ref = model.patch_model
        scorer = run / "checkpoints" / ref.file  # checked against the JSON's SHA-256 by OverstampModel.load
        target_scorer = SHIPPED_DIR / ref.file
        tmp = target_scorer.with_suffix(".onnx.tmp")
        shutil.copy2(scorer, tmp)
        if sha256_file(tmp) != ref.sha256:
            tmp.unlink()
            raise OSError(f"{target_scorer}: the copy does not hash to {ref.sha256}; nothing was installed")
        tmp.replace(target_scorer)
        update_registry(SHIPPED_DIR, [{"name": ref.name, "version": ref.version, "task": PATCH_TASK,
                                       "file": ref.file, "sha256": ref.sha256,
                                       "card": f"{ref.name}-v{ref.version}.md", "variant": "fp32", "default": True}])
    target = OVERSTAMP_MODEL_FILE.with_name(source.name)
    tmp = target.with_suffix(".json.tmp")
    shutil.copy2(source, tmp)
    tmp.replace(target)
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


# -- command line ------------------------------------------------------------------------------------

def train_command(
    config: Annotated[str, typer.Option(help="Preset (overstamp, tiny-overstamp) or a YAML file")] = "overstamp",
    out: Annotated[Path, typer.Option(help="Folder that receives the run folder")] = Path("runs"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set n_markings=500")] = None,
    install_model: Annotated[bool, typer.Option("--install", help="Replace the shipped model file")] = False,
) -> None:
    """Train the over-stamp flagger; writes a run folder with config, seeds, commit, metrics and the model."""
    overrides: dict[str, object] = {}
    for pair in set_ or []:
        if "=" not in pair:
            raise typer.BadParameter(f"{pair!r}: expected key=value (e.g. n_markings=500)")
        key, value = pair.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    cfg = load_overstamp_config(config, overrides)
    run = train_overstamp(cfg, out, progress=lambda msg: typer.echo(msg, err=True))
    typer.echo(f"run folder {run}", err=True)
    if install_model:
        path, sha = install(run)
        typer.echo(f"installed {path}; point OVERSTAMP_MODEL_FILE at it and pin OVERSTAMP_MODEL_SHA256 = {sha!r} "
                   "in inference/enhance/alteration.py", err=True)
    typer.echo(str(run))


def main() -> None:
    """``python -m marktrace.training.overstamp``."""
    typer.run(train_command)


if __name__ == "__main__":
    main()
