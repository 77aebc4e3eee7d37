"""Font registry (``datasets/fonts/fonts.yaml``) and text-line rasterisation for the synthetic renderer.

Two kinds of faces are supported: TrueType/OpenType files rendered with PIL (FreeType), and OpenCV Hershey
single-stroke faces drawn as strokes. A line is rasterised character by character so that every character's
tight box is known exactly, and so that hand-stamped irregularities (baseline jitter, uneven depth) can be
applied per character.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFont

FONTS_DIR = Path(__file__).resolve().parent / "fonts"
Split = Literal["train", "heldout", "all"]


@dataclass(frozen=True)
class FontSpec:
    """One face of the registry."""

    name: str
    kind: Literal["ttf", "hershey"]
    style: str
    split: Literal["train", "heldout"]
    file: str | None = None
    face: int | None = None

    @property
    def path(self) -> Path:
        """Absolute path of a TTF/OTF face (raises for Hershey faces)."""
        if self.file is None:
            raise ValueError(f"font {self.name} has no file")
        return FONTS_DIR / self.file


@lru_cache(maxsize=1)
def all_fonts() -> tuple[FontSpec, ...]:
    """Every face listed in fonts.yaml, checked for existence."""
    path = FONTS_DIR / "fonts.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    out: list[FontSpec] = []
    for item in data["fonts"]:
        spec = FontSpec(
            name=str(item["name"]),
            kind=item["kind"],
            style=str(item["style"]),
            split=item["split"],
            file=item.get("file"),
            face=item.get("face"),
        )
        if spec.kind == "ttf" and not spec.path.is_file():
            raise FileNotFoundError(f"{path}: font file {spec.path} listed for {spec.name} is missing")
        if spec.split not in ("train", "heldout"):
            raise ValueError(f"{path}: font {spec.name} has invalid split {spec.split!r}")
        out.append(spec)
    return tuple(out)


def fonts_for_split(split: Split) -> tuple[FontSpec, ...]:
    """The faces of one split ("all" returns every face)."""
    fonts = all_fonts()
    if split == "all":
        return fonts
    return tuple(f for f in fonts if f.split == split)


@lru_cache(maxsize=512)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=64)
def _cap_ratio(path: str) -> float:
    """Cap height of 'H' divided by the font size."""
    f = _truetype(path, 100)
    x0, y0, x1, y1 = f.getbbox("H")
    return max(1e-3, (y1 - y0) / 100.0)


@dataclass
class LineRaster:
    """A rasterised text line in its own upright canvas."""

    mask: np.ndarray  # HxW float32 in 0..1 (antialiased coverage)
    weight: np.ndarray  # HxW float32: per-character depth factor where the character is (0 elsewhere)
    char_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0,y0,x1,y1 per non-space
    cap: float = 0.0  # cap height in pixels
    stroke: float = 0.0  # typical stroke width in pixels


def _hershey_metrics(face: int, thickness: int) -> tuple[float, int]:
    (w, h), base = cv2.getTextSize("H", face, 1.0, thickness)
    return float(h), base


def measure_line(text: str, font: FontSpec, cap: float, tracking: float = 0.0) -> float:
    """Approximate width in pixels of ``text`` at cap height ``cap`` (used for layout before rendering)."""
    if font.kind == "ttf":
        size = max(4, round(cap / _cap_ratio(str(font.path))))
        f = _truetype(str(font.path), size)
        return float(f.getlength(text)) + tracking * cap * max(0, len(text) - 1)
    assert font.face is not None
    h1, _ = _hershey_metrics(font.face, 1)
    scale = cap / h1
    (w, _), _ = cv2.getTextSize(text, font.face, scale, 1)
    return float(w) + tracking * cap * max(0, len(text) - 1)


def render_line(
    text: str,
    font: FontSpec,
    cap: float,
    rng: np.random.Generator,
    tracking: float = 0.0,
    jitter: float = 0.0,
    depth_var: float = 0.0,
    weight_px: float = 0.12,
    condense: float = 1.0,
    slant: float = 0.0,
    weight_change: float = 0.0,
) -> LineRaster:
    """Rasterise one line.

    Args:
        text: the characters (printable ASCII).
        font: the face.
        cap: cap height in pixels.
        rng: random source for the per-character jitter and depth factors.
        tracking: extra spacing between characters, as a fraction of ``cap``.
        jitter: per-character baseline jitter, as a fraction of ``cap`` (hand-stamped look).
        depth_var: per-character depth factor spread (factor drawn from 1 +- depth_var).
        weight_px: stroke thickness for Hershey faces, as a fraction of ``cap``.
        condense: horizontal scale (< 1 gives a condensed variant, > 1 an extended one).
        slant: horizontal shear (x shift per pixel of height, positive leans right like an italic).
        weight_change: stroke weight change as a fraction of ``cap`` (> 0 bolder, < 0 lighter; a lighter
            stroke keeps at least 40% of its width).
    """
    cap = max(4.0, float(cap))
    pad = int(np.ceil(cap * 0.6 + 4))
    n = len(text)
    dy = rng.uniform(-jitter, jitter, size=n) * cap if jitter > 0 else np.zeros(n)
    mask: np.ndarray
    wimg: np.ndarray
    fac = 1.0 + rng.uniform(-depth_var, depth_var, size=n) if depth_var > 0 else np.ones(n)
    if font.kind == "ttf":
        size = max(4, round(cap / _cap_ratio(str(font.path))))
        f = _truetype(str(font.path), size)
        ascent, descent = f.getmetrics()
        width = int(np.ceil(f.getlength(text) + tracking * cap * max(0, n - 1))) + 2 * pad
        height = ascent + descent + 2 * pad
        img = Image.new("L", (width, height), 0)
        wimg = np.zeros((height, width), np.float32)
        draw = ImageDraw.Draw(img)
        boxes: list[tuple[float, float, float, float]] = []
        x = float(pad)
        for i, ch in enumerate(text):
            y = pad + float(dy[i])
            if ch != " ":
                bb = draw.textbbox((x, y), ch, font=f)
                draw.text((x, y), ch, fill=255, font=f)
                x0, y0, x1, y1 = (float(v) for v in bb)
                boxes.append((x0, y0, x1, y1))
                ix0, iy0 = max(0, int(x0) - 1), max(0, int(y0) - 1)
                ix1, iy1 = min(width, int(np.ceil(x1)) + 1), min(height, int(np.ceil(y1)) + 1)
                wimg[iy0:iy1, ix0:ix1] = np.maximum(wimg[iy0:iy1, ix0:ix1], float(fac[i]))
            x += float(f.getlength(ch)) + tracking * cap
        mask = np.asarray(img, dtype=np.float32) / 255.0
        stroke = max(1.0, cap * (0.16 if "thin" not in font.style else 0.07))
    else:
        assert font.face is not None
        h1, _ = _hershey_metrics(font.face, 1)
        scale = cap / h1
        thick = max(1, round(cap * weight_px))
        (tw, th), base = cv2.getTextSize(text, font.face, scale, thick)
        advances = [cv2.getTextSize(ch, font.face, scale, thick)[0][0] for ch in text]
        width = int(max(tw, sum(advances)) + tracking * cap * max(0, n - 1)) + 2 * pad + thick
        height = int(th + base) + 2 * pad
        m8 = np.zeros((height, width), np.uint8)
        wimg = np.zeros((height, width), np.float32)
        boxes = []
        x = float(pad)
        baseline = pad + th
        for i, ch in enumerate(text):
            cw = advances[i]
            if ch != " ":
                ox = max(0, int(x) - pad)
                ox1 = min(width, int(x + cw) + pad)
                org = (round(x) - ox, round(baseline + float(dy[i])))
                tmp = np.zeros((height, ox1 - ox), np.uint8)
                cv2.putText(tmp, ch, org, font.face, scale, 255, thick, cv2.LINE_AA)
                ys, xs = np.nonzero(tmp)
                if len(xs):
                    x0, x1 = float(xs.min() + ox), float(xs.max() + 1 + ox)
                    y0, y1 = float(ys.min()), float(ys.max() + 1)
                else:
                    x0, x1, y0, y1 = x, x + cw, baseline - cap, float(baseline)
                boxes.append((x0, y0, x1, y1))
                np.maximum(m8[:, ox:ox1], tmp, out=m8[:, ox:ox1])
                sl = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
                wimg[sl] = np.maximum(wimg[sl], float(fac[i]))
            x += cw + tracking * cap
        mask = m8.astype(np.float32) / 255.0
        stroke = float(thick)
    if condense != 1.0:
        new_w = max(8, round(mask.shape[1] * condense))
        sx = new_w / mask.shape[1]
        mask = cv2.resize(mask, (new_w, mask.shape[0]), interpolation=cv2.INTER_AREA)
        wimg = cv2.resize(wimg, (new_w, wimg.shape[0]), interpolation=cv2.INTER_NEAREST)
        boxes = [(b[0] * sx, b[1], b[2] * sx, b[3]) for b in boxes]
        stroke *= float(np.sqrt(condense))
    if weight_change:
        mask, wimg, boxes, stroke = _change_weight(mask, wimg, boxes, stroke, weight_change * cap)
    if slant:
        mask, wimg, boxes = _shear(mask, wimg, boxes, slant)
    return LineRaster(mask=mask, weight=wimg, char_boxes=boxes, cap=cap, stroke=stroke)


Boxes = list[tuple[float, float, float, float]]


def _change_weight(
    mask: np.ndarray, wimg: np.ndarray, boxes: Boxes, stroke: float, change_px: float
) -> tuple[np.ndarray, np.ndarray, Boxes, float]:
    """Bolder (dilate by ``change_px``) or lighter (erode, at most 30% of the stroke on each side) glyphs."""
    k = round(abs(change_px)) if change_px > 0 else min(round(abs(change_px)), int(stroke * 0.3))
    if k < 1:
        return mask, wimg, boxes, stroke
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    if change_px > 0:
        grown = [(b[0] - k, b[1] - k, b[2] + k, b[3] + k) for b in boxes]
        return cv2.dilate(mask, kernel), cv2.dilate(wimg, kernel), grown, stroke + 2 * k
    return cv2.erode(mask, kernel), wimg, boxes, max(1.0, stroke - 2 * k)


def _shear(mask: np.ndarray, wimg: np.ndarray, boxes: Boxes, slant: float) -> tuple[np.ndarray, np.ndarray, Boxes]:
    """Shear the line about its canvas' middle row (``x' = x + slant * (h / 2 - y)``), widening the canvas."""
    h, w = mask.shape
    extra = abs(slant) * h
    shift = slant * h / 2 + extra / 2
    matrix = np.array([[1.0, -slant, shift], [0.0, 1.0, 0.0]], np.float32)
    size = (int(np.ceil(w + extra)), h)
    sheared = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    weights = cv2.warpAffine(wimg, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0.0)

    def x_at(x: float, y: float) -> float:
        return x - slant * y + shift

    moved = [
        (min(x_at(b[0], b[1]), x_at(b[0], b[3])), b[1], max(x_at(b[2], b[1]), x_at(b[2], b[3])), b[3]) for b in boxes
    ]
    return sheared, weights, moved


def dotify(
    mask: np.ndarray, pitch: float, radius: float, rng: np.random.Generator, jitter: float = 0.08
) -> tuple[np.ndarray, np.ndarray]:
    """Dot-matrix version of a glyph mask: dots on a grid of ``pitch`` px where the glyph covers the cell.

    Returns (dot mask float32 0..1, distance to the nearest dot centre float32).
    """
    h, w = mask.shape
    pitch = max(2.0, pitch)
    gh, gw = max(1, int(h / pitch)), max(1, int(w / pitch))
    cov = cv2.resize(mask, (gw, gh), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(cov > 0.33)
    centres = np.zeros((h, w), np.uint8)
    cx = (xs + 0.5) * (w / gw) + rng.uniform(-jitter, jitter, size=len(xs)) * pitch
    cy = (ys + 0.5) * (h / gh) + rng.uniform(-jitter, jitter, size=len(ys)) * pitch
    cxi = np.clip(np.round(cx).astype(int), 0, w - 1)
    cyi = np.clip(np.round(cy).astype(int), 0, h - 1)
    centres[cyi, cxi] = 255
    dist = cv2.distanceTransform(255 - centres, cv2.DIST_L2, 3) if len(xs) else np.full((h, w), 1e6, np.float32)
    dots = np.clip(radius + 0.5 - dist, 0.0, 1.0).astype(np.float32)
    return dots, dist
