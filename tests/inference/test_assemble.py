import cv2
import numpy as np

from marktrace.inference.assemble import (
    _attach_alterations,
    add_character_alternatives,
    detached_end,
    drop_detached_end,
    merge_alternatives,
)
from marktrace.inference.ctc import DecodedText
from marktrace.inference.pipeline import _alterations
from marktrace.inference.schema import Alternative, CharAlternatives, Line


def _line(text: str, alterations: list[dict]) -> Line:
    return Line(text=text, confidence=0.9, box=[(0, 0), (10, 0), (10, 5), (0, 5)], file="a.jpg",
                alterations=alterations)


def test_overstamp_flags_land_on_the_serial_at_value_positions():
    record = {"serial_number": {"value": "AB1234", "text_as_marked": "AB1234", "confidence": 0.9,
                                "evidence": {"line_text": "S/N AB1234"}}}
    line = _line("S/N AB1234", [{"position": 7, "score": 2.5, "evidence": {}}, {"position": 1, "score": 3.0}])
    _attach_alterations(record, [line])
    flags = record["serial_number"]["flags"]
    assert flags == [{"kind": "overstamp_suspected", "position": 3, "character": "2", "line_position": 7,
                      "score": 2.5, "evidence": {}}]


def test_overstamp_flag_positions_skip_labels_and_spaces_of_the_marked_text():
    # the parser keeps the label and spaces in text_as_marked; the flag must index the value
    record = {"serial_number": {"value": "AB1234", "text_as_marked": "S/N AB 1234", "confidence": 0.9,
                                "evidence": {"line_text": "S/N AB 1234"}}}
    line = _line("S/N AB 1234", [{"position": 8, "score": 2.5}, {"position": 0, "score": 4.0},
                                 {"position": 6, "score": 3.0}])
    _attach_alterations(record, [line])
    flags = record["serial_number"]["flags"]
    assert [(f["position"], f["character"], f["line_position"]) for f in flags] == [(3, "2", 8)]
    assert record["serial_number"]["value"] == "AB1234"


def test_value_positions_align_a_corrected_value():
    from marktrace.inference.assemble import value_positions

    assert value_positions("No 7O12", "NO 7O12", "7012") == {3: 0, 4: 1, 5: 2, 6: 3}
    assert value_positions("XYZ", "ABC", "ABC") == {}


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


def test_pipeline_flags_lines_from_their_ctc_probabilities(monkeypatch):
    import dataclasses

    from marktrace.inference.ctc import greedy_decode
    from marktrace.inference.enhance import alteration

    charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ "

    def probs(text: str, rival_at: int | None) -> np.ndarray:
        p = np.full((4 * len(text) + 4, len(charset) + 1), 0.002, np.float32)
        p[:, 0] = 1.0
        for k, ch in enumerate(text):
            p[4 * k + 2, 0] = 0.01
            p[4 * k + 2, charset.index(ch) + 1] = 0.97
            if k == rival_at:
                p[4 * k + 2, charset.index(ch) + 1] = 0.52
                p[4 * k + 2, charset.index("8") + 1] = 0.45
                p[4 * k + 3, charset.index("8") + 1] = 0.36
        return p / p.sum(axis=1, keepdims=True)

    crop = np.full((64, 200), 200, np.uint8)
    for k, x in enumerate(range(10, 190, 24)):
        cv2.putText(crop, str(k % 10), (x, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 40, 3)
    # the hand-made matrix is milder than a real strike: flag at a lower threshold (between the rival
    # character's score and the next one) to test the plumbing
    # the CTC side of the plumbing: the patch scorer still runs (evidence) but its weights are zeroed, since the
    # drawn digits are not where the hand-made steps put them
    loaded = alteration.shipped_overstamp_model()
    n_ctc = len(alteration.FEATURE_NAMES)
    shipped = dataclasses.replace(loaded, coef=loaded.coef[:n_ctc] + (0.0,) * (len(loaded.coef) - n_ctc))
    struck = greedy_decode(probs("01234567", 3), charset)
    assert struck.probs is not None
    every = alteration.flag_overstamps(crop, struck.text, struck.char_steps, struck.probs, charset, model=shipped,
                                       return_all=True)
    scores = {e["position"]: e["score"] for e in every}
    runner_up = max(v for k, v in scores.items() if k != 3)
    assert scores[3] > runner_up
    lowered = dataclasses.replace(shipped, threshold=(scores[3] + runner_up) / 2)
    monkeypatch.setattr(alteration, "shipped_overstamp_model", lambda: lowered)
    flags = _alterations(crop, struck)
    assert [f["position"] for f in flags] == [3]
    assert "shape" in flags[0]["evidence"]  # the stroke-width / pitch measures, for the examiner
    assert _alterations(crop, greedy_decode(probs("01234567", None), charset)) == []
    assert _alterations(crop, greedy_decode(probs("ABCDEFG", 3), charset)) == []  # no digit: not a serial
    assert _alterations(crop, DecodedText("01234567", 0.9, (0.9,) * 8, ((),) * 8, tuple(range(8)))) == []


class _Read:
    def __init__(self, value: str | None, confidence: float, method: str = "direct") -> None:
        self.record = {} if value is None else {"serial_number": {"value": value, "confidence": confidence}}
        self.method = method


def test_serial_consensus_prefers_the_value_several_reads_agree_on():
    from marktrace.inference.assemble import serial_consensus

    reads = [_Read("AS3167", 0.84), _Read("3167", 0.85), _Read("AS 3167", 0.83), _Read(None, 0.0),
             _Read("AS3167", 0.82, "photometric:relit_ratio")]
    vote = serial_consensus(reads)
    assert vote is not None
    # the most confident single read loses to three that agree (spaces ignored); its own best read is chosen
    assert (vote.attempt, vote.reads, vote.of) == (0, 3, 5)
    assert abs(vote.share - (0.84 + 0.83 + 0.82) / (0.84 + 0.85 + 0.83 + 0.82)) < 1e-9
    flag = vote.flag()
    assert flag["kind"] == "consensus" and (flag["reads"], flag["of"]) == (3, 5) and "3 gave this value" in flag["note"]


def test_serial_consensus_ties_go_to_the_most_confident_read_and_nothing_read_gives_none():
    from marktrace.inference.assemble import serial_consensus

    vote = serial_consensus([_Read("X1", 0.5), _Read("Y2", 0.3), _Read("Y2", 0.2), _Read("X1", 0.0)])
    assert vote is not None and vote.attempt == 0 and vote.reads == 2
    assert serial_consensus([_Read(None, 0.0), _Read("", 0.0)]) is None
    assert serial_consensus([]) is None


def test_reads_agree_needs_three_reads_and_the_share():
    from marktrace.inference.assemble import reads_agree

    three = [_Read("AB12", 0.8), _Read("AB12", 0.8), _Read("AB12", 0.8), _Read("ZZ99", 0.9)]
    assert reads_agree(three, 0.6)  # 2.4 of 3.3
    assert not reads_agree(three, 0.8)
    assert not reads_agree(three[:2], 0.5)  # two reads are too few, however strong
    assert not reads_agree([_Read(None, 0.0)] * 4, 0.0)


def test_serial_consensus_counts_separators_as_one_value_and_writes_it_as_most_reads_did():
    from marktrace.inference.assemble import serial_consensus

    reads = [_Read("FUN 5124", 0.9), _Read("FUN-5124", 0.6), _Read("FUN-5124", 0.6), _Read("FUM5124", 1.0),
             _Read("FUN5I24", 0.95)]
    vote = serial_consensus(reads)
    assert vote is not None
    # FUN5124 sums 2.1 against 1.0 and 0.95; "FUN-5124" is written with 1.2 of it, "FUN 5124" with 0.9
    assert (vote.attempt, vote.reads) == (1, 3)


def test_boxes_grown_past_the_photo_are_clipped_to_it() -> None:
    from marktrace.inference.assemble import clip_line_box, clip_record_boxes
    from marktrace.inference.schema import Line

    sizes = {"a.jpg": (196, 580)}
    line = Line(text="AB123", confidence=0.9, file="a.jpg",
                box=[(127.8, 21.0), (117.1, 585.7), (71.1, 584.9), (81.7, -0.8)])
    assert clip_line_box(line, sizes).box == [(127.8, 21.0), (117.1, 580.0), (71.1, 580.0), (81.7, 0.0)]
    def field(file: str, box: list[list[int]]) -> dict:
        return {"value": "x", "evidence": {"file": file, "box": box}}

    record = {
        "serial_number": field("a.jpg", [[-3, 5], [200, 5], [200, 9], [0, 9]]),
        "import_marks": [{"city": field("a.jpg", [[1, 1], [1, 600], [2, 2], [3, 3]])}],
        "calibre": field("other.jpg", [[-5, -5], [1, 1], [1, 1], [1, 1]]),
    }
    clip_record_boxes(record, sizes)
    assert record["serial_number"]["evidence"]["box"] == [(0.0, 5.0), (196.0, 5.0), (196.0, 9.0), (0.0, 9.0)]
    assert record["import_marks"][0]["city"]["evidence"]["box"][1] == (1.0, 580.0)
    assert record["calibre"]["evidence"]["box"][0] == [-5, -5]  # a file of unknown size is left as it is


def _decoded(text: str, confidences: list[float], steps: list[int]) -> DecodedText:
    assert len(text) == len(confidences) == len(steps)
    return DecodedText(text=text, confidence=float(np.exp(np.mean(np.log(confidences)))),
                       char_confidences=tuple(confidences), char_alternatives=tuple(() for _ in text),
                       char_steps=tuple(steps))


# 'CE 2568' and a star struck after it, read as a '7' (a development photo): spaces have steps too
STAR_READ = _decoded("CE 2568 7", [0.99, 0.99, 0.9, 0.99, 0.99, 0.99, 0.99, 0.9, 0.31],
                     [4, 12, 16, 22, 30, 38, 46, 52, 60])


def test_a_detached_unsure_last_character_is_found() -> None:
    found = detached_end(STAR_READ)
    assert found is not None and found["character"] == "7" and found["confidence"] == 0.31
    assert found["gap_ratio"] == 1.75  # 14 steps after the '8' against a median pitch of 8


def test_a_last_character_is_kept_when_sure_close_or_among_unsure_ones() -> None:
    sure = _decoded("CE 2568 7", [*STAR_READ.char_confidences[:-1], 0.9], list(STAR_READ.char_steps))
    close = _decoded("CE 2568 7", list(STAR_READ.char_confidences), [*STAR_READ.char_steps[:-1], 54])
    unsure_line = _decoded("CE 2568 7", [0.99, 0.99, 0.9, 0.99, 0.6, 0.99, 0.99, 0.9, 0.31],
                           list(STAR_READ.char_steps))
    short = _decoded("A12 7", [0.99, 0.99, 0.99, 0.9, 0.3], [4, 12, 20, 26, 40])
    assert [detached_end(d) for d in (sure, close, unsure_line, short)] == [None] * 4


def test_drop_detached_end_takes_the_mark_off_the_value_and_keeps_the_full_read() -> None:
    serial = {"value": "CE25687", "text_as_marked": "CE 2568 7", "confidence": 0.7,
              "alternatives": [{"value": "CE2568", "confidence": 0.2, "method": "cut"},
                               {"value": "CE25681", "confidence": 0.1}]}
    assert drop_detached_end(serial, STAR_READ)
    assert serial["value"] == "CE2568" and serial["text_as_marked"] == "CE 2568" and serial["confidence"] == 0.7
    assert serial["alternatives"] == [{"value": "CE25687", "confidence": 0.217, "method": "detached_end"},
                                      {"value": "CE25681", "confidence": 0.1}]  # the new value is not its own rival
    flag = serial["flags"][-1]
    assert flag["kind"] == "detached_end_dropped" and flag["read"] == "CE25687" and flag["character"] == "7"


def test_an_overstamp_flag_on_the_dropped_mark_goes_with_it() -> None:
    serial = {"value": "CE25687", "text_as_marked": "CE 2568 7", "confidence": 0.7, "alternatives": [],
              "flags": [{"kind": "overstamp_suspected", "position": 6, "character": "7"},
                        {"kind": "overstamp_suspected", "position": 2, "character": "2"}]}
    assert drop_detached_end(serial, STAR_READ)
    assert [(f["kind"], f.get("position")) for f in serial["flags"]] == [("overstamp_suspected", 2),
                                                                       ("detached_end_dropped", None)]


def test_drop_detached_end_leaves_a_value_that_does_not_end_with_the_mark() -> None:
    serial = {"value": "CE2568", "text_as_marked": "CE 2568", "confidence": 0.7, "alternatives": []}
    before = dict(serial)
    assert not drop_detached_end(serial, STAR_READ) and serial == before
    tiny = {"value": "C87", "confidence": 0.7, "alternatives": []}
    assert not drop_detached_end(tiny, _decoded("C8 xx 7", [0.99, 0.99, 0.9, 0.99, 0.99, 0.9, 0.3],
                                                [4, 12, 16, 22, 30, 36, 52]))


def _read_line(text: str, confidences: list[float], runner_ups: dict[int, list[tuple[str, float]]]) -> Line:
    alternatives = [CharAlternatives(position=i, candidates=[Alternative(value=text[i], confidence=confidences[i]),
                                                            *(Alternative(value=c, confidence=p) for c, p in cands)])
                    for i, cands in runner_ups.items()]
    return Line(text=text, confidence=0.8, box=[(0, 0), (10, 0), (10, 5), (0, 5)], file="a.jpg",
                char_confidences=confidences, char_alternatives=alternatives)


def test_unsure_characters_offer_the_runner_up_as_alternatives_likeliest_first() -> None:
    # 'S/N AB1834': the '8' (position 6 of the line, 3 of the value) read at 0.5 with a 'B' at 0.4 beside it; the
    # '4' at 0.85 with a 'A' at 0.1; the sure characters' runner-ups are not offered
    line = _read_line("S/N AB1834", [0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.5, 0.99, 0.85],
                      {5: [("8", 0.3)], 7: [("B", 0.4), ("3", 0.06)], 9: [("A", 0.1), ("-", 0.05)]})
    serial = {"value": "AB1834", "text_as_marked": "S/N AB1834", "confidence": 0.6, "alternatives": []}
    assert add_character_alternatives(serial, line, limit=2) == 2
    assert serial["alternatives"] == [{"value": "AB1B34", "confidence": 0.168, "method": "character"},
                                      {"value": "AB1334", "confidence": 0.0252, "method": "character"}]
    flag = serial["flags"][-1]
    assert flag["kind"] == "character_alternatives"
    assert flag["swaps"][0] == {"value": "AB1B34", "position": 3, "read": "8", "runner_up": "B"}
    assert all(a["confidence"] < serial["confidence"] for a in serial["alternatives"])


def test_character_alternatives_skip_listed_values_and_respect_the_limit() -> None:
    line = _read_line("AB1834", [0.99, 0.99, 0.99, 0.5, 0.99, 0.7], {3: [("B", 0.4)], 5: [("A", 0.2)]})
    listed = {"value": "AB1B34", "confidence": 0.3}
    serial = {"value": "AB1834", "confidence": 0.6, "alternatives": [dict(listed)]}
    assert add_character_alternatives(serial, line, limit=5) == 1  # 'AB1B34' is already there
    assert [a["value"] for a in serial["alternatives"]] == ["AB1B34", "AB183A"]
    none = {"value": "AB1834", "confidence": 0.6, "alternatives": []}
    assert add_character_alternatives(none, line, limit=0) == 0 and none == {"value": "AB1834", "confidence": 0.6,
                                                                           "alternatives": []}
    sure = _read_line("AB1834", [0.95] * 6, {3: [("B", 0.04)]})
    assert add_character_alternatives(none, sure) == 0 and "flags" not in none
