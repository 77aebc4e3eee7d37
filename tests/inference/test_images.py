import hashlib
import io
import platform
import re
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from marktrace.inference.images import ImageLoadError, ImageTooLargeError, decode_image, load_image, probe_image


def _png(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decodes_and_hashes_the_original_bytes(tmp_path: Path) -> None:
    data = _png(40, 20)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    loaded = load_image(path)
    assert loaded.image.shape == (20, 40, 3)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data  # never modified


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not a recognised image"),
        (_png(64, 64)[:60], "corrupt or truncated"),
    ],
)
def test_bad_input_names_the_file_and_problem(data: bytes, message: str) -> None:
    with pytest.raises(ImageLoadError) as info:
        decode_image(data, "evidence/photo.jpg")
    assert "evidence/photo.jpg" in str(info.value)
    assert message in str(info.value)


def test_pixel_cap_is_checked_before_decoding() -> None:
    data = _png(3000, 3000)
    with pytest.raises(ImageLoadError, match="over the limit"):
        decode_image(data, "big.png", max_pixels=1_000_000)


def test_exif_orientation_applies_to_the_working_copy_only() -> None:
    img = Image.new("RGB", (60, 20), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 10, 20))  # black band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    loaded = decode_image(buffer.getvalue(), "rotated.jpg")
    assert loaded.image.shape[:2] == (60, 20)
    assert loaded.exif_transposed
    assert loaded.original_size == (60, 20)
    # after the rotation the black band is at the top
    assert loaded.image[:8].mean() < 60 and loaded.image[-8:].mean() > 200
    assert np.array_equal(loaded.image, decode_image(buffer.getvalue(), "rotated.jpg").image)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height with no real pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_bomb_refused_from_its_header_names_the_declared_pixels() -> None:
    with pytest.raises(ImageTooLargeError, match=r"huge\.png: image header declares 400,000,000 pixels"):
        decode_image(_png_header_only(20000, 20000), "huge.png")


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _black_text_on_transparent(mode: str) -> Image.Image:
    """Black everywhere, opaque only in a band: a cut-out whose transparent pixels hide black colour."""
    alpha = Image.new("L", (40, 20), 0)
    alpha.paste(255, (10, 5, 30, 15))
    if mode == "LA":
        return Image.merge("LA", (Image.new("L", (40, 20), 0), alpha))
    black = Image.new("L", (40, 20), 0)
    return Image.merge("RGBA", (black, black, black, alpha))


@pytest.mark.parametrize(("mode", "fmt"), [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP")])
def test_transparent_pixels_are_read_as_white_with_a_note(mode: str, fmt: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    loaded = decode_image(_encoded(_black_text_on_transparent(mode), fmt, **params), "cutout.png")
    assert loaded.image.shape == (20, 40, 3)
    assert loaded.image[0, 0].tolist() == [255, 255, 255]  # transparent: the background a viewer shows
    assert loaded.image[10, 20].tolist() == [0, 0, 0]  # opaque: the pixel itself
    assert any("cutout.png" in note and "transparent" in note for note in loaded.notes)


def test_a_palette_png_with_a_transparent_colour_is_flattened_too() -> None:
    palette = Image.new("P", (20, 10), 0)
    palette.putpalette([0, 0, 0, 200, 200, 200])
    palette.paste(1, (5, 2, 15, 8))
    loaded = decode_image(_encoded(palette, "PNG", transparency=0), "p.png")
    assert loaded.image[0, 0].tolist() == [255, 255, 255] and loaded.image[5, 10].tolist() == [200, 200, 200]
    assert loaded.notes


def test_an_opaque_alpha_channel_changes_nothing_and_adds_no_note() -> None:
    rgb = Image.new("RGB", (30, 12), (10, 120, 230))
    rgba = rgb.copy()
    rgba.putalpha(255)
    plain = decode_image(_encoded(rgb, "PNG"), "a.png")
    opaque = decode_image(_encoded(rgba, "PNG"), "a.png")
    assert np.array_equal(plain.image, opaque.image) and not opaque.notes


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "PPM"])
def test_image_formats_outside_the_photo_formats_are_named_and_refused(fmt: str) -> None:
    data = _encoded(Image.new("RGB", (16, 16), (90, 90, 90)), fmt)
    for call in (decode_image, probe_image):
        with pytest.raises(ImageLoadError, match=rf"renamed\.jpg: {fmt} image, not a photo format marktrace reads"):
            call(data, "renamed.jpg")


def test_pillow_bomb_guard_stays_on_for_the_process() -> None:
    before = Image.MAX_IMAGE_PIXELS
    assert before is not None
    decode_image(_png(40, 20), "a.png")
    with pytest.raises(ImageTooLargeError, match=r"huge\.png: .*over the limit"):
        decode_image(_png_header_only(20000, 20000), "huge.png")
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        probe_image(_png_header_only(20000, 20000), "huge.png")
    assert before == Image.MAX_IMAGE_PIXELS
    # so any other Pillow user in the process (the PDF export, ...) still gets Pillow's own refusal
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(_png_header_only(20000, 20000)))


def test_max_pixels_above_pillows_limit_is_honoured_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow would warn above 1,000 and refuse above 2,000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        assert decode_image(_png(100, 100), "ok.png", max_pixels=20_000).image.shape == (100, 100, 3)
        assert probe_image(_png(100, 100), "ok.png", max_pixels=20_000) == ("PNG", 100, 100)
        with pytest.raises(ImageTooLargeError, match=r"big\.png: image is 150x150 = 22,500 pixels, over the limit"):
            decode_image(_png(150, 150), "big.png", max_pixels=20_000)
        with pytest.raises(ImageTooLargeError, match=r"bomb\.png: .*over the limit of 20,000"):
            decode_image(_png_header_only(1000, 1000), "bomb.png", max_pixels=20_000)
        with pytest.raises(ImageTooLargeError, match=r"bomb\.png: .*over the limit of 20,000"):
            probe_image(_png_header_only(1000, 1000), "bomb.png", max_pixels=20_000)
    assert Image.MAX_IMAGE_PIXELS == 1_000  # raised for one open only, then restored
    # a smaller max_pixels never lowers Pillow's limit for others; our own cap still applies
    with pytest.raises(ImageTooLargeError, match="over the limit of 100"):
        decode_image(_png(20, 20), "small.png", max_pixels=100)
    assert Image.MAX_IMAGE_PIXELS == 1_000


def _textured(width: int = 50, height: int = 30) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _pillow_reference(data: bytes) -> np.ndarray:
    """What Pillow makes of ``data``: EXIF orientation applied, RGB, then BGR."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_transpose(fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    _textured().save(buffer, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    loaded = decode_image(buffer.getvalue(), f"photo.{fmt.lower()}")
    assert loaded.exif_transposed == (orientation != 1)
    assert np.array_equal(loaded.image, _pillow_reference(buffer.getvalue()))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_orientation_stored_after_the_pixels_is_applied() -> None:
    buffer = io.BytesIO()
    _textured().save(buffer, format="PNG")
    png = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6
    iend = png.rindex(b"IEND") - 4  # the eXIf chunk goes between the last IDAT and IEND
    late = png[:iend] + _png_chunk(b"eXIf", exif.tobytes()[6:]) + png[iend:]  # eXIf holds TIFF data, no "Exif\0\0"
    loaded = decode_image(late, "late.png")
    assert loaded.exif_transposed and loaded.image.shape == (50, 30, 3)
    assert np.array_equal(loaded.image, _pillow_reference(late))


def test_truncated_jpeg_is_refused_not_half_grey() -> None:
    buffer = io.BytesIO()
    _textured(400, 300).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(ImageLoadError, match=r"cut\.jpg: corrupt or truncated JPEG data"):
            decode_image(data[:cut], "cut.jpg")


def test_sixteen_bit_gray_png_keeps_its_tones() -> None:
    levels = np.array([[0, 100, 200, 255]], dtype=np.uint16) * 257  # 16-bit copies of 8-bit greys
    buffer = io.BytesIO()
    Image.fromarray(np.repeat(levels, 3, axis=0)).save(buffer, format="PNG")
    loaded = decode_image(buffer.getvalue(), "deep.png")
    assert loaded.image.shape == (3, 4, 3)
    assert loaded.image[0, :, 0].tolist() == [0, 100, 200, 255]


def _tiff(samples: np.ndarray, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(samples).save(buffer, format="TIFF", **params)
    return buffer.getvalue()


_GREYS = np.array([[0, 100, 200, 255]] * 3)


@pytest.mark.parametrize(
    ("samples", "dtype_name", "shift", "bits"),
    [
        (_GREYS * 257, "uint16", 8, 16),  # full range: the high byte, as OpenCV decodes 16-bit PNG
        (_GREYS * 16 + 15, "uint16", 4, 12),  # a 12-bit camera's samples stored in 16 bits
        (_GREYS, "int32", 0, 8),  # 32-bit integer samples within 8 bits stay as they are
    ],
    ids=["16-bit", "12-bit-in-16", "int32"],
)
def test_deep_gray_tiff_keeps_its_tones_and_records_the_scaling(
    samples: np.ndarray, dtype_name: str, shift: int, bits: int
) -> None:
    loaded = decode_image(_tiff(samples.astype(dtype_name)), "deep.tif")
    assert loaded.image.shape == (3, 4, 3) and loaded.image.dtype == np.uint8
    assert loaded.image[0, :, 0].tolist() == [0, 100, 200, 255]
    assert loaded.scaled_to_8bit == (
        f"{dtype_name} samples >> {shift} (largest value {int(samples.max())}: {bits} significant bits)"
    )


def test_float_tiff_maps_zero_to_one_onto_the_8_bit_range() -> None:
    samples = np.array([[0.0, 0.5, 1.0, np.nan]] * 2, np.float32)
    loaded = decode_image(_tiff(samples), "scan.tif")
    assert loaded.image[0, :, 0].tolist() == [0, 128, 255, 0]
    assert loaded.scaled_to_8bit == "float32 samples 0..1 to 0..255"
    wide = decode_image(_tiff(np.array([[-1.0, 0.0, 3.0]], np.float32)), "wide.tif")
    assert wide.image[0, :, 0].tolist() == [0, 64, 255] and wide.scaled_to_8bit == "float32 samples -1..3 to 0..255"


def test_scaling_in_row_bands_gives_the_whole_image_scaling(monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.inference import images

    rng = np.random.default_rng(4)
    deep = rng.integers(0, 1000, (7, 5)).astype(np.uint16)
    deep[6, 4] = 1023  # the largest value, in the last band: 10 significant bits
    floats = rng.uniform(0, 1, (7, 5)).astype(np.float32)
    floats[0, 0], floats[6, 0] = -0.5, 2.0  # the range's ends in different bands
    whole = [images.scale_to_8bit(a) for a in (deep, floats)]
    monkeypatch.setattr(images, "SCALE_BAND_ROWS", 2)
    for samples, (pixels, how) in zip((deep, floats), whole, strict=True):
        banded, banded_how = images.scale_to_8bit(samples)
        assert np.array_equal(banded, pixels) and banded_how == how
    assert whole[0][1].endswith("(largest value 1023: 10 significant bits)")
    assert np.array_equal(whole[0][0], (deep >> 2).astype(np.uint8))
    assert whole[1][1] == "float32 samples -0.5..2 to 0..255"


def test_eight_bit_photos_record_no_scaling_and_deep_ones_decode_to_gray_over_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from marktrace.inference import images

    assert decode_image(_tiff(_GREYS.astype(np.uint8)), "plain.tif").scaled_to_8bit is None
    assert decode_image(_png(8, 6), "plain.png").scaled_to_8bit is None
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 5)
    large = decode_image(_tiff((_GREYS * 257).astype(np.uint16)), "large.tif")
    assert large.decoded_gray and large.image.shape == (3, 4) and large.image[0].tolist() == [0, 100, 200, 255]


def test_a_multi_page_tiff_is_read_from_its_first_page_with_a_note() -> None:
    pages = [Image.fromarray(np.full((6, 8), level, np.uint8)) for level in (40, 200)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    loaded = decode_image(buffer.getvalue(), "stack.tif")
    assert int(loaded.image.max()) == 40
    assert loaded.notes == ("stack.tif: multi-page TIFF; only its first page of 2 was read",)
    assert decode_image(_tiff(_GREYS.astype(np.uint8)), "one.tif").notes == ()


def test_a_sixteen_bit_gray_tiff_reads_like_the_8_bit_photo(serial_photo: np.ndarray, tmp_path: Path) -> None:
    """Pillow's ``convert("RGB")`` clipped such a photo to white: no line, no serial, no word of why."""
    from marktrace.inference.items import discover_items
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    gray = cv2.cvtColor(serial_photo, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "photo.png"), gray)
    Image.fromarray(gray.astype(np.uint16) * 16).save(tmp_path / "camera.tif")  # 12 significant bits
    reader = MarkingReader.from_settings(ReaderSettings(threads=1))
    results = {}
    for name in ("photo.png", "camera.tif"):
        (item,) = discover_items(tmp_path / name)
        results[name] = reader.read_item(item, tmp_path)
    plain, deep = results["photo.png"], results["camera.tif"]
    assert plain.record.get("serial_number") is not None
    assert deep.record["serial_number"]["value"] == plain.record["serial_number"]["value"]
    assert [line.text for line in deep.lines] == [line.text for line in plain.lines]
    assert deep.images["camera.tif"].scaled_to_8bit == (
        f"uint16 samples >> 4 (largest value {int(gray.max()) * 16}: 12 significant bits)"
    )
    assert plain.images["photo.png"].scaled_to_8bit is None


def _heic(image: Image.Image, orientation: int = 1) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def _banded(width: int = 64, height: int = 40) -> Image.Image:
    pixels = np.full((height, width, 3), 30, np.uint8)
    pixels[:, : width // 4] = 230  # a bright band on the left as stored
    return Image.fromarray(pixels)


def test_heic_photo_decodes_to_the_stored_pixels() -> None:
    data = _heic(_banded())
    loaded = decode_image(data, "iphone/IMG_0001.HEIC")
    assert loaded.image.shape == (40, 64, 3) and not loaded.exif_transposed
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.image[:, :10].mean() > 200 and loaded.image[:, 24:].mean() < 60  # lossy, but the band is there
    assert probe_image(data, "IMG_0001.HEIC") == ("HEIF", 64, 40)


def test_heic_orientation_is_applied_once_and_recorded() -> None:
    loaded = decode_image(_heic(_banded(), orientation=6), "turned.heic")
    # shown turned 90 degrees clockwise: the band that was on the left is now along the top
    assert loaded.image.shape == (64, 40, 3) and loaded.exif_transposed
    assert loaded.original_size == (64, 40)
    assert loaded.image[:10].mean() > 200 and loaded.image[24:].mean() < 60


def test_heic_without_the_extra_names_the_file_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from marktrace.inference import images

    data = _heic(_banded())
    monkeypatch.setattr(images, "_heif_enabled", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    with pytest.raises(ImageLoadError, match=r"IMG_7\.heic: HEIC/HEIF photo; .*marktrace\[heif\]"):
        decode_image(data, "IMG_7.heic")
    with pytest.raises(ImageLoadError, match=r"IMG_7\.heic: HEIC/HEIF photo"):
        probe_image(data, "IMG_7.heic")


@pytest.mark.parametrize("name", ["DSC_0042.NEF", "IMG_1.CR2", "photo.dng"])
def test_camera_raw_files_are_refused_by_name(name: str) -> None:
    buffer = io.BytesIO()
    _textured().save(buffer, format="TIFF")  # a DNG is a TIFF: a decoder would read its preview without a word
    with pytest.raises(ImageLoadError, match=rf"{re.escape(name)}: camera raw file .*export the photo"):
        decode_image(buffer.getvalue(), name)


def _smooth(width: int = 60, height: int = 40) -> Image.Image:
    """Colour gradients (JPEG keeps them close, unlike noise)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_photos_over_the_gray_limit_decode_to_gray_at_the_same_size_and_orientation(
    fmt: str, orientation: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marktrace.inference import images

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    _smooth().save(buffer, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    data = buffer.getvalue()
    colour = decode_image(data, f"photo.{fmt.lower()}")
    assert colour.image.ndim == 3 and not colour.decoded_gray
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 60 * 40 - 1)  # this photo is now "large"
    gray = decode_image(data, f"photo.{fmt.lower()}")
    assert gray.decoded_gray and gray.image.ndim == 2 and gray.image.dtype == np.uint8
    assert gray.image.shape == colour.image.shape[:2] and gray.exif_transposed == colour.exif_transposed
    assert gray.sha256 == colour.sha256 and gray.original_size == colour.original_size
    expected = cv2.cvtColor(colour.image, cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(gray.image.astype(int) - expected).max() <= 3  # the decoder's own gray conversion
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 60 * 40)  # the limit itself stays in colour
    assert decode_image(data, "photo").image.ndim == 3


def test_pillow_decoded_formats_stay_in_colour_over_the_gray_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.inference import images

    buffer = io.BytesIO()
    _smooth().save(buffer, format="TIFF")
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 10)
    loaded = decode_image(buffer.getvalue(), "scan.tif")
    assert loaded.image.ndim == 3 and not loaded.decoded_gray


def test_free_heap_memory_is_handed_back_before_a_large_photo_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.inference import images

    calls: list[int] = []
    monkeypatch.setattr(images, "release_free_memory", lambda: calls.append(1) or True)
    buffer = io.BytesIO()
    _smooth().save(buffer, format="PNG")
    decode_image(buffer.getvalue(), "small.png")
    assert calls == []
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 100)
    decode_image(buffer.getvalue(), "large.png")
    assert calls == [1]


def test_release_free_memory_runs_where_the_c_library_has_it() -> None:
    import platform
    import resource

    from marktrace.inference.images import _malloc_trim, release_free_memory

    _malloc_trim.cache_clear()  # look the function up again, as the first large photo of a process does
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    released = release_free_memory()
    assert released == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (after.ru_utime, after.ru_stime) == (children.ru_utime, children.ru_stime)  # no process was started


def test_a_phone_multi_picture_jpeg_is_read_as_its_first_frame(tmp_path):
    import io

    from PIL import Image

    from marktrace.inference.images import load_image, probe_image

    rng = np.random.default_rng(3)
    first = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[Image.new("RGB", (32, 24), (0, 0, 0))])
    path = tmp_path / "phone.jpg"
    path.write_bytes(buffer.getvalue())
    assert probe_image(path.read_bytes(), "phone.jpg") == ("JPEG", 64, 48)
    loaded = load_image(path)
    expected = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert loaded.image.shape == (48, 64, 3) and np.array_equal(loaded.image, expected)


def test_every_box_of_a_read_lies_inside_the_photo_as_shown(tmp_path):
    """A phone photo stored sideways (EXIF 6): the detector grows boxes past the edge; the output keeps them in."""
    from marktrace.inference.items import discover_items
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    stored = Image.open(Path(__file__).parents[2] / "datasets" / "samples" / "stamped-clean.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the lines run down the photo, one near its edge
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    reader = MarkingReader.from_settings(ReaderSettings(threads=1))
    (item,) = discover_items(tmp_path / "phone.jpg")
    result = reader.read_item(item, tmp_path)
    assert result.status == "ok" and result.lines
    info = result.images["phone.jpg"]
    assert info.exif_transposed and (info.width, info.height) == (stored.height, stored.width)

    def inside(box) -> bool:
        return all(0 <= x <= info.width and 0 <= y <= info.height for x, y in box)

    assert all(inside(line.box) for line in result.lines)
    boxes = [f["evidence"]["box"] for f in result.record.values() if isinstance(f, dict) and f.get("evidence")]
    assert boxes and all(inside(box) for box in boxes)


_HEAP_PROBE = """
import ctypes, sys
import numpy as np
from marktrace.inference.images import map_large_allocations

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
# glibc's default: a freed 8 MB block raises the mmap threshold, and the next one comes from the heap
block = np.ones(8 << 20, np.uint8); del block
if sys.argv[1] == "map":
    assert map_large_allocations(2 << 20)
before = libc.mallinfo2().hblkhd
block = np.ones(8 << 20, np.uint8)
print(libc.mallinfo2().hblkhd - before >= 8 << 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_large_blocks_get_their_own_mapping_once_asked() -> None:
    """In a fresh process: after one large block was freed, the next comes from the heap unless mapped blocks were
    asked for (it would then stay with the process once freed)."""
    import subprocess
    import sys

    def mapped(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", _HEAP_PROBE, mode], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert mapped("default") == "False"
    assert mapped("map") == "True"


def test_large_blocks_are_mapped_from_the_first_large_photo_on_once_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.inference import images

    calls: list[int] = []
    monkeypatch.setattr(images, "map_large_allocations", lambda size: calls.append(size) or True)
    monkeypatch.setattr(images, "_heap_plan", {"bytes": 0, "applied": 0})
    buffer = io.BytesIO()
    _smooth().save(buffer, format="PNG")
    photo = buffer.getvalue()
    monkeypatch.setattr(images, "HEAP_MAP_ABOVE_PIXELS", 100)
    decode_image(photo, "large.png")
    assert calls == []  # nothing planned
    images.map_large_allocations_from_large_photos(1 << 24)
    assert calls == []  # planned, not applied
    monkeypatch.setattr(images, "HEAP_MAP_ABOVE_PIXELS", 10**9)
    decode_image(photo, "small.png")
    assert calls == []
    monkeypatch.setattr(images, "HEAP_MAP_ABOVE_PIXELS", 100)
    decode_image(photo, "large.png")
    decode_image(photo, "large-again.png")
    assert calls == [1 << 24]  # once per process


def test_the_reader_plans_mapped_blocks_when_it_loads_its_models_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]
) -> None:
    from marktrace.inference import pipeline
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    plans: list[int] = []
    monkeypatch.setattr(pipeline, "map_large_allocations_from_large_photos", plans.append)
    models = {"detector": tiny_models["line_detection"], "recognizer": tiny_models["line_recognition"]}
    MarkingReader.from_settings(ReaderSettings(**models))
    MarkingReader.from_settings(ReaderSettings(**models, heap_mmap_bytes=0))
    assert plans == [pipeline.HEAP_MMAP_BYTES, 0]
