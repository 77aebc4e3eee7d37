"""Identification records, review history, tracing-request gate, and the published JSON Schemas."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from marktrace.inference.parse import parse_lines, record_to_json
from marktrace.inference.records import (
    SCHEMA_DIR,
    IdentificationRecord,
    ReviewError,
    UnconfirmedFieldsError,
    build_tracing_request,
    json_schemas,
    load_schema,
    review_field,
)
from marktrace.inference.registry import load_registry
from marktrace.inference.schema import ItemResult, Line

BOX = [(0.0, 0.0), (50.0, 0.0), (50.0, 10.0), (0.0, 10.0)]
SHA = "cd" * 32
HUMAN: dict[str, Any] = {
    "requesting_authority": {"name": "National Focal Point", "country": "FR"},
    "case_reference": "CASE-2024-17",
    "illicit_nature": {"criteria": ["illicit_under_national_law", "not_marked_per_iti"]},
    "legal_justification": "Code pénal art. L.317-8",
    "intended_use": "criminal investigation",
}


def _record(text: str = "GLOCK 17 | MADE IN AUSTRIA | 9x19 | ABC123 | GLOCK INC SMYRNA GA") -> IdentificationRecord:
    lines = [Line(text=t.strip(), confidence=0.9, box=BOX, file="p.jpg") for t in text.split("|")]
    parsed = parse_lines(lines, load_registry(), {"p.jpg": SHA})
    return IdentificationRecord.from_parsed(parsed, item="p.jpg", sha256={"p.jpg": SHA})


def test_published_schema_files_match_the_models() -> None:
    for name, schema in json_schemas().items():
        on_disk = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
        assert on_disk == json.loads(json.dumps(schema)), f"{name} is stale: run write_schemas()"
        jsonschema.Draft202012Validator.check_schema(on_disk)


def test_parsed_records_validate_against_the_schema() -> None:
    schema = load_schema("identification-record.v1.json")
    for text in ("GLOCK 17 | AUSTRIA | ABC123", "CAI ST ALB VT | MADE IN CHINA | 7.62x39 | 12345678",
                 "BE FNHE 19 07 00123 56", "ЛК 4521 1969", "P. BERETTA GARDONE V.T. | PSF CN", ""):
        lines = [Line(text=t, confidence=0.8, box=BOX, file="p.jpg") for t in text.split("|") if t]
        rec = record_to_json(parse_lines(lines, load_registry(), {"p.jpg": SHA}))
        jsonschema.validate(rec, schema)
        # the record also travels inside the batch line
        item = ItemResult(item="p.jpg", files=["p.jpg"], sha256={"p.jpg": SHA}, status="ok",
                          record=parse_lines(lines, load_registry()), lines=lines)
        jsonschema.validate(item.to_json_dict()["record"], schema)


def test_schema_rejects_a_bad_record() -> None:
    schema = load_schema("identification-record.v1.json")
    bad = _record().model_dump(mode="json")
    bad["serial_number"]["status"] = "approved"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad2 = _record().model_dump(mode="json")
    bad2["colour"] = "black"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad2, schema)


def test_review_appends_history() -> None:
    rec = _record()
    f = review_field(rec, "serial_number", "corrected", "examiner-7", value="ABC128", note="8 under magnifier")
    assert f.value == "ABC128" and f.status == "corrected"
    assert f.history[-1].actor == "examiner-7" and f.history[-1].old_value == "ABC123"
    review_field(rec, "serial_number", "confirmed", "examiner-9")
    assert [h.action for h in rec.serial_number.history] == ["corrected", "confirmed"]  # type: ignore[union-attr]
    review_field(rec, "import_marks[0].importer", "rejected", "examiner-7")
    assert rec.import_marks[0].importer.status == "rejected"  # type: ignore[union-attr]
    with pytest.raises(ReviewError):
        review_field(rec, "colour", "confirmed", "x")
    with pytest.raises(ReviewError):
        review_field(rec, "calibre", "corrected", "x")  # no value
    with pytest.raises(ReviewError):
        review_field(rec, "year_of_manufacture", "confirmed", "x")  # empty field
    review_field(rec, "year_of_manufacture", "corrected", "x", value=2011)
    assert rec.year_of_manufacture is not None and rec.year_of_manufacture.evidence.method == "examiner"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("serial_number", {"x": 1}, "must be non-empty text, got dict"),
        ("manufacturer", ["Glock"], "must be non-empty text, got list"),
        ("serial_number", "   ", "must be non-empty text"),
        ("serial_number", "A" * 1_000_000, "1000000 characters long; at most 200"),
        ("country_of_manufacture", 7, "must be non-empty text, got int"),
        ("country_of_manufacture", "Germany", "ISO 3166-1 alpha-2 code such as 'BE', got 'Germany'"),
        ("import_marks[0].country", "U.S.", "ISO 3166-1 alpha-2"),
        ("year_of_manufacture", "abc", "must be a year from 1800"),
        ("year_of_manufacture", True, "must be a year from 1800"),
        ("year_of_manufacture", "¹⁹⁹⁸", "must be a year from 1800"),  # digits to str.isdigit, not to int()
        ("year_of_manufacture", 3011, "must be a year from 1800"),
        ("serial_obliterated", "yes", "must be true or false, got 'yes'"),
    ],
)
def test_a_correction_of_the_wrong_type_or_size_is_refused_and_changes_nothing(
    path: str, value: object, message: str
) -> None:
    rec = _record()
    before = rec.model_dump(mode="json")
    with pytest.raises(ReviewError, match=re.escape(message)):
        review_field(rec, path, "corrected", "examiner-7", value=value)
    assert rec.model_dump(mode="json") == before


def test_corrections_are_stored_in_the_fields_own_type() -> None:
    rec = _record()
    assert review_field(rec, "country_of_manufacture", "corrected", "e", value=" de ").value == "DE"
    assert review_field(rec, "year_of_manufacture", "corrected", "e", value="1998").value == 1998
    assert review_field(rec, "serial_obliterated", "corrected", "e", value=True).value is True
    assert review_field(rec, "serial_number", "corrected", "e", value=" ABC 128 ").value == "ABC 128"


@pytest.mark.parametrize(
    "path",
    ["0.", "0.serial_number", "serial_number.0.x", "import_marks[7].importer", "import_marks.x.importer",
     "__class__.serial_number", "serial_number.__dict__", ".serial_number", "import_marks[0].__class__",
     "¹", "import_marks[¹].importer"],  # superscript digits pass str.isdigit but not int() (found by the API fuzz)
)
def test_review_refuses_paths_outside_the_records_fields(path: str) -> None:
    rec = _record()
    before = rec.model_dump(mode="json")
    with pytest.raises(ReviewError, match="unknown field"):
        review_field(rec, path, "rejected", "examiner-7")
    assert rec.model_dump(mode="json") == before

def test_tracing_request_refused_until_confirmed() -> None:
    rec = _record()
    with pytest.raises(UnconfirmedFieldsError) as err:
        build_tracing_request(rec, HUMAN)
    assert err.value.fields == ["serial_number", "manufacturer", "country_of_manufacture"]
    assert "serial_number" in str(err.value)
    review_field(rec, "serial_number", "confirmed", "ex")
    review_field(rec, "manufacturer", "confirmed", "ex")
    with pytest.raises(UnconfirmedFieldsError) as err2:
        build_tracing_request(rec, HUMAN)
    assert err2.value.fields == ["country_of_manufacture"]
    review_field(rec, "country_of_manufacture", "corrected", "ex", value="AT")
    req = build_tracing_request(rec, HUMAN)
    assert not req.unconfirmed and req.stamp is None
    assert (req.weapon.serial_number, req.weapon.manufacturer, req.weapon.country_of_manufacture) == (
        "ABC123", "Glock", "AT")
    assert req.weapon.calibre is None  # suggested, not confirmed: not copied
    assert [s.state for s in req.requested_states] == ["AT"]
    assert req.images[0].sha256 == SHA
    jsonschema.validate(req.model_dump(mode="json"), load_schema("tracing-request.v1.json"))


def test_forced_request_is_stamped() -> None:
    req = build_tracing_request(_record(), HUMAN, force=True)
    assert req.unconfirmed is True
    assert {"serial_number", "manufacturer", "country_of_manufacture"} <= set(req.unconfirmed_fields)
    assert req.stamp is not None and "UNCONFIRMED" in req.stamp
    assert req.weapon.calibre == "9x19mm"
    assert [s.state for s in req.requested_states] == ["AT", "US"]
    jsonschema.validate(req.model_dump(mode="json"), load_schema("tracing-request.v1.json"))


def test_forced_request_stamps_unreviewed_proof_and_other_marks() -> None:
    rec = _record("P. BERETTA GARDONE V.T. | PSF CN | ABC123 | MADE IN ITALY")
    for n in ("serial_number", "manufacturer", "country_of_manufacture"):
        review_field(rec, n, "confirmed", "ex")
    assert rec.proof_marks and rec.other_markings
    req = build_tracing_request(rec, HUMAN, force=True)
    assert req.weapon.proof_marks and req.weapon.other_markings  # copied because forced ...
    assert {"proof_marks", "other_markings"} <= set(req.unconfirmed_fields)  # ... and stamped as not reviewed
    assert req.stamp is not None and "proof_marks" in req.stamp
    assert len(rec.proof_marks) == len(rec.other_markings) == 1
    review_field(rec, "proof_marks[0]", "confirmed", "ex")
    review_field(rec, "other_markings[0]", "rejected", "ex")
    req = build_tracing_request(rec, HUMAN, force=True)
    assert not {"proof_marks", "other_markings"} & set(req.unconfirmed_fields)


def test_rejected_required_field_still_refuses() -> None:
    rec = _record()
    for n in ("serial_number", "manufacturer"):
        review_field(rec, n, "confirmed", "ex")
    review_field(rec, "country_of_manufacture", "rejected", "ex")
    with pytest.raises(UnconfirmedFieldsError):
        build_tracing_request(rec, HUMAN)


def test_human_fields_are_validated() -> None:
    rec = _record()
    bad = {**HUMAN, "illicit_nature": {"criteria": ["looks_dodgy"]}}
    with pytest.raises(ValueError):
        build_tracing_request(rec, bad, force=True)
    with pytest.raises(ValueError):
        build_tracing_request(rec, {**HUMAN, "intended_use": ""}, force=True)
