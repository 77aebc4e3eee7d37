"""Training the learned restorer: worn/ground line crops -> the clean glyph mask of the same marking.

Pairs come from the renderer: :func:`render_marking` returns the photo and its glyph mask carried
through the same geometric transform, so cutting both through the same (jittered) line quadrilateral
with :func:`rectify_line` -- the cut inference makes -- gives an aligned (crop, mask) pair.
Loss: class-balanced BCE + soft dice on the mask. The run folder is written like the other runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from marktrace.datasets.synth import SynthConfig, SyntheticMarking, render_marking
from marktrace.inference.geometry import pad_quad, quad_size, rectify_line
from marktrace.models.networks.restorer import RESTORER_MULTIPLE, GlyphRestorer, build_restorer
from marktrace.training.config import RestorerTrainConfig
from marktrace.training.run import RunFolder, atomic_torch_save
from marktrace.training.train import lr_factor, resolve_device

TRAIN_SEED_BASE = 1_100_000_000
"""Training photos: seeds ``TRAIN_SEED_BASE + (seed % 1000) * 100_000 + i``, all below 1_200_000_000."""
EVAL_SEED_BASE = 1_290_000_000
"""Evaluation photos (training fonts, ground-like wear); below the 1_300_000_000 training limit, never trained on."""
EVAL_WEAR = (0.65, 0.85)
EVAL_PAD = (0.2, 0.1)
"""Evaluation crops are padded like inference pads detector quads (CROP_PAD_X, CROP_PAD_Y)."""


def train_seed(cfg: RestorerTrainConfig, index: int) -> int:
    """The renderer seed of the ``index``-th training photo (stays below 1_300_000_000)."""
    seed = TRAIN_SEED_BASE + (cfg.seed % 1000) * 100_000 + index
    if seed >= EVAL_SEED_BASE:
        raise RuntimeError("training stream ran into the evaluation seed block")
    return seed


def _window(crop: np.ndarray, mask: np.ndarray, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random ``width``-wide window of a crop and its mask; narrower crops are right-padded by edge replication."""
    if crop.shape[1] < width:
        pad = width - crop.shape[1]
        crop = cv2.copyMakeBorder(crop, 0, 0, 0, pad, cv2.BORDER_REPLICATE)
        mask = cv2.copyMakeBorder(mask, 0, 0, 0, pad, cv2.BORDER_REPLICATE)
    x0 = int(rng.integers(0, crop.shape[1] - width + 1))
    return crop[:, x0 : x0 + width], mask[:, x0 : x0 + width]


def restorer_pairs(
    marking: SyntheticMarking, cfg: RestorerTrainConfig, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(uint8 crop window, float32 glyph-mask window in 0..1) pairs from every text line of one rendered photo."""
    pairs = []
    for line in marking.lines:
        if not line.text.strip():
            continue
        quad = np.asarray(line.polygon, np.float32).reshape(4, 2)
        _, height = quad_size(quad)
        if height < 4:
            continue
        for _ in range(cfg.windows_per_line):
            q = pad_quad(quad, rng.uniform(*cfg.pad_x), rng.uniform(*cfg.pad_y))
            q = q + rng.normal(0.0, cfg.jitter * height, size=(4, 2)).astype(np.float32)
            if rng.random() < cfg.flip_prob:
                q = q[[2, 3, 0, 1]]
            crop = rectify_line(marking.image, q, cfg.height, cfg.max_width)
            mask = rectify_line(marking.glyph_mask, q, cfg.height, cfg.max_width)
            if rng.random() < cfg.invert_prob:
                crop = 255 - crop
            crop, mask = _window(crop, mask, cfg.window, rng)
            pairs.append((np.ascontiguousarray(crop), mask.astype(np.float32) / 255.0))
    return pairs


class RestorerStream(IterableDataset[tuple[np.ndarray, np.ndarray]]):
    """An endless, seeded stream of (crop, mask) windows from rendered photos."""

    def __init__(self, cfg: RestorerTrainConfig) -> None:
        self.cfg = cfg

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = get_worker_info()
        index = info.id if info is not None else 0
        step = info.num_workers if info is not None else 1
        while True:
            seed = train_seed(self.cfg, index)
            index += step
            rng = np.random.default_rng(seed)
            synth = self.cfg.synth
            if rng.random() < self.cfg.light_fraction:
                synth = synth.model_copy(update={"wear": (0.0, 0.3)})
            yield from restorer_pairs(render_marking(seed, synth), self.cfg, rng)


def collate_pairs(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 1, H, W) crops and float32 (N, 1, H, W) masks."""
    crops = torch.from_numpy(np.stack([c for c, _ in pairs]))[:, None]
    masks = torch.from_numpy(np.stack([m for _, m in pairs]))[:, None]
    return crops, masks


def restorer_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight_max: float = 5.0, dice_weight: float = 1.0
                  ) -> torch.Tensor:
    """Class-balanced BCE (positive weight capped) plus soft dice over the batch."""
    logits = logits.float()
    positives = target.sum().clamp(min=1.0)
    pos_weight = ((target.numel() - target.sum()) / positives).clamp(max=pos_weight_max)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return bce + dice_weight * dice


@dataclass
class EvalSample:
    """One evaluation line: the photo crop at the restorer's height, its mask, the recognizer-height crop, the truth."""

    crop: np.ndarray
    mask: np.ndarray
    photo_crop: np.ndarray
    text: str


def evaluation_set(cfg: RestorerTrainConfig, count: int, recognizer_height: int = 64) -> list[EvalSample]:
    """Serial lines of ``count`` ground-like photos (training fonts, the evaluation seed block).

    The renderer's default photo size, whatever the training mix uses, so runs with different recipes are
    compared on the same lines.
    """
    synth = SynthConfig(fonts=cfg.synth.fonts, wear=EVAL_WEAR, rotation=cfg.synth.rotation)
    out = []
    for i in range(count):
        marking = render_marking(EVAL_SEED_BASE + i, synth)
        line = next((ln for ln in marking.lines if ln.role == "serial"), None)
        if line is None:
            continue
        quad = pad_quad(np.asarray(line.polygon, np.float32), *EVAL_PAD)
        out.append(
            EvalSample(
                crop=rectify_line(marking.image, quad, cfg.height, cfg.max_width),
                mask=rectify_line(marking.glyph_mask, quad, cfg.height, cfg.max_width).astype(np.float32) / 255.0,
                photo_crop=rectify_line(marking.image, quad, recognizer_height),
                text=line.text,
            )
        )
    return out


def _plain(text: str) -> str:
    return "".join(text.split())


class _EvalReader:
    """The shipped recognizer (onnxruntime, one thread) reading restored crops during evaluation."""

    def __init__(self) -> None:
        from marktrace.inference.onnx_models import load_model
        from marktrace.models.registry import default_model, verify_file

        self.model = load_model(verify_file(default_model("line_recognition", variant="int8")), "line_recognition", 1)

    def read(self, crop: np.ndarray) -> str:
        from marktrace.inference.ctc import greedy_decode
        from marktrace.inference.recognize import batch_line_crops

        meta = self.model.meta
        probs = self.model.session.run(None, {self.model.input_name: batch_line_crops([crop], meta.input_height)})[0]
        return greedy_decode(probs[0], meta.charset).text


def _pad_to_multiple(crop: np.ndarray) -> np.ndarray:
    width = -(-crop.shape[1] // RESTORER_MULTIPLE) * RESTORER_MULTIPLE
    return cv2.copyMakeBorder(crop, 0, 0, 0, width - crop.shape[1], cv2.BORDER_REPLICATE)


@torch.no_grad()
def evaluate(
    net: GlyphRestorer,
    samples: list[EvalSample],
    cfg: RestorerTrainConfig,
    device: torch.device,
    reader: _EvalReader | None,
    baseline: dict[str, float] | None = None,
) -> dict[str, float]:
    """Mask dice and IoU on the evaluation lines; with a reader, serial exact matches of the restored crops."""
    from marktrace.inference.restore import render_mask

    net.eval()
    dice = iou = 0.0
    exact = 0
    for sample in samples:
        x = torch.from_numpy(_pad_to_multiple(sample.crop))[None, None].to(device).float() / 127.5 - 1.0
        prob = torch.sigmoid(net(x))[0, 0, :, : sample.crop.shape[1]].float().cpu().numpy()
        target = sample.mask
        dice += float((2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1))
        hard, truth = prob > cfg.threshold, target > 0.5
        iou += float(((hard & truth).sum() + 1) / ((hard | truth).sum() + 1))
        if reader is not None:
            exact += int(_plain(reader.read(render_mask(prob, sample.photo_crop.shape[0]))) == _plain(sample.text))
    net.train()
    n = max(len(samples), 1)
    metrics = {"eval_dice": dice / n, "eval_iou": iou / n}
    if reader is not None:
        metrics["eval_restored_exact"] = exact / n
    metrics.update(baseline or {})
    return metrics


def train_restorer(cfg: RestorerTrainConfig, out_root: Path, progress: Callable[[str], None] = print) -> Path:
    """Train the restorer per ``cfg``; returns the run folder (``config.yaml``, ``run.json``, metrics, checkpoints).

    ``run.json`` says ``status: running`` while the run trains and ``completed`` when it ends; an error
    (or an interrupt) is recorded there as ``status: failed`` with the error, then raised.
    """
    if cfg.height % RESTORER_MULTIPLE or cfg.window % RESTORER_MULTIPLE:
        raise ValueError(f"height and window must be multiples of {RESTORER_MULTIPLE}")
    cv2.setNumThreads(1)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    run = RunFolder(
        out_root,
        cfg.name,
        cfg,
        extra={"device": str(device), "torch": torch.__version__, "status": "running"},
    )
    with run.failure_recorded():
        _train_restorer_in(run, cfg, device, progress)
    return run.path


def _train_restorer_in(
    run: RunFolder, cfg: RestorerTrainConfig, device: torch.device, progress: Callable[[str], None]
) -> None:
    """The training loop of :func:`train_restorer`, writing into ``run``."""
    run.update_info(task="restoration", seed=cfg.seed, size=cfg.size, height=cfg.height)
    net = build_restorer(cfg.size, cfg.standardize).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(
        RestorerStream(cfg),
        batch_size=cfg.batch_size,
        collate_fn=collate_pairs,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
        worker_init_fn=_one_thread if cfg.workers > 0 else None,
    )
    samples = evaluation_set(cfg, cfg.eval_images)
    reader = _EvalReader() if cfg.eval_recognizer else None
    baseline: dict[str, float] = {}
    if reader is not None:
        hits = sum(_plain(reader.read(s.photo_crop)) == _plain(s.text) for s in samples)
        baseline["eval_photo_exact"] = hits / max(len(samples), 1)
    run.update_info(eval_lines=len(samples), eval_baseline=baseline)
    start = time.time()
    step = 0
    losses: list[float] = []
    best = -1.0
    timed_out = False
    use_amp = device.type == "cuda"

    def save(tag: str, metrics: dict[str, float]) -> None:
        """The checkpoint, atomically; tensors and plain values only (it loads with ``weights_only``)."""
        atomic_torch_save(
            {
                "state_dict": net.state_dict(),
                "size": cfg.size,
                "standardize": cfg.standardize,
                "height": cfg.height,
                "threshold": cfg.threshold,
                "metrics": metrics,
            },
            run.path / "checkpoints" / f"restorer-{tag}.pt",
        )

    def checkpoint_and_eval(final: bool = False) -> dict[str, float]:
        nonlocal best
        metrics = evaluate(net, samples, cfg, device, reader, baseline)
        metrics.update(step=step, elapsed_s=round(time.time() - start, 1))
        run.log({"event": "eval", **metrics})
        progress(f"eval {metrics}")
        score = metrics.get("eval_restored_exact", 0.0) + metrics["eval_dice"]
        if score >= best:
            best = score
            save("best", metrics)
        if final:
            save("last", metrics)
        return metrics

    for crops, masks in loader:
        x = crops.to(device, non_blocking=True).float() / 127.5 - 1.0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = net(x)
        loss = restorer_loss(logits, masks.to(device), cfg.pos_weight_max, cfg.dice_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad = float(torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip))
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(step, cfg.steps, time.time() - start, cfg.time_limit_s, warmup=50)
        optimizer.step()
        step += 1
        losses.append(float(loss.item()))
        if step % cfg.log_every == 0:
            record = {
                "event": "train",
                "step": step,
                "loss": float(np.mean(losses[-cfg.log_every :])),
                "grad_norm": round(grad, 3),
                "lr": optimizer.param_groups[0]["lr"],
                "elapsed_s": round(time.time() - start, 1),
            }
            run.log(record)
            progress(str(record))
        if step % cfg.eval_every == 0 and step < cfg.steps:
            checkpoint_and_eval()
        if cfg.time_limit_s is not None and time.time() - start > cfg.time_limit_s:
            timed_out = True
            break
        if step >= cfg.steps:
            break
    final = checkpoint_and_eval(final=True)
    run.update_info(
        status="completed",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        steps=step,
        timed_out=timed_out,
        final_metrics=final,
        train_seconds=round(time.time() - start, 1),
    )


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def load_checkpoint(path: Path) -> tuple[GlyphRestorer, dict[str, Any]]:
    """A restorer checkpoint's network (eval mode) and its saved fields (loaded with ``weights_only``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = build_restorer(state["size"], bool(state.get("standardize", False)))
    net.load_state_dict(state["state_dict"])
    return net.eval(), state
