"""Surroundings of a marking on a weapon part, for teaching the detector that a marking is a small part of a photo.

The shipped detector was trained on markings that fill the photo, cut into a flat-coloured canvas; on a large
photo of a part it boxes edges, holes and scratches as text lines (held-out ``cluttered`` benchmark set,
2026-11-28). :func:`part_surface` renders what lies around a marking as a **height field** shaded under one
light: machined steps and slots, drilled holes, pins, a cylinder's curvature, checkering, machining lay and tool
scratches. :func:`set_into_scene` puts a marking photo into such a surface with a feathered border.

This generator is the training side's own: the benchmark's ``bench/sets.py::clutter_surface`` (2-D strokes
drawn onto the photo) stays a held-out test of it, and neither imports the other.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["part_surface", "set_into_scene"]


def _machined_steps(height: np.ndarray, rng: np.random.Generator) -> None:
    """Raised or sunk rectangles and slots with rounded ends (a receiver's flats, a slide's cuts)."""
    h, w = height.shape
    for _ in range(int(rng.integers(1, 5))):
        mask = np.zeros((h, w), np.uint8)
        cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
        length, thick = rng.uniform(0.2, 1.5) * max(h, w), rng.uniform(0.03, 0.5) * min(h, w)
        angle = float(rng.choice([0.0, 90.0, rng.uniform(0, 180)], p=[0.4, 0.3, 0.3]))
        box = cv2.boxPoints(((cx, cy), (length, thick), angle)).astype(np.int32)
        if rng.random() < 0.4:  # a slot: rounded ends
            cv2.line(mask, tuple(box[0]), tuple(box[2]), 1, max(2, int(thick)), cv2.LINE_AA)
        else:
            cv2.fillConvexPoly(mask, box, 1, cv2.LINE_AA)
        height += float(rng.choice([-1.0, 1.0]) * rng.uniform(4, 20)) * mask


def _holes_and_pins(height: np.ndarray, rng: np.random.Generator) -> None:
    """Drilled holes (sunk discs with a chamfer) and pin or screw heads (domes, some slotted)."""
    h, w = height.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.poisson(2.0))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius = rng.uniform(0.015, 0.09) * max(h, w)
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        if rng.random() < 0.5:
            height -= np.clip((radius * 1.15 - r) / (radius * 0.15), 0, 1) * rng.uniform(8, 25)
        else:
            dome = np.sqrt(np.clip(1 - (r / radius) ** 2, 0, 1)) * rng.uniform(3, 10)
            if rng.random() < 0.5:
                angle = rng.uniform(0, np.pi)
                across = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
                dome -= (across < radius * 0.12) * (r < radius) * 4.0
            height += dome


def _checkering(height: np.ndarray, rng: np.random.Generator) -> None:
    """A patch of checkering or serrations (grip panels, cocking serrations): a periodic relief."""
    h, w = height.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pitch = rng.uniform(4, 16)
    angle = rng.uniform(0, np.pi)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) / pitch
    relief = np.abs(np.modf(u)[0] - 0.5)
    if rng.random() < 0.6:  # diamonds: a second set of grooves across
        v = (-xx * np.sin(angle + 1.2) + yy * np.cos(angle + 1.2)) / pitch
        relief = np.minimum(relief, np.abs(np.modf(v)[0] - 0.5))
    patch = np.zeros((h, w), np.float32)
    x0, y0 = int(rng.uniform(-0.3, 0.8) * w), int(rng.uniform(-0.3, 0.8) * h)
    patch[
        max(0, y0) : max(0, y0 + int(rng.uniform(0.2, 0.6) * h)),
        max(0, x0) : max(0, x0 + int(rng.uniform(0.2, 0.6) * w)),
    ] = 1
    soft = cv2.GaussianBlur(patch, (0, 0), 2.0)
    height += soft * relief * rng.uniform(4, 10)


def _lay_and_scratches(height: np.ndarray, rng: np.random.Generator) -> None:
    """Machining lay (noise stretched along one direction) and a few tool scratches."""
    h, w = height.shape
    noise = rng.normal(0, 1, (h, w)).astype(np.float32)
    angle = rng.uniform(0, 180)
    kernel = np.zeros((31, 31), np.float32)
    kernel[15, :] = 1.0 / 31
    turned = cv2.warpAffine(kernel, cv2.getRotationMatrix2D((15, 15), angle, 1.0), (31, 31))
    lay = cv2.filter2D(noise, -1, (turned / max(float(turned.sum()), 1e-6)).astype(np.float32))
    height += lay * rng.uniform(0.3, 2.0)
    scratches = np.zeros((h, w), np.float32)
    for _ in range(int(rng.poisson(4.0))):
        points = [rng.uniform(0, 1, 2) * (w, h)]
        step_angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(1, 4))):
            step_angle += rng.normal(0, 0.2)
            points.append(
                points[-1] + rng.uniform(0.05, 0.4) * max(h, w) * np.array([np.cos(step_angle), np.sin(step_angle)])
            )
        cv2.polylines(scratches, [np.asarray(points, np.int32)], False, -rng.uniform(1, 5), 1, cv2.LINE_AA)
    height += scratches


def part_surface(shape: tuple[int, int], base_bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A ``(h, w, 3)`` uint8 photo of a bare metal part around a marking, coloured about ``base_bgr``.

    The part's relief (steps, holes, pins, checkering, lay, scratches, a cylinder's curvature) is shaded under
    one light (Lambert plus a specular lobe), then coloured and given sensor noise.
    """
    h, w = int(shape[0]), int(shape[1])
    height = np.zeros((h, w), np.float32)
    _machined_steps(height, rng)
    _holes_and_pins(height, rng)
    if rng.random() < 0.35:
        _checkering(height, rng)
    _lay_and_scratches(height, rng)
    smooth = cv2.GaussianBlur(height, (0, 0), rng.uniform(0.6, 1.8))
    gy, gx = np.gradient(smooth)
    if rng.random() < 0.5:  # a barrel or a round receiver: the normal turns across the part
        along_rows = rng.random() < 0.5  # the part's axis runs along the photo's rows, else its columns
        across = np.linspace(-1, 1, h if along_rows else w, dtype=np.float32) * rng.uniform(0.3, 1.2)
        if along_rows:
            gy = gy + np.tan(across)[:, None]
        else:
            gx = gx + np.tan(across)[None, :]
    normal = np.dstack([-gx, -gy, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    azimuth, elevation = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(15, 75))
    light = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
    lambert = np.clip(normal @ light, 0, 1)
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    specular = np.clip(normal @ half, 0, 1) ** rng.uniform(20, 120)
    diffuse = 0.3 + lambert
    shade = diffuse / float(diffuse.mean()) + rng.uniform(0.2, 1.2) * specular  # the flat part keeps base's level
    colour = np.asarray(base_bgr, np.float32).reshape(1, 1, 3) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    photo = shade[:, :, None] * colour + rng.normal(0, rng.uniform(1, 5), (h, w, 1)).astype(np.float32)
    return np.clip(photo, 0, 255).astype(np.uint8)


def set_into_scene(
    marking: np.ndarray, quads: list[np.ndarray], size: int, share: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A ``size`` x ``size`` photo of a part with ``marking`` (BGR) set into it, and the moved line ``quads``.

    The marking is scaled so its longer side spans a ``share`` of the photo, put wholly inside it at random, and
    blended in with a feathered border (a hard rectangle would itself look like a line); the surroundings take
    the colour of the marking photo's top and bottom rows.
    """
    h, w = marking.shape[:2]
    scale = rng.uniform(*share) * size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    small = cv2.resize(marking, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ramp = max(2, min(nh, nw) // 24)
    border = np.concatenate([small[:ramp].reshape(-1, 3), small[-ramp:].reshape(-1, 3)])
    scene = part_surface((size, size), border.mean(axis=0), rng).astype(np.float32)
    x0, y0 = int(rng.integers(0, size - nw + 1)), int(rng.integers(0, size - nh + 1))
    mask = np.zeros((nh, nw), np.float32)
    mask[ramp:-ramp, ramp:-ramp] = 1.0
    feather = cv2.GaussianBlur(mask, (0, 0), ramp / 2)[:, :, None]
    window = scene[y0 : y0 + nh, x0 : x0 + nw]
    scene[y0 : y0 + nh, x0 : x0 + nw] = feather * small + (1 - feather) * window
    shift = np.array([x0, y0], np.float32)
    return scene.round().astype(np.uint8), [q * np.float32(scale) + shift for q in quads]
