"""Training scenes: a marking set, smaller, into the shaded relief of a bare part, its line boxes moved with it."""

from __future__ import annotations

import cv2
import numpy as np

from marktrace.datasets.scenes import part_surface, set_into_scene


def _edge_energy(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0)).mean() + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1)).mean())


def test_a_part_surface_is_deterministic_keeps_the_base_colour_and_has_structure() -> None:
    base = np.array([90.0, 100.0, 110.0])
    one = part_surface((256, 320), base, np.random.default_rng(7))
    again = part_surface((256, 320), base, np.random.default_rng(7))
    other = part_surface((256, 320), base, np.random.default_rng(8))
    assert one.shape == (256, 320, 3) and one.dtype == np.uint8
    assert np.array_equal(one, again) and not np.array_equal(one, other)
    # the flat part keeps the base level: the median, unlike the mean, ignores highlights and holes
    assert np.all(np.abs(np.median(one.reshape(-1, 3), axis=0) - base) < 0.25 * base)
    flat = np.full_like(one, 100)
    flat = (flat + np.random.default_rng(0).normal(0, 3, flat.shape)).clip(0, 255).astype(np.uint8)
    assert min(
        _edge_energy(part_surface((256, 320), base, np.random.default_rng(s))) for s in range(5)
    ) > 1.5 * _edge_energy(flat)


def test_a_marking_set_into_a_scene_keeps_its_pixels_under_the_moved_boxes() -> None:
    rng = np.random.default_rng(3)
    marking = rng.integers(0, 255, (120, 300, 3), dtype=np.uint8)
    marking = cv2.GaussianBlur(marking, (0, 0), 3)  # smooth, so that resizing keeps values comparable
    quad = np.array([[60, 40], [240, 40], [240, 80], [60, 80]], np.float32)
    for seed in range(6):
        scene, (moved,) = set_into_scene(marking, [quad], 512, (0.3, 0.7), np.random.default_rng(seed))
        assert scene.shape == (512, 512, 3)
        assert moved.min() >= 0 and moved.max() <= 512
        scale = (moved[1, 0] - moved[0, 0]) / (quad[1, 0] - quad[0, 0])
        assert 0.3 * 512 / 300 - 1e-3 <= scale <= 0.7 * 512 / 300 + 1e-3  # the long side spans the asked share
        assert np.allclose(moved - quad * scale, moved[0] - quad[0] * scale, atol=1e-3)  # one scale, one shift
        small = cv2.resize(marking, (round(300 * scale), round(120 * scale)), interpolation=cv2.INTER_AREA)
        x0, y0 = np.round(moved[0] - quad[0] * scale).astype(int)
        inner = moved.astype(int)
        got = scene[inner[0, 1] : inner[2, 1], inner[0, 0] : inner[1, 0]].astype(int)
        want = small[inner[0, 1] - y0 : inner[2, 1] - y0, inner[0, 0] - x0 : inner[1, 0] - x0].astype(int)
        assert got.shape == want.shape and np.abs(got - want).mean() < 0.5 and np.abs(got - want).max() <= 8
