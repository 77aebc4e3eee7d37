"""Named, pure, deterministic enhancement steps on uint8 gray or BGR images.

Each step is a function ``f(image, params) -> image`` registered under a name with a pydantic model
of its typed parameters. :func:`apply_step` validates the parameters (filling in every default), so a
recorded :class:`~marktrace.inference.schema.TrailStep` always lists the full parameter set.
Every step returns a new uint8 array and never modifies its input.

Determinism: the steps use only integer-exact or single-threaded float operations whose order does
not depend on thread scheduling (OpenCV filters, numpy element-wise maths and sorting), so the same
input and parameters give the same bytes on the same software versions and CPU family (OpenCV's float
filters may round differently where it dispatches other SIMD code; see ``inference/enhance/README.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from marktrace.inference.schema import TrailStep

BAND_ROWS = 256
"""Rows per band where a step's element-wise float maths runs band by band (same bytes, less memory)."""


class StepError(ValueError):
    """A step name or its parameters are invalid, or the image cannot be processed."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    """A step without parameters."""


class FlattenParams(_Params):
    """Background flattening: estimate a smooth background and divide or subtract it."""

    background: Literal["gaussian", "morph_close", "morph_open"] = "gaussian"
    """How the background is estimated: a large Gaussian blur, or a grey closing (dark marks on a
    lighter surface) / opening (bright marks) with an elliptic kernel of ``2*sigma+1`` pixels."""
    sigma: float = Field(default=20.0, gt=0, le=500)
    mode: Literal["divide", "subtract"] = "divide"
    """divide: ``out = 128 * img / bg``; subtract: ``out = img - bg + 128``."""
    downsample: int = Field(default=1, ge=1, le=16)
    """Estimate the background on a copy shrunk by this factor (pixel averaging, at least 1 x 1 pixels) with
    ``sigma / downsample``, then enlarge it back (bilinear): a smooth background loses nothing to the smaller
    copy, and a large Gaussian costs ``downsample ** 3`` times less. Gaussian backgrounds only: a grey closing or
    opening follows the strokes' shapes, which a smaller copy does not keep. 1 (the default, and every trail
    recorded before the parameter existed): at full resolution."""

    @model_validator(mode="after")
    def _downsample_gaussian_only(self) -> FlattenParams:
        """A shrunk copy stands in for a smooth (Gaussian) background only."""
        if self.downsample != 1 and self.background != "gaussian":
            raise ValueError(f"downsample applies to the gaussian background only, not {self.background!r}")
        return self


class ClaheParams(_Params):
    """Contrast-limited adaptive histogram equalisation (OpenCV), on the L channel for colour input."""

    clip_limit: float = Field(default=2.0, gt=0, le=100)
    tile: int = Field(default=8, ge=1, le=64)


class MorphParams(_Params):
    """Top-hat (bright details) or black-hat (dark details) with a structuring element."""

    ksize: int = Field(default=15, ge=3, le=301)
    shape: Literal["ellipse", "rect", "cross"] = "ellipse"
    gain: float = Field(default=1.0, gt=0, le=50)
    """Multiplier applied to the morphological residue before clipping to 0..255."""


class RidgeParams(_Params):
    """Multi-scale Hessian ridge/valley filter (Sato-like) on the grey image."""

    sigmas: tuple[float, ...] = (1.0, 2.0, 3.0)
    polarity: Literal["dark", "bright", "both"] = "dark"
    """dark: grooves darker than their surroundings; bright: raised or bright strokes."""
    clip_percentile: float = Field(default=99.5, gt=50, le=100)
    """The response at this percentile maps to 255."""


class DenoiseParams(_Params):
    """Edge-preserving denoising: bilateral filter or non-local means."""

    method: Literal["bilateral", "nlm"] = "bilateral"
    d: int = Field(default=5, ge=1, le=31)
    sigma_color: float = Field(default=30.0, gt=0, le=255)
    sigma_space: float = Field(default=5.0, gt=0, le=100)
    h: float = Field(default=7.0, gt=0, le=100)
    template: int = Field(default=7, ge=3, le=21)
    search: int = Field(default=21, ge=3, le=51)

    @field_validator("template", "search")
    @classmethod
    def _odd(cls, value: int) -> int:
        """Window sizes are odd: an even one would be widened by one, and the trail would not say so."""
        if value % 2 == 0:
            raise ValueError(f"must be odd (a window centred on the pixel), got {value}")
        return value


class UnsharpParams(_Params):
    """Unsharp masking: ``out = img + amount * (img - gaussian(img, sigma))``."""

    sigma: float = Field(default=2.0, gt=0, le=100)
    amount: float = Field(default=1.0, ge=0, le=20)


class GammaParams(_Params):
    """Power-law intensity mapping through a 256-entry lookup table."""

    gamma: float = Field(default=1.0, gt=0, le=10)


class NormalizeParams(_Params):
    """Percentile contrast stretch to 0..255."""

    low_pct: float = Field(default=0.5, ge=0, lt=100)
    high_pct: float = Field(default=99.5, gt=0, le=100)


class CropParams(_Params):
    """A rectangle of the input image, in pixels: columns ``x0..x1-1``, rows ``y0..y1-1``."""

    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    x1: int = Field(gt=0)
    y1: int = Field(gt=0)


class ResizeParams(_Params):
    """Resample the whole image from ``from_width`` x ``from_height`` to ``width`` x ``height`` pixels.

    The input size is part of the parameters so a trail says what was resized, a replay on another image
    fails instead of silently giving other pixels, and boxes can be mapped between the two frames from the
    trail alone (pixel centres: ``x_out = (x_in + 0.5) * width / from_width - 0.5``).
    """

    from_width: int = Field(gt=0)
    from_height: int = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    interpolation: Literal["area", "linear", "cubic"] = "area"
    """OpenCV interpolation: ``area`` (pixel averaging) is the one for shrinking."""


Image = np.ndarray
StepFn = Callable[[Image, Any], Image]


@dataclass(frozen=True)
class StepSpec:
    """A registered step: its function, parameter model and one-line description."""

    name: str
    fn: StepFn
    params: type[_Params]
    doc: str


STEPS: dict[str, StepSpec] = {}


def _register(name: str, params: type[_Params], doc: str) -> Callable[[StepFn], StepFn]:
    def deco(fn: StepFn) -> StepFn:
        STEPS[name] = StepSpec(name=name, fn=fn, params=params, doc=doc)
        return fn

    return deco


def check_image(image: np.ndarray, what: str = "image") -> None:
    """Raise :class:`StepError` unless ``image`` is a non-empty uint8 HxW or HxWx3 array."""
    if not isinstance(image, np.ndarray):
        raise StepError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise StepError(f"{what}: expected dtype uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or image.size == 0:
        raise StepError(f"{what}: expected an HxW gray or HxWx3 BGR image, got shape {image.shape}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey copy of a uint8 gray or BGR image."""
    if image.ndim == 2:
        return image.copy()
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _clip_u8(arr: np.ndarray) -> np.ndarray:
    """Round, clip to 0..255 and cast to uint8, working in place on ``arr`` (a float temporary of the caller)."""
    np.rint(arr, out=arr)
    np.clip(arr, 0, 255, out=arr)
    return arr.astype(np.uint8)


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    if image.ndim == 2:
        return fn(image)
    return np.dstack([fn(np.ascontiguousarray(image[:, :, c])) for c in range(3)])


def _shape(name: str) -> int:
    return {"ellipse": cv2.MORPH_ELLIPSE, "rect": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}[name]


@_register("gray", NoParams, "Convert to one grey channel (BT.601 weights, OpenCV).")
def _gray(image: Image, p: NoParams) -> Image:
    return to_gray(image)


@_register("invert", NoParams, "255 - value.")
def _invert(image: Image, p: NoParams) -> Image:
    return np.subtract(np.uint8(255), image)


@_register("crop", CropParams, "Cut a rectangle out of the image (pixels, end exclusive); no resampling.")
def _crop(image: Image, p: CropParams) -> Image:
    height, width = image.shape[:2]
    if not (p.x0 < p.x1 <= width and p.y0 < p.y1 <= height):
        raise StepError(f"crop: rectangle ({p.x0}, {p.y0})-({p.x1}, {p.y1}) is not inside the {width}x{height} image")
    return image[p.y0 : p.y1, p.x0 : p.x1].copy()


_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


@_register("resize", ResizeParams, "Resample to a given size (OpenCV; the input size is checked).")
def _resize(image: Image, p: ResizeParams) -> Image:
    height, width = image.shape[:2]
    if (width, height) != (p.from_width, p.from_height):
        raise StepError(
            f"resize: the image is {width}x{height}, the step was recorded for {p.from_width}x{p.from_height}"
        )
    if (p.width, p.height) == (width, height):
        return image.copy()
    return cv2.resize(image, (p.width, p.height), interpolation=_INTERPOLATION[p.interpolation])


@_register("flatten_background", FlattenParams, "Remove slow illumination changes (divide/subtract).")
def _flatten(image: Image, p: FlattenParams) -> Image:
    def background(ch: np.ndarray, sigma: float) -> np.ndarray:
        if p.background == "gaussian":  # the only background with a downsample (see FlattenParams)
            src = ch if ch.dtype == np.float32 else ch.astype(np.float32)
            return cv2.GaussianBlur(src, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        k = 2 * int(round(sigma)) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        op = cv2.MORPH_CLOSE if p.background == "morph_close" else cv2.MORPH_OPEN
        return cv2.morphologyEx(ch, op, kernel, borderType=cv2.BORDER_REFLECT).astype(np.float32)

    def one(ch: np.ndarray) -> np.ndarray:
        if p.downsample == 1:
            bg = background(ch, p.sigma)
        else:
            height, width = ch.shape
            small = cv2.resize(ch, (max(1, round(width / p.downsample)), max(1, round(height / p.downsample))),
                               interpolation=cv2.INTER_AREA)
            bg = cv2.resize(background(small, p.sigma / p.downsample), (width, height),
                            interpolation=cv2.INTER_LINEAR)
        src = ch.astype(np.float32)
        # in place, in the order src * 128 / max(bg, 1) and src - bg + 128 (two float copies of a large
        # photo, not five; the same float32 operations, so recorded trails replay bit for bit)
        if p.mode == "divide":
            src *= np.float32(128.0)
            src /= np.maximum(bg, np.float32(1.0), out=bg)
        else:
            src -= bg
            src += np.float32(128.0)
        return _clip_u8(src)

    return _per_channel(image, one)


@_register("clahe", ClaheParams, "Contrast-limited adaptive histogram equalisation.")
def _clahe(image: Image, p: ClaheParams) -> Image:
    clahe = cv2.createCLAHE(clipLimit=p.clip_limit, tileGridSize=(p.tile, p.tile))
    if image.ndim == 2:
        return clahe.apply(image)
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def _morph(image: Image, p: MorphParams, op: int) -> Image:
    kernel = cv2.getStructuringElement(_shape(p.shape), (p.ksize, p.ksize))

    def one(ch: np.ndarray) -> np.ndarray:
        res = cv2.morphologyEx(ch, op, kernel, borderType=cv2.BORDER_REFLECT)
        if p.gain == 1.0:
            return res
        # row bands, in place: a float copy of a band, not of a large photo (element-wise, so the same bytes)
        for start in range(0, res.shape[0], BAND_ROWS):
            scaled = res[start : start + BAND_ROWS].astype(np.float32)
            scaled *= np.float32(p.gain)
            res[start : start + BAND_ROWS] = _clip_u8(scaled)
        return res

    return _per_channel(image, one)


@_register("tophat", MorphParams, "Bright details smaller than the kernel (image - opening).")
def _tophat(image: Image, p: MorphParams) -> Image:
    return _morph(image, p, cv2.MORPH_TOPHAT)


@_register("blackhat", MorphParams, "Dark details smaller than the kernel (closing - image).")
def _blackhat(image: Image, p: MorphParams) -> Image:
    return _morph(image, p, cv2.MORPH_BLACKHAT)


def hessian_ridge(gray: np.ndarray, sigmas: tuple[float, ...], polarity: str) -> np.ndarray:
    """Scale-normalised Hessian ridge response (float32, >= 0), maximum over ``sigmas``.

    For each scale the Hessian of the Gaussian-smoothed image is computed with Sobel derivatives;
    its larger eigenvalue is positive in a dark valley (groove) and the smaller one negative on a
    bright ridge. The response is ``sigma**2 * max(lambda_max, 0)`` for dark, ``-lambda_min`` for
    bright, and the larger of the two for both.
    """
    src = gray.astype(np.float32)
    best = np.zeros(src.shape, np.float32)
    for s in sigmas:
        if s <= 0:
            raise StepError(f"ridge: sigma must be > 0, got {s}")
        g = cv2.GaussianBlur(src, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT)
        dxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3, borderType=cv2.BORDER_REFLECT)
        dyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3, borderType=cv2.BORDER_REFLECT)
        dxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3, borderType=cv2.BORDER_REFLECT)
        half_tr = (dxx + dyy) * np.float32(0.5)
        disc = np.sqrt(((dxx - dyy) * np.float32(0.5)) ** 2 + dxy * dxy)
        scale = np.float32(s * s)
        lam_max = (half_tr + disc) * scale
        lam_min = (half_tr - disc) * scale
        if polarity == "dark":
            resp = np.maximum(lam_max, 0)
        elif polarity == "bright":
            resp = np.maximum(-lam_min, 0)
        else:
            resp = np.maximum(np.maximum(lam_max, 0), np.maximum(-lam_min, 0))
        best = np.maximum(best, resp)
    return best


@_register("ridge", RidgeParams, "Multi-scale Hessian groove/ridge filter; grey output.")
def _ridge(image: Image, p: RidgeParams) -> Image:
    if not p.sigmas:
        raise StepError("ridge: sigmas must not be empty")
    resp = hessian_ridge(to_gray(image), p.sigmas, p.polarity)
    top = float(np.percentile(resp, p.clip_percentile))
    if top <= 0:
        return np.zeros(resp.shape, np.uint8)
    resp *= np.float32(255.0 / top)
    return _clip_u8(resp)


@_register("denoise", DenoiseParams, "Bilateral filter or non-local means.")
def _denoise(image: Image, p: DenoiseParams) -> Image:
    if p.method == "bilateral":
        return cv2.bilateralFilter(image, p.d, p.sigma_color, p.sigma_space, borderType=cv2.BORDER_REFLECT)
    tw, sw = p.template, p.search
    if image.ndim == 2:
        return cv2.fastNlMeansDenoising(image, None, h=p.h, templateWindowSize=tw, searchWindowSize=sw)
    return cv2.fastNlMeansDenoisingColored(image, None, p.h, p.h, tw, sw)


@_register("unsharp", UnsharpParams, "Unsharp masking.")
def _unsharp(image: Image, p: UnsharpParams) -> Image:
    def one(ch: np.ndarray) -> np.ndarray:
        src = ch.astype(np.float32)
        detail = cv2.GaussianBlur(src, (0, 0), sigmaX=p.sigma, sigmaY=p.sigma, borderType=cv2.BORDER_REFLECT)
        np.subtract(src, detail, out=detail)  # src + amount * (src - blur), in place
        np.multiply(detail, np.float32(p.amount), out=detail)
        np.add(detail, src, out=detail)
        return _clip_u8(detail)

    return _per_channel(image, one)


@_register("gamma", GammaParams, "Power-law mapping out = 255 * (in/255) ** gamma.")
def _gamma(image: Image, p: GammaParams) -> Image:
    lut = _clip_u8(255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** p.gamma)
    return cv2.LUT(image, lut)


@_register("normalize", NormalizeParams, "Percentile stretch to 0..255.")
def _normalize(image: Image, p: NormalizeParams) -> Image:
    if p.high_pct <= p.low_pct:
        raise StepError(f"normalize: high_pct ({p.high_pct}) must exceed low_pct ({p.low_pct})")
    lo, hi = np.percentile(image, [p.low_pct, p.high_pct])
    if hi <= lo:
        return image.copy()
    stretched = image.astype(np.float32)
    stretched -= np.float32(lo)
    stretched *= np.float32(255.0 / (hi - lo))
    return _clip_u8(stretched)


def validate_step(step: TrailStep) -> TrailStep:
    """Return ``step`` with its parameters validated and every default filled in.

    Raises:
        StepError: unknown step name or invalid parameters (the message names the step).
    """
    spec = STEPS.get(step.name)
    if spec is None:
        raise StepError(f"unknown enhancement step {step.name!r}; known: {', '.join(sorted(STEPS))}")
    try:
        params = spec.params.model_validate(step.params)
    except ValidationError as exc:
        raise StepError(f"step {step.name!r}: invalid parameters: {exc}") from None
    return TrailStep(name=step.name, params=params.model_dump(mode="json"))


def apply_step(image: np.ndarray, step: TrailStep) -> np.ndarray:
    """Apply one named step to a uint8 image and return a new uint8 image (the input is untouched)."""
    check_image(image, f"input of step {step.name!r}")
    spec = STEPS.get(step.name)
    if spec is None:
        raise StepError(f"unknown enhancement step {step.name!r}; known: {', '.join(sorted(STEPS))}")
    try:
        params = spec.params.model_validate(step.params)
    except ValidationError as exc:
        raise StepError(f"step {step.name!r}: invalid parameters: {exc}") from None
    out = spec.fn(image, params)
    out = np.ascontiguousarray(out)
    check_image(out, f"output of step {step.name!r}")
    return out
