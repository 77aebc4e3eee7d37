"""Multi-light items: light files, registration, photometric stereo and relief views with trails.

Coordinates: image x to the right, y down, z toward the camera (out of the surface). A light at
azimuth ``a`` (in the image plane, from +x toward +y, degrees) and elevation ``e`` (above the surface)
has the unit direction ``(cos e cos a, cos e sin a, sin e)``; normals use the same frame.

Light files (in the item folder):

* ``lights.json``: ``{"file.jpg": {"azimuth_deg": a, "elevation_deg": e}, ...}``; a ``null`` entry or
  an empty mapping means "directions unknown" (the direction-free methods are used).
* RTI ``.lp``: first line N, then ``filename lx ly lz`` per photo (file names may carry a path; the
  base name is matched). We assume the usual RTIBuilder/RelightLab convention: x right, **y up**,
  z toward the viewer, so ``ly`` is negated to get our y-down frame (``lp_y_up=False`` disables it).

Least squares (Woodham 1980): per pixel ``g = argmin |L g - I|``, albedo ``|g|``, normal ``g/|g|``.
With N >= 6 lights the darkest and brightest ``trim`` samples and samples below ``shadow`` times the
pixel's maximum are dropped (shadows and highlights). Without directions, per-pixel statistics and
an SVD of the stack (Hayakawa-style uncalibrated photometric stereo, up to a linear ambiguity) give
pseudo-normals. All computations are deterministic (no randomness, fixed orders).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from marktrace.inference.enhance.chains import image_sha256, software_version
from marktrace.inference.geometry import to_gray
from marktrace.inference.images import IMAGE_SUFFIXES, load_image
from marktrace.inference.items import light_file_in
from marktrace.inference.schema import Trail, TrailStep, View

LightMap = Mapping[str, tuple[float, float]]
"""File name -> (azimuth_deg, elevation_deg)."""

DEFAULT_MAX_PIXELS = 2_000_000
"""Working resolution cap per photo (photos are reduced with area averaging above it)."""
DEFAULT_STACK_BUDGET = 64_000_000
"""Cap on the total working pixels of a stack (uint8), e.g. 60 photos at about 1 MP each."""


class LightFileError(ValueError):
    """A light file or a multi-light folder is invalid; the message names the file and the problem."""


# --------------------------------------------------------------------------- light files


def direction_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit light vector (x right, y down, z toward camera) from azimuth and elevation in degrees."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)], dtype=np.float64)


def vector_to_angles(x: float, y: float, z: float) -> tuple[float, float]:
    """(azimuth_deg, elevation_deg) of a direction in the y-down frame; azimuth in [0, 360)."""
    norm = math.sqrt(x * x + y * y + z * z)
    if norm == 0:
        raise ValueError("zero-length light vector")
    az = math.degrees(math.atan2(y, x)) % 360.0
    el = math.degrees(math.asin(max(-1.0, min(1.0, z / norm))))
    return az, el


def _short(value: object) -> str:
    """``repr(value)``, cut to 40 characters (an error message must not echo a megabyte of digits)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def checked_direction(azimuth_deg: object, elevation_deg: object) -> tuple[float, float]:
    """A light direction as (azimuth in [0, 360), elevation in (0, 90]) degrees, the one rule for every input.

    Raises:
        ValueError: not numbers (booleans included), not finite, or an elevation outside (0, 90].
    """
    values = []
    for label, value in (("azimuth_deg", azimuth_deg), ("elevation_deg", elevation_deg)):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{label} must be a number, got {_short(value)}")
        try:
            number = float(value)
        except (ValueError, OverflowError):  # "abc", or an integer too large for a float
            raise ValueError(f"{label} must be a finite number, got {_short(value)}") from None
        if not math.isfinite(number):
            raise ValueError(f"{label} must be finite, got {value!r}")
        values.append(number)
    az, el = values
    if not 0.0 < el <= 90.0:
        raise ValueError(f"elevation_deg must be in (0, 90], got {el}")
    return az % 360.0, el


def parse_lights_json(path: str | Path, label: str | None = None) -> dict[str, tuple[float, float]] | None:
    """Read ``lights.json``; None when it declares no directions (empty or all entries null).

    Errors name the file as ``label`` when given (a batch's path relative to its folder), else by its path.

    Raises:
        LightFileError: unreadable file, bad JSON, or an entry without numeric azimuth/elevation.
    """
    p = label or Path(path)
    try:
        data = json.loads(Path(path).read_bytes())  # UTF-8 (with or without a BOM), UTF-16 or UTF-32
    except OSError as exc:
        raise LightFileError(f"{p}: cannot read light file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise LightFileError(f"{p}: not UTF-8, UTF-16 or UTF-32 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise LightFileError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LightFileError(f"{p}: expected an object mapping file name -> {{azimuth_deg, elevation_deg}}")
    out: dict[str, tuple[float, float]] = {}
    for name, entry in data.items():
        if entry is None:
            continue
        if not isinstance(entry, dict) or "azimuth_deg" not in entry or "elevation_deg" not in entry:
            raise LightFileError(f"{p}: entry {name!r} needs azimuth_deg and elevation_deg")
        try:
            out[str(name)] = checked_direction(entry["azimuth_deg"], entry["elevation_deg"])
        except ValueError as exc:
            raise LightFileError(f"{p}: entry {name!r}: {exc}") from None
    if out and len(out) != sum(1 for v in data.values() if v is not None):  # pragma: no cover
        raise LightFileError(f"{p}: inconsistent entries")
    if out and len(out) != len(data):
        missing = sorted(k for k, v in data.items() if v is None)
        raise LightFileError(f"{p}: some photos have directions and some do not ({', '.join(missing)})")
    return out or None


def parse_lp(path: str | Path, y_up: bool = True, label: str | None = None) -> dict[str, tuple[float, float]]:
    """Read an RTI ``.lp`` file into file base name -> (azimuth_deg, elevation_deg).

    Errors name the file as ``label`` when given, else by its path.

    Raises:
        LightFileError: naming the file and line for any malformed content.
    """
    p = label or Path(path)
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8", errors="strict").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise LightFileError(f"{p}: cannot read light file ({exc})") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise LightFileError(f"{p}: empty .lp file")
    try:
        n = int(lines[0].split()[0])
    except ValueError:
        raise LightFileError(f"{p}: first line must be the number of photos, got {lines[0]!r}") from None
    if n < 1 or len(lines) - 1 != n:
        raise LightFileError(f"{p}: header says {n} photos but {len(lines) - 1} light lines follow")
    out: dict[str, tuple[float, float]] = {}
    for i, ln in enumerate(lines[1:], start=2):
        parts = ln.split()
        if len(parts) < 4:
            raise LightFileError(f"{p}: line {i}: expected 'filename lx ly lz', got {ln!r}")
        name = " ".join(parts[:-3])
        try:
            lx, ly, lz = (float(v) for v in parts[-3:])
        except ValueError:
            raise LightFileError(f"{p}: line {i}: light vector is not numeric: {ln!r}") from None
        if lz <= 0 or not all(math.isfinite(v) for v in (lx, ly, lz)):
            raise LightFileError(f"{p}: line {i}: light must be above the surface (lz > 0), got {lz}")
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        if base in out:
            raise LightFileError(f"{p}: line {i}: photo {base!r} listed twice")
        out[base] = vector_to_angles(lx, -ly if y_up else ly, lz)
    return out


def find_light_file(folder: str | Path) -> Path | None:
    """The folder's ``lights.json``, else its first ``.lp`` file (sorted), else None."""
    f = Path(folder)
    return light_file_in(f, [q.name for q in f.iterdir() if q.is_file()])


def load_light_file(
    path: str | Path, lp_y_up: bool = True, label: str | None = None
) -> dict[str, tuple[float, float]] | None:
    """Light directions from a ``.lp`` file or a ``lights.json``; None when it declares none.

    Raises:
        LightFileError: the file cannot be read or is malformed (the message names it, as ``label`` if given).
    """
    light = Path(path)
    if light.suffix.lower() == ".lp":
        return parse_lp(light, y_up=lp_y_up, label=label)
    return parse_lights_json(light, label=label)


def load_light_directions(folder: str | Path, lp_y_up: bool = True) -> dict[str, tuple[float, float]] | None:
    """Light directions of a multi-light folder, or None when it has no light file or no directions."""
    light = find_light_file(folder)
    return None if light is None else load_light_file(light, lp_y_up)


# --------------------------------------------------------------------------- the stack


@dataclass
class LightStack:
    """Photos of one marking under several lights, grey, at a common working resolution."""

    names: list[str]
    sha256: list[str]
    images: np.ndarray
    """(N, H, W) uint8 grey working copies (originals are never modified)."""
    lights: dict[str, tuple[float, float]] | None
    """File name -> (azimuth_deg, elevation_deg), or None (direction-free)."""
    scale: float = 1.0
    """Working size / original size."""
    steps: list[TrailStep] = field(default_factory=list)
    """How the working stack was made (load, registration), copied into every view's trail."""

    def light_matrix(self) -> np.ndarray | None:
        """(N, 3) unit light vectors in ``names`` order, or None."""
        if self.lights is None:
            return None
        return np.stack([direction_vector(*self.lights[n]) for n in self.names])


def stack_working_size(
    height: int, width: int, n: int, max_pixels: int = DEFAULT_MAX_PIXELS, stack_budget: int = DEFAULT_STACK_BUDGET
) -> tuple[int, int, float]:
    """(working height, working width, scale) of a stack of ``n`` photos of ``width`` x ``height``."""
    cap = max(16 * 16, min(max_pixels, stack_budget // max(n, 1)))
    scale = min(1.0, math.sqrt(cap / float(height * width)))
    if scale >= 1.0:
        return height, width, 1.0
    return max(1, int(round(height * scale))), max(1, int(round(width * scale))), scale


def working_copy(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """One photo's gray working copy at the stack's working ``height`` x ``width`` (area averaging).

    The conversion every stack makes (:func:`stack_from_arrays`); a photo already at that size is only
    converted to gray.
    """
    gray = to_gray(image)
    if gray.shape[:2] == (height, width):
        return gray
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)


def stack_from_arrays(
    images: Sequence[np.ndarray],
    names: Sequence[str],
    sha256: Sequence[str],
    lights: LightMap | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    stack_budget: int = DEFAULT_STACK_BUDGET,
    photo_size: tuple[int, int] | None = None,
) -> LightStack:
    """Build a :class:`LightStack` from decoded uint8 gray/BGR working copies (same size each).

    With ``photo_size`` (width, height), ``images`` are already the stack's working copies of photos of that
    size (:func:`working_copy` at :func:`stack_working_size` for ``len(images)`` photos), made one photo at a
    time by a reader that did not keep the photos; the stack is the same as from the photos themselves.

    Raises:
        LightFileError: fewer than 3 photos, size mismatch, or a photo without a light direction.
    """
    if not (len(images) == len(names) == len(sha256)):
        raise LightFileError("images, names and sha256 must have the same length")
    if len(images) < 3:
        raise LightFileError(f"a multi-light item needs at least 3 photos, got {len(images)}")
    w, h = photo_size if photo_size is not None else (images[0].shape[1], images[0].shape[0])
    wh, ww, scale = stack_working_size(h, w, len(images), max_pixels, stack_budget)
    for img, name in zip(images, names, strict=True):
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise LightFileError(f"{name}: expected a uint8 gray or BGR image, got {img.dtype} {img.shape}")
        if photo_size is not None and img.shape != (wh, ww):
            raise LightFileError(f"{name}: {img.shape[1]}x{img.shape[0]} is not the {ww}x{wh} gray working copy "
                                 f"of a {w}x{h} photo")
        if photo_size is None and img.shape[:2] != (h, w):
            raise LightFileError(
                f"{name}: size {img.shape[1]}x{img.shape[0]} differs from {names[0]} ({w}x{h})")
    light_sel: dict[str, tuple[float, float]] | None = None
    if lights:
        missing = [n for n in names if n not in lights]
        if missing:
            raise LightFileError(f"no light direction for photo(s): {', '.join(missing)}")
        light_sel = {n: (float(lights[n][0]), float(lights[n][1])) for n in names}
    work = np.empty((len(images), wh, ww), np.uint8)
    for i, img in enumerate(images):
        work[i] = working_copy(img, wh, ww)
    step = TrailStep(
        name="load_stack",
        params={"files": list(names), "grey": "opencv BGR2GRAY", "max_pixels": max_pixels,
                "stack_budget": stack_budget, "working_size": [ww, wh], "original_size": [w, h],
                "resize": "INTER_AREA" if scale != 1.0 else "none"},
    )
    return LightStack(list(names), list(sha256), work, light_sel, scale, [step])


def load_stack(
    folder: str | Path,
    lights: LightMap | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    stack_budget: int = DEFAULT_STACK_BUDGET,
    lp_y_up: bool = True,
) -> LightStack:
    """Load a multi-light folder (photos + optional ``lights.json``/``.lp``) as a :class:`LightStack`.

    With a light file, exactly the photos it names are used (each must exist); without directions,
    every image file in the folder is used, sorted by name. ``lights`` overrides the folder's file.

    Raises:
        LightFileError / ImageLoadError: naming the folder or file and the problem.
    """
    f = Path(folder)
    if not f.is_dir():
        raise LightFileError(f"{f}: not a folder")
    if lights is None:
        lights = load_light_directions(f, lp_y_up=lp_y_up)
    if lights:
        names = sorted(lights)
        missing = [n for n in names if not (f / n).is_file()]
        if missing:
            raise LightFileError(f"{f}: light file names missing photo(s): {', '.join(missing)}")
    else:
        names = sorted(q.name for q in f.iterdir()
                       if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES and not q.name.startswith("."))
    if len(names) < 3:
        raise LightFileError(f"{f}: a multi-light item needs at least 3 photos, found {len(names)}")
    loaded = []
    for n in names:
        li = load_image(f / n, name=f"{f.name}/{n}")
        loaded.append((to_gray(li.image), li.sha256))
    return stack_from_arrays([g for g, _ in loaded], names, [s for _, s in loaded], lights,
                             max_pixels=max_pixels, stack_budget=stack_budget)


# --------------------------------------------------------------------------- registration


def _reg_feature(img: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    g = cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.asarray(cv2.magnitude(gx, gy), dtype=np.float32)
    return mag - np.float32(mag.mean())


def _shrink(img: np.ndarray, factor: float) -> np.ndarray:
    if factor >= 1.0:
        return img
    return cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def register_stack(
    images: np.ndarray,
    reference: int = 0,
    *,
    rotation: bool = True,
    min_shift_px: float = 0.5,
    min_angle_deg: float = 0.1,
    min_response: float = 0.15,
    ecc_max_side: int = 512,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Align each photo of an (N, H, W) uint8 stack to ``images[reference]``.

    Translation by phase correlation of gradient-magnitude images (less sensitive to the change of
    light than raw intensities), then optionally a Euclidean ECC refinement (small rotation) at
    reduced resolution. A photo is left untouched when its motion is below ``min_shift_px`` and
    ``min_angle_deg`` (already aligned) or when the phase-correlation peak is below ``min_response``
    (too little surface texture to register reliably: warping on a guess would blur the relief).

    Returns:
        The aligned stack (a new array) and, per photo, ``{"dx", "dy", "angle_deg", "response",
        "applied"}`` (the motion of the photo relative to the reference, in working pixels).
    """
    n, h, w = images.shape
    ref_feat = _reg_feature(images[reference])
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    small = min(1.0, ecc_max_side / float(max(h, w)))
    ref_small = _shrink(ref_feat, small)
    out = images.copy()
    report: list[dict[str, Any]] = []
    for i in range(n):
        if i == reference:
            report.append({"dx": 0.0, "dy": 0.0, "angle_deg": 0.0, "response": 1.0, "applied": False})
            continue
        feat = _reg_feature(images[i])
        (dx, dy), resp = cv2.phaseCorrelate(ref_feat, feat, window)
        warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        if rotation and resp >= min_response:
            init = np.array([[1, 0, dx * small], [0, 1, dy * small]], np.float32)
            try:
                _cc, ecc = cv2.findTransformECC(
                    ref_small, _shrink(feat, small), init, cv2.MOTION_EUCLIDEAN,
                    (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5), None, 5)  # type: ignore[call-overload]
                ecc = np.asarray(ecc, np.float32)
                ecc[:, 2] /= small
                if math.hypot(float(ecc[0, 2]) - dx, float(ecc[1, 2]) - dy) < 1.0:  # ECC did not wander
                    warp = ecc
            except cv2.error:
                pass
        angle = math.degrees(math.atan2(float(warp[1, 0]), float(warp[0, 0])))
        tx, ty = float(warp[0, 2]), float(warp[1, 2])
        moved = math.hypot(tx, ty) >= min_shift_px or abs(angle) >= min_angle_deg
        applied = moved and resp >= min_response
        if applied:
            out[i] = cv2.warpAffine(images[i], warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REPLICATE)
        report.append({"dx": round(tx, 4), "dy": round(ty, 4), "angle_deg": round(angle, 5),
                       "response": round(float(resp), 4), "applied": applied})
    return out, report


# --------------------------------------------------------------------------- photometric stereo


def _as_float_stack(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"expected an (N, H, W) stack, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) * np.float32(1.0 / 255.0)
    return arr.astype(np.float32, copy=False)


def _unit_lights(lights: np.ndarray, n: int) -> np.ndarray:
    """``lights`` as (n, 3) unit vectors; refuses a wrong shape or coplanar directions."""
    L = np.asarray(lights, dtype=np.float64)
    if L.shape != (n, 3):
        raise ValueError(f"lights must have shape ({n}, 3), got {L.shape}")
    L = L / np.linalg.norm(L, axis=1, keepdims=True)
    if np.linalg.matrix_rank(L) < 3:
        raise ValueError("light directions are coplanar; photometric stereo needs 3 non-coplanar lights")
    return L


def _normals_and_albedo(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals and albedo (the length) of scaled normals ``g`` (..., 3); (0, 0, 1) where it is ~0."""
    albedo = np.sqrt((g * g).sum(axis=-1))
    safe = albedo > 1e-8
    normals = np.zeros_like(g)
    normals[..., 2] = 1.0
    normals[safe] = g[safe] / albedo[safe, None]
    return normals, albedo


def photometric_stereo(
    images: np.ndarray | Sequence[np.ndarray],
    lights: np.ndarray,
    *,
    robust: bool | None = None,
    trim: int = 1,
    shadow: float = 0.05,
    outlier_sigma: float = 3.0,
    chunk: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray]:
    """Lambertian photometric stereo by least squares.

    The robust fit drops, per pixel, samples that do not fit: shadows, and of the ``trim`` darkest and
    brightest samples those whose residual from the plain fit exceeds ``outlier_sigma`` times the stack's
    noise (1.4826 x the median absolute residual of the plain fit over every 7th pixel). Dropping the
    extremes whether or not they are outliers (``outlier_sigma=0``, the fit before 0.5.0) picks a different
    set of lights at every pixel where noise decides which sample is darkest, which on faint relief turns the
    normals into noise (development stacks of ground markings: a raking view from that fit read no serial
    of 40, from the plain fit 7).

    Args:
        images: (N, H, W) grey stack (uint8, or float in linear units).
        lights: (N, 3) light directions (normalised here).
        robust: drop per-pixel outliers (default: when N >= 6).
        trim: with ``robust``, how many darkest and brightest samples each pixel may drop.
        shadow: with ``robust``, samples below ``shadow`` x the pixel's maximum are also dropped.
        outlier_sigma: with ``robust``, how far (in noise units) from the plain fit a trimmed sample must lie
            to be dropped; 0 drops them all.
        chunk: pixels per block (bounds the memory of temporaries).

    Returns:
        ``normals`` (H, W, 3) float32 unit vectors (z toward the camera) and ``albedo`` (H, W) float32.
    """
    stack = _as_float_stack(images)
    n, h, w = stack.shape
    L = _unit_lights(lights, n)
    use_robust = (n >= 6) if robust is None else robust
    k = max(0, min(trim, (n - 3) // 2))
    flat = stack.reshape(n, -1)
    p_total = flat.shape[1]
    G = np.empty((p_total, 3), np.float32)
    Lf = L.astype(np.float32)
    pinv = np.linalg.pinv(L).astype(np.float32)  # (3, N)
    iu = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    LL = np.stack([Lf[:, a] * Lf[:, b] for a, b in iu], axis=1)  # (N, 6)
    cols = np.arange(min(chunk, p_total))
    for s in range(0, p_total, chunk):  # the plain fit (the robust one starts from it)
        G[s:s + chunk] = _sum_over_photos(pinv, flat[:, s:s + chunk]).T
    if not use_robust:
        normals, albedo = _normals_and_albedo(G)
        return normals.reshape(h, w, 3), albedo.reshape(h, w)
    noise = _residual_scale(flat, G, Lf) if outlier_sigma > 0 else 0.0
    gate = np.float32(outlier_sigma * noise)
    for s in range(0, p_total, chunk):
        obs = flat[:, s:s + chunk]
        m = obs.shape[1]
        W = np.ones_like(obs)
        if k >= 1:
            far = np.abs(obs - _predicted(G[s:s + m], Lf)) > gate if outlier_sigma > 0 else np.ones(obs.shape, bool)
            if k == 1:
                picks = [obs.argmin(axis=0), obs.argmax(axis=0)]
            else:
                order = np.argsort(obs, axis=0, kind="stable")
                picks = [order[j] for j in list(range(k)) + list(range(n - k, n))]
            for rows in picks:
                drop = far[rows, cols[:m]]
                W[rows[drop], cols[:m][drop]] = 0
        floor = np.float32(shadow) * obs.max(axis=0, keepdims=True)
        W[obs < floor] = 0
        few = W.sum(axis=0) < 3
        if few.any():
            W[:, few] = 1
        A6 = _sum_over_photos(LL.T, W).T  # (m, 6): a00 a01 a02 a11 a12 a22
        b = _sum_over_photos(Lf.T, W * obs).T  # (m, 3)
        a00, a01, a02, a11, a12, a22 = (A6[:, j] for j in range(6))
        c00 = a11 * a22 - a12 * a12
        c01 = a02 * a12 - a01 * a22
        c02 = a01 * a12 - a02 * a11
        c11 = a00 * a22 - a02 * a02
        c12 = a01 * a02 - a00 * a12
        c22 = a00 * a11 - a01 * a01
        det = a00 * c00 + a01 * c01 + a02 * c02
        det = np.where(np.abs(det) < 1e-12, np.float32(1e-12), det)
        b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
        G[s:s + m, 0] = (c00 * b0 + c01 * b1 + c02 * b2) / det
        G[s:s + m, 1] = (c01 * b0 + c11 * b1 + c12 * b2) / det
        G[s:s + m, 2] = (c02 * b0 + c12 * b1 + c22 * b2) / det
    normals, albedo = _normals_and_albedo(G)
    return normals.reshape(h, w, 3), albedo.reshape(h, w)


def _predicted(g: np.ndarray, lights: np.ndarray) -> np.ndarray:
    """What a Lambertian surface with scaled normals ``g`` (m, 3) shows under each light (N, 3): (N, m)."""
    return (lights[:, 0:1] * g[:, 0] + lights[:, 1:2] * g[:, 1] + lights[:, 2:3] * g[:, 2]).astype(np.float32)


def _residual_scale(flat: np.ndarray, g: np.ndarray, lights: np.ndarray, stride: int = 7) -> float:
    """Robust noise scale of a plain fit: 1.4826 x the median absolute residual over every ``stride``-th pixel."""
    picked = flat[:, ::stride]
    residual = np.abs(picked - _predicted(g[::stride], lights))
    return float(1.4826 * np.median(residual)) if residual.size else 0.0


def _sum_over_photos(weights: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """``weights @ obs`` for ``weights`` (k, N) and ``obs`` (N, m) as a float32 sum over the N photos in order.

    A BLAS matrix product sums in an order that depends on the CPU kernel it picks, so the same photos could
    give views that differ in the last bit on another machine; this sum does not.
    """
    out = np.zeros((weights.shape[0], obs.shape[1]), np.float32)
    for i in range(obs.shape[0]):
        out += weights[:, i:i + 1].astype(np.float32) * obs[i]
    return out


def _dot3(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``vectors @ direction`` for (..., 3) vectors, written out (no BLAS: the same bits on every CPU)."""
    d = direction.astype(np.float32)
    return vectors[..., 0] * d[0] + vectors[..., 1] * d[1] + vectors[..., 2] * d[2]


def stack_statistics(images: np.ndarray | Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-pixel statistics across the stack: max, min, mean, std and range (float32, HxW)."""
    stack = _as_float_stack(images)
    mx, mn = stack.max(axis=0), stack.min(axis=0)
    return {"max": mx, "min": mn, "mean": stack.mean(axis=0), "std": stack.std(axis=0), "range": mx - mn}


def uncalibrated_normals(
    images: np.ndarray | Sequence[np.ndarray], *, robust: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direction-free photometric stereo: SVD of the stack into three components (Hayakawa 1994).

    The stack ``I (N x P) ~ L^T B`` has rank 3 for a Lambertian surface; its top three right singular
    vectors give ``B`` up to an unknown 3x3 linear map. We return pseudo-normals ``(b2, b3, b1)/|.|``
    (the first component, the mean brightness, playing z), the three component images, and the
    singular values. With ``robust`` (default N >= 6) each pixel's samples are first clipped to its
    second-smallest and second-largest values (shadow and highlight outliers). Signs are fixed so the
    largest entry of each left singular vector is positive, making the result deterministic.
    """
    stack = _as_float_stack(images)
    n, h, w = stack.shape
    obs = stack.reshape(n, -1)
    if (n >= 6) if robust is None else robust:
        srt = np.sort(obs, axis=0)
        obs = np.clip(obs, srt[1], srt[n - 2])
    C = (obs.astype(np.float64) @ obs.T.astype(np.float64)) / obs.shape[1]
    evals, evecs = np.linalg.eigh(C)
    idx = np.argsort(evals)[::-1][:3]
    U = evecs[:, idx]
    for j in range(U.shape[1]):
        if U[np.argmax(np.abs(U[:, j])), j] < 0:
            U[:, j] = -U[:, j]
    sv = np.sqrt(np.maximum(evals[idx], 0.0))
    comps = _sum_over_photos(U.T.astype(np.float32), obs)  # (3, P)
    B = comps / np.maximum(np.sqrt(sv), 1e-12).astype(np.float32)[:, None]
    pn = np.stack([B[1], B[2], np.abs(B[0])], axis=1)
    pn /= np.maximum(np.linalg.norm(pn, axis=1, keepdims=True), np.float32(1e-8))
    return pn.reshape(h, w, 3), comps.reshape(3, h, w), sv


def integrate_normals(normals: np.ndarray, max_slope: float = 20.0) -> np.ndarray:
    """Relative height from normals by Frankot-Chellappa (FFT) integration; zero-mean, float32."""
    nz = np.maximum(normals[..., 2], 1.0 / max_slope)
    p = -normals[..., 0] / nz
    q = -normals[..., 1] / nz
    h, w = p.shape
    wx = np.fft.fftfreq(w) * 2 * np.pi
    wy = np.fft.fftfreq(h) * 2 * np.pi
    u, v = np.meshgrid(wx, wy)
    denom = u * u + v * v
    denom[0, 0] = 1.0
    z = (-1j * u * np.fft.fft2(p) - 1j * v * np.fft.fft2(q)) / denom
    z[0, 0] = 0
    return np.real(np.fft.ifft2(z)).astype(np.float32)


# --------------------------------------------------------------------------- relief views


class ReliefParams(BaseModel):
    """Every parameter of the relief views; recorded in each view's trail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    align: bool = True
    rotation: bool = True
    robust: bool | None = None
    trim: int = Field(default=1, ge=0, le=10)
    shadow: float = Field(default=0.05, ge=0, lt=1)
    outlier_sigma: float = Field(default=3.0, ge=0, le=100)
    """Robust fit: a trimmed sample is dropped only this many noise units from the plain fit (0: always)."""
    raking_azimuths: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    raking_elevation: float = Field(default=15.0, gt=0, le=90)
    curvature_sigma: float = Field(default=1.5, gt=0, le=50)
    specular_azimuth: float = 45.0
    specular_elevation: float = Field(default=35.0, gt=0, le=90)
    specular_exponent: float = Field(default=40.0, gt=0, le=1000)
    specular_kd: float = Field(default=0.3, ge=0, le=1)
    specular_ks: float = Field(default=0.7, ge=0, le=1)
    unsharp_gain: float = Field(default=4.0, ge=0, le=50)
    unsharp_iterations: int = Field(default=2, ge=1, le=20)
    unsharp_azimuth: float = 45.0
    unsharp_elevation: float = Field(default=30.0, gt=0, le=90)
    stretch_low_pct: float = Field(default=0.5, ge=0, lt=50)
    stretch_high_pct: float = Field(default=99.5, gt=50, le=100)
    relit_azimuth: float = 315.0
    relit_elevation: float = Field(default=45.0, gt=0, le=90)
    relit_sigma: float = Field(default=1.5, ge=0, le=20)
    relit_eps: float = Field(default=1.0 / 255.0, gt=0, le=1)
    relit_flatten_sigma: float = Field(default=30.0, ge=0, le=500)
    relief_azimuth: float = 225.0
    relief_elevation: float = Field(default=35.0, gt=0, le=90)
    relief_sigma: float = Field(default=1.5, ge=0, le=20)
    relief_background_sigma: float = Field(default=10.0, gt=0, le=200)
    relief_slope: float = Field(default=0.6, gt=0, le=10)
    relief_slope_pct: float = Field(default=99.0, gt=50, le=100)
    relief_albedo: float = Field(default=0.75, gt=0, le=1)
    relief_ambient: float = Field(default=0.12, ge=0, le=1)


def _stretch(arr: np.ndarray, lo_pct: float, hi_pct: float) -> np.ndarray:
    lo, hi = np.percentile(arr, [lo_pct, hi_pct])
    if not hi > lo:
        return np.zeros(arr.shape, np.uint8)
    out = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _shade(normals: np.ndarray, az: float, el: float) -> np.ndarray:
    light = direction_vector(az, el).astype(np.float32)
    return np.maximum(_dot3(normals, light), np.float32(0.0))


def _curvature(normals: np.ndarray, sigma: float) -> np.ndarray:
    nz = np.maximum(normals[..., 2], np.float32(0.05))
    p = cv2.GaussianBlur(-normals[..., 0] / nz, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    q = cv2.GaussianBlur(-normals[..., 1] / nz, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    div = cv2.Sobel(p, cv2.CV_32F, 1, 0, ksize=3) + cv2.Sobel(q, cv2.CV_32F, 0, 1, ksize=3)
    return (div * np.float32(0.125)).astype(np.float32)


def _curv_u8(div: np.ndarray) -> np.ndarray:
    """Concave (groove floor, positive Laplacian of height) dark, convex bright, flat mid-grey."""
    scale = float(np.percentile(np.abs(div), 99.0))
    if scale <= 0:
        return np.full(div.shape, 128, np.uint8)
    return np.clip(np.rint(128.0 - 127.0 * np.clip(div / scale, -1, 1)), 0, 255).astype(np.uint8)


def _normal_views(normals: np.ndarray, albedo: np.ndarray | None, p: ReliefParams, prefix: str
                  ) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    lo, hi = p.stretch_low_pct, p.stretch_high_pct
    views: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    for az in p.raking_azimuths:
        views.append((f"{prefix}raking_az{int(round(az)) % 360:03d}",
                      _stretch(_shade(normals, az, p.raking_elevation), lo, hi),
                      {"op": "lambert_shading", "azimuth_deg": az, "elevation_deg": p.raking_elevation}))
    views.append((f"{prefix}curvature", _curv_u8(_curvature(normals, p.curvature_sigma)),
                  {"op": "divergence_of_gradient", "sigma": p.curvature_sigma}))
    ns = normals.copy()
    for _ in range(p.unsharp_iterations):
        ns = cv2.blur(ns, (5, 5), borderType=cv2.BORDER_REFLECT)
    ne = normals + np.float32(p.unsharp_gain) * (normals - ns)
    ne /= np.maximum(np.linalg.norm(ne, axis=2, keepdims=True), np.float32(1e-8))
    views.append((f"{prefix}normal_unsharp",
                  _stretch(_shade(ne, p.unsharp_azimuth, p.unsharp_elevation), lo, hi),
                  {"op": "normal_unsharp_mask", "box": 5, "iterations": p.unsharp_iterations,
                   "gain": p.unsharp_gain, "azimuth_deg": p.unsharp_azimuth,
                   "elevation_deg": p.unsharp_elevation}))
    if albedo is not None:
        light = direction_vector(p.specular_azimuth, p.specular_elevation).astype(np.float32)
        half = light + np.array([0, 0, 1], np.float32)
        half /= np.linalg.norm(half)
        spec = np.maximum(_dot3(normals, half), np.float32(0.0)) ** np.float32(p.specular_exponent)
        alb = albedo / np.float32(max(float(np.percentile(albedo, 99.5)), 1e-8))
        views.append((f"{prefix}specular",
                      _stretch(np.float32(p.specular_kd) * alb + np.float32(p.specular_ks) * spec, lo, hi),
                      {"op": "blinn_phong_specular", "azimuth_deg": p.specular_azimuth,
                       "elevation_deg": p.specular_elevation, "exponent": p.specular_exponent,
                       "kd": p.specular_kd, "ks": p.specular_ks}))
        views.append((f"{prefix}albedo", _stretch(albedo, lo, hi), {"op": "albedo"}))
    return views


def ratio_relight(images: np.ndarray | Sequence[np.ndarray], lights: np.ndarray, azimuth_deg: float,
                  elevation_deg: float, *, sigma: float = 1.5, eps: float = 1.0 / 255.0) -> np.ndarray:
    """Shading under a virtual light from ratio images, free of albedo and exposure (float32, HxW).

    Each photo is divided by the per-pixel mean of the stack (``I_i / (mean + eps)``: albedo, exposure
    and any factor common to all shots cancel), then the ratio images are combined with the weights
    ``w = pinv(L)^T l`` that turn the N Lambertian shadings ``n . l_i`` into ``n . l`` for the virtual
    light ``l`` (the linear relighting of photometric stereo, without dividing by a fitted albedo).
    The sum runs over the photos in order in float32 (no BLAS reduction), then a Gaussian of ``sigma``
    (0: none) smooths camera noise.
    """
    stack = _as_float_stack(images)
    n = stack.shape[0]
    L = np.asarray(lights, dtype=np.float64)
    if L.shape != (n, 3):
        raise ValueError(f"lights must have shape ({n}, 3), got {L.shape}")
    L = L / np.linalg.norm(L, axis=1, keepdims=True)
    weights = np.linalg.pinv(L).T @ direction_vector(azimuth_deg, elevation_deg)
    denom = stack.mean(axis=0) + np.float32(eps)
    out: np.ndarray = np.zeros(stack.shape[1:], np.float32)
    for i in range(n):
        out += np.float32(weights[i]) * (stack[i] / denom)
    if sigma > 0:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), np.float32)
    return out


def least_squares_normals(images: np.ndarray | Sequence[np.ndarray], lights: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Plain least-squares photometric stereo with every sample (no trimming), summed photo by photo.

    Same model as :func:`photometric_stereo` with ``robust=False``, written as an explicit float32 sum
    over the photos so the result does not depend on a BLAS library's reduction order. On ground
    markings under a ring of lights the per-pixel trimming of the robust fit changes the set of
    lights from pixel to pixel, and with any ambient light that turns into blotchy normals; the plain
    fit keeps the light set fixed.
    """
    stack = _as_float_stack(images)
    n, h, w = stack.shape
    L = _unit_lights(lights, n)
    pinv = np.linalg.pinv(L).astype(np.float32)  # (3, N)
    g = _sum_over_photos(pinv, stack.reshape(n, -1)).T.reshape(h, w, 3)
    return _normals_and_albedo(g)


def shaded_relief(normals: np.ndarray, *, azimuth_deg: float = 225.0, elevation_deg: float = 35.0,
                  sigma: float = 1.5, background_sigma: float = 10.0, slope: float = 0.6,
                  slope_pct: float = 99.0, albedo: float = 0.75, ambient: float = 0.12) -> np.ndarray:
    """The relief alone, lit like a photo: a uint8 grey image of a plate of constant albedo.

    The height gradient ``(p, q) = -(nx, ny) / nz`` is smoothed (Gaussian ``sigma``), its slow part (the
    plate's own curvature and tilt, Gaussian ``background_sigma``) removed, and it is scaled so that the
    ``slope_pct`` percentile of the slope magnitude equals ``slope`` (a ground mark is shown as deep as a
    fresh one). The surface is then shaded by one light: ``255 (ambient + albedo max(0, n . l))``.
    """
    nz = np.maximum(normals[..., 2], np.float32(0.05))
    p = (-normals[..., 0] / nz).astype(np.float32)
    q = (-normals[..., 1] / nz).astype(np.float32)
    if sigma > 0:
        p = cv2.GaussianBlur(p, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        q = cv2.GaussianBlur(q, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    p = p - cv2.GaussianBlur(p, (0, 0), background_sigma, borderType=cv2.BORDER_REFLECT)
    q = q - cv2.GaussianBlur(q, (0, 0), background_sigma, borderType=cv2.BORDER_REFLECT)
    size = float(np.percentile(np.sqrt(p * p + q * q), slope_pct))
    k = np.float32(slope / max(size, 1e-6))
    m = np.stack([-k * p, -k * q, np.ones_like(p)], axis=-1)
    m /= np.linalg.norm(m, axis=-1, keepdims=True)
    light = direction_vector(azimuth_deg, elevation_deg).astype(np.float32)
    shade = np.maximum(m[..., 0] * light[0] + m[..., 1] * light[1] + m[..., 2] * light[2], np.float32(0.0))
    out = np.float32(255.0) * (np.float32(ambient) + np.float32(albedo) * shade)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_LightsParam = dict[str, list[float]]


def _relit_views(images: np.ndarray, L: np.ndarray, lights: _LightsParam, p: ReliefParams
                 ) -> list[tuple[str, np.ndarray, list[TrailStep], dict[str, Any]]]:
    relit = ratio_relight(images, L, p.relit_azimuth, p.relit_elevation, sigma=p.relit_sigma, eps=p.relit_eps)
    step = TrailStep(name="ratio_relight", params={
        "lights": lights, "ratio": "photo / (per-pixel stack mean + eps)", "eps": p.relit_eps,
        "weights": "pinv(L)^T l(azimuth, elevation)", "azimuth_deg": p.relit_azimuth,
        "elevation_deg": p.relit_elevation, "gaussian_sigma": p.relit_sigma})
    if p.relit_flatten_sigma > 0:  # the plate's own shading (curvature, tilt) would take the stretch's range
        relit = relit - cv2.GaussianBlur(relit, (0, 0), p.relit_flatten_sigma, borderType=cv2.BORDER_REFLECT)
    return [("relit_ratio", _stretch(relit, p.stretch_low_pct, p.stretch_high_pct), [step],
             {"op": "subtract_gaussian+percentile_stretch", "flatten_sigma": p.relit_flatten_sigma,
              "low_pct": p.stretch_low_pct, "high_pct": p.stretch_high_pct})]


def _shaded_relief_views(images: np.ndarray, L: np.ndarray, lights: _LightsParam, p: ReliefParams
                         ) -> list[tuple[str, np.ndarray, list[TrailStep], dict[str, Any]]]:
    normals, _albedo = least_squares_normals(images, L)
    step = TrailStep(name="photometric_stereo", params={
        "model": "lambertian_least_squares", "lights": lights, "robust": False, "sum": "per photo, float32"})
    img = shaded_relief(normals, azimuth_deg=p.relief_azimuth, elevation_deg=p.relief_elevation,
                        sigma=p.relief_sigma, background_sigma=p.relief_background_sigma, slope=p.relief_slope,
                        slope_pct=p.relief_slope_pct, albedo=p.relief_albedo, ambient=p.relief_ambient)
    return [("shaded_relief", img, [step], {
        "op": "shaded_relief", "azimuth_deg": p.relief_azimuth, "elevation_deg": p.relief_elevation,
        "gradient_sigma": p.relief_sigma, "background_sigma": p.relief_background_sigma,
        "slope": p.relief_slope, "slope_pct": p.relief_slope_pct, "albedo": p.relief_albedo,
        "ambient": p.relief_ambient})]


def iter_relief_views(
    stack: LightStack, params: ReliefParams | None = None
) -> Iterator[tuple[np.ndarray, View]]:
    """The views of :func:`render_relief_views`, in the same order, each computed when it is asked for.

    A reader that stops after the first views it needs skips the fits of the later ones. Each view's
    trail lists the stack's steps, the fit its view came from, ``relief_params`` and ``render``.
    """
    p = params or ReliefParams()
    images = stack.images
    steps = [s.model_copy(deep=True) for s in stack.steps]
    if p.align and len(stack.names) > 1:
        images, report = register_stack(images, rotation=p.rotation)
        steps.append(TrailStep(name="register", params={
            "method": "phase_correlation+ecc_euclidean" if p.rotation else "phase_correlation",
            "min_shift_px": 0.5, "min_angle_deg": 0.1, "min_response": 0.15,
            "feature": "gradient_magnitude_sigma1.5", "reference": stack.names[0],
            "motion": dict(zip(stack.names, report, strict=True))}))
    software = software_version()
    relief = TrailStep(name="relief_params", params=p.model_dump(mode="json"))

    def _family(views: Sequence[tuple[str, np.ndarray, list[TrailStep], dict[str, Any]]]
                ) -> Iterator[tuple[np.ndarray, View]]:
        for name, img, own, vparams in views:
            trail = Trail(source_sha256=list(stack.sha256),
                          steps=[*steps, *own, relief, TrailStep(name="render", params={"view": name, **vparams})],
                          software=software, sha256=image_sha256(img))
            yield img, View(name=f"photometric:{name}", trail=trail)

    L = stack.light_matrix()
    if L is not None:
        lights = {k: list(v) for k, v in (stack.lights or {}).items()}
        yield from _family(_relit_views(images, L, lights, p))
        yield from _family(_shaded_relief_views(images, L, lights, p))
        normals, albedo = photometric_stereo(images, L, robust=p.robust, trim=p.trim, shadow=p.shadow,
                                             outlier_sigma=p.outlier_sigma)
        fit = TrailStep(name="photometric_stereo", params={
            "model": "lambertian_least_squares", "lights": lights,
            "robust": (len(stack.names) >= 6) if p.robust is None else p.robust,
            "trim": p.trim, "shadow": p.shadow, "outlier_sigma": p.outlier_sigma})
        yield from _family([(name, img, [fit], vp) for name, img, vp in _normal_views(normals, albedo, p, "")])
        return
    stats = stack_statistics(images)
    out: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    for key in ("max", "min", "std", "range"):
        out.append((f"stack_{key}", _stretch(stats[key], p.stretch_low_pct, p.stretch_high_pct),
                    {"op": f"per_pixel_{key}"}))
    yield from _family([(name, img, [], vp) for name, img, vp in out])
    pn, comps, _sv = uncalibrated_normals(images, robust=p.robust)
    fit = TrailStep(name="uncalibrated_photometric_stereo", params={
        "model": "svd_rank3_pseudo_normals", "robust": (len(stack.names) >= 6) if p.robust is None
        else p.robust, "sign": "largest_entry_positive"})
    pca = [(f"pca{j + 1}", _stretch(comps[j], p.stretch_low_pct, p.stretch_high_pct),
            {"op": "svd_component", "index": j + 1}) for j in (1, 2)]
    yield from _family([(name, img, [fit], vp) for name, img, vp in [*pca, *_normal_views(pn, None, p, "pseudo_")]])


def render_relief_views(
    stack: LightStack, params: ReliefParams | None = None
) -> list[tuple[np.ndarray, View]]:
    """Derived views that show relief, each a uint8 grey image with a :class:`View` and its trail.

    With light directions, first the two views measured most readable on ground markings (see the
    package README): ``photometric:relit_ratio`` (ratio images relit by a virtual light) and
    ``photometric:shaded_relief`` (plain least-squares normals, band-passed, scaled and shaded at a
    constant albedo); then, from the robust least-squares normals, ``photometric:raking_azXXX``
    (virtual raking lights), ``photometric:curvature``, ``photometric:normal_unsharp``,
    ``photometric:specular`` and ``photometric:albedo``. Without: ``photometric:stack_{max,min,std,range}``,
    ``photometric:pca2``/``pca3`` and pseudo-normal views ``photometric:pseudo_*``.
    """
    return list(iter_relief_views(stack, params))


def replay_relief_view(trail: Trail, stack: LightStack) -> np.ndarray:
    """Recompute the view a photometric trail describes from a freshly loaded stack.

    Raises:
        ValueError: the stack's photos differ from the trail's sources, or the trail is not a relief trail.
    """
    if list(stack.sha256) != list(trail.source_sha256):
        raise ValueError("the stack's photos (SHA-256) differ from the trail's sources")
    rp = next((s for s in trail.steps if s.name == "relief_params"), None)
    render = next((s for s in trail.steps if s.name == "render"), None)
    if rp is None or render is None:
        raise ValueError("not a photometric relief trail (no relief_params/render step)")
    wanted = f"photometric:{render.params['view']}"
    for img, view in iter_relief_views(stack, ReliefParams.model_validate(rp.params)):
        if view.name == wanted:
            return img
    raise ValueError(f"view {wanted!r} not produced on replay")
