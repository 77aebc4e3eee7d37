"""Examiner review of record fields: confirm, correct or reject, with who and when in the field's history.

When the record fits ``marktrace.inference.records.IdentificationRecord``, its ``review_field`` is used
(one implementation for CLI and service); otherwise the local one below applies to plain field dicts.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from marktrace.inference.schema import HistoryEntry, RecordField

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


def _local_review(field: dict[str, Any], change: FieldChange, actor: str) -> dict[str, Any]:
    try:
        current = RecordField.model_validate(field)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError; report as a review error
        raise ReviewError(f"{change.field}: not a reviewable field ({exc.__class__.__name__})") from None
    if change.action == "correct":
        if change.value is None:
            raise ReviewError(f"{change.field}: 'correct' needs a value")
        new_value = change.value
    else:
        new_value = current.value
    entry = HistoryEntry(
        actor=actor,
        action=_STATUS[change.action],  # type: ignore[arg-type]
        old_value=current.value,
        new_value=new_value,
        note=change.note,
    )
    updated = current.model_copy(
        update={"value": new_value, "status": _STATUS[change.action], "history": [*current.history, entry]}
    )
    return updated.model_dump(mode="json")


def _with_records_module(
    record: dict[str, Any], changes: list[FieldChange], actor: str
) -> dict[str, Any] | None:
    """Apply the changes with ``marktrace.inference.records.review_field`` when the record fits its model."""
    try:
        records_mod = importlib.import_module("marktrace.inference.records")
        model = records_mod.IdentificationRecord
        review_field = records_mod.review_field
        records_error = records_mod.ReviewError
    except (ImportError, AttributeError):
        return None
    try:
        parsed = model.model_validate(record)
    except Exception:  # noqa: BLE001 - not an identification record: use the local implementation
        return None
    for change in changes:
        try:
            review_field(parsed, change.field, _STATUS[change.action], actor, change.value, change.note)
        except records_error as exc:
            raise ReviewError(f"{change.field}: {exc}") from None
    dumped: dict[str, Any] = parsed.model_dump(mode="json")
    return dumped


def apply_changes(record: dict[str, Any], changes: list[FieldChange], actor: str) -> dict[str, Any]:
    """Return a new record with the changes applied (the input is not modified).

    Raises:
        ReviewError: naming the field and the problem.
    """
    shared = _with_records_module(copy.deepcopy(record), changes, actor)
    if shared is not None:
        return shared
    out = copy.deepcopy(record)
    for change in changes:
        field = out.get(change.field)
        if not isinstance(field, dict):
            raise ReviewError(f"{change.field}: no such field in this record")
        out[change.field] = _local_review(field, change, actor)
    return out
