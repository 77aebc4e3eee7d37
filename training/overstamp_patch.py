"""Train the over-stamp patch scorer (torch): a small CNN on each character's patch of the line crop.

Called by :func:`marktrace.training.overstamp.train_overstamp` when its config has a ``patch_scorer``; the
scorer's logit becomes two features of the flagger's logistic regression (model format 2). Deterministic
for a given seed and thread count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from marktrace.models.networks.overstamp import PatchScorer, build_patch_scorer
from marktrace.training.overstamp import PatchScorerTrainConfig

MAX_SHIFT = 4
"""Largest horizontal shift (px) of a training patch: the CTC step places a character to about a step (4 px)."""


def augment(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photometric and placement jitter of uint8 (n, 1, S, S) patches; float32 in [0, 255].

    Polarity flips (dark and bright marks), horizontal shifts of up to :data:`MAX_SHIFT` px, gain, offset and
    noise. No mirror: a mirrored glyph is not a marking.
    """
    x = patches.astype(np.float32)
    n = len(x)
    invert = rng.random(n) < 0.5
    x[invert] = 255.0 - x[invert]
    shifts = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, n)
    x = np.stack([np.roll(p, int(s), axis=2) for p, s in zip(x, shifts, strict=True)])
    gain = rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32)
    offset = rng.uniform(-20.0, 20.0, (n, 1, 1, 1)).astype(np.float32)
    noise = rng.normal(0.0, 3.0, x.shape).astype(np.float32)
    return np.asarray(np.clip((x - 128.0) * gain + 128.0 + offset + noise, 0.0, 255.0), np.float32)


def train_patch_scorer(
    patches: np.ndarray,
    labels: np.ndarray,
    cfg: PatchScorerTrainConfig,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> PatchScorer:
    """Train a scorer on uint8 (n, 1, S, S) patches with 0/1 ``labels``; returns it in eval mode."""
    if len(patches) != len(labels) or len(patches) < cfg.batch_size:
        raise ValueError(f"need at least {cfg.batch_size} patches with one label each, got {len(patches)} / "
                         f"{len(labels)}")
    torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    net = build_patch_scorer(cfg.width)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr / 5, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(patches) // cfg.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    targets = torch.from_numpy(np.asarray(labels, np.float32))
    try:
        for epoch in range(cfg.epochs):
            net.train()
            t0 = time.perf_counter()
            order = rng.permutation(len(patches))
            total = 0.0
            for k in range(steps_per_epoch):
                batch = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
                x = torch.from_numpy(augment(patches[batch], rng) / 255.0)
                loss = F.binary_cross_entropy_with_logits(net(x), targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.item())
            if log:
                log({"stage": "patch_scorer", "epoch": epoch, "loss": round(total / steps_per_epoch, 5),
                     "seconds": round(time.perf_counter() - t0, 1)})
    finally:
        torch.set_num_threads(threads)
    return net.eval()
