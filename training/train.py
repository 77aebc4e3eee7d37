"""The training loop: detector and recognizer trained together on the same rendered photos."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from marktrace.datasets.synth import render_marking
from marktrace.inference.ctc import greedy_decode
from marktrace.inference.detect import postprocess_maps, prepare_detector_input
from marktrace.inference.geometry import pad_quad, rectify_line
from marktrace.inference.recognize import batch_line_crops
from marktrace.models.networks.detector import (
    DETECTOR_STRIDE,
    DetectorForExport,
    LineDetector,
    build_detector,
)
from marktrace.models.networks.recognizer import CRNN, RecognizerForExport, build_recognizer
from marktrace.models.onnx_weights import freeze_batchnorm, load_onnx_weights, verify_if_registered
from marktrace.models.pretrained import EASYOCR_CHARSET, ENGLISH_G2, verified_weight_path
from marktrace.training.config import TrainConfig
from marktrace.training.data import EVAL_SEED_BASE, PhotoStream, batch_crops_for_torch, collate_photos
from marktrace.training.run import RunFolder, atomic_torch_save

DETECTOR_EVAL_LONG_SIDE = 640


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def load_recognizer(cfg: TrainConfig) -> tuple[CRNN, str]:
    """Build the recognizer and load its starting weights.

    ``recognizer.init_from`` (a checkpoint, loaded with ``weights_only``, or an exported ONNX file, checked
    against its folder's ``registry.json`` when registered there, then parity checked) wins over ``init``
    (english_g2, checksum verified, or scratch).
    """
    charset = EASYOCR_CHARSET
    model = build_recognizer(len(charset) + 1, cfg.recognizer.size)
    source = cfg.recognizer.init_from
    if source is not None and Path(source).suffix == ".onnx":
        from marktrace.models.onnx_metadata import read_metadata

        verify_if_registered(Path(source))  # before its metadata (charset) is trusted
        meta = read_metadata(Path(source))
        charset = json.loads(meta.get("charset", json.dumps(charset)))
        model = build_recognizer(len(charset) + 1, cfg.recognizer.size)
        probe = torch.randint(0, 256, (1, 1, cfg.recognizer.height, 160), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0))
        load_onnx_weights(model, Path(source), probe, RecognizerForExport)
    elif source is not None:
        state = torch.load(source, map_location="cpu", weights_only=True)
        charset = state.get("charset", charset)
        model = build_recognizer(len(charset) + 1, state.get("size", cfg.recognizer.size))
        model.load_state_dict(state["state_dict"])
    elif cfg.recognizer.init == "english_g2" and cfg.recognizer.steps > 0:
        path = verified_weight_path(ENGLISH_G2, cfg.pretrained_dir)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"english_g2 weights do not fit: missing {missing}, unexpected {unexpected}")
    return model, charset


def load_detector(cfg: TrainConfig) -> LineDetector:
    """Build the detector, continuing from ``detector.init_from`` if set.

    A checkpoint is loaded with ``weights_only``; an ONNX file is checked against its folder's ``registry.json``
    when registered there (:func:`load_onnx_weights`), then parity checked.
    """
    detector = build_detector(cfg.detector.size)
    source = cfg.detector.init_from
    if source is not None and Path(source).suffix == ".onnx":
        probe = torch.randint(0, 256, (1, 128, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        load_onnx_weights(detector, Path(source), probe, DetectorForExport, atol=1e-3)
    elif source is not None:
        state = torch.load(source, map_location="cpu", weights_only=True)
        detector.load_state_dict(state["state_dict"])
    return detector


def set_train_mode(detector: torch.nn.Module, recognizer: torch.nn.Module, cfg: TrainConfig) -> None:
    """Both networks to train mode; batch norms imported from ONNX (folded, no statistics) stay in eval mode."""
    detector.train()
    recognizer.train()
    if cfg.detector.init_from is not None and Path(cfg.detector.init_from).suffix == ".onnx":
        freeze_batchnorm(detector)
    if cfg.recognizer.init_from is not None and Path(cfg.recognizer.init_from).suffix == ".onnx":
        freeze_batchnorm(recognizer)


def encode_texts(texts: list[str], charset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC targets: concatenated class indices (1-based) and lengths."""
    index = {c: i + 1 for i, c in enumerate(charset)}
    flat = [index[c] for t in texts for c in t]
    return torch.tensor(flat, dtype=torch.long), torch.tensor([len(t) for t in texts], dtype=torch.long)


def detector_loss(raw: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE + dice on the core map, cosine loss on the reading direction inside cores."""
    logits = raw[:, 0].float()
    core = target[:, 0]
    positives = core.sum().clamp(min=1.0)
    pos_weight = ((1 - core).sum() / positives).clamp(max=10.0)
    bce = F.binary_cross_entropy_with_logits(logits, core, weight=weight, pos_weight=pos_weight)
    prob = torch.sigmoid(logits) * weight
    dice = 1 - (2 * (prob * core).sum() + 1) / (prob.sum() + core.sum() + 1)
    direction = F.normalize(raw[:, 1:3].float(), dim=1, eps=1e-6)
    cos_sim = (direction * target[:, 1:3]).sum(1)
    dir_loss = ((1 - cos_sim) * core).sum() / positives
    return bce + dice + 0.5 * dir_loss


def lr_factor(step: int, total: int, elapsed: float, time_limit: float | None, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 5% over the steps or the time limit, whichever ends first."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if time_limit:
        progress = max(progress, elapsed / time_limit)
    progress = min(1.0, progress)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def _set_lr(optimizer: torch.optim.Optimizer, base: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base * factor


def evaluation_set(cfg: TrainConfig, count: int) -> list[Any]:
    """Rendered evaluation photos (fixed seeds disjoint from training)."""
    config = cfg.synth.model_copy(update={"wear": (0.0, 0.5)})
    return [render_marking(EVAL_SEED_BASE + i, config) for i in range(count)]


@torch.no_grad()
def evaluate(
    detector: LineDetector,
    recognizer: CRNN,
    charset: str,
    samples: list[Any],
    cfg: TrainConfig,
    device: torch.device,
) -> dict[str, float | None]:
    """Serial and maker-line exact match from truth boxes, line recall of the detector.

    ``eval_maker_exact`` is over the samples' maker lines (spaces ignored), None when no sample has one: the
    1.1.0 recognizer read worn maker lines worse than its parent while its serials improved, so both are
    tracked.
    """
    detector.eval()
    recognizer.eval()
    wrapped = DetectorForExport(detector).to(device)
    correct = 0
    total = 0
    makers_correct = 0
    makers_total = 0
    found = 0
    lines_total = 0

    def read(image: np.ndarray, polygon: Any) -> str:
        quad = pad_quad(np.asarray(polygon, np.float32), 0.3, 0.15)
        crop = rectify_line(image, quad, cfg.recognizer.height, cfg.recognizer.max_width)
        batch = torch.from_numpy(batch_line_crops([crop], cfg.recognizer.height)).to(device)
        probs = torch.softmax(recognizer(batch.float() / 127.5 - 1.0), -1)[0].float().cpu().numpy()
        return greedy_decode(probs, charset).text.replace(" ", "")

    for sample in samples:
        serial_line = next(ln for ln in sample.lines if ln.role == "serial")
        correct += int(read(sample.image, serial_line.polygon) == serial_line.text.replace(" ", ""))
        total += 1
        for line in sample.lines:
            if line.role == "maker":
                makers_correct += int(read(sample.image, line.polygon) == line.text.replace(" ", ""))
                makers_total += 1
        det_in = prepare_detector_input(sample.image, DETECTOR_EVAL_LONG_SIDE)
        maps = wrapped(torch.from_numpy(det_in.tensor).to(device))[0].float().cpu().numpy()
        detected = postprocess_maps(maps, DETECTOR_STRIDE, det_in.scale)
        centers = [d.quad.mean(0) for d in detected]
        for line in sample.lines:
            lines_total += 1
            poly = np.asarray(line.polygon, np.float32)
            inside = [c for c in centers if _point_in_quad(c, poly)]
            found += int(bool(inside))
    set_train_mode(detector, recognizer, cfg)
    return {
        "eval_serial_exact": correct / max(total, 1),
        "eval_maker_exact": makers_correct / makers_total if makers_total else None,
        "eval_line_recall": found / max(lines_total, 1),
    }


def _point_in_quad(point: np.ndarray, quad: np.ndarray) -> bool:
    import cv2

    return (
        cv2.pointPolygonTest(quad.reshape(-1, 1, 2).astype(np.float32), (float(point[0]), float(point[1])), False) >= 0
    )


def _quiet_worker(_: int) -> None:
    """Rendering workers use one torch thread each; the cores are shared among the workers.

    OpenCV's thread count is set once in the parent before the workers fork (changing it in a
    forked child can deadlock on the parent's thread-pool state).
    """
    torch.set_num_threads(1)


def train(cfg: TrainConfig, out_root: Path, progress: Callable[[str], None] = print) -> Path:
    """Train both models per ``cfg``; returns the run folder.

    ``run.json`` says ``status: running`` while the run trains and ``completed`` when it ends; an error
    (or an interrupt) is recorded there as ``status: failed`` with the error, then raised.
    """
    import cv2

    if cfg.workers > 0:
        cv2.setNumThreads(1)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (2**32))
    device = resolve_device(cfg.device)
    run = RunFolder(
        out_root, cfg.name, cfg, extra={"device": str(device), "torch": torch.__version__, "status": "running"}
    )
    with run.failure_recorded():
        _train_in(run, cfg, device, progress)
    return run.path


def _train_in(run: RunFolder, cfg: TrainConfig, device: torch.device, progress: Callable[[str], None]) -> None:
    """The training loop of :func:`train`, writing into ``run``."""
    detector = load_detector(cfg).to(device)
    recognizer, charset = load_recognizer(cfg)
    recognizer = recognizer.to(device)
    set_train_mode(detector, recognizer, cfg)
    run.update_info(
        charset=charset,
        recognizer_init=str(cfg.recognizer.init_from or cfg.recognizer.init),
        detector_init=str(cfg.detector.init_from or "scratch"),
        seed=cfg.seed,
    )
    det_opt = torch.optim.AdamW(detector.parameters(), lr=cfg.detector.lr, weight_decay=cfg.detector.weight_decay)
    rec_opt = torch.optim.AdamW(recognizer.parameters(), lr=cfg.recognizer.lr, weight_decay=cfg.recognizer.weight_decay)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    stream = PhotoStream(cfg, charset)
    stream.started = time.time()
    loader = DataLoader(
        stream,
        batch_size=cfg.detector.batch_size,
        collate_fn=collate_photos,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers > 0 else None,
        worker_init_fn=_quiet_worker,
    )
    eval_samples = evaluation_set(cfg, cfg.eval_images)
    use_amp = device.type == "cuda"
    det_step = rec_step = 0
    crop_buffer: list[tuple[np.ndarray, str]] = []
    start = time.time()
    det_losses: list[float] = []
    rec_losses: list[float] = []
    best = -1.0
    timed_out = False
    last_eval_step = 0
    det_grad = 0.0

    def save(tag: str, metrics: dict[str, Any]) -> None:
        """Both checkpoints, atomically; tensors and plain values only (they load with ``weights_only``)."""
        atomic_torch_save(
            {"state_dict": detector.state_dict(), "size": cfg.detector.size, "metrics": metrics},
            run.path / "checkpoints" / f"detector-{tag}.pt",
        )
        atomic_torch_save(
            {
                "state_dict": recognizer.state_dict(),
                "size": cfg.recognizer.size,
                "charset": charset,
                "height": cfg.recognizer.height,
                "metrics": metrics,
            },
            run.path / "checkpoints" / f"recognizer-{tag}.pt",
        )

    def checkpoint_and_eval(final: bool = False) -> dict[str, Any]:
        nonlocal best
        metrics: dict[str, Any] = evaluate(detector, recognizer, charset, eval_samples, cfg, device)
        metrics.update(det_step=det_step, rec_step=rec_step, elapsed_s=round(time.time() - start, 1))
        run.log({"event": "eval", **metrics})
        progress(f"eval {metrics}")
        score = metrics["eval_serial_exact"] + metrics["eval_line_recall"]
        if score >= best:
            best = score
            save("best", metrics)
        if final:
            save("last", metrics)
        return metrics

    for batch in loader:
        if det_step < cfg.detector.steps:
            images = batch["det_image"].to(device, non_blocking=True)
            x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                raw = detector(x)
            loss = detector_loss(raw, batch["det_target"].to(device), batch["det_weight"].to(device))
            det_opt.zero_grad(set_to_none=True)
            loss.backward()
            det_grad = float(torch.nn.utils.clip_grad_norm_(detector.parameters(), cfg.detector.grad_clip))
            _set_lr(
                det_opt,
                cfg.detector.lr,
                lr_factor(det_step, cfg.detector.steps, time.time() - start, cfg.time_limit_s),
            )
            det_opt.step()
            det_step += 1
            det_losses.append(float(loss.item()))
        crop_buffer.extend(batch["crops"])
        while len(crop_buffer) >= cfg.recognizer.batch_size and rec_step < cfg.recognizer.steps:
            chunk, crop_buffer = (
                crop_buffer[: cfg.recognizer.batch_size],
                crop_buffer[cfg.recognizer.batch_size :],
            )
            pixels, texts = batch_crops_for_torch(chunk, cfg.recognizer.height)
            x = pixels.to(device).float() / 127.5 - 1.0
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = recognizer(x)
            log_probs = logits.float().log_softmax(-1).permute(1, 0, 2)
            targets, lengths = encode_texts(texts, charset)
            input_lengths = torch.full((len(texts),), log_probs.shape[0], dtype=torch.long)
            loss = ctc(log_probs, targets, input_lengths, lengths)
            rec_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(recognizer.parameters(), cfg.recognizer.grad_clip)
            _set_lr(
                rec_opt,
                cfg.recognizer.lr,
                lr_factor(rec_step, cfg.recognizer.steps, time.time() - start, cfg.time_limit_s),
            )
            rec_opt.step()
            rec_step += 1
            rec_losses.append(float(loss.item()))
        if len(crop_buffer) > 20 * cfg.recognizer.batch_size:
            crop_buffer = crop_buffer[-10 * cfg.recognizer.batch_size :]
        step = max(det_step, rec_step)
        if step % cfg.log_every == 0 and (det_losses or rec_losses):
            record = {
                "event": "train",
                "det_step": det_step,
                "rec_step": rec_step,
                "det_loss": float(np.mean(det_losses[-cfg.log_every :])) if det_losses else None,
                "rec_loss": float(np.mean(rec_losses[-cfg.log_every :])) if rec_losses else None,
                "det_grad_norm": round(det_grad, 3),
                "elapsed_s": round(time.time() - start, 1),
            }
            run.log(record)
            progress(str(record))
        if step and step % cfg.eval_every == 0 and step != last_eval_step:
            last_eval_step = step
            checkpoint_and_eval()
        if cfg.time_limit_s is not None and time.time() - start > cfg.time_limit_s:
            timed_out = True
            break
        if det_step >= cfg.detector.steps and rec_step >= cfg.recognizer.steps:
            break
    final = checkpoint_and_eval(final=True)
    run.update_info(
        status="completed",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        det_steps=det_step,
        rec_steps=rec_step,
        timed_out=timed_out,
        final_metrics=final,
        train_seconds=round(time.time() - start, 1),
    )
