"""Over-stamp patch scorer: a small CNN that scores one character's patch of a line crop as over-stamped.

Input: the recognizer's gray line crop (64 px high) cut to a square patch centred on one character (the
column of its CTC step), so the patch holds the character and the edges of its neighbours. Output: one
logit per patch. The logit is one input of the over-stamp flagger's logistic regression (beside the
recognizer's own per-step probabilities), never a flag by itself.
"""

from __future__ import annotations

import torch
from torch import nn

from marktrace.inference.enhance.alteration import PATCH_SIZE

__all__ = ["PATCH_SIZE", "PatchScorer", "PatchScorerForExport", "build_patch_scorer"]
STANDARDIZE_EPS = 0.02
"""Added to each patch's standard deviation (of values in [0, 1]) so a flat patch is not amplified to noise."""


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PatchScorer(nn.Module):
    """(N, 1, S, S) float patches in [0, 1] -> (N,) over-stamp logits.

    Each patch is standardised on its own (marks differ in contrast by an order of magnitude), then three
    conv + pool stages (1/8), two more convs, and a linear head on global mean and max pooling.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(1, w), nn.MaxPool2d(2), _conv(w, 2 * w), nn.MaxPool2d(2), _conv(2 * w, 4 * w), nn.MaxPool2d(2),
            _conv(4 * w, 4 * w), _conv(4 * w, 4 * w),
        )
        self.head = nn.Linear(8 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One over-stamp logit per patch (N,) for normalised patches (N, 1, P, P)."""
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True) + STANDARDIZE_EPS
        h = self.features((x - mean) / std)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


class PatchScorerForExport(nn.Module):
    """uint8 (N, 1, S, S) patches -> (N,) logits: the ``x / 255`` scaling inside the graph."""

    def __init__(self, net: PatchScorer) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 patches (N, 1, P, P) in; one logit per patch (N,) out."""
        return self.net(pixels.float() / 255.0)


def build_patch_scorer(width: int = 16) -> PatchScorer:
    """A patch scorer of the given base width (16: about 0.1 M parameters)."""
    return PatchScorer(width)
