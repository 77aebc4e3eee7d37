"""Training crops: cuts moved across and along the line the way the detector misplaces its boxes."""

from __future__ import annotations

import numpy as np
import pytest

from marktrace.training.config import TrainConfig

pytest.importorskip("torch")

from marktrace.training.data import random_line_crop, shift_cut  # noqa: E402

# A line 200 px long and 20 px high, turned by 90 degrees (reading downwards), so "across" is -x and "along" +y.
TURNED = np.array([[50, 10], [50, 210], [30, 210], [30, 10]], np.float32)


def test_shift_cut_moves_the_whole_cut_across_and_each_end_along_the_line() -> None:
    moved = shift_cut(TURNED, 20.0, 0.5, np.array([0.0, 0.0]))
    np.testing.assert_allclose(moved - TURNED, [[-10, 0]] * 4, atol=1e-4)  # half a line height, "down" the line
    moved = shift_cut(TURNED, 20.0, 0.0, np.array([0.25, -1.0]))
    np.testing.assert_allclose(moved[[0, 3]] - TURNED[[0, 3]], [[0, 5]] * 2, atol=1e-4)  # the start moves in
    np.testing.assert_allclose(moved[[1, 2]] - TURNED[[1, 2]], [[0, -20]] * 2, atol=1e-4)  # the end moves back
    assert shift_cut(TURNED, 20.0, 0.0, np.zeros(2)).tolist() == TURNED.tolist()


def test_cuts_move_only_when_asked_and_then_by_about_the_set_spread() -> None:
    image = np.zeros((300, 300), np.uint8)
    image[:, 150:] = 255  # a vertical edge: a cut's content tells where across the line it was taken
    quad = np.array([[100, 100], [200, 100], [200, 120], [100, 120]], np.float32)
    still = TrainConfig(name="t", recognizer={"pad_x": (0.0, 0.0), "pad_y": (0.0, 0.0), "jitter": 0.0})
    rng = np.random.default_rng(0)
    crops = [random_line_crop(image, quad, still, rng) for _ in range(5)]
    assert all(np.array_equal(crops[0], c) for c in crops)

    image = np.zeros((300, 300), np.uint8)
    image[110:, :] = 255  # a horizontal edge through the line's middle
    loose = TrainConfig(name="t", recognizer={"pad_x": (0.0, 0.0), "pad_y": (0.0, 0.0), "jitter": 0.0,
                                              "shift_across": 0.2})
    edges = []
    for _ in range(200):
        crop = random_line_crop(image, quad, loose, rng)
        if crop.shape[0] and crop.min() < 128 <= crop.max():  # the edge still inside the cut
            column = crop[:, crop.shape[1] // 2].astype(int)
            edges.append(int(np.argmax(np.abs(np.diff(column)))) + 1)  # either polarity (5% of cuts are inverted)
    # the edge sits at the crop's middle (row 32 of 64) for an unmoved cut; a 0.2-line-height spread moves it
    # by about 0.2 * 64 = 13 rows
    assert 8 < float(np.std(edges)) < 18 and abs(float(np.mean(edges)) - 32) < 4
