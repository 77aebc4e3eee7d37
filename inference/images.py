"""Safe image loading: hash the original, cap pixels before decoding, apply EXIF to a working copy only.

The original file is only ever read. Every error names the file and the problem. Pillow's own
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays on for the whole process: it is only
raised to the caller's ``max_pixels``, under a lock, while one header is opened.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 80_000_000
"""Largest image (width x height) decoded by default: above a 50 MP camera, far below a decompression bomb."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})


class ImageLoadError(ValueError):
    """An image could not be read; the message names the file and the problem."""


class ImageTooLargeError(ImageLoadError):
    """An image's header declares more pixels than allowed (a decompression-bomb guard)."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded working copy of an original photo (EXIF orientation applied) and the original's hash."""

    path: str
    sha256: str
    image: np.ndarray
    """HxWx3 uint8 BGR working copy."""
    original_size: tuple[int, int]
    """(width, height) of the stored pixels before EXIF orientation."""
    exif_transposed: bool


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_within_limit(data: bytes, max_pixels: int, formats: Sequence[str] | None = None) -> Image.Image:
    """``Image.open`` (header only, nothing decoded) with Pillow's bomb guard raised to ``max_pixels``.

    Pillow's process-global ``Image.MAX_IMAGE_PIXELS`` is checked only while a file is opened. It is
    raised to ``max_pixels`` (never lowered, never switched off) for the duration of that one call,
    under a lock, and restored at once, so a caller's larger ``--max-pixels`` is honoured without
    disabling the guard for the rest of the process. Pillow's warning for sizes between its limit
    and twice that is silenced here: the caller compares the size with ``max_pixels`` itself.

    Raises:
        Image.DecompressionBombError: the header declares more than twice the (raised) limit, which is
            more than ``max_pixels``.
        UnidentifiedImageError, OSError, ...: whatever Pillow raises on unrecognised or corrupt headers.
    """
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        if saved is not None and saved < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return Image.open(io.BytesIO(data), formats=list(formats) if formats is not None else None)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _too_large(name: str, max_pixels: int, size: tuple[int, int] | None = None, hint: bool = True) -> str:
    """The "over the limit" message for an image whose header declares more than ``max_pixels``.

    ``size`` is the declared (width, height) where known; without it (Pillow refused the header
    outright as a possible decompression bomb) the message says so.
    """
    what = (f"image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size is not None
            else "image header declares far too many pixels (refused as a possible decompression bomb)")
    return (f"{name}: {what}, over the limit of {max_pixels:,}"
            + (" (a decompression-bomb guard; raise --max-pixels if this photo is genuine)" if hint else ""))


def decode_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode image bytes into a BGR working copy, refusing empty, non-image and oversized input.

    Args:
        data: the file's bytes.
        name: the file name used in error messages and in the result.
        max_pixels: refuse images with more pixels than this, checked from the header before decoding.

    Raises:
        ImageLoadError: naming ``name`` and the problem.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    digest = sha256_bytes(data)
    try:
        img = _open_within_limit(data, max_pixels)
    except Image.DecompressionBombError:
        raise ImageTooLargeError(_too_large(name, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not a recognised image format") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt headers
        raise ImageLoadError(f"{name}: unreadable image header ({exc})") from None
    with img:
        width, height = img.size
        fmt = img.format
        if width <= 0 or height <= 0:
            raise ImageLoadError(f"{name}: image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageTooLargeError(_too_large(name, max_pixels, (width, height)))
        try:
            img.load()
            transposed = _has_orientation(img)
            # exif_transpose copies the whole photo even when there is nothing to turn: only call it when
            # the tag asks for a turn (a 12 MP photo is 36 MB per copy)
            oriented = ImageOps.exif_transpose(img) if transposed else img
            rgb = oriented if oriented.mode == "RGB" else oriented.convert("RGB")
            pixels = np.asarray(rgb, dtype=np.uint8)
            # free Pillow's copies before the BGR one is made (peak memory on large photos)
            rgb.close()
            oriented.close()
        except Exception as exc:  # noqa: BLE001
            raise ImageLoadError(f"{name}: corrupt or truncated {fmt or 'image'} data ({exc})") from None
    array = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    return LoadedImage(
        path=name, sha256=digest, image=array, original_size=(width, height), exif_transposed=transposed
    )


def _has_orientation(img: Image.Image) -> bool:
    try:
        return int(img.getexif().get(0x0112, 1)) not in (0, 1)
    except Exception:  # noqa: BLE001
        return False


def load_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> LoadedImage:
    """Read a photo from disk (read-only) and decode it with :func:`decode_image`."""
    label = name or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, label, max_pixels=max_pixels)


PROBE_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP")
"""Formats :func:`probe_image` accepts (an allow-list: no exotic decoders on untrusted input)."""


def probe_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Read only an image's header: (format, width, height), refusing empty, unknown or oversized input.

    Nothing is decoded, so this is cheap and safe to run on untrusted uploads before inference.

    Raises:
        ImageTooLargeError: if width x height exceeds ``max_pixels``.
        ImageLoadError: naming ``name`` and the problem, for empty or unrecognised data.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    try:
        with _open_within_limit(data, max_pixels, PROBE_FORMATS) as probe:
            width, height = probe.size
            fmt = probe.format or "unknown"
    except Image.DecompressionBombError:
        raise ImageTooLargeError(_too_large(name, max_pixels, hint=False)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not a recognised image format") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt headers
        raise ImageLoadError(f"{name}: unreadable image header ({exc})") from None
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_large(name, max_pixels, (width, height), hint=False))
    return fmt, width, height
