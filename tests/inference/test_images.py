import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from marktrace.inference.images import ImageLoadError, decode_image, load_image


def _png(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decodes_and_hashes_the_original_bytes(tmp_path):
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
def test_bad_input_names_the_file_and_problem(data, message):
    with pytest.raises(ImageLoadError) as info:
        decode_image(data, "evidence/photo.jpg")
    assert "evidence/photo.jpg" in str(info.value)
    assert message in str(info.value)


def test_pixel_cap_is_checked_before_decoding():
    data = _png(3000, 3000)
    with pytest.raises(ImageLoadError, match="over the limit"):
        decode_image(data, "big.png", max_pixels=1_000_000)


def test_exif_orientation_applies_to_the_working_copy_only():
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
