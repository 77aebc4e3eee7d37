"""Analytic surfaces rendered under known lights (Lambertian), for the photometric tests."""

from __future__ import annotations

import numpy as np

from marktrace.inference.enhance.photometric import direction_vector


def hemisphere(size: int = 128, radius: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact normals (H, W, 3) of a hemisphere on a plane, and the mask of the sphere."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2.0
    r2 = (xx - c) ** 2 + (yy - c) ** 2
    inside = r2 < radius * radius
    z = np.sqrt(np.maximum(radius * radius - r2, 0.0))
    n = np.dstack([(xx - c) / radius, (yy - c) / radius, z / radius])
    n[~inside] = (0.0, 0.0, 1.0)
    return n, inside


def groove_surface(h: int = 96, w: int = 128, depth: float = 3.0, width: float = 2.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Height map of a flat plate with an engraved 'L'-shaped groove, and the groove mask."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    d_vert = np.where((yy > 20) & (yy < 76), np.abs(xx - 40), np.inf)
    d_horz = np.where((xx > 40) & (xx < 96), np.abs(yy - 76), np.inf)
    d = np.minimum(d_vert, d_horz)
    height = -depth * np.exp(-(d ** 2) / (2 * width ** 2))
    return height, d < width


def normals_from_height(height: np.ndarray) -> np.ndarray:
    """Unit normals (x right, y down, z up) of a height map."""
    gy, gx = np.gradient(height)
    n = np.dstack([-gx, -gy, np.ones_like(height)])
    return n / np.linalg.norm(n, axis=2, keepdims=True)


def render(normals: np.ndarray, lights: list[tuple[float, float]], albedo: np.ndarray | float = 0.8,
           noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(N, H, W) float images I = albedo * max(0, n . l) (+ Gaussian noise)."""
    L = np.stack([direction_vector(a, e) for a, e in lights])
    imgs = np.maximum(np.einsum("hwk,nk->nhw", normals, L), 0.0) * albedo
    if noise:
        imgs = imgs + np.random.default_rng(seed).normal(0.0, noise, imgs.shape)
    return imgs


def to_u8(imgs: np.ndarray) -> np.ndarray:
    """Quantise float images in [0, 1] to uint8."""
    return np.clip(np.rint(imgs * 255.0), 0, 255).astype(np.uint8)


EIGHT_LIGHTS = [(float(a), 35.0 if i % 2 else 50.0) for i, a in enumerate(range(0, 360, 45))]
