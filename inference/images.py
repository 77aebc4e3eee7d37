"""Safe image loading: hash the original, cap pixels before decoding, apply EXIF to a working copy only.

Pillow reads the header (format, size, EXIF orientation); OpenCV decodes JPEG, PNG, BMP and WebP
straight into the BGR working copy (see :data:`OPENCV_FORMATS`; gray above :data:`GRAY_ABOVE_PIXELS`), and
Pillow decodes the rest, and any file OpenCV refuses, so that its error names the problem.

The original file is only ever read. Every error names the file and the problem. Pillow's own
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays on for the whole process: it is only
raised to the caller's ``max_pixels``, under a lock, while one header is opened.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 80_000_000
"""Largest image (width x height) decoded by default: above a 50 MP camera, far below a decompression bomb."""

GRAY_ABOVE_PIXELS = 24_000_000
"""Photos with more pixels than this (a 12 MP phone photo has half as many) that OpenCV decodes are decoded
straight to gray. OpenCV's Python binding returns a decoded photo through a second full-size buffer, so a 45 MP
colour photo peaked at 538 MB read on its own, a 70 MP one at 632 MB; in gray they need a third of it. Reading
needs no colour: the line crops are gray, and on development renders read all in gray the serials came out as
often right as in colour (72 against 68 of 100 clean, 75 against 74 worn). The result's ``images`` entry says
``decoded_gray``. A constant, not a setting, so a replayed trail decodes its original as the read did."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif"})
"""Suffixes of the photos a batch reads (HEIC/HEIF, the iPhone's default, needs the ``heif`` extra)."""

RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw"})
"""Camera raw files: found by a batch and refused with a clear error. Some hold a small JPEG preview that a
decoder would read without a word; the examiner exports the photo from the raw converter instead."""

HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
"""Pillow modes of gray images deeper than 8 bits (16-bit PNG and TIFF, 32-bit integer and float TIFF): decoded
through :func:`scale_to_8bit` (``convert("RGB")`` clips them at 255, which turns a 16-bit photo white)."""

HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
"""ISO-BMFF brands of HEIC/HEIF photos (AVIF's ``avif`` brand is not among them)."""


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
    """HxWx3 uint8 BGR working copy; HxW gray for a photo over :data:`GRAY_ABOVE_PIXELS` (``decoded_gray``) and
    for a multi-light stack's photos once they have been read directly (the photometric stack needs no more)."""
    original_size: tuple[int, int]
    """(width, height) of the stored pixels before EXIF orientation."""
    exif_transposed: bool
    decoded_gray: bool = False
    """Decoded straight to gray to bound memory (a photo over :data:`GRAY_ABOVE_PIXELS`)."""
    scaled_to_8bit: str | None = None
    """How samples deeper than 8 bits became the 8-bit working copy (:func:`scale_to_8bit`); None for 8-bit photos."""
    notes: tuple[str, ...] = ()
    """What the examiner should know about the decoding (only the first page of a multi-page TIFF is read)."""


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


_BOMB_PIXELS = re.compile(r"Image size \((\d+) pixels\)")
"""Pillow's :class:`~PIL.Image.DecompressionBombError` message names the declared pixel count (not the sides)."""


def _too_large(
    name: str, max_pixels: int, size: tuple[int, int] | None = None, hint: bool = True, bomb: Exception | None = None
) -> str:
    """The "over the limit" message for an image whose header declares more than ``max_pixels``.

    ``size`` is the declared (width, height) where known; without it (Pillow refused the header
    outright as a possible decompression bomb, ``bomb``) the message gives the pixel count Pillow names.
    """
    found = _BOMB_PIXELS.search(str(bomb)) if bomb is not None else None
    declared = f" {int(found.group(1)):,}" if found else " far too many"
    what = (f"image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size is not None
            else f"image header declares{declared} pixels (refused as a possible decompression bomb)")
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
    if Path(name).suffix.lower() in RAW_SUFFIXES:
        raise ImageLoadError(
            f"{name}: camera raw file ({Path(name).suffix}); marktrace reads JPEG, PNG, TIFF, BMP, WebP and HEIC: "
            "export the photo at full size from the raw converter"
        )
    digest = sha256_bytes(data)
    if is_heif(data):
        enable_heif(name)
    try:
        img = _open_within_limit(data, max_pixels, _accepted_formats())
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_large(name, max_pixels, bomb=exc)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: {_unaccepted_format(data)}") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt headers
        raise ImageLoadError(f"{name}: unreadable image header ({exc})") from None
    with img:
        width, height = img.size
        fmt = _container_format(img)
        if width <= 0 or height <= 0:
            raise ImageLoadError(f"{name}: image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageTooLargeError(_too_large(name, max_pixels, (width, height)))
        orientation = _header_orientation(img, data)
        array = None
        _apply_heap_plan(width * height)
        gray = width * height > GRAY_ABOVE_PIXELS
        high_depth = img.mode in HIGH_DEPTH_MODES
        scaling: str | None = None
        notes: tuple[str, ...] = ()
        pages = int(getattr(img, "n_frames", 1) or 1)
        if fmt == "TIFF" and pages > 1:
            notes = (f"{name}: multi-page TIFF; only its first page of {pages} was read",)
        transparent = _may_be_transparent(img)
        if fmt in OPENCV_FORMATS and orientation is not None and not high_depth and not transparent:
            # OpenCV decodes straight into the BGR working copy, with no Pillow buffer beside it (a 45 MP PNG
            # peaked at 650 MB through Pillow); the stored orientation is then applied here
            array = _decode_with_opencv(data, width, height, gray)
        if array is not None and orientation is not None:
            transposed = orientation in range(2, 9)
            if transposed:
                array = apply_orientation(array, orientation)
        else:  # not OpenCV's here, or refused (truncated, corrupt, unusual): Pillow decodes it or names the problem
            gray = gray and high_depth  # other images Pillow decodes stay in colour
            array, transposed, scaling, flattened = _decode_with_pillow(img, name, fmt, gray)
            if flattened:
                notes = (*notes, f"{name}: has transparent pixels; they were read as white (alpha flattened)")
            # Pillow's TIFF reader turns the pixels itself as it decodes them (and drops the tag); so does
            # libheif for a HEIF photo, whose header then gives the turned size
            stored = int(img.info.get("original_orientation") or 1) if fmt == "HEIF" else 1
            transposed = transposed or orientation in range(2, 9) or stored in range(2, 9)
            if stored in range(5, 9):
                width, height = height, width
    return LoadedImage(
        path=name, sha256=digest, image=array, original_size=(width, height), exif_transposed=transposed,
        decoded_gray=gray, scaled_to_8bit=scaling, notes=notes,
    )


OPENCV_FORMATS = frozenset({"JPEG", "PNG", "BMP", "WEBP"} if int(cv2.__version__.split(".")[0]) >= 5 else ())
"""Formats decoded by OpenCV. OpenCV 5 refuses truncated JPEG data as Pillow does; OpenCV 4 returned a
partly grey photo without an error, so with it every format goes through Pillow. TIFF stays with Pillow:
OpenCV's TIFF reader applies the orientation tag itself, whatever the flags say."""

_ORIENTATION_TAG = 0x0112


def is_heif(data: bytes) -> bool:
    """Whether ``data`` starts like a HEIC/HEIF photo (an ISO-BMFF ``ftyp`` box with a HEIF brand)."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[:4], "big")
    box = data[8 : min(max(size, 16), 256)]
    brands = [box[:4]] + [box[i : i + 4] for i in range(8, len(box) - 3, 4)]  # major, then compatible brands
    return any(brand in HEIF_BRANDS for brand in brands)


_HEIF_LOCK = threading.Lock()
_heif_enabled = False


def enable_heif(name: str) -> None:
    """Let Pillow open HEIC/HEIF photos (``pillow-heif``'s opener, registered once, when the first one comes).

    Raises:
        ImageLoadError: naming ``name``, when the optional ``heif`` extra is not installed.
    """
    global _heif_enabled
    with _HEIF_LOCK:
        if _heif_enabled:
            return
        try:
            import pillow_heif  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ImageLoadError(
                f"{name}: HEIC/HEIF photo; reading it needs the optional 'heif' extra "
                "(pip install 'marktrace[heif]'), or convert it to JPEG"
            ) from None
        pillow_heif.register_heif_opener()
        _heif_enabled = True


def _header_orientation(img: Image.Image, data: bytes) -> int | None:
    """The EXIF orientation (1 = as stored) read from the header only, or None when it needs the pixels.

    Pillow finds a PNG's ``eXIf`` chunk only by decoding the image when the chunk follows the pixels;
    such a file (rare) is left to the Pillow path, which applies it exactly as before.
    """
    try:
        if img.format == "PNG":
            raw = img.info.get("exif")
            if raw is None:  # an eXIf chunk after the pixel data? Search only from the last IDAT on
                return None if data.find(b"eXIf", max(data.rfind(b"IDAT"), 0)) >= 0 else 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = img.getexif()
        return int(exif.get(_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block means no usable orientation
        return 1


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None where it has none (macOS, musl, Windows)."""
    try:  # the symbols already loaded into the process (no library search: find_library forks ldconfig)
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``); False where there is none.

    Called before a photo over :data:`GRAY_ABOVE_PIXELS` is decoded: memory freed by earlier photos of a batch
    otherwise stays with the process under the new one (held-out ``framed`` photos read in one process: peak
    509 -> 479 MB).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


HEAP_MMAP_BYTES = 16 * 1024 * 1024
"""The reader's default for :func:`map_large_allocations` (``ReaderSettings.heap_mmap_bytes``)."""

HEAP_MAP_ABOVE_PIXELS = 8_000_000
"""A photo of more pixels than this, decoded after :func:`map_large_allocations_from_large_photos`, applies
:func:`map_large_allocations` first (once per process)."""

_heap_plan: dict[str, int] = {"bytes": 0, "applied": 0}

_M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number for the mmap threshold (``malloc.h``)."""


def map_large_allocations(threshold_bytes: int = HEAP_MMAP_BYTES) -> bool:
    """Have the C heap give every block of ``threshold_bytes`` or more its own mapping (glibc's ``mallopt``).

    Such a block goes back to the system when it is freed. glibc's default raises this threshold to the size of
    the largest block freed so far (up to 32 MB), after which a photo's working copies come from the heap and
    stay with the process between photos: a batch of large photos then peaks far above what one photo needs
    (see README, "Benchmark"). Process-wide and for blocks allocated from now on; False where the C library has
    no ``mallopt`` (macOS, Windows) or refuses the value.
    """
    try:  # the symbols already loaded into the process (no library search: find_library forks ldconfig)
        mallopt: Callable[[int, int], int] = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))


def map_large_allocations_from_large_photos(threshold_bytes: int) -> None:
    """Plan :func:`map_large_allocations` (``threshold_bytes``) for the first photo that is large; 0 cancels.

    It is applied before the first photo over :data:`HEAP_MAP_ABOVE_PIXELS` is decoded, not now. Mapped blocks
    cost page faults each time they are made: on photos of about a megapixel, whose largest blocks are the
    detector's working tensors, 5-10% more CPU time for no lower peak, so a process that never reads a large
    photo keeps glibc's default.
    """
    _heap_plan["bytes"] = int(threshold_bytes)


def _apply_heap_plan(pixels: int) -> None:
    if pixels > HEAP_MAP_ABOVE_PIXELS and _heap_plan["bytes"] > 0 and not _heap_plan["applied"]:
        _heap_plan["applied"] = 1
        map_large_allocations(_heap_plan["bytes"])


def _decode_with_opencv(data: bytes, width: int, height: int, gray: bool = False) -> np.ndarray | None:
    """OpenCV's BGR (or ``gray``) decoding of ``data`` as stored (orientation ignored), or None if OpenCV cannot.

    A result whose size differs from the header's ``width`` x ``height`` is not trusted either. Before a
    ``gray`` (large) photo is decoded, free heap pages are handed back (:func:`release_free_memory`).
    """
    if gray:
        release_free_memory()
    flags = (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    shape = (height, width) if gray else (height, width, 3)
    if decoded is None or decoded.shape != shape or decoded.dtype != np.uint8:
        return None
    return decoded


def _may_be_transparent(img: Image.Image) -> bool:
    """Whether an opened image has an alpha channel or a transparent colour (its pixels then decide)."""
    return img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info


def _flatten_alpha(img: Image.Image) -> tuple[Image.Image, bool]:
    """``img`` as RGB with transparent pixels composited on white, and whether any pixel was transparent.

    Decoders that drop alpha keep whatever colour lies under a transparent pixel (often black, under black
    text); a viewer shows the background instead. An image whose pixels are all opaque is only converted.
    """
    rgba = img.convert("RGBA")
    low, _ = rgba.getchannel("A").getextrema()
    if int(low) >= 255:  # type: ignore[arg-type]
        rgb = rgba.convert("RGB")
        rgba.close()
        return rgb, False
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    rgba.close()
    white.close()
    return flat, True


def _decode_with_pillow(
    img: Image.Image, name: str, fmt: str | None, gray: bool = False
) -> tuple[np.ndarray, bool, str | None, bool]:
    """Pillow's decoding of an opened image to a BGR working copy, EXIF orientation applied.

    A gray image deeper than 8 bits (:data:`HIGH_DEPTH_MODES`) goes through :func:`scale_to_8bit` (and stays
    gray when ``gray``); the third value says how it was scaled (None for other images). Transparent pixels
    are composited on white (:func:`_flatten_alpha`); the fourth value says whether there were any.
    """
    flattened = False
    try:
        img.load()
        transposed = _has_orientation(img)
        # exif_transpose copies the whole photo even when there is nothing to turn: only call it when
        # the tag asks for a turn (a 12 MP photo is 36 MB per copy)
        oriented = ImageOps.exif_transpose(img) if transposed else img
        if oriented.mode in HIGH_DEPTH_MODES:
            samples = np.asarray(oriented)
        else:
            if _may_be_transparent(oriented):
                rgb, flattened = _flatten_alpha(oriented)
            else:
                rgb = oriented if oriented.mode == "RGB" else oriented.convert("RGB")
            samples = np.asarray(rgb, dtype=np.uint8)
            rgb.close()  # free Pillow's copies before the BGR one is made (peak memory on large photos)
        oriented.close()
    except Exception as exc:  # noqa: BLE001
        raise ImageLoadError(f"{name}: corrupt or truncated {fmt or 'image'} data ({exc})") from None
    if samples.ndim == 3:
        return cv2.cvtColor(samples, cv2.COLOR_RGB2BGR), transposed, None, flattened
    if samples.ndim != 2:
        raise ImageLoadError(f"{name}: unsupported {img.mode} image layout {samples.shape}")
    pixels, scaling = scale_to_8bit(samples)
    return (pixels if gray else cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)), transposed, scaling, flattened


def scale_to_8bit(samples: np.ndarray) -> tuple[np.ndarray, str]:
    """Gray samples deeper than 8 bits as uint8, and how they were scaled (recorded with the photo).

    Integer samples are shifted right by their significant bits beyond 8, found from the largest value: a
    full-range 16-bit image keeps its high byte (``v >> 8``, as OpenCV decodes it), and a 12-bit camera's
    samples stored in 16 bits (largest value at most 4095) keep their top 8 bits (``v >> 4``) instead of
    turning almost black. Negative values become 0. Float samples map ``0..1`` to ``0..255`` (wider ranges:
    their minimum below 0 and maximum above 1 bound the scale); NaN and infinities become 0.
    """
    kind = samples.dtype.name
    out = np.empty(samples.shape, np.uint8)
    rows = range(0, samples.shape[0], SCALE_BAND_ROWS)  # in bands: no full-size temporaries beside the output
    if samples.dtype.kind == "f":
        low, high = 0.0, 1.0
        for y in rows:
            values = samples[y : y + SCALE_BAND_ROWS]
            values = values[np.isfinite(values)]
            if values.size:
                low, high = min(low, float(values.min())), max(high, float(values.max()))
        for y in rows:
            band = samples[y : y + SCALE_BAND_ROWS]
            scaled = (np.where(np.isfinite(band), band, low) - low) * (255.0 / (high - low))
            out[y : y + SCALE_BAND_ROWS] = np.clip(np.rint(scaled), 0, 255)
        return out, f"{kind} samples {low:g}..{high:g} to 0..255"
    largest = max(int(samples.max()), 0) if samples.size else 0
    bits = max(8, largest.bit_length())
    shift = bits - 8
    for y in rows:
        out[y : y + SCALE_BAND_ROWS] = np.maximum(samples[y : y + SCALE_BAND_ROWS], 0) >> shift
    return out, f"{kind} samples >> {shift} (largest value {largest}: {bits} significant bits)"


SCALE_BAND_ROWS = 512
"""Rows :func:`scale_to_8bit` converts at a time."""


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned and mirrored as EXIF ``orientation`` (2-8) asks, as Pillow's ``exif_transpose`` does."""
    if orientation == 2:
        turned = image[:, ::-1]
    elif orientation == 3:
        turned = image[::-1, ::-1]
    elif orientation == 4:
        turned = image[::-1]
    elif orientation == 5:
        turned = image.swapaxes(0, 1)
    elif orientation == 6:
        turned = image.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        turned = image.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        turned = image.swapaxes(0, 1)[::-1]
    else:
        return image
    return np.ascontiguousarray(turned)


def _has_orientation(img: Image.Image) -> bool:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1)) not in (0, 1)
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


PROBE_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "HEIF")
"""Formats :func:`decode_image` and :func:`probe_image` accept (an allow-list: no exotic decoders on untrusted
input, and no GIF, PDF or icon read as a photo whatever its name; HEIF only once :func:`enable_heif` has
registered its opener)."""


def _accepted_formats() -> tuple[str, ...]:
    """:data:`PROBE_FORMATS` as Pillow can open them now (HEIF once its opener is registered)."""
    return PROBE_FORMATS if _heif_enabled else tuple(f for f in PROBE_FORMATS if f != "HEIF")


def _unaccepted_format(data: bytes) -> str:
    """Why Pillow opened none of the accepted formats: another image format it knows by name, or none."""
    try:
        with Image.open(io.BytesIO(data), formats=list(_OTHER_FORMATS)) as other:
            known = other.format
    except Exception:  # noqa: BLE001 - not an image at all, or a corrupt one
        known = None
    if known:
        return (f"{known} image, not a photo format marktrace reads "
                f"(JPEG, PNG, TIFF, BMP, WebP or HEIC); convert it to PNG first")
    return "not a recognised image format"


_OTHER_FORMATS = ("GIF", "ICO", "PPM", "JPEG2000", "PSD")
"""Formats with a distinct signature that Pillow names (header only, never decoded), so that the error says what
a refused file is."""


def _container_format(img: Image.Image) -> str | None:
    """Pillow's format name, with a phone's multi-picture JPEG named ``JPEG``.

    An ``MPO`` file is the photo as a JPEG with more JPEG frames appended; every decoder reads its first frame.
    """
    return "JPEG" if img.format == "MPO" else img.format


def probe_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """Read only an image's header: (format, width, height), refusing empty, unknown or oversized input.

    Nothing is decoded, so this is cheap and safe to run on untrusted uploads before inference.

    Raises:
        ImageTooLargeError: if width x height exceeds ``max_pixels``.
        ImageLoadError: naming ``name`` and the problem, for empty or unrecognised data.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    if is_heif(data):
        enable_heif(name)
    try:
        with _open_within_limit(data, max_pixels, _accepted_formats()) as probe:
            width, height = probe.size
            fmt = _container_format(probe) or "unknown"
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_large(name, max_pixels, hint=False, bomb=exc)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: {_unaccepted_format(data)}") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt headers
        raise ImageLoadError(f"{name}: unreadable image header ({exc})") from None
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(_too_large(name, max_pixels, (width, height), hint=False))
    return fmt, width, height
