import hashlib
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
