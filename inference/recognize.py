"""Recognizer pre-processing in numpy: line crops -> a padded uint8 batch (same code in training)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

WIDTH_MULTIPLE = 8


def pad_line_crop(crop: np.ndarray, width: int) -> np.ndarray:
    """Right-pad a gray line crop to ``width`` by replicating its last column."""
    return cv2.copyMakeBorder(crop, 0, 0, 0, width - crop.shape[1], cv2.BORDER_REPLICATE)


def batch_line_crops(crops: Sequence[np.ndarray], height: int) -> np.ndarray:
    """Stack gray crops of one height into uint8 (N, 1, height, W), W the widest rounded up to 8."""
    width = max(c.shape[1] for c in crops)
    width = int(np.ceil(width / WIDTH_MULTIPLE) * WIDTH_MULTIPLE)
    batch = np.zeros((len(crops), 1, height, width), np.uint8)
    for i, crop in enumerate(crops):
        batch[i, 0] = pad_line_crop(crop, width)
    return batch
