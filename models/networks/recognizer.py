"""Text-line recognizer: VGG feature extractor, two BiLSTMs, CTC head (None-VGG-BiLSTM-CTC).

The layer layout and parameter names match EasyOCR's ``english_g2`` so its official weights load
as the starting point for fine-tuning. The ONNX-facing wrapper takes uint8 pixels and bakes the
normalisation into the graph; the export uses ``mean`` over the height axis instead of EasyOCR's
``AdaptiveAvgPool2d((None, 1))``, which is the same operation and exports cleanly.
"""

from __future__ import annotations

import torch
from torch import nn


class VGGFeatureExtractor(nn.Module):
    """EasyOCR's VGG_FeatureExtractor (same module indices, so state dicts are compatible)."""

    def __init__(self, input_channel: int = 1, output_channel: int = 256) -> None:
        super().__init__()
        c = [output_channel // 8, output_channel // 4, output_channel // 2, output_channel]
        self.ConvNet = nn.Sequential(
            nn.Conv2d(input_channel, c[0], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[0], c[1], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(True),
            nn.Conv2d(c[2], c[2], 3, 1, 1), nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[2], c[3], 3, 1, 1, bias=False), nn.BatchNorm2d(c[3]), nn.ReLU(True),
            nn.Conv2d(c[3], c[3], 3, 1, 1, bias=False), nn.BatchNorm2d(c[3]), nn.ReLU(True),
            nn.MaxPool2d((2, 1), (2, 1)),
            nn.Conv2d(c[3], c[3], 2, 1, 0), nn.ReLU(True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """VGG feature maps of a normalised grey crop batch (N, 1, H, W)."""
        return self.ConvNet(x)


class BidirectionalLSTM(nn.Module):
    """A BiLSTM followed by a linear projection, as in EasyOCR."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.linear = nn.Linear(hidden_size * 2, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bidirectional LSTM over the sequence (N, T, input_size), projected to (N, T, output_size)."""
        recurrent, _ = self.rnn(x)
        return self.linear(recurrent)


class CRNN(nn.Module):
    """None-VGG-BiLSTM-CTC recognizer on float input in [-1, 1], shape (N, 1, H, W) -> logits (N, T, C)."""

    def __init__(self, num_class: int, input_channel: int = 1, output_channel: int = 256, hidden: int = 256):
        super().__init__()
        self.FeatureExtraction = VGGFeatureExtractor(input_channel, output_channel)
        self.SequenceModeling = nn.Sequential(
            BidirectionalLSTM(output_channel, hidden, hidden),
            BidirectionalLSTM(hidden, hidden, hidden),
        )
        self.Prediction = nn.Linear(hidden, num_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step class logits (N, T, num_class) for a normalised grey crop batch (N, 1, H, W)."""
        features = self.FeatureExtraction(x)  # N, C, H', T
        sequence = features.mean(dim=2).permute(0, 2, 1)  # N, T, C
        return self.Prediction(self.SequenceModeling(sequence))


class RecognizerForExport(nn.Module):
    """Wraps :class:`CRNN` for ONNX: uint8 (N, 1, H, W) in, per-step class probabilities (N, T, C) out."""

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        self.crnn = crnn

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 grey crops (N, 1, 64, W) in; per-step softmax (N, W/4 - 1, num_class) out."""
        x = pixels.float() / 127.5 - 1.0
        return torch.softmax(self.crnn(x), dim=-1)


def build_recognizer(num_class: int, size: str = "g2") -> CRNN:
    """Build a recognizer; ``g2`` matches EasyOCR english_g2, ``tiny`` is for tests and CI."""
    if size == "tiny":
        return CRNN(num_class, output_channel=32, hidden=32)
    return CRNN(num_class)
