"""A mark struck beside the serial and read as a character is left off it (``ReaderSettings.drop_detached_end``)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import numpy as np
import pytest

from marktrace.inference.records import load_schema


@pytest.fixture(scope="module")
def photo(serial_photo: np.ndarray) -> np.ndarray:
    return serial_photo


# 'XK204468' and a ring stamp after it read as an unsure '6', a step and a half apart; the steps of each character
MARKED = ("XK2044686", [0.99] * 8 + [0.3], [4, 12, 20, 28, 36, 44, 52, 60, 74])


def _with_marked_serial_line(serial_reads: Any, reader: Any, image: Any, direct: Any, text: str,
                             chars: list[float], steps: list[int]) -> Any:
    index = serial_reads.index(direct)
    decoded = serial_reads.decoded(text, float(np.exp(np.mean(np.log(chars)))), chars, steps)
    return reader._with_line_read_again(image, direct, index, decoded, np.asarray(direct.lines[index].box, np.float32),
                                        None, {"kind": "test"})


def test_the_reader_leaves_a_detached_mark_off_the_serial(serial_reads: Any, photo: np.ndarray) -> None:
    reader, image, direct = serial_reads.start(photo)
    attempt = _with_marked_serial_line(serial_reads, reader, image, direct, *MARKED)
    record = copy.deepcopy(attempt.record)
    assert record["serial_number"]["value"] == "XK2044686"
    reader._finish_serial(record, attempt, [image])
    serial = record["serial_number"]
    assert serial["value"] == "XK204468"
    assert serial["alternatives"][0]["value"] == "XK2044686"
    assert any(f["kind"] == "detached_end_dropped" and f["character"] == "6" for f in serial["flags"])
    assert attempt.lines[serial_reads.index(attempt)].text == "XK2044686"  # the line keeps what was read
    # the record, the runner-up alternatives' step run too, still meets the published schema
    jsonschema.validate(record, load_schema("identification-record.v1.json"))


def test_a_mark_at_the_usual_pitch_or_the_setting_off_keeps_the_value(serial_reads: Any, photo: np.ndarray) -> None:
    reader, image, direct = serial_reads.start(photo)
    text, chars, steps = MARKED
    close = _with_marked_serial_line(serial_reads, reader, image, direct, text, chars, [*steps[:-1], 68])
    record = copy.deepcopy(close.record)
    reader._finish_serial(record, close, [image])
    assert record == close.record
    off, image_off, direct_off = serial_reads.start(photo, drop_detached_end=False)
    marked = _with_marked_serial_line(serial_reads, off, image_off, direct_off, *MARKED)
    record = copy.deepcopy(marked.record)
    off._finish_serial(record, marked, [image_off])
    assert record == marked.record
