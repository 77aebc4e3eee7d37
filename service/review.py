"""Examiner review of record fields: confirm, correct or reject, with who and when in the field's history.

One implementation for CLI and service: ``marktrace.inference.records.review_field`` when the record fits
``IdentificationRecord``, else ``review_record_field`` on each plain field dict (the same rules).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from marktrace.inference.records import IdentificationRecord, review_field, review_record_field
from marktrace.inference.records import ReviewError as RecordsReviewError
from marktrace.inference.schema import RecordField

ReviewAction = Literal["confirm", "correct", "reject"]
_STATUS = {"confirm": "confirmed", "correct": "corrected", "reject": "rejected"}


class FieldChange(BaseModel):
    """One review action on one record field."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(min_length=1, max_length=100)
    action: ReviewAction
    value: Any = None
    """The corrected value (required for ``correct``)."""
    note: str | None = Field(default=None, max_length=2000)


class ReviewRequest(BaseModel):
    """A PATCH body: the changes, and optionally the version the examiner saw (409 if stale)."""

    model_config = ConfigDict(extra="forbid")

    changes: list[FieldChange] = Field(min_length=1, max_length=100)
    version: int | None = None


class ReviewError(ValueError):
    """A change that cannot be applied (unknown field, missing value)."""


def _review_plain_field(field: Any, change: FieldChange, actor: str) -> dict[str, Any]:
    """One change on a field of a record that is not an :class:`IdentificationRecord` (same rules)."""
    current: RecordField | None = None
    if field is not None:
        try:
            current = RecordField.model_validate(field)
        except Exception as exc:  # noqa: BLE001 - pydantic ValidationError; report as a review error
            raise ReviewError(f"{change.field}: not a reviewable field ({exc.__class__.__name__})") from None
    try:
        reviewed = review_record_field(current, change.field, _STATUS[change.action], actor,  # type: ignore[arg-type]
                                       change.value, change.note)
    except RecordsReviewError as exc:
        raise ReviewError(f"{change.field}: {exc}") from None
    dumped: dict[str, Any] = reviewed.model_dump(mode="json")
    return dumped


def _review_identification_record(
    record: dict[str, Any], changes: list[FieldChange], actor: str
) -> dict[str, Any] | None:
    """Apply the changes with :func:`review_field` when the record fits :class:`IdentificationRecord`, else None."""
    try:
        parsed = IdentificationRecord.model_validate(record)
    except Exception:  # noqa: BLE001 - not an identification record: reviewed field by field
        return None
    for change in changes:
        try:
            review_field(parsed, change.field, _STATUS[change.action], actor,  # type: ignore[arg-type]
                         change.value, change.note)
        except RecordsReviewError as exc:
            raise ReviewError(f"{change.field}: {exc}") from None
    dumped: dict[str, Any] = parsed.model_dump(mode="json")
    return dumped


def apply_changes(record: dict[str, Any], changes: list[FieldChange], actor: str) -> dict[str, Any]:
    """Return a new record with the changes applied (the input is not modified).

    Raises:
        ReviewError: naming the field and the problem.
    """
    shared = _review_identification_record(copy.deepcopy(record), changes, actor)
    if shared is not None:
        return shared
    out = copy.deepcopy(record)
    for change in changes:
        field = out.get(change.field)
        if field is not None and not isinstance(field, dict):
            raise ReviewError(f"{change.field}: not a reviewable field")
        if change.field not in out:
            raise ReviewError(f"{change.field}: no such field in this record")
        out[change.field] = _review_plain_field(field, change, actor)
    return out
