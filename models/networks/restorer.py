"""Learned restoration: a small U-Net that maps a gray line crop (or photo tile) to a glyph-mask logit map.

Trained on rendered pairs (a worn or ground photo's line crop, the clean glyph mask of the same
marking cut through the same quadrilateral), it proposes *what a faint marking says*. Its output is
a suggestion for an examiner and for the recognizer (the mask is drawn as dark glyphs on a light
background and read like any line crop); it never replaces the deterministic views.

The map has the input's size. Input height and width must be multiples of
:data:`RESTORER_MULTIPLE` (three stride-2 stages); line crops are 64 px high and right-padded to a
multiple of 8 like the recognizer's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESTORER_MULTIPLE = 8
"""Input height and width must be multiples of this (three stride-2 stages)."""
STANDARDIZE_EPS = 0.02
"""Added to the per-crop standard deviation (of inputs in [-1, 1]) so that a flat crop is not amplified to noise."""


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, stride), _conv(cout, cout))


class GlyphRestorer(nn.Module):
    """U-Net on float gray input normalised to about [-1, 1]: (N, 1, H, W) -> (N, 1, H, W) glyph logits.

    A full-resolution stem, three stride-2 encoder stages (1/2, 1/4, 1/8) and a decoder with skip
    connections back to full resolution; bilinear upsampling.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), standardize: bool = False) -> None:
        super().__init__()
        self.standardize = standardize
        """Standardise each input to zero mean and unit deviation first (faint markings have little contrast)."""
        w = widths
        self.stem = _conv(1, w[0])
        self.enc1 = _block(w[0], w[1], 2)  # 1/2
        self.enc2 = _block(w[1], w[2], 2)  # 1/4
        self.enc3 = _block(w[2], w[3], 2)  # 1/8
        self.dec2 = _block(w[3] + w[2], w[2], 1)
        self.dec1 = _block(w[2] + w[1], w[1], 1)
        self.dec0 = _conv(w[1] + w[0], w[0])
        self.head = nn.Conv2d(w[0], 1, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Glyph-mask logits (N, 1, H, W) for a normalised line crop batch (N, 1, H, W)."""
        if self.standardize:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            x = (x - mean) / (std + STANDARDIZE_EPS)
        s0 = self.stem(x)
        e1 = self.enc1(s0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([self._up(e3, e2), e2], 1))
        d1 = self.dec1(torch.cat([self._up(d2, e1), e1], 1))
        d0 = self.dec0(torch.cat([self._up(d1, s0), s0], 1))
        return self.head(d0)


class RestorerForExport(nn.Module):
    """Wraps :class:`GlyphRestorer` for ONNX: uint8 (N, 1, H, W) gray in, glyph probability (N, 1, H, W) out."""

    def __init__(self, net: GlyphRestorer) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 grey crops (N, 1, H, W) in; glyph-mask probabilities (N, 1, H, W) out."""
        x = pixels.float() / 127.5 - 1.0
        return torch.sigmoid(self.net(x))


def build_restorer(size: str = "base", standardize: bool = False) -> GlyphRestorer:
    """Build a restorer; ``base`` ships (about 0.5 M parameters), ``tiny`` is for tests and CI."""
    if size == "tiny":
        return GlyphRestorer((4, 8, 8, 16), standardize)
    return GlyphRestorer(standardize=standardize)
