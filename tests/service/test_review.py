"""Examiner review in the service: one set of rules, whether or not the stored record fits the record model."""

from __future__ import annotations

from typing import Any

import pytest

from marktrace.service.review import FieldChange, ReviewError, apply_changes


def _field(value: Any, confidence: float = 0.7) -> dict[str, Any]:
    return {"value": value, "confidence": confidence, "evidence": {"method": "direct"}, "status": "suggested"}


def test_a_plain_record_is_reviewed_by_the_same_rules_as_an_identification_record() -> None:
    plain = {"serial_number": _field("AB12"), "model": None, "extra_key_not_in_the_model": 1}
    changed = apply_changes(plain, [FieldChange(field="serial_number", action="correct", value="AB13")], "ex1")
    serial = changed["serial_number"]
    assert (serial["value"], serial["status"], serial["confidence"]) == ("AB13", "corrected", 1.0)
    assert serial["history"][-1]["old_value"] == "AB12" and serial["history"][-1]["actor"] == "ex1"
    assert plain["serial_number"]["value"] == "AB12"  # the input is not modified
    # an empty field can be filled by a correction, with the examiner as its evidence
    filled = apply_changes(plain, [FieldChange(field="model", action="correct", value="M70")], "ex1")["model"]
    assert (filled["value"], filled["confidence"], filled["evidence"]["method"]) == ("M70", 1.0, "examiner")
    with pytest.raises(ReviewError, match="empty"):
        apply_changes(plain, [FieldChange(field="model", action="confirm")], "ex1")
    with pytest.raises(ReviewError, match="no such field"):
        apply_changes(plain, [FieldChange(field="nope", action="correct", value="x")], "ex1")
    with pytest.raises(ReviewError, match="needs a value"):
        apply_changes(plain, [FieldChange(field="serial_number", action="correct")], "ex1")
    with pytest.raises(ReviewError, match="not a reviewable field"):
        apply_changes(plain, [FieldChange(field="extra_key_not_in_the_model", action="confirm")], "ex1")


def test_an_identification_record_and_a_plain_one_give_the_same_reviewed_field() -> None:
    from marktrace.inference.records import IdentificationRecord

    record = IdentificationRecord.model_validate({"serial_number": _field("AB12")}).model_dump(mode="json")
    plain = {"serial_number": _field("AB12"), "not_a_record_key": True}
    with pytest.raises(ValueError):  # so the plain record takes the field-by-field path
        IdentificationRecord.model_validate(plain)
    change = [FieldChange(field="serial_number", action="correct", value="AB13", note="re-read")]
    a = apply_changes(record, change, "ex1")["serial_number"]
    b = apply_changes(plain, change, "ex1")["serial_number"]
    for field in (a, b):
        field["history"][-1].pop("at")
    assert a == b
