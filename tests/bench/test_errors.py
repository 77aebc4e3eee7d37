"""The miss classes of ``bench.errors``: each class is reachable and the order of checks holds."""

from __future__ import annotations

from bench.errors import classify


def test_a_right_read_is_ok_whatever_the_rest() -> None:
    assert classify("AB1234", "AB1234", "garbage", [], 0) == "ok"


def test_nothing_detected_on_the_serial_is_a_detector_miss() -> None:
    assert classify("", "AB1234", "AB1234", ["CAL .22"], 0) == "det_miss"


def test_a_recognised_line_with_the_serial_is_a_selection_error() -> None:
    assert classify("M1911", "AB1234", "AB1234", ["M1911", "S/N AB 1234"], 1) == "select"


def test_truth_box_right_but_detected_box_wrong_is_geometry() -> None:
    assert classify("A81234", "AB1234", "AB 1234", ["A81234"], 1) == "det_geom"


def test_truth_box_wrong_too_is_the_recognizer() -> None:
    assert classify("A81234", "AB1234", "A8 1234", ["A81234"], 1) == "recog"
