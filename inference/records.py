"""Identification records and ITI tracing requests: pydantic models, review, and the request gate.

The published JSON Schemas (``inference/schemas/*.v1.json``) are generated from these models
(:func:`json_schemas`; a test keeps the files in sync). A tracing request is built only from a record
whose serial number, manufacturer and country of manufacture an examiner has confirmed or corrected;
:func:`build_tracing_request` refuses otherwise unless forced, and a forced request carries a visible
``unconfirmed`` stamp listing the fields.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from datetime import date as Date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from marktrace.inference.parse import to_plain
from marktrace.inference.schema import Evidence, HistoryEntry, RecordField, ReviewStatus

RECORD_SCHEMA_VERSION = "identification-record.v1"
REQUEST_SCHEMA_VERSION = "tracing-request.v1"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
REQUIRED_FOR_TRACE: tuple[str, ...] = ("serial_number", "manufacturer", "country_of_manufacture")
"""Fields an examiner must confirm (or correct) before a tracing request is issued."""

IlliciteCriterion = Literal[
    "illicit_under_national_law",
    "un_security_council_embargo",
    "not_marked_per_iti",
    "manufactured_without_licence",
    "transferred_without_licence",
]
"""ITI para 6 (a)-(e): why the weapon is deemed illicit (the enum INTERPOL iARMS uses as well)."""

ILLICIT_CRITERIA: tuple[str, ...] = (
    "illicit_under_national_law",
    "un_security_council_embargo",
    "not_marked_per_iti",
    "manufactured_without_licence",
    "transferred_without_licence",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImportMark(_Model):
    """One import mark (ITI para 8(b)): importer, city, country of import and year, each a field."""

    importer: RecordField | None = None
    city: RecordField | None = None
    country: RecordField | None = None
    year: RecordField | None = None


class ImageRef(_Model):
    """An image of the item, cited by its SHA-256 (never re-encoded)."""

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class IdentificationRecord(_Model):
    """The identification record: every machine-filled field carries value, evidence and review state."""

    schema_version: Literal["identification-record.v1"] = "identification-record.v1"
    item: str | None = None
    images: list[ImageRef] = Field(default_factory=list)
    serial_number: RecordField | None = None
    manufacturer: RecordField | None = None
    country_of_manufacture: RecordField | None = None
    model: RecordField | None = None
    type: RecordField | None = None
    calibre: RecordField | None = None
    year_of_manufacture: RecordField | None = None
    import_marks: list[ImportMark] = Field(default_factory=list)
    proof_marks: list[RecordField] = Field(default_factory=list)
    other_markings: list[RecordField] = Field(default_factory=list)
    serial_obliterated: RecordField | None = None
    notes: str | None = None

    @classmethod
    def from_parsed(cls, parsed: Mapping[str, Any], item: str | None = None,
                    sha256: Mapping[str, str] | None = None) -> IdentificationRecord:
        """Build from a :func:`~marktrace.inference.parse.parse_lines` result (objects or JSON)."""
        data = {k: v for k, v in dict(parsed).items() if k in cls.model_fields}
        data.setdefault("item", item)
        if sha256 and not data.get("images"):
            data["images"] = [{"file": f, "sha256": h} for f, h in sha256.items()]
        return cls.model_validate(to_plain(data))


# ------------------------------------------------------------------------------------------ review
class ReviewError(ValueError):
    """A review action that cannot apply (unknown field, missing value)."""


def _path_parts(name: str) -> list[str]:
    """The parts of a field path: ``import_marks[0].importer`` -> ``["import_marks", "0", "importer"]``."""
    return name.replace("]", "").replace("[", ".").split(".")


def _is_position(part: str) -> bool:
    """Whether a path part is a list position: ASCII digits only (``'¹'.isdigit()`` is true, ``int('¹')`` fails)."""
    return part.isascii() and part.isdigit()


def _resolve(record: IdentificationRecord, name: str) -> tuple[Any, str | int, RecordField | None]:
    """Find the container and key of a field path like ``manufacturer`` or ``import_marks[0].importer``."""
    parts = _path_parts(name)
    container: Any = record
    for p in parts[:-1]:  # only the record's own fields and list positions: never other attributes
        if _is_position(p) and isinstance(container, list) and int(p) < len(container):
            container = container[int(p)]
        elif not _is_position(p) and isinstance(container, BaseModel) and p in type(container).model_fields:
            container = getattr(container, p)
        else:
            container = None
        if container is None:
            raise ReviewError(f"unknown field path {name!r}")
    last: str | int = int(parts[-1]) if _is_position(parts[-1]) else parts[-1]
    if isinstance(last, int):
        if not isinstance(container, list) or last >= len(container):
            raise ReviewError(f"unknown field path {name!r}")
        cur = container[last]
    else:
        if not isinstance(container, BaseModel) or last not in type(container).model_fields:
            raise ReviewError(f"unknown field {name!r}")
        cur = getattr(container, last)
    if cur is not None and not isinstance(cur, RecordField):
        raise ReviewError(f"{name!r} is not a reviewable field")
    return container, last, cur


CORRECTION_MAX_CHARS = 200
"""Longest text an examiner's correction may set (a serial, a maker's name, an importer's name and city)."""


def checked_correction(name: str, value: Any) -> Any:
    """An examiner's corrected ``value`` for field path ``name``, in the type the record holds there.

    Years are integers (a string of digits is taken), ``serial_obliterated`` is true or false, countries are ISO
    3166-1 alpha-2 codes (upper-cased), every other field is text of 1 to :data:`CORRECTION_MAX_CHARS` characters.

    Raises:
        ReviewError: no value, or one of another type or out of range, naming the field.
    """
    if value is None:
        raise ReviewError(f"correcting {name!r} needs a value")
    leaf = next((part for part in reversed(_path_parts(name)) if not _is_position(part)), name)
    if leaf in ("year_of_manufacture", "year"):
        year = int(value) if isinstance(value, str) and _is_position(value.strip()) else value
        this_year = datetime.now(UTC).year
        if isinstance(year, bool) or not isinstance(year, int) or not 1800 <= year <= this_year:
            raise ReviewError(f"{name!r} must be a year from 1800 to {this_year}, got {value!r}")
        return year
    if leaf == "serial_obliterated":
        if not isinstance(value, bool):
            raise ReviewError(f"{name!r} must be true or false, got {value!r}")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ReviewError(f"{name!r} must be non-empty text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > CORRECTION_MAX_CHARS:
        raise ReviewError(f"{name!r} is {len(text)} characters long; at most {CORRECTION_MAX_CHARS}")
    if leaf in ("country_of_manufacture", "country"):
        code = text.upper()
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise ReviewError(f"{name!r} must be an ISO 3166-1 alpha-2 code such as 'BE', got {value!r}")
        return code
    return text


def review_record_field(current: RecordField | None, name: str, action: ReviewStatus, actor: str,
                        value: Any = None, note: str | None = None) -> RecordField:
    """One field reviewed (see :func:`review_field`): the same field, changed in place, or a new one.

    ``corrected`` sets ``value`` at confidence 1.0 (a new field with evidence method ``examiner`` when the
    field was empty); ``confirmed``, ``rejected`` and ``suggested`` keep the value. The change is appended to
    the field's history with the actor and the time.

    Raises:
        ReviewError: no actor, a correction without a value, or nothing to confirm or reject.
    """
    if not actor:
        raise ReviewError("a review needs an actor")
    cur = current
    if action == "corrected":
        value = checked_correction(name, value)
        if cur is None:
            cur = RecordField(value=None, confidence=1.0, evidence=Evidence(method="examiner"))
        old = cur.value
        cur.value = value
        cur.confidence = 1.0
    else:
        if cur is None:
            raise ReviewError(f"{name!r} is empty: there is nothing to confirm or reject; correct it with a value")
        old = cur.value
    cur.status = action
    cur.history.append(HistoryEntry(at=datetime.now(UTC), actor=actor, action=action, old_value=old,
                                    new_value=cur.value, note=note))
    return cur


def review_field(record: IdentificationRecord, name: str, action: ReviewStatus, actor: str,
                 value: Any = None, note: str | None = None) -> RecordField:
    """Apply an examiner's review to one field and append it to the field's history.

    Args:
        record: the record (changed in place).
        name: field path, e.g. ``serial_number`` or ``import_marks[0].importer``.
        action: ``confirmed`` (keep the value), ``corrected`` (set ``value``), ``rejected`` or
            ``suggested`` (back to a suggestion).
        actor: who acts (examiner id); recorded with the time.
        value: the corrected value (required for ``corrected``; creates the field if it was empty).
        note: free text kept in the history.

    Returns:
        The reviewed field.

    Raises:
        ReviewError: unknown field, nothing to confirm, or a correction without a value.
    """
    container, key, cur = _resolve(record, name)
    cur = review_record_field(cur, name, action, actor, value, note)
    if isinstance(key, int):
        container[key] = cur
    else:
        setattr(container, key, cur)
    return cur


# ------------------------------------------------------------------------------------ tracing request
class RequestingAuthority(_Model):
    """Who asks for the trace (ITI Section VI national point of contact)."""

    name: str = Field(min_length=1)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    contact: str | None = None


class IllicitNature(_Model):
    """ITI para 17(a): why the weapon is illicit (para 6 criteria), with a description."""

    criteria: list[IlliciteCriterion] = Field(min_length=1)
    description: str | None = None


class TracingHumanFields(_Model):
    """What only a person may fill in a tracing request (ITI para 17(a) and (c))."""

    requesting_authority: RequestingAuthority
    case_reference: str = Field(min_length=1)
    illicit_nature: IllicitNature
    legal_justification: str = Field(min_length=1)
    intended_use: str = Field(min_length=1)
    date: Date | None = None


class WeaponImportMark(_Model):
    importer: str | None = None
    city: str | None = None
    country: str | None = None
    year: int | str | None = None


class WeaponDescription(_Model):
    """ITI para 17(b): markings, type, calibre and other relevant information (values only)."""

    serial_number: str | None = None
    manufacturer: str | None = None
    country_of_manufacture: str | None = None
    model: str | None = None
    type: str | None = None
    calibre: str | None = None
    year_of_manufacture: int | str | None = None
    import_marks: list[WeaponImportMark] = Field(default_factory=list)
    proof_marks: list[str] = Field(default_factory=list)
    other_markings: list[str] = Field(default_factory=list)
    serial_obliterated: bool | None = None
    field_status: dict[str, ReviewStatus] = Field(default_factory=dict)


class RequestedState(_Model):
    state: str = Field(pattern=r"^[A-Z]{2}$")
    basis: Literal["country_of_manufacture", "country_of_last_import"]


class TracingRequest(_Model):
    """An ITI tracing request (para 17) built from a confirmed identification record."""

    schema_version: Literal["tracing-request.v1"] = "tracing-request.v1"
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    date: Date
    requesting_authority: RequestingAuthority
    case_reference: str
    illicit_nature: IllicitNature
    legal_justification: str
    intended_use: str
    weapon: WeaponDescription
    requested_states: list[RequestedState] = Field(default_factory=list)
    images: list[ImageRef] = Field(default_factory=list)
    record_item: str | None = None
    unconfirmed: bool = False
    unconfirmed_fields: list[str] = Field(default_factory=list)
    stamp: str | None = None


class UnconfirmedFieldsError(ValueError):
    """A tracing request was refused because required fields are not confirmed."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        super().__init__(
            "tracing request refused: these fields are not confirmed or corrected by an examiner: "
            + ", ".join(self.fields) + " (review them, or force an export stamped 'unconfirmed')"
        )


_REVIEWED = ("confirmed", "corrected")


def _value(f: RecordField | None, include_suggested: bool) -> Any:
    if f is None or f.status == "rejected":
        return None
    if f.status in _REVIEWED or include_suggested:
        return f.value
    return None


def tracing_request_problem(exc: ValidationError, correct_with: str = "in the record") -> str:
    """Why a record's values do not fit a tracing request, in words an examiner can act on.

    ``correct_with`` says where the examiner corrects the field (``with PATCH`` in the service).
    """
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    if loc == "state":
        return (f"country {first.get('input')!r} is not an ISO 3166-1 alpha-2 code (e.g. DE); "
                f"correct country_of_manufacture (or the import mark's country) {correct_with}")
    return f"the record's values do not fit tracing-request.v1: {loc}: {first.get('msg', '')}"


def build_tracing_request(record: IdentificationRecord | Mapping[str, Any],
                          human_fields: TracingHumanFields | Mapping[str, Any],
                          force: bool = False) -> TracingRequest:
    """Build an ITI tracing request from a record and the human-only fields.

    Only confirmed or corrected values are copied into the weapon description. Unless ``force``, the
    request is refused while serial number, manufacturer or country of manufacture are not confirmed.
    With ``force``, suggested values are copied too and the request is stamped ``unconfirmed`` with the
    list of fields that an examiner has not confirmed.

    Raises:
        UnconfirmedFieldsError: required fields unconfirmed and ``force`` is false.
    """
    rec = (record if isinstance(record, IdentificationRecord)
           else IdentificationRecord.model_validate(to_plain(record)))
    human = (human_fields if isinstance(human_fields, TracingHumanFields)
             else TracingHumanFields.model_validate(to_plain(human_fields)))
    missing = [n for n in REQUIRED_FOR_TRACE
               if getattr(rec, n) is None or getattr(rec, n).status not in _REVIEWED
               or getattr(rec, n).value in (None, "")]
    if missing and not force:
        raise UnconfirmedFieldsError(missing)
    single = ("serial_number", "manufacturer", "country_of_manufacture", "model", "type", "calibre",
              "year_of_manufacture")
    unconfirmed = list(missing)
    values: dict[str, Any] = {}
    status: dict[str, ReviewStatus] = {}
    for n in single:
        f = getattr(rec, n)
        v = _value(f, include_suggested=force)
        values[n] = None if v is None else (v if n == "year_of_manufacture" else str(v))
        if f is not None:
            status[n] = f.status
            if v is not None and f.status not in _REVIEWED and n not in unconfirmed:
                unconfirmed.append(n)
    imports = []
    keys = ("importer", "city", "country", "year")
    for mark in rec.import_marks:
        parts = {k: _value(getattr(mark, k), include_suggested=force) for k in keys}
        if any(v is not None for v in parts.values()):
            imports.append(WeaponImportMark(**{k: (v if k == "year" or v is None else str(v))
                                               for k, v in parts.items()}))
            pending = any(getattr(mark, k) is not None and getattr(mark, k).status not in _REVIEWED for k in keys)
            if force and pending and "import_marks" not in unconfirmed:
                unconfirmed.append("import_marks")
    for name in ("proof_marks", "other_markings"):
        marks = getattr(rec, name)
        if force and any(f.status not in _REVIEWED and f.status != "rejected" and f.value is not None
                         for f in marks) and name not in unconfirmed:
            unconfirmed.append(name)
    obl = _value(rec.serial_obliterated, include_suggested=False)
    weapon = WeaponDescription(
        **values,
        import_marks=imports,
        proof_marks=[str(v) for f in rec.proof_marks if (v := _value(f, force)) is not None],
        other_markings=[str(v) for f in rec.other_markings if (v := _value(f, force)) is not None],
        serial_obliterated=obl if isinstance(obl, bool) else None,
        field_status=status,
    )
    states: list[RequestedState] = []
    if values["country_of_manufacture"]:
        states.append(RequestedState(state=values["country_of_manufacture"], basis="country_of_manufacture"))
    for wim in reversed(imports):
        if wim.country and wim.country != values["country_of_manufacture"]:
            states.append(RequestedState(state=wim.country, basis="country_of_last_import"))
            break
    return TracingRequest(
        date=human.date or datetime.now(UTC).date(),
        requesting_authority=human.requesting_authority,
        case_reference=human.case_reference,
        illicit_nature=human.illicit_nature,
        legal_justification=human.legal_justification,
        intended_use=human.intended_use,
        weapon=weapon,
        requested_states=states,
        images=list(rec.images),
        record_item=rec.item,
        unconfirmed=bool(unconfirmed) and force,
        unconfirmed_fields=unconfirmed if force else [],
        stamp=("UNCONFIRMED: not reviewed by an examiner: " + ", ".join(unconfirmed))
        if force and unconfirmed else None,
    )


# ------------------------------------------------------------------------------------------ schemas
def json_schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas, generated from the models: file name → schema."""
    out: dict[str, dict[str, Any]] = {}
    for name, model, title in (
        ("identification-record.v1.json", IdentificationRecord, "marktrace identification record v1"),
        ("tracing-request.v1.json", TracingRequest, "marktrace ITI tracing request v1"),
    ):
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://marktrace.invalid/schemas/{name}"
        schema["title"] = title
        out[name] = schema
    return out


def load_schema(name: str) -> dict[str, Any]:
    """Read a published schema file (``identification-record.v1.json`` or ``tracing-request.v1.json``)."""
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return data


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """(Re)write the published schema files from the models; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in json_schemas().items():
        p = directory / name
        p.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(p)
    return paths


__all__ = [
    "ILLICIT_CRITERIA",
    "REQUIRED_FOR_TRACE",
    "IdentificationRecord",
    "IllicitNature",
    "ImageRef",
    "ImportMark",
    "RequestingAuthority",
    "ReviewError",
    "TracingHumanFields",
    "TracingRequest",
    "UnconfirmedFieldsError",
    "WeaponDescription",
    "build_tracing_request",
    "json_schemas",
    "load_schema",
    "review_field",
    "write_schemas",
]
