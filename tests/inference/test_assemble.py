import cv2
import numpy as np

from marktrace.inference.assemble import _attach_alterations, merge_alternatives
from marktrace.inference.ctc import DecodedText
from marktrace.inference.pipeline import _alterations
from marktrace.inference.schema import Line


def _line(text: str, alterations: list[dict]) -> Line:
    return Line(text=text, confidence=0.9, box=[(0, 0), (10, 0), (10, 5), (0, 5)], file="a.jpg",
                alterations=alterations)


def test_overstamp_flags_land_on_the_serial_at_value_positions():
    record = {"serial_number": {"value": "AB1234", "text_as_marked": "AB1234", "confidence": 0.9,
                                "evidence": {"line_text": "S/N AB1234"}}}
    line = _line("S/N AB1234", [{"position": 7, "score": 2.5, "evidence": {}}, {"position": 1, "score": 3.0}])
    _attach_alterations(record, [line])
    flags = record["serial_number"]["flags"]
    assert flags == [{"kind": "overstamp_suspected", "position": 3, "character": "2", "score": 2.5, "evidence": {}}]


def test_no_flags_without_a_serial_line():
    record = {"serial_number": {"value": "X1", "confidence": 0.5, "evidence": {"line_text": "other"}}}
    _attach_alterations(record, [_line("elsewhere", [{"position": 0, "score": 9.0}])])
    assert "flags" not in record["serial_number"]


def test_alternatives_from_other_methods_are_merged_once():
    class Attempt:
        def __init__(self, value, confidence, method):
            self.record = {"serial_number": {"value": value, "confidence": confidence, "alternatives": []}}
            self.method = method

    best = Attempt("AB1234", 0.9, "direct")
    others = [best, Attempt("A81234", 0.4, "chain:clahe"), Attempt("A81234", 0.3, "chain:ridge")]
    merged = merge_alternatives(best, others)["serial_number"]["alternatives"]
    assert merged == [{"value": "A81234", "confidence": 0.4, "method": "chain:clahe"}]


def test_character_columns_come_from_ctc_steps():
    crop = np.full((64, 200), 200, np.uint8)
    for k, x in enumerate(range(10, 190, 24)):
        cv2.putText(crop, str(k % 10), (x, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 40, 3)
    steps = tuple((x + 10) // 4 for x in range(10, 190, 24))
    text = DecodedText("01234567", 0.9, (0.9,) * 8, ((),) * 8, steps)
    flags = _alterations(crop, text)
    assert isinstance(flags, list)
    assert all(0 <= f["position"] < 8 for f in flags)
    assert _alterations(crop, DecodedText("01", 0.9, (0.9, 0.9), ((), ()), (3, 9))) == []
