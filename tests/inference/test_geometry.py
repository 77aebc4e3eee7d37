import cv2
import numpy as np
import pytest

from marktrace.inference.geometry import order_quad, pad_quad, quad_size, rectify_line


@pytest.mark.parametrize("angle", [0, 30, 90, 180, 233, 270])
def test_order_quad_follows_reading_direction(angle):
    rect = ((200.0, 150.0), (120.0, 30.0), float(angle))
    corners = cv2.boxPoints(rect)
    theta = np.deg2rad(angle)
    direction = (np.cos(theta), np.sin(theta))
    quad = order_quad(corners[np.random.default_rng(angle).permutation(4)], direction)
    along = quad[1] - quad[0]
    assert np.dot(along / np.linalg.norm(along), direction) > 0.99
    width, height = quad_size(quad)
    assert width == pytest.approx(120, abs=0.5) and height == pytest.approx(30, abs=0.5)
    # bottom-left is "down" for the reader: rotate the direction by +90 degrees in image coordinates.
    down = quad[3] - quad[0]
    assert np.dot(down / np.linalg.norm(down), (-direction[1], direction[0])) > 0.99


def test_pad_quad_grows_in_line_heights():
    quad = np.array([[10, 10], [110, 10], [110, 30], [10, 30]], np.float32)
    grown = pad_quad(quad, 0.5, 0.25)
    assert quad_size(grown) == pytest.approx((120.0, 30.0))


def test_rectify_line_turns_upside_down_text_upright():
    image = np.full((100, 300), 200, np.uint8)
    cv2.putText(image, "AB12", (40, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 30, 3)
    upright_quad = np.array([[30, 20], [250, 20], [250, 85], [30, 85]], np.float32)
    upright = rectify_line(image, upright_quad, height=32)
    rotated = cv2.rotate(image, cv2.ROTATE_180)
    h, w = image.shape
    # The same line in the rotated photo, corners in reading order.
    flipped_quad = np.array([[w - 1 - x, h - 1 - y] for x, y in upright_quad], np.float32)
    recovered = rectify_line(rotated, flipped_quad, height=32)
    assert recovered.shape == upright.shape
    assert np.abs(recovered.astype(int) - upright.astype(int)).mean() < 3
    assert upright.std() > 20


def test_rectify_reads_a_gray_photo_as_its_bgr_copy_and_leaves_it_alone() -> None:
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (120, 200), dtype=np.uint8)
    before = gray.copy()
    quad = np.array([[20, 30], [170, 40], [168, 80], [18, 70]], np.float32)
    crop = rectify_line(gray, quad, height=32)
    assert np.array_equal(crop, rectify_line(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), quad, height=32))
    assert np.array_equal(gray, before)
