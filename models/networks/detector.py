"""Text-line detector: a small U-Net that maps a photo to a line-core probability map and a reading direction.

Outputs at 1/4 of the input resolution, three channels: the probability that a pixel lies in the
(shrunk) core of a text line, and the cosine and sine of the line's reading direction there. The
direction lets the pipeline read lines at any orientation (upside-down and vertical included)
without running the recognizer twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DETECTOR_STRIDE = 4
"""Output map cells per input pixel along each axis (the map is 1/4 of the input)."""


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LineDetector(nn.Module):
    """U-Net on float RGB input normalised to about [-1, 1]: (N, 3, H, W) -> (N, 3, H/4, W/4) raw maps."""

    def __init__(self, widths: tuple[int, int, int, int, int] = (16, 32, 64, 96, 128)) -> None:
        super().__init__()
        w = widths
        self.enc1 = _block(3, w[0], 2)  # 1/2
        self.enc2 = _block(w[0], w[1], 2)  # 1/4
        self.enc3 = _block(w[1], w[2], 2)  # 1/8
        self.enc4 = _block(w[2], w[3], 2)  # 1/16
        self.enc5 = _block(w[3], w[4], 2)  # 1/32
        self.dec4 = _block(w[4] + w[3], w[3], 1)
        self.dec3 = _block(w[3] + w[2], w[2], 1)
        self.dec2 = _block(w[2] + w[1], w[1], 1)
        self.head = nn.Conv2d(w[1], 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw maps (N, 3, H/4, W/4): line-core logit, then the reading direction's cos and sin."""
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        e5 = self.enc5(e4)
        d4 = self.dec4(torch.cat([F.interpolate(e5, size=e4.shape[-2:], mode="nearest"), e4], 1))
        d3 = self.dec3(torch.cat([F.interpolate(d4, size=e3.shape[-2:], mode="nearest"), e3], 1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, size=e2.shape[-2:], mode="nearest"), e2], 1))
        return self.head(d2)


class DetectorForExport(nn.Module):
    """Wraps :class:`LineDetector` for ONNX: uint8 (N, H, W, 3) RGB in, (N, 3, H/4, W/4) maps out.

    Channel 0 is the line-core probability (sigmoid applied); channels 1-2 are the unit reading
    direction (cos, sin) in image coordinates (x right, y down).
    """

    def __init__(self, net: LineDetector) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC RGB in; (N, 3, H/4, W/4) out: core probability and unit reading direction."""
        x = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        raw = self.net(x)
        prob = torch.sigmoid(raw[:, :1])
        direction = F.normalize(raw[:, 1:3], dim=1, eps=1e-6)
        return torch.cat([prob, direction], dim=1)


def build_detector(size: str = "base") -> LineDetector:
    """Build a detector; ``base`` ships, ``tiny`` is for tests and CI."""
    if size == "tiny":
        return LineDetector((4, 8, 8, 16, 16))
    if size == "large":
        return LineDetector((24, 48, 96, 128, 192))
    return LineDetector()
