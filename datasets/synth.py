"""Synthetic photographs of stamped, engraved, dot-peened and laser-etched markings on metal.

Pipeline (all numpy + OpenCV + PIL, deterministic by seed, no global RNG):

1. text and layout: :func:`marktrace.datasets.text.random_marking_lines`, fonts of the chosen split,
   per-line sizes, tracking, alignment, clutter (screws, part edges, proof symbols);
2. relief: glyph mask -> height map by marking method (stamped U/V with burr, roll-marked, engraved V,
   dot-peened dimples, laser-etched nearly flat), optional over-stamped serial digit;
3. wear: depth removed uniformly and in patches, scratches, pitting, grinding marks;
4. finish: albedo / gloss / texture (blued, parkerized, stainless brushed, anodized, worn, rusty, oily,
   painted over, optional paint fill of the recesses, chemical-etch-reveal look);
5. shading: normals from the height map, Lambert + Gaussian-lobe (Blinn-Phong-like, anisotropic for brushed
   steel) specular, cast shadows under raking light, environment reflection, optional flash;
6. camera: rotation, perspective, cylindrical curvature, crop, defocus, motion blur, low resolution,
   vignetting, noise, JPEG.

The truth (line polygons in reading-direction corner order, character boxes, glyph mask, height, normals)
is carried through the same geometric transform as the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from marktrace.datasets.fontlib import (
    FontSpec,
    LineRaster,
    dotify,
    fonts_for_split,
    measure_line,
    render_line,
)
from marktrace.datasets.text import Role, random_marking_lines, strip_serial_prefix

GENERATOR_VERSION = "marktrace-synth-1.1"
"""1.1 (2026-11-28): 16 more training faces (training renders changed; held-out renders are the same pixels) and
``SynthConfig.glyph_variation`` (off by default)."""
METHODS: tuple[str, ...] = ("stamped", "roll_marked", "engraved", "dot_peened", "laser_etched")
FINISHES: tuple[str, ...] = (
    "blued",
    "parkerized",
    "stainless",
    "anodized",
    "worn",
    "rusty",
    "oily",
    "painted_over",
)

Point = tuple[float, float]


class SynthConfig(BaseModel):
    """What the renderer may draw; every range is sampled uniformly per image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fonts: Literal["train", "heldout", "all"] = "train"
    wear: tuple[float, float] = (0.0, 0.3)
    methods: tuple[str, ...] = METHODS
    finishes: tuple[str, ...] = FINISHES
    n_lines: tuple[int, int] = (1, 4)
    image_size: tuple[int, int] = (320, 960)
    rotation: Literal["upright", "small", "any"] = "small"
    camera: float = 1.0
    overstamp_prob: float = 0.0
    etch_reveal_prob: float = 0.0
    glyph_variation: float = 0.0
    """Share of lines whose face is varied: slanted, bolder or lighter, narrower or wider (training only; the
    draws come from their own random stream, so 0 renders exactly what earlier versions did)."""

    @field_validator("wear")
    @classmethod
    def _wear(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0.0 <= v[0] <= v[1] <= 0.98):
            raise ValueError(f"wear must satisfy 0 <= min <= max <= 0.98, got {v}")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in v if m not in METHODS]
        if not v or bad:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got unknown {bad}")
        return v

    @field_validator("finishes")
    @classmethod
    def _finishes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in v if f not in FINISHES]
        if not v or bad:
            raise ValueError(f"finishes must be a non-empty subset of {FINISHES}, got unknown {bad}")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> SynthConfig:
        if not (1 <= self.n_lines[0] <= self.n_lines[1] <= 8):
            raise ValueError(f"n_lines must satisfy 1 <= min <= max <= 8, got {self.n_lines}")
        if not (64 <= self.image_size[0] <= self.image_size[1] <= 4096):
            raise ValueError(f"image_size must satisfy 64 <= min <= max <= 4096, got {self.image_size}")
        for name in ("camera", "overstamp_prob", "etch_reveal_prob", "glyph_variation"):
            val = getattr(self, name)
            if not 0.0 <= val <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {val}")
        return self


class LineTruth(BaseModel):
    """One text line of a synthetic marking, in image pixels."""

    text: str
    role: Role
    polygon: list[Point]
    char_boxes: list[list[Point]] = []
    overstamped: list[int] = []
    relief: list[float] = []
    """Per character (as ``char_boxes``): the share of its stroke that keeps relief once ground
    (:func:`character_relief`); a character under :data:`FLAT_BELOW` is gone from the metal."""

    def ground_flat(self) -> bool:
        """Whether a character of this line is ground flat: its text is kept, but no image can show it."""
        return any(share < FLAT_BELOW for share in self.relief)


@dataclass
class SyntheticMarking:
    """One rendered photo and its truth."""

    image: np.ndarray
    lines: list[LineTruth]
    serial: str
    glyph_mask: np.ndarray
    height: np.ndarray
    meta: dict[str, Any]


@dataclass
class SyntheticStack:
    """The same marking under several light directions (for photometric stereo / RTI)."""

    images: list[np.ndarray]
    lights: list[tuple[float, float]]
    lines: list[LineTruth]
    serial: str
    glyph_mask: np.ndarray
    height: np.ndarray
    normals: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- helpers


def _noise(shape: tuple[int, int], cells: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth value noise in [0, 1] with about ``cells`` cells along the longer side."""
    return _fbm(shape, cells, rng, 1)


def _fbm(shape: tuple[int, int], cells: float, rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0, 1]: octaves summed at low resolution, then one smooth upsampling."""
    h, w = shape
    long = max(h, w)
    finest = cells * 2.2 ** (octaves - 1)
    f = max(1, min(8, int(long / max(4.0, 4.0 * finest))))  # >= 4 low-res pixels per finest cell
    lh, lw = max(2, -(-h // f)), max(2, -(-w // f))
    out: np.ndarray = np.zeros((lh, lw), np.float32)
    amp, tot = 1.0, 0.0
    for _ in range(octaves):
        gh = max(2, round(cells * h / long) + 2)
        gw = max(2, round(cells * w / long) + 2)
        small = rng.random((gh, gw), dtype=np.float32)
        out += np.float32(amp) * cv2.resize(small, (lw, lh), interpolation=cv2.INTER_CUBIC)
        tot += amp
        amp *= 0.5
        cells *= 2.2
    out *= np.float32(1.0 / tot)
    if (lh, lw) != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(1e-6, e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _pick(rng: np.random.Generator, seq: tuple[str, ...] | list[str]) -> str:
    return seq[int(rng.integers(0, len(seq)))]


def _bgr(rgb: tuple[float, float, float]) -> np.ndarray:
    """SRGB 0..255 (R, G, B) -> linear reflectance (B, G, R)."""
    return (np.array([rgb[2], rgb[1], rgb[0]], np.float32) / 255.0) ** 2.2


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ h.T
    return p[:, :2] / p[:, 2:3]


# --------------------------------------------------------------------------------------------- scene


@dataclass
class _Geometry:
    """Plate (surface) pixels -> output pixels: optional cylinder along y, then a homography."""

    H: np.ndarray
    out_size: tuple[int, int]  # (w, h)
    theta_deg: float
    cyl_r: float  # 0 = flat
    cyl_vc: float
    scale: float  # output px per plate px (approx.)

    def forward(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, np.float64).reshape(-1, 2).copy()
        if self.cyl_r > 0:
            p[:, 1] = self.cyl_vc + self.cyl_r * np.sin((p[:, 1] - self.cyl_vc) / self.cyl_r)
        return _apply_h(self.H, p)

    def warp(self, src: np.ndarray, interp: int = cv2.INTER_LINEAR, border: float = 0.0) -> np.ndarray:
        w, h = self.out_size
        if self.cyl_r <= 0:
            return cv2.warpPerspective(
                src, self.H, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=border
            )
        step = 8
        gx = np.arange(0, w + step, step, dtype=np.float64)
        gy = np.arange(0, h + step, step, dtype=np.float64)
        xx, yy = np.meshgrid(gx, gy)
        inv = np.linalg.inv(self.H)
        pts = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)], axis=1) @ inv.T
        u = pts[:, 0] / pts[:, 2]
        vp = pts[:, 1] / pts[:, 2]
        v = self.cyl_vc + self.cyl_r * np.arcsin(np.clip((vp - self.cyl_vc) / self.cyl_r, -1.0, 1.0))
        mx = cv2.remap(u.reshape(xx.shape).astype(np.float32), *self._grid_coords(w, h, step), cv2.INTER_LINEAR)
        my = cv2.remap(v.reshape(xx.shape).astype(np.float32), *self._grid_coords(w, h, step), cv2.INTER_LINEAR)
        return cv2.remap(src, mx, my, interpolation=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=border)

    @staticmethod
    def _grid_coords(w: int, h: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        xs = (np.arange(w, dtype=np.float32) / step)[None, :].repeat(h, axis=0)
        ys = (np.arange(h, dtype=np.float32) / step)[:, None].repeat(w, axis=1)
        return xs, ys


@dataclass
class _Finish:
    albedo: np.ndarray  # HxWx3
    ks: np.ndarray  # HxW specular weight
    lobe: tuple[float, float]  # Gaussian lobe widths along x / y (anisotropic when different)
    kd: float
    env: float
    spec_tint: np.ndarray  # 3
    env_albedo: np.ndarray | None = None  # cached 0.5 * albedo + 0.15 * spec_tint


@dataclass
class _Scene:
    seed: int
    height: np.ndarray  # plate HxW float32 (plate pixels)
    glyph: np.ndarray  # plate HxW uint8 (0/255)
    finish: _Finish
    geom: _Geometry
    lines: list[LineTruth]
    serial: str
    meta: dict[str, Any]
    stroke: float
    ambient: np.ndarray  # HxW
    env_grad: tuple[float, float, float]
    camera_params: dict[str, Any]
    background: np.ndarray  # 3 (BGR)
    normals: np.ndarray | None = None  # plate normals, computed on first shading


@dataclass
class _PlacedLine:
    text: str
    role: Role
    raster: LineRaster
    x: int
    y: int
    font: FontSpec


def _choose_fonts(rng: np.random.Generator, config: SynthConfig, n: int) -> list[FontSpec]:
    fonts = fonts_for_split(config.fonts)
    if not fonts:
        raise ValueError(f"no fonts in split {config.fonts!r}")
    main = fonts[int(rng.integers(0, len(fonts)))]
    out = []
    for _ in range(n):
        out.append(main if rng.random() < 0.7 else fonts[int(rng.integers(0, len(fonts)))])
    return out


NO_VARIATION: dict[str, float] = {"slant": 0.0, "weight": 0.0, "width": 1.0}


def _glyph_variation(seed: int, config: SynthConfig, n_lines: int) -> list[dict[str, float]]:
    """Per line: slant (shear), stroke weight change (fraction of the cap height) and width factor.

    A line is varied with probability ``config.glyph_variation``; the draws use a stream of their own, so the
    rest of the marking is what it would be without them.
    """
    if config.glyph_variation <= 0:
        return [dict(NO_VARIATION) for _ in range(n_lines)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x676C7970]))
    out = []
    for _ in range(n_lines):
        if rng.random() >= config.glyph_variation:
            out.append(dict(NO_VARIATION))
            continue
        out.append({
            "slant": float(rng.uniform(-0.12, 0.3)) if rng.random() < 0.5 else 0.0,
            "weight": float(rng.uniform(-0.04, 0.05)) if rng.random() < 0.6 else 0.0,
            "width": float(rng.uniform(0.8, 1.25)) if rng.random() < 0.5 else 1.0,
        })
    return out


def _layout(seed: int, config: SynthConfig, rngs: list[np.random.Generator]) -> dict[str, Any]:
    r_text, r_lay, r_cam = rngs[0], rngs[1], rngs[6]
    texts = random_marking_lines(r_text, config.n_lines)
    method = _pick(r_lay, config.methods)
    finish = _pick(r_lay, config.finishes)
    fonts = _choose_fonts(r_lay, config, len(texts))
    condense = [float(r_lay.uniform(0.6, 0.85)) if r_lay.random() < 0.15 else 1.0 for _ in texts]
    variation = _glyph_variation(seed, config, len(texts))
    dotmatrix = method != "dot_peened" and r_lay.random() < 0.07
    rel = [
        float(r_lay.uniform(0.9, 1.35)) if role == "serial" else float(r_lay.uniform(0.55, 1.1)) for _, role in texts
    ]
    hand = method == "stamped" and r_lay.random() < 0.35
    track_hi = 0.45 if method in ("stamped", "dot_peened") else 0.15
    tracking = [float(r_lay.uniform(0.0, track_hi)) for _ in texts]
    spacing = float(r_lay.uniform(0.45, 1.1))
    align = _pick(r_lay, ("left", "left", "center", "center", "free"))
    # measure at cap 100 to size the plate
    widths = [
        measure_line(t, f, 100.0 * r, tr) * c * v["width"]
        for (t, _), f, r, tr, c, v in zip(texts, fonts, rel, tracking, condense, variation, strict=True)
    ]
    block_w = max(widths)
    block_h = sum(100.0 * r for r in rel) + 100.0 * spacing * max(0, len(rel) - 1)
    margins = [float(r_lay.uniform(0.3, 2.2)) for _ in range(4)]  # left, top, right, bottom in caps
    plate_w_ref = block_w + 100.0 * (margins[0] + margins[2])
    plate_h_ref = block_h + 100.0 * (margins[1] + margins[3])
    # rotation (image plane), decided here to size the plate for the output resolution
    if config.rotation == "upright":
        theta = 0.0
    elif config.rotation == "small":
        theta = float(r_cam.uniform(-8.0, 8.0))
    else:
        base = float(r_cam.choice([0.0, 90.0, 180.0, 270.0]))
        theta = base + float(r_cam.uniform(-8.0, 8.0)) if r_cam.random() < 0.7 else float(r_cam.uniform(-180, 180))
    out_long = int(r_cam.integers(config.image_size[0], config.image_size[1] + 1))
    t = math.radians(theta)
    ext_w = abs(math.cos(t)) * plate_w_ref + abs(math.sin(t)) * plate_h_ref
    ext_h = abs(math.sin(t)) * plate_w_ref + abs(math.cos(t)) * plate_h_ref
    k = out_long / max(ext_w, ext_h) / 0.9
    cap_px = max(8.0, 100.0 * k)
    return {
        "texts": texts,
        "method": method,
        "finish": finish,
        "fonts": fonts,
        "condense": condense,
        "variation": variation,
        "dotmatrix": dotmatrix,
        "rel": rel,
        "hand": hand,
        "tracking": tracking,
        "spacing": spacing,
        "align": align,
        "margins": margins,
        "theta": theta,
        "out_long": out_long,
        "cap_px": cap_px,
    }


def _render_plate_text(
    lay: dict[str, Any], config: SynthConfig, rng: np.random.Generator
) -> tuple[list[_PlacedLine], int, int]:
    cap = float(lay["cap_px"])
    placed: list[_PlacedLine] = []
    rasters: list[LineRaster] = []
    for i, ((text, _role), font) in enumerate(zip(lay["texts"], lay["fonts"], strict=True)):
        r = render_line(
            text,
            font,
            cap * lay["rel"][i],
            rng,
            tracking=lay["tracking"][i],
            jitter=0.06 if lay["hand"] else 0.0,
            depth_var=0.25 if lay["hand"] else 0.05,
            weight_px=float(rng.uniform(0.07, 0.16)),
            condense=lay["condense"][i] * lay["variation"][i]["width"],
            slant=lay["variation"][i]["slant"],
            weight_change=lay["variation"][i]["weight"],
        )
        rasters.append(r)
    ml, mt, mr, mb = (m * cap for m in lay["margins"])
    # tight extents of the ink in each raster
    ext = []
    for r in rasters:
        xs = [b[0] for b in r.char_boxes] + [b[2] for b in r.char_boxes]
        ys = [b[1] for b in r.char_boxes] + [b[3] for b in r.char_boxes]
        if not xs:
            xs, ys = [0.0, 1.0], [0.0, 1.0]
        ext.append((min(xs), min(ys), max(xs), max(ys)))
    block_w = max(e[2] - e[0] for e in ext)
    gaps = cap * lay["spacing"]
    y = mt
    offs: list[tuple[int, int]] = []
    for (x0, y0, x1, y1), _r in zip(ext, rasters, strict=True):
        w = x1 - x0
        if lay["align"] == "left":
            x = ml
        elif lay["align"] == "center":
            x = ml + (block_w - w) / 2
        else:
            x = ml + float(rng.uniform(0, max(1.0, block_w - w)))
        offs.append((round(x - x0), round(y - y0)))
        y += (y1 - y0) + gaps
    plate_w = int(math.ceil(ml + block_w + mr))
    plate_h = int(math.ceil(y - gaps + mb))
    for ((text, role), font), r, (ox, oy) in zip(
        zip(lay["texts"], lay["fonts"], strict=True), rasters, offs, strict=True
    ):
        placed.append(_PlacedLine(text=text, role=role, raster=r, x=ox, y=oy, font=font))
    # the rasters may extend beyond the plate through their padding: grow the plate to hold them all
    for p in placed:
        plate_w = max(plate_w, p.x + p.raster.mask.shape[1])
        plate_h = max(plate_h, p.y + p.raster.mask.shape[0])
    minx = min(p.x for p in placed)
    miny = min(p.y for p in placed)
    if minx < 0 or miny < 0:
        dx, dy = max(0, -minx), max(0, -miny)
        for p in placed:
            p.x += dx
            p.y += dy
        plate_w += dx
        plate_h += dy
    return placed, plate_w, plate_h


def _paste(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    h, w = src.shape[:2]
    H, W = dst.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    np.maximum(dst[y0:y1, x0:x1], src[y0 - y : y1 - y, x0 - x : x1 - x], out=dst[y0:y1, x0:x1])


def _clutter(
    shape: tuple[int, int], text_mask: np.ndarray, cap: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Proof symbols (stamped shapes) and part features (screws, edges) away from the text.

    Returns (symbol mask 0..1 to be stamped, extra height (screws / edges), list of what was added).
    """
    h, w = shape
    sym = np.zeros(shape, np.float32)
    extra = np.zeros(shape, np.float32)
    added: list[str] = []
    occ: np.ndarray = cv2.dilate(
        (text_mask > 0.2).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(cap * 0.4))
    )
    for _ in range(int(rng.integers(0, 4))):
        r = float(rng.uniform(0.25, 0.6)) * cap
        cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
        ix, iy = int(cx), int(cy)
        if (
            occ[min(h - 1, iy), min(w - 1, ix)]
            or occ[max(0, iy - int(r)) : iy + int(r) + 1, max(0, ix - int(r)) : ix + int(r) + 1].any()
        ):
            continue
        kind = _pick(rng, ("circle", "triangle", "star", "crown", "oval"))
        tmp = np.zeros(shape, np.uint8)
        th = max(1, round(r * 0.18))
        if kind == "circle":
            cv2.circle(tmp, (ix, iy), int(r), 255, th, cv2.LINE_AA)
            cv2.circle(tmp, (ix, iy), max(1, int(r * 0.3)), 255, -1, cv2.LINE_AA)
        elif kind == "oval":
            cv2.ellipse(tmp, (ix, iy), (int(r), max(1, int(r * 0.6))), 0, 0, 360, 255, th, cv2.LINE_AA)
        elif kind == "triangle":
            pts = np.array([[cx, cy - r], [cx + r * 0.87, cy + r * 0.5], [cx - r * 0.87, cy + r * 0.5]], np.int32)
            cv2.polylines(tmp, [pts], True, 255, th, cv2.LINE_AA)
        elif kind == "star":
            angs = np.linspace(0, 2 * np.pi, 11)[:-1] - np.pi / 2
            rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
            pts = np.stack([cx + rad * np.cos(angs), cy + rad * np.sin(angs)], 1).astype(np.int32)
            cv2.fillPoly(tmp, [pts], 255, cv2.LINE_AA)
        else:  # crown-like
            pts = np.array(
                [
                    [cx - r, cy + r * 0.5],
                    [cx - r, cy - r * 0.3],
                    [cx - r * 0.5, cy + r * 0.1],
                    [cx, cy - r * 0.6],
                    [cx + r * 0.5, cy + r * 0.1],
                    [cx + r, cy - r * 0.3],
                    [cx + r, cy + r * 0.5],
                ],
                np.int32,
            )
            cv2.fillPoly(tmp, [pts], 255, cv2.LINE_AA)
        sym = np.maximum(sym, tmp.astype(np.float32) / 255.0)
        occ = occ | (tmp > 0).astype(np.uint8)
        added.append(kind)
    if rng.random() < 0.3:  # a screw head in a margin
        r = float(rng.uniform(0.5, 1.3)) * cap
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        ix, iy = int(cx), int(cy)
        if not occ[max(0, iy - int(r)) : iy + int(r) + 1, max(0, ix - int(r)) : ix + int(r) + 1].any():
            yy, xx = np.ogrid[:h, :w]
            d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r)
            dome = np.where(d2 < 1.0, np.sqrt(np.clip(1.0 - d2, 0, 1)) * r * 0.25 - r * 0.15, 0.0)
            ring = np.where((d2 >= 1.0) & (d2 < 1.15), -r * 0.2, 0.0)
            ang = float(rng.uniform(0, np.pi))
            slot = np.abs((xx - cx) * np.sin(ang) - (yy - cy) * np.cos(ang)) < r * 0.12
            dome = np.where(slot & (d2 < 0.85), -r * 0.25, dome)
            extra += (dome + ring).astype(np.float32)
            added.append("screw")
    if rng.random() < 0.35:  # edge of a part / panel line: a step or a gap
        horizontal = rng.random() < 0.6
        pos = float(rng.uniform(0.02, 0.12))
        pos = pos if rng.random() < 0.5 else 1.0 - pos
        yy, xx = np.ogrid[:h, :w]
        coord = (yy / max(1, h - 1)) if horizontal else (xx / max(1, w - 1))
        step = -cap * float(rng.uniform(0.3, 1.2))
        side = (coord > pos) if pos > 0.5 else (coord < pos)
        edge = np.where(side, step, 0.0).astype(np.float32)
        extra += cv2.GaussianBlur(np.broadcast_to(edge, (h, w)).copy(), (0, 0), max(0.7, cap * 0.05))
        added.append("edge")
    return sym, extra, added


def _relief(
    method: str,
    mask: np.ndarray,
    weight: np.ndarray,
    stroke: float,
    rng: np.random.Generator,
    dotmatrix: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    """Height map of the marks (negative = recessed), the raised part (burr) and the marked footprint."""
    hw = max(1.0, 0.5 * stroke)
    info: dict[str, float] = {}
    depth: np.ndarray
    if method == "dot_peened" or dotmatrix:
        pitch = float(rng.uniform(1.6, 2.6)) * hw
        radius = float(rng.uniform(0.5, 0.75)) * pitch
        dots, dist = dotify(mask, pitch, radius, rng)
        info.update(pitch=pitch, dot_radius=radius)
        footprint = dots
        if method == "dot_peened":
            D = float(rng.uniform(0.4, 0.9)) * radius
            depth = D * np.sqrt(np.clip(1.0 - (dist / radius) ** 2, 0.0, 1.0))
            burr_amp = float(rng.uniform(0.0, 0.12)) * D
            burr = burr_amp * np.exp(-(((dist - radius * 1.15) / (0.3 * radius)) ** 2))
            wd = cv2.dilate(weight, np.ones((3, 3), np.uint8), iterations=max(1, int(radius)))
            info["depth"] = D
            return (-(depth * wd)).astype(np.float32), (burr * wd).astype(np.float32), footprint, info
        mask = dots
    binm = (mask > 0.5).astype(np.uint8)
    d_in = cv2.distanceTransform(binm, cv2.DIST_L2, 3)
    u = np.clip(d_in / hw, 0.0, 1.0)
    wd = cv2.dilate(weight, np.ones((3, 3), np.uint8), iterations=max(1, int(hw)))
    burr = np.zeros_like(mask)
    if method == "stamped":
        D = float(rng.uniform(0.6, 1.3)) * hw
        prof = 1.0 - (1.0 - u) ** 2 if rng.random() < 0.5 else u  # U or V groove
        depth = D * cv2.GaussianBlur(prof, (0, 0), 0.6)
        d_out = cv2.distanceTransform(1 - binm, cv2.DIST_L2, 3)
        b_amp = float(rng.uniform(0.05, 0.3)) * D
        burr = b_amp * np.exp(-(((d_out - 0.5 * hw) / (0.5 * hw + 0.5)) ** 2)) * (1 - binm)
    elif method == "roll_marked":
        D = float(rng.uniform(0.25, 0.5)) * hw
        depth = D * cv2.GaussianBlur(mask, (0, 0), max(0.8, 0.6 * hw))
        depth = depth / max(1e-6, float(depth.max())) * D
        d_out = cv2.distanceTransform(1 - binm, cv2.DIST_L2, 3)
        burr = float(rng.uniform(0.0, 0.12)) * D * np.exp(-((d_out / (hw + 1.0)) ** 2)) * (1 - binm)
    elif method == "engraved":
        D = float(rng.uniform(0.8, 1.6)) * hw
        depth = D * u  # sharp V
    else:  # laser_etched: nearly flat, slight frosting
        D = float(rng.uniform(0.03, 0.1)) * hw
        depth = D * cv2.GaussianBlur(mask, (0, 0), 0.5)
    info["depth"] = D
    return (-(depth * wd)).astype(np.float32), (burr * wd).astype(np.float32), mask, info


def _apply_wear(
    h_marks: np.ndarray,
    burr: np.ndarray,
    depth_ref: float,
    wear: float,
    cap: float,
    rng: np.random.Generator,
    shape: tuple[int, int],
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Grind the surface: removes ``wear`` of the mark depth (more in patches) and adds surface damage.

    The height is pointwise non-increasing in depth removed, so more wear never deepens a mark. Also returns
    the depth removed at each pixel (before scratches, pits and tool marks), for :func:`character_relief`.
    """
    patches = _fbm(shape, float(rng.uniform(2.0, 6.0)), rng, 2) * 2.0 - 1.0
    patch_amp = float(rng.uniform(0.0, 0.35))
    g = np.clip(wear * (1.0 + patch_amp * patches), 0.0, 0.985)
    removal = g * depth_ref
    h = np.minimum(h_marks + removal, 0.0)
    h = h + burr * np.clip(1.0 - removal / (0.3 * depth_ref + 1e-6), 0.0, 1.0)
    # scratches (independent of wear so that wear alone drives depth)
    n_scr = int(rng.integers(0, 12))
    scr = np.zeros(shape, np.float32)
    H, W = shape
    for _ in range(n_scr):
        p0 = (int(rng.uniform(0, W)), int(rng.uniform(0, H)))
        ang = float(rng.uniform(0, np.pi))
        ln = float(rng.uniform(0.1, 0.8)) * max(H, W)
        p1 = (int(p0[0] + ln * math.cos(ang)), int(p0[1] + ln * math.sin(ang)))
        cv2.line(scr, p0, p1, float(rng.uniform(0.05, 0.25)) * depth_ref, 1, cv2.LINE_AA)
    # pitting
    n_pits = int(rng.integers(0, 40))
    pits = np.zeros(shape, np.float32)
    for _ in range(n_pits):
        c = (int(rng.uniform(0, W)), int(rng.uniform(0, H)))
        cv2.circle(
            pits,
            c,
            max(1, int(rng.uniform(0.02, 0.08) * cap)),
            float(rng.uniform(0.1, 0.4)) * depth_ref,
            -1,
            cv2.LINE_AA,
        )
    # grinding / tool marks: parallel streaks, zero mean
    ang = float(rng.uniform(-20, 20))
    streak = _noise((H, max(2, W // 40)), 40.0, rng)
    streak = cv2.resize(streak, (W, H), interpolation=cv2.INTER_LINEAR) - 0.5
    rot = cv2.getRotationMatrix2D((W / 2, H / 2), ang, 1.0)
    streak = cv2.warpAffine(streak, rot, (W, H), borderMode=cv2.BORDER_REFLECT)
    grind_amp = float(rng.uniform(0.0, 0.06)) * depth_ref
    h = h - scr - pits + grind_amp * streak * (0.3 + wear)
    info = {"patch_amp": patch_amp, "scratches": n_scr, "pits": n_pits, "grind_amp": grind_amp}
    return h.astype(np.float32), info, removal.astype(np.float32)


RELIEF_DEPTH = 0.05
"""A character's stroke keeps relief where at least this fraction of the mark's depth is left after grinding."""
FLAT_BELOW = 0.02
"""A character is ground flat when less than this share of its stroke keeps relief (:func:`character_relief`)."""


def character_relief(struck: np.ndarray, left: np.ndarray, depth_ref: float, line: _PlacedLine) -> list[float]:
    """Per character of ``line`` (its non-space characters, in order): the share of its stroke that keeps relief.

    ``struck`` is the depth of the marks as struck, ``left`` what grinding left of it (both >= 0, plate pixels;
    scratches and pits aside). The stroke is where a mark was struck at least 30% of ``depth_ref`` deep; it keeps
    relief where at least :data:`RELIEF_DEPTH` of ``depth_ref`` is left. 0 means the character is ground flat: no
    photo and no light can show it, only its truth remembers it. A character with no stroke in the picture (cut
    off at the plate's edge) gets 1.0: it was not ground away.
    """
    H, W = struck.shape
    shares: list[float] = []
    for bx0, by0, bx1, by1 in line.raster.char_boxes:
        y0, y1 = max(0, int(line.y + by0)), min(H, int(math.ceil(line.y + by1)))
        x0, x1 = max(0, int(line.x + bx0)), min(W, int(math.ceil(line.x + bx1)))
        stroke = struck[y0:y1, x0:x1] >= 0.3 * depth_ref
        n = int(stroke.sum())
        kept = int((left[y0:y1, x0:x1][stroke] >= RELIEF_DEPTH * depth_ref).sum()) if n else 0
        shares.append(round(kept / n, 3) if n else 1.0)
    return shares


_STEEL = (175, 178, 182)


def _finish(
    name: str,
    shape: tuple[int, int],
    glyph_depth: np.ndarray,
    glyph: np.ndarray,
    method: str,
    rng: np.random.Generator,
    height: np.ndarray,
    depth_ref: float,
    etch: bool,
) -> tuple[_Finish, np.ndarray, dict[str, Any]]:
    """Albedo, gloss and micro-texture of a finish. Returns (finish, height with texture, info)."""
    H, W = shape
    tex = _fbm(shape, float(rng.uniform(3, 10)), rng, 3)
    info: dict[str, Any] = {}
    lobe = (0.25, 0.25)
    env = 0.3
    kd = 0.8
    tint = np.ones(3, np.float32)
    if name == "blued":
        base = _bgr((int(rng.integers(18, 40)), int(rng.integers(22, 45)), int(rng.integers(35, 70))))
        ks_v, lobe, env = float(rng.uniform(0.5, 0.9)), (0.12, 0.12), 0.5
        alb = base[None, None, :] * (0.85 + 0.3 * tex[..., None])
    elif name == "parkerized":
        base = _bgr((int(rng.integers(55, 85)), int(rng.integers(62, 90)), int(rng.integers(55, 78))))
        grain = rng.random(shape, dtype=np.float32)
        grain = np.asarray(cv2.GaussianBlur(grain, (0, 0), 0.8), np.float32)
        alb = base[None, None, :] * (0.7 + 0.6 * grain[..., None]) * (0.9 + 0.2 * tex[..., None])
        height = height + (grain - 0.5) * 0.15 * depth_ref
        ks_v, lobe, env, kd = float(rng.uniform(0.05, 0.2)), (0.5, 0.5), 0.1, 0.9
    elif name == "stainless":
        base = _bgr(_STEEL) * float(rng.uniform(0.8, 1.05))
        streak = cv2.resize(rng.random((H, max(2, W // 30)), dtype=np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
        alb = base[None, None, :] * (0.85 + 0.25 * streak[..., None])
        ks_v, lobe, env, kd = float(rng.uniform(0.5, 0.9)), (0.6, 0.08), 0.6, 0.5
        tex = streak
    elif name == "anodized":
        col = _pick(rng, ("black", "black", "black", "od", "fde", "red", "blue", "grey"))
        rgb = {
            "black": (22, 22, 24),
            "od": (60, 66, 48),
            "fde": (150, 130, 100),
            "red": (120, 25, 25),
            "blue": (30, 50, 120),
            "grey": (85, 88, 92),
        }[col]
        base = _bgr(rgb)
        alb = base[None, None, :] * (0.92 + 0.16 * tex[..., None])
        ks_v, lobe, env = float(rng.uniform(0.1, 0.3)), (0.35, 0.35), 0.15
        info["color"] = col
    elif name == "worn":
        base = _bgr((int(rng.integers(20, 45)), int(rng.integers(22, 45)), int(rng.integers(25, 60))))
        m = _smoothstep(0.55, 0.75, _fbm(shape, float(rng.uniform(12, 30)), rng, 3)) * float(rng.uniform(0.3, 0.8))
        edge = _smoothstep(0.0, 0.25, np.abs(cv2.Laplacian(height, cv2.CV_32F, ksize=3)) / (depth_ref + 1e-6))
        m = np.maximum(m, 0.5 * edge * (height > -0.2 * depth_ref))
        alb = base[None, None, :] * (1 - m[..., None]) + _bgr(_STEEL)[None, None, :] * 0.7 * m[..., None]
        ks_v, lobe, env = float(rng.uniform(0.3, 0.7)), (0.2, 0.2), 0.45
    elif name == "rusty":
        steel = _bgr((70, 68, 66))
        rust = _bgr((int(rng.integers(95, 150)), int(rng.integers(45, 72)), int(rng.integers(15, 35))))
        m = _smoothstep(0.35, 0.65, _fbm(shape, float(rng.uniform(3, 8)), rng, 4))
        grain = rng.random(shape, dtype=np.float32)
        alb = (steel[None, None, :] * (1 - m[..., None]) + rust[None, None, :] * m[..., None]) * (
            0.75 + 0.5 * grain[..., None]
        )
        height = height - m * (grain * 0.3 * depth_ref)
        ks_v, lobe, env, kd = float(rng.uniform(0.05, 0.25)), (0.45, 0.45), 0.04, 0.9
        tex = 1.0 - m
    elif name == "oily":
        base = _bgr((int(rng.integers(25, 70)), int(rng.integers(25, 70)), int(rng.integers(28, 75))))
        smear = _smoothstep(0.4, 0.75, _fbm(shape, float(rng.uniform(1.5, 4)), rng, 3))
        alb = base[None, None, :] * (0.95 - 0.25 * smear[..., None])
        ks_v, lobe, env = float(rng.uniform(0.5, 1.0)), (0.1, 0.1), 0.6
        tex = 0.4 + 0.6 * smear
        tint = np.array([1.0, 0.97, 0.9], np.float32)
    else:  # painted_over
        paint = _pick(rng, ("black", "olive", "tan", "grey", "white", "green"))
        prgb = {
            "black": (30, 30, 30),
            "olive": (85, 90, 60),
            "tan": (170, 150, 115),
            "grey": (120, 122, 125),
            "white": (215, 215, 210),
            "green": (50, 85, 55),
        }[paint]
        alb = _bgr(prgb)[None, None, :] * (0.95 + 0.1 * tex[..., None])
        fill = float(rng.uniform(0.3, 0.9)) * depth_ref
        height = np.maximum(height, -(depth_ref - fill))  # paint fills the recesses
        height = cv2.GaussianBlur(height, (0, 0), 1.2)
        chips = _smoothstep(0.74, 0.8, _fbm(shape, float(rng.uniform(10, 25)), rng, 3)) * float(rng.random() < 0.6)
        alb = alb * (1 - chips[..., None]) + _bgr(_STEEL)[None, None, :] * 0.7 * chips[..., None]
        ks_v, lobe, env = float(rng.uniform(0.05, 0.3)), (0.4, 0.4), 0.1
        info["paint"] = paint
    alb = np.ascontiguousarray(alb.astype(np.float32))
    # marking-specific appearance
    g = glyph_depth
    if (
        method == "engraved"
        and name in ("blued", "anodized", "parkerized", "painted_over", "worn", "oily")
        and rng.random() < 0.7
    ):
        m = _smoothstep(0.05, 0.4, g)[..., None]
        alb = alb * (1 - m) + _bgr(_STEEL)[None, None, :] * float(rng.uniform(0.5, 1.0)) * m
        info["bright_cut"] = True
    if method == "laser_etched":
        m = glyph[..., None]
        if name == "anodized" or rng.random() < 0.25:
            oxide = _bgr((215, 215, 210)) * float(rng.uniform(0.6, 1.0))  # bleached / white mark
        else:
            tone = _pick(rng, ("dark", "dark", "brown", "blue"))
            oxide = _bgr({"dark": (15, 15, 18), "brown": (60, 40, 25), "blue": (30, 35, 60)}[tone])
        strength = float(rng.uniform(0.5, 0.95))
        alb = alb * (1 - strength * m) + oxide[None, None, :] * strength * m
        info["oxide"] = oxide.tolist()
    if name != "painted_over" and method != "laser_etched" and rng.random() < 0.12:
        fill_rgb = _pick(rng, ("white", "white", "yellow", "red", "orange"))
        frgb = {
            "white": (230, 230, 225),
            "yellow": (220, 200, 60),
            "red": (200, 40, 40),
            "orange": (230, 120, 40),
        }[fill_rgb]
        m = _smoothstep(0.15, 0.45, g)[..., None] * float(rng.uniform(0.6, 1.0))
        alb = alb * (1 - m) + _bgr(frgb)[None, None, :] * m
        info["fill"] = fill_rgb
    ks: np.ndarray = (ks_v * (0.6 + 0.4 * tex)).astype(np.float32)
    if method == "laser_etched":
        ks = ks * (1 - 0.6 * glyph)  # frosted mark
    if etch:
        # chemical etch reveal: matte grey surface, the strained glyph area etches slightly differently
        grey = float(rng.uniform(0.12, 0.35))
        blot = _fbm(shape, float(rng.uniform(4, 12)), rng, 3)
        blot2 = _smoothstep(0.35, 0.65, _fbm(shape, float(rng.uniform(6, 16)), rng, 3))
        soft = cv2.GaussianBlur(glyph, (0, 0), float(rng.uniform(0.8, 2.5)))
        ghost = soft * float(rng.uniform(0.04, 0.18)) * blot2 * (1 if rng.random() < 0.6 else -1)
        lum = grey * (0.85 + 0.3 * blot) * (1.0 - ghost)
        alb = np.repeat(lum[..., None], 3, axis=2) * _bgr((200, 205, 210))[None, None, :] / 0.8
        ks = np.full(shape, 0.05, np.float32)
        lobe = (0.5, 0.5)
        env = 0.05
        info["etch_reveal"] = True
    spec_tint = tint * (alb.reshape(-1, 3).mean(0) * 0.3 + 0.7 if name in ("anodized", "blued") else 1.0)
    return (
        _Finish(
            albedo=alb.astype(np.float32),
            ks=ks,
            lobe=lobe,
            kd=kd,
            env=env,
            spec_tint=np.asarray(spec_tint, np.float32),
        ),
        height.astype(np.float32),
        info,
    )


def _build_scene(seed: int, config: SynthConfig) -> _Scene:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x6D61726B])
    rngs = [np.random.default_rng(s) for s in ss.spawn(10)]
    r_lay, r_rel, r_wear, r_fin, r_cam = rngs[1], rngs[2], rngs[3], rngs[4], rngs[6]
    lay = _layout(seed, config, rngs)
    placed, pw, ph = _render_plate_text(lay, config, r_lay)
    shape = (ph, pw)
    mask = np.zeros(shape, np.float32)
    weight = np.zeros(shape, np.float32)
    for p in placed:
        _paste(mask, p.raster.mask, p.x, p.y)
        _paste(weight, p.raster.weight, p.x, p.y)
    stroke = float(np.median([p.raster.stroke for p in placed]))
    cap = float(lay["cap_px"])
    # over-stamp: one serial character struck over another glyph
    overstamp: dict[int, list[int]] = {}
    old = np.zeros(shape, np.float32)
    if config.overstamp_prob > 0 and r_rel.random() < config.overstamp_prob:
        for li, p in enumerate(placed):
            if p.role != "serial":
                continue
            idx = [i for i, ch in enumerate(p.text) if ch.isalnum()]
            if not idx:
                break
            ci = idx[int(r_rel.integers(0, len(idx)))]
            box_i = sum(1 for ch in p.text[:ci] if ch != " ")
            bx0, by0, bx1, by1 = p.raster.char_boxes[box_i]
            choices = [c for c in "0123456789" if c != p.text[ci]]
            ch_old = choices[int(r_rel.integers(0, len(choices)))]
            rr = render_line(ch_old, p.font, p.raster.cap, r_rel)
            ob = rr.char_boxes[0] if rr.char_boxes else (0.0, 0.0, 1.0, 1.0)
            dx = float(r_rel.uniform(-0.12, 0.12)) * cap
            dy = float(r_rel.uniform(-0.08, 0.08)) * cap
            ox = round(p.x + bx0 - ob[0] + dx)
            oy = round(p.y + by1 - ob[3] + dy)
            _paste(old, rr.mask * float(r_rel.uniform(0.6, 1.0)), ox, oy)
            overstamp[li] = [ci]
            break
    sym, extra, clutter = _clutter(shape, mask, cap, r_lay)
    relief_src = np.maximum(mask, sym)
    weight_src = np.maximum(weight, (sym > 0.05).astype(np.float32))
    method = lay["method"]
    h_marks, burr, footprint, rinfo = _relief(method, relief_src, weight_src, stroke, r_rel, lay["dotmatrix"])
    if overstamp:
        h_old, burr_old, _, _ = _relief(
            method if method != "laser_etched" else "stamped",
            old,
            (old > 0.05).astype(np.float32),
            stroke,
            r_rel,
            False,
        )
        # the older strike: same tool family, shallower or partly ground before the new strike
        old_depth = float(r_rel.uniform(0.4, 0.9)) * float(rinfo["depth"])
        k_old = old_depth / max(1e-6, -float(h_old.min()))
        h_old, burr_old = h_old * k_old, burr_old * k_old
        # where the older strike could still show: its stroke outside the new marks' footprint
        old_stroke = h_old <= 0.3 * float(h_old.min())
        new_foot = cv2.dilate((h_marks <= 0.05 * float(h_marks.min())).astype(np.uint8), np.ones((3, 3), np.uint8))
        old_shows = old_stroke & (new_foot == 0)
        old_stroke_px = int(old_stroke.sum())
        h_marks = np.minimum(h_marks, h_old)
        burr = np.maximum(burr, burr_old)
    depth_ref = float(rinfo["depth"])
    glyph_foot = footprint * (cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0.3)
    glyph = (glyph_foot > 0.5).astype(np.uint8) * 255
    wear = float(r_wear.uniform(config.wear[0], config.wear[1]))
    height, winfo, removal = _apply_wear(h_marks, burr, depth_ref, wear, cap, r_wear, shape)
    struck, left = -np.minimum(h_marks, 0.0), -np.minimum(h_marks + removal, 0.0)
    relief = {li: character_relief(struck, left, depth_ref, p) for li, p in enumerate(placed)}
    overstamp_visible = None
    if overstamp:
        kept = left >= RELIEF_DEPTH * depth_ref
        overstamp_visible = round(int((old_shows & kept).sum()) / max(1, old_stroke_px), 3)
    serial_relief = next((relief[li] for li, p in enumerate(placed) if p.role == "serial"), None)
    height = height + extra
    # the depth of the mark relative to the surface, for finish effects (fill, bright cuts)
    glyph_depth = np.clip(-np.minimum(h_marks + wear * depth_ref, 0.0) / max(1e-6, depth_ref), 0.0, 1.0)
    etch = config.etch_reveal_prob > 0 and r_fin.random() < config.etch_reveal_prob
    fin, height, finfo = _finish(
        lay["finish"],
        shape,
        glyph_depth.astype(np.float32),
        (glyph > 0).astype(np.float32),
        method,
        r_fin,
        height,
        depth_ref,
        etch,
    )
    # geometry
    geom, cam = _camera_geometry(lay, config, placed, shape, r_cam)
    if geom.cyl_r > 0:
        yy = np.arange(ph, dtype=np.float32)[:, None]
        height = height + (geom.cyl_r * np.cos((yy - geom.cyl_vc) / geom.cyl_r) - geom.cyl_r).astype(np.float32)
    lines = _line_truths(placed, geom, overstamp, cap, relief)
    serial = strip_serial_prefix(next((ln.text for ln in lines if ln.role == "serial"), ""))
    ambient = (float(r_cam.uniform(0.04, 0.2)) * (0.8 + 0.4 * _noise(shape, 1.5, r_cam))).astype(np.float32)
    env_grad = (
        float(r_cam.uniform(0.2, 0.8)),
        float(r_cam.uniform(-0.5, 0.5)),
        float(r_cam.uniform(-0.5, 0.5)),
    )
    bg_lum = float(r_cam.uniform(0.05, 0.6))
    background = np.array([bg_lum * float(r_cam.uniform(0.8, 1.2)) for _ in range(3)], np.float32)
    meta: dict[str, Any] = {
        "generator": GENERATOR_VERSION,
        "seed": int(seed),
        "method": method,
        "finish": lay["finish"],
        "wear": wear,
        "fonts": [p.font.name for p in placed],
        "font_split": config.fonts,
        "dotmatrix": bool(lay["dotmatrix"]),
        "condensed": [c != 1.0 for c in lay["condense"]],
        "hand_stamped": bool(lay["hand"]),
        "rotation_deg": geom.theta_deg,
        "cylinder_radius": geom.cyl_r,
        "cap_height_px": cap * geom.scale,
        "clutter": clutter,
        "overstamped": bool(overstamp),
        "etch_reveal": etch,
        "relief": rinfo,
        "wear_detail": winfo,
        "serial_relief": serial_relief,
        # share of an over-stamp's older strike (its stroke) outside the new marks that keeps relief; None without
        "overstamp_visible": overstamp_visible,
        "finish_detail": finfo,
        "camera": cam,
        "config": config.model_dump(mode="json"),
    }
    if config.glyph_variation > 0:
        meta["glyph_variation"] = lay["variation"]
    return _Scene(
        seed=int(seed),
        height=height,
        glyph=glyph,
        finish=fin,
        geom=geom,
        lines=lines,
        serial=serial,
        meta=meta,
        stroke=stroke,
        ambient=ambient,
        env_grad=env_grad,
        camera_params=cam,
        background=background,
    )


def _camera_geometry(
    lay: dict[str, Any],
    config: SynthConfig,
    placed: list[_PlacedLine],
    shape: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[_Geometry, dict[str, Any]]:
    ph, pw = shape
    cam = config.camera
    theta = float(lay["theta"])
    t = math.radians(theta)
    rot = np.array([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]])
    cyl_r = 0.0
    cyl_vc = ph / 2.0
    if cam > 0 and rng.random() < 0.35 * cam:
        cyl_vc = float(rng.uniform(0.3, 0.7)) * ph
        half = max(cyl_vc, ph - cyl_vc)
        cyl_r = half / float(rng.uniform(0.35, 1.1))
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    c_in = corners.copy()
    if cyl_r > 0:
        c_in[:, 1] = cyl_vc + cyl_r * np.sin((c_in[:, 1] - cyl_vc) / cyl_r)
    rc = _apply_h(rot, c_in)
    diag = float(np.hypot(pw, ph))
    jit = rng.uniform(-1, 1, size=(4, 2)) * 0.07 * cam * diag
    h0 = cv2.getPerspectiveTransform(c_in.astype(np.float32), (rc + jit).astype(np.float32)).astype(np.float64)
    geom0 = _Geometry(H=h0, out_size=(1, 1), theta_deg=theta, cyl_r=cyl_r, cyl_vc=cyl_vc, scale=1.0)
    # text extent in view coordinates
    pts = []
    for p in placed:
        for b in p.raster.char_boxes:
            pts.append((p.x + b[0], p.y + b[1]))
            pts.append((p.x + b[2], p.y + b[3]))
            pts.append((p.x + b[0], p.y + b[3]))
            pts.append((p.x + b[2], p.y + b[1]))
    tv = geom0.forward(np.array(pts))
    pv = geom0.forward(corners)
    tx0, ty0 = tv.min(0)
    tx1, ty1 = tv.max(0)
    px0, py0 = pv.min(0)
    px1, py1 = pv.max(0)
    capv = float(lay["cap_px"])
    pad = 0.35 * capv

    def side(t_in: float, p_out: float, sign: float) -> float:
        lim = t_in + sign * pad
        span = (p_out - lim) * sign
        u = float(rng.uniform(0.0, 1.0))
        ext = float(rng.uniform(0.0, 0.1)) * abs(p_out - t_in) if rng.random() < 0.25 else 0.0
        return lim + sign * (max(0.0, span) * u + ext)

    x0, x1 = side(tx0, px0, -1.0), side(tx1, px1, 1.0)
    y0, y1 = side(ty0, py0, -1.0), side(ty1, py1, 1.0)
    cw, ch = x1 - x0, y1 - y0
    s = float(lay["out_long"]) / max(cw, ch)
    ow, oh = max(16, round(cw * s)), max(16, round(ch * s))
    fin = np.array([[s, 0, -x0 * s], [0, s, -y0 * s], [0, 0, 1.0]]) @ h0
    geom = _Geometry(H=fin, out_size=(ow, oh), theta_deg=theta, cyl_r=cyl_r, cyl_vc=cyl_vc, scale=s)
    params = {
        "perspective_jitter": float(np.abs(jit).max() / diag),
        "scale": s,
        "defocus": float(rng.uniform(0.3, 1.5) * cam) if rng.random() < 0.45 else 0.0,
        "motion": int(rng.integers(3, 10)) if rng.random() < 0.2 * cam else 0,
        "motion_angle": float(rng.uniform(0, 180)),
        "lowres": float(rng.uniform(0.3, 0.75)) if rng.random() < 0.25 * cam else 1.0,
        "noise": float(rng.uniform(0.5, 7.0) * cam),
        "jpeg": int(rng.integers(30, 96)) if rng.random() < 0.6 * cam else 0,
        "vignette": float(rng.uniform(0.0, 0.45) * cam),
        "wb": [float(rng.uniform(1 - 0.12 * cam, 1 + 0.12 * cam)) for _ in range(3)],
        "exposure": float(rng.uniform(0.7, 1.3)),
        "auto": float(rng.uniform(0.0, 0.35)),
        "gamma": float(rng.uniform(1.8, 2.4)),
    }
    return geom, params


def _line_truths(
    placed: list[_PlacedLine],
    geom: _Geometry,
    overstamp: dict[int, list[int]],
    cap: float,
    relief: dict[int, list[float]],
) -> list[LineTruth]:
    out: list[LineTruth] = []
    w, h = geom.out_size
    for li, p in enumerate(placed):
        bx = np.array(p.raster.char_boxes, np.float64)
        if len(bx) == 0:
            continue
        pad = max(1.5, 0.12 * p.raster.cap)
        x0, y0 = bx[:, 0].min() + p.x - pad, bx[:, 1].min() + p.y - pad
        x1, y1 = bx[:, 2].max() + p.x + pad, bx[:, 3].max() + p.y + pad
        poly = geom.forward(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
        poly[:, 0] = poly[:, 0].clip(0, w)
        poly[:, 1] = poly[:, 1].clip(0, h)
        boxes = []
        for b in bx:
            c = geom.forward(np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]]) + [p.x, p.y])
            boxes.append([(float(x), float(y)) for x, y in c])
        out.append(
            LineTruth(
                text=p.text,
                role=p.role,
                polygon=[(float(x), float(y)) for x, y in poly],
                char_boxes=boxes,
                overstamped=overstamp.get(li, []),
                relief=relief.get(li, []),
            )
        )
    return out


# --------------------------------------------------------------------------------------------- shading


def _normals(height: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    return np.stack([-gx * inv, -gy * inv, inv], axis=-1).astype(np.float32)


def _shadow(height: np.ndarray, lx: float, ly: float, tan_el: float, reach: float) -> np.ndarray:
    """1 where lit, 0 where a nearby rise along the light direction occludes (cheap horizon test)."""
    n = np.hypot(lx, ly)
    if n < 1e-6 or tan_el > 1.0:  # above 45 deg the grooves cast no visible shadow at this depth
        return np.ones_like(height)
    dx, dy = lx / n, ly / n
    occl = np.zeros(height.shape, bool)
    H, W = height.shape
    for k in (1, 2, 3, 5):
        d = reach * k / 5.0
        m = np.array([[1, 0, -dx * d], [0, 1, -dy * d]], np.float32)
        # sample height at x + d * dir
        shifted = cv2.warpAffine(height, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        occl |= shifted > height + d * tan_el + 0.05
    lit = 1.0 - occl.astype(np.float32)
    return cv2.GaussianBlur(lit, (0, 0), 0.8)


def _shade(
    sc: _Scene, az_plate: float, el: float, flash: float, flash_pos: tuple[float, float], intensity: float
) -> np.ndarray:
    """Linear radiance of the plate (HxWx3) under one directional light (+ optional flash)."""
    f = sc.finish
    if sc.normals is None:
        sc.normals = _normals(sc.height)
    n = sc.normals
    nx, ny, nz = n[..., 0], n[..., 1], n[..., 2]
    a, e = math.radians(az_plate), math.radians(el)
    lx, ly, lz = math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)
    ndl = nx * np.float32(lx) + ny * np.float32(ly) + nz * np.float32(lz)
    np.maximum(ndl, 0.0, out=ndl)
    sh = _shadow(sc.height, lx, ly, math.tan(e), reach=max(2.0, 2.5 * sc.stroke))
    hx, hy, hz = lx, ly, lz + 1.0
    hn = math.sqrt(hx * hx + hy * hy + hz * hz)
    hx, hy = hx / hn, hy / hn
    ax, ay = f.lobe
    dx = (nx - np.float32(hx)) * np.float32(1.0 / ax)
    dy = (ny - np.float32(hy)) * np.float32(1.0 / ay)
    spec: np.ndarray = np.asarray(cv2.exp(-(dx * dx + dy * dy)), np.float32)
    spec *= f.ks
    spec *= sh
    spec *= np.float32(intensity)
    e0, ex, ey = sc.env_grad
    env = np.float32(e0) + (np.float32(2 * ex) * nx + np.float32(2 * ey) * ny) * nz
    np.maximum(env, 0.0, out=env)
    env *= f.ks
    env *= np.float32(f.env)
    diffuse = ndl * sh
    diffuse *= np.float32(f.kd * intensity)
    diffuse += sc.ambient
    out = f.albedo * diffuse[..., None]
    out += spec[..., None] * f.spec_tint
    if f.env_albedo is None:
        f.env_albedo = (0.5 * f.albedo + 0.15 * f.spec_tint).astype(np.float32)
    out += env[..., None] * f.env_albedo
    if flash > 0:
        H, W = sc.height.shape
        yy, xx = np.ogrid[:H, :W]
        d2 = ((xx - flash_pos[0] * W) ** 2 + (yy - flash_pos[1] * H) ** 2) / (0.08 * (H * H + W * W))
        hot = np.exp(-d2) * np.power(np.clip(nz, 0, 1), 40.0)
        out += flash * (f.albedo * nz[..., None] * 0.6 + (hot * f.ks * 2.0)[..., None])
    return out.astype(np.float32)


def _camera(
    sc: _Scene,
    radiance: np.ndarray,
    rng: np.random.Generator,
    shift: tuple[float, float] = (0.0, 0.0),
    key: float = 1.0,
) -> np.ndarray:
    """Warp the plate radiance into the photo and apply the lens / sensor / codec effects."""
    g = sc.geom
    cp = dict(sc.camera_params, key=max(0.45, key))
    cover = g.warp(np.ones(radiance.shape[:2], np.float32))
    img = g.warp(radiance)
    w, h = g.out_size
    if float(cover.min()) < 0.999:  # part of the view is off the plate: another surface behind it
        bg_noise = _noise((h, w), 3.0, rng)
        inv = 1.0 - cover
        for c in range(3):
            img[..., c] += inv * (float(sc.background[c]) * (0.6 + 0.8 * bg_noise))
    if shift != (0.0, 0.0):
        m = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
        img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    # exposure: fixed to the light (a white diffuse surface under the key light lands near white), so dark
    # finishes stay dark; a mild pull toward mid-grey mimics auto-exposure.
    sub = img[:: max(1, h // 48), :: max(1, w // 48)]
    mean = float(sub.mean()) if sub.size else 0.3
    auto = (0.22 / max(mean, 1e-3)) ** cp["auto"]
    img *= np.asarray(cp["wb"], np.float32) * np.float32(cp["exposure"] * auto / cp["key"])
    np.clip(img, 0.0, 1.0, out=img)
    cv2.pow(img, 1.0 / cp["gamma"], img)
    img *= np.float32(255.0)
    if cp["vignette"] > 0:
        yy = (np.arange(h, dtype=np.float32) - h / 2) / (h / 2)
        xx = (np.arange(w, dtype=np.float32) - w / 2) / (w / 2)
        r2 = yy[:, None] ** 2 * 0.5 + xx[None, :] ** 2 * 0.5
        img *= (1.0 - cp["vignette"] * r2)[..., None]
    if cp["defocus"] > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), cp["defocus"])
    if cp["motion"] > 0:
        k = np.zeros((cp["motion"], cp["motion"]), np.float32)
        c = (cp["motion"] - 1) / 2
        ang = math.radians(cp["motion_angle"])
        cv2.line(
            k,
            (round(c - c * math.cos(ang)), round(c - c * math.sin(ang))),
            (round(c + c * math.cos(ang)), round(c + c * math.sin(ang))),
            1.0,
            1,
        )
        img = cv2.filter2D(img, -1, k / max(1.0, float(k.sum())))
    if cp["lowres"] < 1.0:
        sw, shh = max(8, round(w * cp["lowres"])), max(8, round(h * cp["lowres"]))
        img = cv2.resize(
            cv2.resize(img, (sw, shh), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR
        )
    if cp["noise"] > 0:
        nz = rng.standard_normal((h, w), dtype=np.float32)
        shot = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        np.clip(shot, 0.0, 255.0, out=shot)
        shot = cv2.sqrt(shot * np.float32(1.0 / 255.0) + np.float32(0.05))
        nz *= shot * np.float32(cp["noise"])
        img += nz[..., None]
        chroma = rng.standard_normal((max(1, h // 2), max(1, w // 2), 3), dtype=np.float32)
        img += cv2.resize(chroma, (w, h), interpolation=cv2.INTER_NEAREST) * np.float32(cp["noise"] * 0.25)
    img += np.float32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    out: np.ndarray = img.astype(np.uint8)
    if cp["jpeg"]:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(cp["jpeg"])])
        dec = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if dec is not None:
            out = dec
    return out


def _truth_maps(sc: _Scene) -> tuple[np.ndarray, np.ndarray]:
    g = sc.geom
    glyph = g.warp(sc.glyph, interp=cv2.INTER_LINEAR)
    glyph = np.where(glyph >= 128, 255, 0).astype(np.uint8)
    height = (g.warp(sc.height) * g.scale).astype(np.float32)
    return glyph, height


def _sample_light(rng: np.random.Generator) -> tuple[float, float]:
    az = float(rng.uniform(0, 360))
    u = rng.random()
    el = float(rng.uniform(5, 25)) if u < 0.4 else float(rng.uniform(25, 60)) if u < 0.8 else float(rng.uniform(60, 88))
    return az, el


# --------------------------------------------------------------------------------------------- public API


def render_marking(seed: int, config: SynthConfig | None = None) -> SyntheticMarking:
    """Render one synthetic photo of a marking; the same seed and config give bit-identical output."""
    config = config or SynthConfig()
    sc = _build_scene(seed, config)
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x6C69676E])
    r_light, r_noise = (np.random.default_rng(s) for s in ss.spawn(2))
    az_img, el = _sample_light(r_light)
    flash = float(r_light.uniform(0.2, 0.8)) if r_light.random() < 0.2 else 0.0
    fpos = (float(r_light.uniform(0.2, 0.8)), float(r_light.uniform(0.2, 0.8)))
    intensity = float(r_light.uniform(0.9, 1.5))
    rad = _shade(sc, az_img - sc.geom.theta_deg, el, flash, fpos, intensity)
    image = _camera(sc, rad, r_noise, key=intensity * max(0.3, math.sin(math.radians(el))) + flash)
    glyph, height = _truth_maps(sc)
    meta = dict(sc.meta)
    meta.update(light_azimuth_deg=az_img % 360.0, light_elevation_deg=el, flash=flash, light_intensity=intensity)
    return SyntheticMarking(image=image, lines=sc.lines, serial=sc.serial, glyph_mask=glyph, height=height, meta=meta)


def normals_from_height(height: np.ndarray) -> np.ndarray:
    """Unit surface normals (HxWx3 float32, x right, y down, z toward the camera) of a height map."""
    return _normals(height.astype(np.float32))


def render_stack(
    seed: int, config: SynthConfig | None = None, n_lights: int = 8, known_directions: bool = True
) -> SyntheticStack:
    """The marking of ``render_marking(seed, config)`` photographed under ``n_lights`` light directions.

    Args:
        seed: the scene seed (same scene as :func:`render_marking` with the same seed and config).
        config: renderer config.
        n_lights: number of shots.
        known_directions: True: a regular ring of azimuths at one or two elevations (a light-dome or a
            rotated lamp); False: random directions, as in a hand-held-lamp series (``lights`` still holds the
            truth, ``meta["lights_known"]`` is False so consumers can ignore it).

    The camera is fixed; with ``config.camera > 0`` each shot after the first is shifted by up to 2 px
    (hand shake), recorded in ``meta["shot_offsets"]``. All truth refers to the first shot.
    """
    if n_lights < 1:
        raise ValueError(f"n_lights must be >= 1, got {n_lights}")
    config = config or SynthConfig()
    sc = _build_scene(seed, config)
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x73746163])
    r_light, r_noise = (np.random.default_rng(s) for s in ss.spawn(2))
    lights: list[tuple[float, float]] = []
    if known_directions:
        az0 = float(r_light.uniform(0, 360))
        el_lo, el_hi = float(r_light.uniform(10, 30)), float(r_light.uniform(35, 60))
        for i in range(n_lights):
            el = el_lo if (i % 2 == 0 or n_lights < 6) else el_hi
            lights.append(((az0 + 360.0 * i / n_lights) % 360.0, el))
    else:
        lights = [_sample_light(r_light) for _ in range(n_lights)]
    intensity = float(r_light.uniform(0.9, 1.4))
    images: list[np.ndarray] = []
    offsets: list[tuple[float, float]] = []
    for i, (az, el) in enumerate(lights):
        shift = (0.0, 0.0)
        if i > 0 and config.camera > 0:
            shift = (
                float(r_light.uniform(-2, 2)) * config.camera,
                float(r_light.uniform(-2, 2)) * config.camera,
            )
        offsets.append(shift)
        rad = _shade(sc, az - sc.geom.theta_deg, el, 0.0, (0.5, 0.5), intensity)
        images.append(_camera(sc, rad, r_noise, shift, key=intensity * max(0.3, math.sin(math.radians(el)))))
    glyph, height = _truth_maps(sc)
    normals = normals_from_height(height)
    meta = dict(sc.meta)
    meta.update(lights_known=known_directions, shot_offsets=offsets, light_intensity=intensity)
    return SyntheticStack(
        images=images,
        lights=lights,
        lines=sc.lines,
        serial=sc.serial,
        glyph_mask=glyph,
        height=height,
        normals=normals,
        meta=meta,
    )


def render_line_crop(seed: int, config: SynthConfig | None = None, height: int = 64) -> tuple[np.ndarray, str]:
    """One tight, upright text-line crop (gray uint8, ``height`` px tall) and its text.

    The line is cut from ``render_marking(seed, config)`` through its polygon, with a little random margin.
    """
    config = config or SynthConfig()
    m = render_marking(seed, config)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x63726F70]))
    lines = [ln for ln in m.lines if ln.text.strip()]
    ln = lines[int(rng.integers(0, len(lines)))]
    p = np.array(ln.polygon, np.float64)
    top = p[1] - p[0]
    left = p[3] - p[0]
    lw = float(np.linalg.norm(top))
    lh = float(np.linalg.norm(left))
    ux = top / max(lw, 1e-6)
    uy = left / max(lh, 1e-6)
    mx = rng.uniform(-0.05, 0.25, size=2) * lh
    my = rng.uniform(-0.05, 0.15, size=2) * lh
    src = np.array(
        [
            p[0] - ux * mx[0] - uy * my[0],
            p[1] + ux * mx[1] - uy * my[0],
            p[2] + ux * mx[1] + uy * my[1],
            p[3] - ux * mx[0] + uy * my[1],
        ],
        np.float32,
    )
    src_w = float(np.linalg.norm(src[1] - src[0]))
    src_h = float(np.linalg.norm(src[3] - src[0]))
    out_w = max(8, round(height * src_w / max(src_h, 1e-6)))
    dst = np.array([[0, 0], [out_w, 0], [out_w, height], [0, height]], np.float32)
    hm = cv2.getPerspectiveTransform(src, dst)
    gray = cv2.cvtColor(m.image, cv2.COLOR_BGR2GRAY)
    crop = cv2.warpPerspective(gray, hm, (out_w, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, ln.text
