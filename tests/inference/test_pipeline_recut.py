"""Reading a single photo's serial line again from crops with other margins (``ReaderSettings.serial_crop_pads``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import numpy as np
import pytest

from marktrace.inference.records import load_schema


@pytest.fixture(scope="module")
def photo(serial_photo: np.ndarray) -> np.ndarray:
    return serial_photo


@pytest.fixture(scope="module")
def plain(photo: np.ndarray, as_loaded: Callable[..., Any]) -> dict[str, Any]:
    """The photo's serial field as read from one cut (no recut, no agreement check)."""
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    off = MarkingReader.from_settings(ReaderSettings(threads=1, serial_crop_pads=()))
    serial = off.read_loaded("p", [as_loaded(photo)], None).record["serial_number"]
    assert isinstance(serial, dict)
    return serial


def test_a_more_confident_recut_replaces_the_serial_line_and_says_so(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:

    pads = ((0.1, 0.1), (0.2, 0.2))
    reader, image, direct = serial_reads.start(photo, serial_crop_pads=pads)
    index = serial_reads.index(direct)
    cuts: list[np.ndarray] = []

    def recognize(crops: list[np.ndarray]) -> list[Any]:
        cuts.extend(crops)
        return [serial_reads.decoded("XK204466", 0.5), serial_reads.decoded("XK204468", 0.999)]

    monkeypatch.setattr(reader, "recognize", recognize)
    recut = reader._recut_attempt(image, direct, {})
    assert recut is not None
    assert len(cuts) == 2 and all(c.shape[0] == reader.height for c in cuts)
    assert cuts[0].shape[1] < cuts[1].shape[1] * 1.2  # (0.1, 0.1) is narrower along the line than (0.2, 0.2)
    serial = recut.record["serial_number"]
    assert serial["value"] == "XK204468"
    flag = next(f for f in serial["flags"] if f["kind"] == "read_recut")
    assert (flag["pad_along"], flag["pad_across"]) == (0.2, 0.2)
    assert flag["first_read"] == direct.lines[index].text
    assert recut.lines[index].box == direct.lines[index].box  # the detected box, not the cut
    assert recut.lines[index].text == "XK204468" and recut.decoded[index].text == "XK204468"
    others = [ln.text for i, ln in enumerate(recut.lines) if i != index]
    assert others == [ln.text for i, ln in enumerate(direct.lines) if i != index]
    assert recut.lines[index].confidence <= 0.999 + 1e-9


def test_a_recut_read_no_more_confident_is_not_taken(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marktrace.inference.pipeline import _score

    reader, image, direct = serial_reads.start(photo)
    first = direct.decoded[serial_reads.index(direct)]
    weaker = max(0.0, first.confidence - 0.05)
    monkeypatch.setattr(reader, "recognize", lambda crops: [serial_reads.decoded("ZZ999999", weaker) for _ in crops])
    assert _score(serial_reads.decoded("ZZ999999", weaker)) <= _score(first)
    assert reader._recut_attempt(image, direct, {}) is None
    monkeypatch.setattr(reader, "recognize", lambda crops: [serial_reads.decoded(first.text, 1.0) for _ in crops])
    assert reader._recut_attempt(image, direct, {}) is None  # the same text, however sure, adds nothing


def test_the_recut_crop_at_the_first_margins_is_the_first_crop(
    serial_reads: Any, photo: np.ndarray
) -> None:
    """Cutting from the lines' region (gray only there) gives the pixels a cut from the whole photo gives."""
    from marktrace.inference.geometry import pad_quad, rectify_line, to_gray
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y

    reader, image, direct = serial_reads.start(photo, serial_crop_pads=((CROP_PAD_X, CROP_PAD_Y),))
    index = serial_reads.index(direct)
    seen: list[np.ndarray] = []
    recognize = reader.recognize

    def spy(crops: list[np.ndarray]) -> Any:
        seen.extend(crops)
        return recognize(crops)

    reader.recognize = spy  # type: ignore[method-assign]
    reader._recut_attempt(image, direct, {})
    whole = rectify_line(to_gray(photo), pad_quad(np.asarray(direct.lines[index].box, np.float32), CROP_PAD_X,
                                                   CROP_PAD_Y), reader.height, reader.settings.max_line_width)
    assert len(seen) == 1 and seen[0].shape == whole.shape
    assert np.abs(seen[0].astype(int) - whole.astype(int)).max() <= 1


def test_a_chosen_recut_makes_the_record_and_keeps_the_first_read_as_an_alternative(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:

    pads = ((0.1, 0.1), (0.2, 0.2), (0.3, 0.1), (0.4, 0.15))
    reader, image, direct = serial_reads.start(photo, serial_crop_pads=pads)
    assert len(direct.lines) != len(pads)  # so the recut's batch is the one of len(pads) crops
    first = direct.record["serial_number"]["value"]
    recognize = reader.recognize

    def fake_recut(crops: list[np.ndarray]) -> Any:
        if len(crops) == len(pads):
            decoded = serial_reads.decoded
            return [decoded("XK204466", 0.3), decoded("XK204468", 0.999), decoded("XK204460", 0.2),
                    decoded("XK204461", 0.1)]
        return recognize(crops)

    monkeypatch.setattr(reader, "recognize", fake_recut)
    result = reader.read_loaded("p", [image], None)
    serial = result.record["serial_number"]
    assert serial["value"] == "XK204468"
    assert any(f["kind"] == "read_recut" for f in serial["flags"])
    assert first in [a["value"] for a in serial["alternatives"]]
    assert "recut_ms" in result.timings_ms


def test_recuts_are_off_with_no_margins(
    photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, as_loaded: Callable[..., Any]
) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, serial_crop_pads=()))
    monkeypatch.setattr(reader, "_recut_attempt", lambda *a: pytest.fail("recut with no margins"))
    result = reader.read_loaded("p", [as_loaded(photo)], None)
    assert "recut_ms" not in result.timings_ms
    assert not any(f.get("kind") == "read_recut" for f in result.record["serial_number"].get("flags") or [])


def _fake_cuts(serial_reads: Any, texts: list[tuple[str, float]]) -> Any:
    from marktrace.inference.pipeline import _CutRead

    def cut_reads(image: Any, box: Any, margins: Any) -> list[Any]:
        assert len(margins) == len(texts)
        return [_CutRead(m, serial_reads.decoded(t, c), None) for m, (t, c) in zip(margins, texts, strict=True)]

    return cut_reads


def test_cuts_that_agree_leave_the_serial_confidence_as_read(
    serial_reads: Any, photo: np.ndarray, plain: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    as_loaded: Callable[..., Any],
) -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    line_text = plain["evidence"]["line_text"]
    reader = MarkingReader.from_settings(ReaderSettings(threads=1))
    # spaces aside, and a trailing full stop the serial parser drops: the same serial
    cuts = _fake_cuts(serial_reads, [(line_text.replace(" ", ""), 0.01), (line_text + ".", 0.01)])
    monkeypatch.setattr(reader, "_cut_reads", cuts)
    serial = reader.read_loaded("p", [as_loaded(photo)], None).record["serial_number"]
    assert serial["value"] == plain["value"] and serial["confidence"] == plain["confidence"]
    assert not any(f["kind"] in ("cut_disagreement", "read_recut") for f in serial.get("flags") or [])


def test_cuts_that_disagree_scale_the_confidence_and_list_every_read(
    serial_reads: Any, photo: np.ndarray, plain: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    as_loaded: Callable[..., Any],
) -> None:
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y, MarkingReader, ReaderSettings

    line_text = plain["evidence"]["line_text"]
    pads = ((0.1, 0.1), (0.2, 0.2))
    reader = MarkingReader.from_settings(ReaderSettings(threads=1, serial_crop_pads=pads))
    # one cut agrees, one reads other text less confidently: the first read stays, 2 of 3 agree
    monkeypatch.setattr(reader, "_cut_reads", _fake_cuts(serial_reads, [(line_text, 0.01), ("QQ1234", 0.01)]))
    serial = reader.read_loaded("p", [as_loaded(photo)], None).record["serial_number"]
    assert serial["value"] == plain["value"]
    assert serial["confidence"] == pytest.approx(plain["confidence"] * (2 / 3) ** 2, abs=2e-4)
    flag = next(f for f in serial["flags"] if f["kind"] == "cut_disagreement")
    assert (flag["agree"], flag["of"]) == (2, 3)
    assert [(r["pad_along"], r["pad_across"]) for r in flag["reads"]] == [(CROP_PAD_X, CROP_PAD_Y), *pads]
    assert [r["text"] for r in flag["reads"]] == [line_text, line_text, "QQ1234"]
    assert [r["serial"] for r in flag["reads"]] == [plain["value"], plain["value"], "QQ1234"]
    cut = [a for a in serial["alternatives"] if a["method"] == "cut"]
    assert [a["value"] for a in cut] == ["QQ1234"]
    assert cut[0]["confidence"] == pytest.approx(min(plain["confidence"] / 9, serial["confidence"]), abs=2e-4)
    assert all(a["confidence"] <= serial["confidence"] for a in serial["alternatives"] if a["method"] == "cut")
    result = reader.read_loaded("p", [as_loaded(photo)], None)
    jsonschema.validate(result.to_json_dict()["record"], load_schema("identification-record.v1.json"))


def test_a_serial_line_from_another_attempt_is_cut_again_and_its_own_read_counts(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, image, direct = serial_reads.start(photo)  # not in the cut cache: as if read at another detector size
    line_text = direct.record["serial_number"]["evidence"]["line_text"]
    before = float(direct.record["serial_number"]["confidence"])
    monkeypatch.setattr(reader, "_cut_reads", _fake_cuts(serial_reads, [("AB1", 0.9), (line_text, 0.9), ("AB2", 0.9)]))
    record = {k: (dict(v) if isinstance(v, dict) else v) for k, v in direct.record.items()}
    # another attempt's serial, read a little less confidently than the value it lost to
    earlier = {"value": "ZZ99", "confidence": round(before * 0.9, 4), "method": "direct"}
    record["serial_number"]["alternatives"] = [earlier]
    reader._cut_agreement(record, direct, [image], {})
    serial = record["serial_number"]
    flag = next(f for f in serial["flags"] if f["kind"] == "cut_disagreement")
    serial_value = direct.record["serial_number"]["value"]
    assert (flag["agree"], flag["of"]) == (2, 4)
    assert flag["reads"][0] == {"text": line_text, "serial": serial_value, "own_read": True}
    assert serial["confidence"] == pytest.approx(before * 0.25, abs=2e-4)
    # the disagreement discounts the alternatives read before the cuts too: none is listed above the value
    scaled = next(a for a in serial["alternatives"] if a["value"] == "ZZ99")
    assert scaled["confidence"] == pytest.approx(earlier["confidence"] * 0.25, abs=2e-4)
    assert scaled["method"] == "direct" and earlier["confidence"] == round(before * 0.9, 4)  # the input not changed
    assert all(a["confidence"] <= serial["confidence"] for a in serial["alternatives"])
    assert [a["value"] for a in serial["alternatives"] if a["method"] == "cut"] == ["AB1", "AB2"]


def test_a_serial_from_an_enhancement_view_is_not_checked(
    serial_reads: Any, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    reader, image, direct = serial_reads.start(photo)
    view = dataclasses.replace(direct, view="chain:flatten_clahe", method="chain:flatten_clahe")
    monkeypatch.setattr(reader, "_cut_reads", lambda *a: pytest.fail("a view's line cut from the photo"))
    record = {k: (dict(v) if isinstance(v, dict) else v) for k, v in view.record.items()}
    reader._cut_agreement(record, view, [image], {})
    assert record["serial_number"] == view.record["serial_number"]
