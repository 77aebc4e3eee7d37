"""Reading a single photo's serial line again from its box grown along the line
(``ReaderSettings.serial_extensions``): the detector sometimes ends a box inside the marking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="module")
def photo(serial_photo: np.ndarray) -> np.ndarray:
    return serial_photo


def test_grow_along_moves_only_the_chosen_end_by_line_heights() -> None:
    from marktrace.inference.pipeline import grow_along

    quad = np.array([[10, 20], [110, 20], [110, 40], [10, 40]], np.float32)  # 100 long, 20 high
    start = grow_along(quad, "start", 1.5)
    assert np.allclose(start, [[-20, 20], [110, 20], [110, 40], [-20, 40]])
    end = grow_along(quad, "end", 0.75)
    assert np.allclose(end, [[10, 20], [125, 20], [125, 40], [10, 40]])
    turned = np.array([[0, 0], [0, 100], [-20, 100], [-20, 0]], np.float32)  # reading downward
    assert np.allclose(grow_along(turned, "end", 1.0)[[1, 2]], [[0, 120], [-20, 120]])
    assert np.array_equal(grow_along(quad, "end", 0.0), quad)


@pytest.mark.parametrize(
    ("first", "grown", "end", "accepted"),
    [
        (("KE18608", 0.996), ("6KE18608", 0.997), "start", True),
        (("SERIAL N6300", 1.0), ("SERIAL N63004", 0.994), "end", True),  # within the allowed drop
        (("58 3093", 0.904), ("CZ 58 3093", 0.995), "start", True),  # a spaced letter block
        (("ZFB-6241", 0.942), ("RZFB-6241", 0.906), "start", False),  # confidence fell
        (("268563", 0.988), ("-268563", 0.99), "start", False),  # a hyphen at the outer end
        (("268563", 0.95), ("268563.", 0.99), "end", False),  # punctuation is no character of a serial
        (("KE18608", 0.9), ("6KE18608", 0.95), "end", False),  # new characters at the other end
        (("KE18608", 0.9), ("6KE18600", 0.95), "start", False),  # the first read's characters changed
        (("KE18608", 0.9), ("KE18608", 0.99), "start", False),  # nothing new
    ],
)
def test_extension_accepted_wants_the_same_characters_and_confident_new_ones_at_that_end(
    serial_reads: Any, first: tuple[str, float], grown: tuple[str, float], end: str, accepted: bool
) -> None:
    from marktrace.inference.pipeline import extension_accepted

    assert extension_accepted(serial_reads.decoded(*first), serial_reads.decoded(*grown), end) is accepted


def test_a_new_character_below_the_bar_is_not_taken(serial_reads: Any, ) -> None:
    from marktrace.inference.pipeline import EXTENSION_MIN_CHAR, extension_accepted

    first = serial_reads.decoded("KE18608", 0.9)
    weak = serial_reads.decoded("6KE18608", 0.95, [EXTENSION_MIN_CHAR - 0.01] + [0.99] * 7)
    sure = serial_reads.decoded("6KE18608", 0.95, [EXTENSION_MIN_CHAR] + [0.99] * 7)
    assert not extension_accepted(first, weak, "start")
    assert extension_accepted(first, sure, "start")


def test_a_grown_read_that_extends_the_serial_replaces_the_line_grows_its_box_and_says_so(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, image, direct = serial_reads.start(photo, serial_extensions=(0.75, 1.5))
    index = serial_reads.index(direct)
    first = direct.decoded[index]
    value = direct.record["serial_number"]["value"]
    batches: list[list[np.ndarray]] = []

    def recognize(crops: list[np.ndarray]) -> list[Any]:
        batches.append(crops)
        if len(batches) == 1:
            # the screening strips, start then end: a sure character at the strip's first step lies beyond the start
            # (1.5 line heights out), and none at its first step lies beyond the end (inside the box)
            return [serial_reads.decoded("7A", 0.99, steps=[0, 8], crop_width=c.shape[1]) for c in crops]
        # the start's grown lines, +0.75 and +1.5: only +0.75 reads one more character
        decoded = serial_reads.decoded
        return [decoded("7" + first.text, min(1.0, first.confidence + 0.001)), decoded("#" + first.text, 0.2)]

    monkeypatch.setattr(reader, "recognize", recognize)
    grown = reader._extended_attempt(image, direct)
    assert [len(b) for b in batches] == [2, 2]  # the strips, then the start's grown lines
    strip_widths = [c.shape[1] for c in batches[0]]
    assert max(strip_widths) < 0.8 * min(c.shape[1] for c in batches[1])  # strips are short
    widths = [c.shape[1] for c in batches[1]]
    assert widths[0] < widths[1]  # 1.5 line heights is wider than 0.75
    serial = grown.record["serial_number"]
    assert value in serial["value"] and serial["value"] != value
    assert grown.lines[index].text == "7" + first.text and grown.decoded[index].text == "7" + first.text
    flag = next(f for f in serial["flags"] if f["kind"] == "read_extended")
    assert (flag["start_line_heights"], flag["end_line_heights"]) == (0.75, 0.0)
    assert flag["first_read"] == first.text
    old, new = np.asarray(direct.lines[index].box), np.asarray(grown.lines[index].box)
    assert np.allclose(new[[1, 2]], old[[1, 2]], atol=0.1)  # the end stays
    height = float(np.linalg.norm(old[3] - old[0]))
    assert float(np.linalg.norm(new[0] - old[0])) == pytest.approx(0.75 * height, rel=0.02)
    assert [ln.text for i, ln in enumerate(grown.lines) if i != index] == [
        ln.text for i, ln in enumerate(direct.lines) if i != index]


def test_no_grown_read_that_passes_leaves_the_attempt_as_it_was(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, image, direct = serial_reads.start(photo)
    first = direct.decoded[serial_reads.index(direct)]
    monkeypatch.setattr(reader, "recognize", lambda crops: [serial_reads.decoded("Q" + first.text, 0.1) for _ in crops])
    assert reader._extended_attempt(image, direct) is direct


def test_an_end_whose_strip_shows_nothing_beyond_the_box_is_not_read_again(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marktrace.inference.pipeline import EXTENSION_MIN_CHAR

    reader, image, direct = serial_reads.start(photo)
    batches: list[int] = []

    def recognize(crops: list[np.ndarray]) -> list[Any]:
        batches.append(len(crops))
        # characters only inside the box, or beyond it but unsure
        return [serial_reads.decoded("7A", 0.99, chars=[EXTENSION_MIN_CHAR - 0.05, 0.99], steps=[0, 24],
                         crop_width=crops[0].shape[1]),
                serial_reads.decoded("A7", 0.99, chars=[0.99, 0.99], steps=[0, 1], crop_width=crops[1].shape[1])]

    monkeypatch.setattr(reader, "recognize", recognize)
    assert reader._extended_attempt(image, direct) is direct
    assert batches == [2]  # the strips only


def test_a_grown_read_whose_serial_does_not_contain_the_first_is_refused(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grown read passes the character check, but the record parsed from it has another serial: not kept."""
    import marktrace.inference.pipeline as pipeline

    reader, image, direct = serial_reads.start(photo)
    first = direct.decoded[serial_reads.index(direct)]
    grown_text = "7" + first.text

    def recognize(crops: list[np.ndarray]) -> list[Any]:
        if all(c.shape[1] < 0.8 * reader.height * 6 for c in crops) and len(crops) == 2 and crops[0].shape[1] == crops[
                1].shape[1]:
            # the strips: the start's shows one character beyond the box
            return [serial_reads.decoded("7", 1.0, steps=[0], crop_width=c.shape[1]) for c in crops]
        return [serial_reads.decoded(grown_text, 1.0) for _ in crops]

    monkeypatch.setattr(reader, "recognize", recognize)
    kept = reader._extended_attempt(image, direct)
    assert kept is not direct and kept.record["serial_number"]["value"] != direct.record["serial_number"]["value"]

    build_record = pipeline.build_record

    def other_serial(lines: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        record = build_record(lines, *args, **kwargs)
        if any(line.text == grown_text for line in lines):
            record["serial_number"] = {**record["serial_number"], "value": "ZZ0000"}
        return record

    monkeypatch.setattr(pipeline, "build_record", other_serial)
    assert reader._extended_attempt(image, direct) is direct


def test_turned_off_reads_no_grown_box(photo: np.ndarray, monkeypatch: pytest.MonkeyPatch,
                                       as_loaded: Callable[..., Any]) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, serial_extensions=()))
    called: list[Any] = []

    def extended(image: Any, direct: Any) -> Any:
        called.append(image)
        return direct

    monkeypatch.setattr(reader, "_extended_attempt", extended)
    result = reader.read_loaded("p", [as_loaded(photo)], None)
    assert result.status == "ok" and called == [] and "extend_ms" not in result.timings_ms
    on = MarkingReader.from_settings(ReaderSettings(threads=1))
    monkeypatch.setattr(on, "_extended_attempt", extended)
    assert "extend_ms" in on.read_loaded("p", [as_loaded(photo)], None).timings_ms and len(called) == 1


def test_end_strip_spans_the_growth_and_the_overlap() -> None:
    from marktrace.inference.pipeline import end_strip

    quad = np.array([[10, 20], [110, 20], [110, 40], [10, 40]], np.float32)  # 100 long, 20 high
    assert np.allclose(end_strip(quad, "start", 1.5, 1.0), [[-20, 20], [30, 20], [30, 40], [-20, 40]])
    assert np.allclose(end_strip(quad, "end", 0.75, 1.0), [[90, 20], [125, 20], [125, 40], [90, 40]])
    short = np.array([[0, 0], [10, 0], [10, 20], [0, 20]], np.float32)  # shorter than the overlap: the whole box
    assert np.allclose(end_strip(short, "end", 1.0, 1.0), [[0, 0], [30, 0], [30, 20], [0, 20]])


@pytest.mark.parametrize(("end", "step", "confidence", "beyond"), [
    ("start", 0, 0.99, True),  # at the strip's outer start: beyond the box
    ("start", 30, 0.99, False),  # in the overlap, inside the box
    ("start", 0, 0.5, False),  # beyond, but unsure
    ("end", 36, 0.99, True),
    ("end", 5, 0.99, False),
])
def test_characters_beyond_places_each_character_by_its_time_step(
    serial_reads: Any, end: str, step: int, confidence: float, beyond: bool
) -> None:
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y, characters_beyond, end_strip

    box = np.array([[0, 0], [200, 0], [200, 40], [0, 40]], np.float32)  # 40 px a line height
    strip = end_strip(box, end, 1.5, 1.0)  # 2.5 line heights long
    per_height = 64 / (1 + 2 * CROP_PAD_Y)  # the crop's height is the padded line's
    width = round(per_height * (2.5 + 2 * CROP_PAD_X))
    read = serial_reads.decoded("7", 0.99, chars=[confidence], steps=[step], crop_width=width)
    assert read.probs.shape[0] == int(np.ceil(width / 8) * 8) // 4 - 1
    assert characters_beyond(read, width, end, strip, 1.5) is beyond


def test_a_view_at_another_scale_is_cut_where_the_photo_would_be(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    """A relief view of a stack is read at the stack's working size: the grown boxes (photo pixels) are cut from it
    at ``scale``, and an attempt read as another view than the one named is left alone."""
    import dataclasses

    import cv2

    reader, image, direct = serial_reads.start(photo)
    cut: dict[float, list[np.ndarray]] = {}

    def read_quads(scale: float) -> Callable[..., Any]:
        def read(img: Any, quads: list[np.ndarray]) -> tuple[list[Any], list[np.ndarray]]:
            cut.setdefault(scale, []).extend(np.asarray(q) for q in quads)
            assert img.image.shape[0] == round(photo.shape[0] * scale)
            return [], []  # nothing read: the attempt stays as it was
        return read

    for scale in (1.0, 0.5):
        monkeypatch.setattr(reader, "_read_quads", read_quads(scale))
        small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        view = dataclasses.replace(direct, view="photometric:relit_ratio")
        assert reader._extended_attempt(as_loaded(small), view, "photometric:relit_ratio", scale) is view
    assert len(cut[1.0]) == len(cut[0.5]) == 2  # the two screening strips
    for full, half in zip(cut[1.0], cut[0.5], strict=True):
        assert np.allclose(half, full * 0.5, atol=1e-3)
    monkeypatch.setattr(reader, "_read_quads", read_quads(1.0))
    cut.clear()
    # read as a relief view but named as the photo (or the other way round): not this method's to grow
    as_view = dataclasses.replace(direct, view="photometric:relit_ratio")
    assert reader._extended_attempt(image, as_view) is as_view and cut == {}
    assert reader._extended_attempt(image, direct, "photometric:relit_ratio") is direct and cut == {}


def test_a_stack_grows_the_serial_line_of_each_photo_read_and_each_relief_view(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, stack_folder: Callable[..., Any]
) -> None:
    import itertools
    import json

    from marktrace.inference.images import load_image
    from marktrace.inference.items import discover_items
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    lights = json.loads((stack_folder(tmp_path, n=4) / "lights.json").read_text())
    (item,) = discover_items(tmp_path)
    calls: list[tuple[str, str, float, tuple[int, ...]]] = []

    def extended(image: Any, direct: Any, view: str = "original", scale: float = 1.0) -> Any:
        calls.append((direct.view, view, scale, image.image.shape[:2]))
        return direct

    decoded = [load_image(f, name=f"rti/{f.name}") for f in item.files]
    directions = {name: (v["azimuth_deg"], v["elevation_deg"]) for name, v in lights.items()}
    for extensions, streamed in itertools.product(((), (0.75, 1.5)), (True, False)):
        reader = MarkingReader.from_settings(ReaderSettings(threads=1, stack_agreement=1.01, max_photometric_views=2,
                                                            serial_extensions=extensions))
        monkeypatch.setattr(reader, "_extended_attempt", extended)
        calls.clear()
        # a folder read one photo at a time, and the same photos handed over decoded
        result = reader.read_item(item, tmp_path) if streamed else reader.read_loaded(item.name, decoded, directions)
        assert result.status == "ok"
        if not extensions:
            assert calls == []
            continue
        photos = [c for c in calls if c[0] == "original"]
        views = [c for c in calls if c[0] != "original"]
        assert len(photos) == 4 and all(c[1:3] == ("original", 1.0) for c in photos)
        assert all(c[3] == decoded[0].image.shape[:2] for c in photos)  # the photo as decoded, full size
        assert [c[0] for c in views] == [v.name for v in result.views] and all(c[0] == c[1] for c in views)
        assert len(views) == 2 and all(0 < c[2] <= 1.0 for c in views)
