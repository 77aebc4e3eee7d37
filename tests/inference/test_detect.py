"""Detector post-processing: the median core shape and the core-to-line geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from marktrace.inference.detect import (
    CORE_SHRINK,
    LineGeometry,
    measure_core,
    postprocess_maps,
    prepare_detector_input,
    split_rows,
)
from marktrace.inference.geometry import quad_size


def _core_points(x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) + 0.5


def test_measure_core_of_a_rectangle() -> None:
    core = measure_core(_core_points(10, 40, 20, 24))
    assert core.thickness == 4 and core.length == 30
    assert np.allclose(core.centre, [25.0, 22.0]) and np.allclose(np.abs(core.axis), [1.0, 0.0])


def test_a_blob_at_one_end_does_not_thicken_or_shift_the_core() -> None:
    band = _core_points(10, 60, 20, 24)
    blob = _core_points(10, 18, 12, 32)  # a smudge under the left end, 20 cells tall
    core = measure_core(np.unique(np.concatenate([band, blob]), axis=0))
    assert core.thickness == 4
    assert core.centre[1] == pytest.approx(22.0)


def test_axis_points_right_for_a_horizontal_core_and_down_for_a_vertical_one() -> None:
    assert measure_core(_core_points(10, 40, 20, 24)).axis[0] > 0
    vertical = measure_core(_core_points(20, 24, 10, 40))
    assert vertical.axis[1] > 0 and vertical.length == 30 and vertical.thickness == 4


def _maps(core: tuple[int, int, int, int], shape: tuple[int, int] = (40, 80)) -> np.ndarray:
    maps = np.zeros((3, *shape), np.float32)
    x0, x1, y0, y1 = core
    maps[0, y0:y1, x0:x1] = 0.95
    maps[1, y0:y1, x0:x1] = 1.0  # reading left to right
    return maps


def test_default_geometry_inverts_the_training_shrink() -> None:
    # A line 8 cells tall and 40 long has a core 4 tall and 36 long (shrunk by 0.25 heights each side).
    (line,) = postprocess_maps(_maps((10, 46, 18, 22)), stride=4, scale=1.0)
    length, height = quad_size(line.quad)
    assert height == pytest.approx(8 * 4) and length == pytest.approx(40 * 4)
    assert line.quad[0][0] < line.quad[1][0] and line.quad[0][1] < line.quad[3][1]  # reading order


def test_calibrated_geometry_is_applied() -> None:
    geometry = LineGeometry(height_per_core=1.5, height_offset=-1.0, length_per_core=1.0,
                            length_per_height=0.0, length_offset=2.0)
    (line,) = postprocess_maps(_maps((10, 46, 18, 22)), stride=4, scale=2.0, geometry=geometry)
    length, height = quad_size(line.quad)
    assert height == pytest.approx((1.5 * 4 - 1.0) * 4 * 2.0)
    assert length == pytest.approx((36 + 2.0) * 4 * 2.0)


def test_line_geometry_round_trips_and_rejects_bad_metadata() -> None:
    geometry = LineGeometry(1.76, -1.56, 0.99, 0.09, 2.12)
    assert LineGeometry.from_json(geometry.to_json()) == geometry
    assert LineGeometry().height_per_core == pytest.approx(1 / (1 - 2 * CORE_SHRINK))
    with pytest.raises(ValueError, match="keys"):
        LineGeometry.from_json('{"height_per_core": 2}')
    with pytest.raises(ValueError, match="out of range"):
        LineGeometry.from_json(LineGeometry(height_per_core=50.0).to_json())


@pytest.mark.parametrize("long_side", [64, 640])  # shrunk (INTER_AREA) and enlarged (INTER_LINEAR)
def test_a_gray_photo_gives_the_tensor_of_its_bgr_copy(long_side: int) -> None:
    rng = np.random.default_rng(4)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (150, 230), dtype=np.uint8), (5, 5), 0)
    from_gray = prepare_detector_input(gray, long_side)
    from_bgr = prepare_detector_input(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), long_side)
    assert from_gray.tensor.shape == from_bgr.tensor.shape and from_gray.tensor.shape[-1] == 3
    assert np.array_equal(from_gray.tensor, from_bgr.tensor) and from_gray.scale == from_bgr.scale


def _band(maps: np.ndarray, x0: int, x1: int, y0: int, y1: int, p: float = 0.95) -> None:
    maps[0, y0:y1, x0:x1] = p
    maps[1, y0:y1, x0:x1] = 1.0


def test_two_stacked_lines_the_map_bridged_become_two_lines() -> None:
    maps = np.zeros((3, 40, 100), np.float32)
    _band(maps, 10, 90, 10, 14)  # a maker line
    _band(maps, 10, 70, 17, 21)  # an import line under it, shorter
    _band(maps, 40, 42, 14, 17, p=0.8)  # the bridge that joins their cores
    lines = sorted(postprocess_maps(maps, stride=4, scale=1.0), key=lambda d: float(d.quad[0][1]))
    assert len(lines) == 2
    assert len(postprocess_maps(maps, stride=4, scale=1.0, split_stacked=False)) == 1  # readers before 0.4.0
    heights = [quad_size(d.quad)[1] for d in lines]
    assert heights == pytest.approx([8 * 4, 8 * 4])  # each as tall as one line, not two
    assert [quad_size(d.quad)[0] for d in lines] == pytest.approx([84 * 4, 64 * 4])


def test_lines_joined_flush_left_like_an_e_are_cut_into_their_rows() -> None:
    maps = np.zeros((3, 50, 100), np.float32)
    for y0 in (8, 20, 32):
        _band(maps, 10, 80, y0, y0 + 4)
    _band(maps, 10, 12, 8, 36)  # first letters aligned: a vertical stroke through all three cores
    lines = postprocess_maps(maps, stride=4, scale=1.0)
    assert len(lines) == 3
    assert sorted(round(float(np.mean(d.quad[:, 1])) / 4) for d in lines) == [10, 22, 34]


def test_one_line_with_word_gaps_and_a_slant_stays_one_line() -> None:
    maps = np.zeros((3, 60, 120), np.float32)
    ys, xs = np.mgrid[0:60, 0:120]
    band = np.abs(ys - (20 + 0.25 * xs)) < 2.5  # a line at 14 degrees
    band &= (xs >= 5) & (xs < 110) & ~((xs >= 40) & (xs < 43)) & ~((xs >= 75) & (xs < 78))  # three words
    maps[0][band] = 0.95
    maps[1][band] = 1.0
    assert len(postprocess_maps(maps, stride=4, scale=1.0)) == 3  # each word its own component, none cut


def test_words_side_by_side_at_different_heights_are_not_taken_for_stacked_lines() -> None:
    points = np.concatenate([_core_points(10, 40, 20, 24), _core_points(40, 70, 25, 29)]).astype(np.float64)
    assert len(split_rows(points)) == 1  # a step in the baseline, not two rows: they do not overlap along it
    stacked = np.concatenate([_core_points(10, 60, 20, 24), _core_points(10, 60, 27, 31),
                              _core_points(30, 32, 24, 27)]).astype(np.float64)
    rows = split_rows(stacked)
    upper, lower = sorted(rows, key=lambda r: float(stacked[r, 1].mean()))
    assert set(range(200)) <= set(upper.tolist()) and set(range(200, 400)) <= set(lower.tolist())
    assert sorted(np.concatenate(rows).tolist()) == list(range(len(stacked)))  # the bridge shared out, none lost


def test_a_single_thick_line_is_never_cut() -> None:
    points = _core_points(10, 80, 20, 32).astype(np.float64)  # one big line: a flat profile, no valley
    assert len(split_rows(points)) == 1
