"""The nouns shared by the CLI, the service and the exports: item, view, trail, line, field, record.

One definition each (see ``../shared/design.md``). The batch JSONL line, the API response and the
report are renderings of the same :class:`ItemResult`; none computes anything the others do not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Point = tuple[float, float]
"""A point (x, y) in the photo's pixels as shown: EXIF orientation applied, never a resized or turned working copy."""

ReviewStatus = Literal["suggested", "confirmed", "corrected", "rejected"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrailStep(_Model):
    """One named processing step with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class Trail(_Model):
    """How a derived image was made: sources, steps or model, software, and its own hash.

    A trail replays to the same bytes: running ``steps`` on the sources gives an image whose
    SHA-256 equals ``sha256``.
    """

    source_sha256: list[str]
    steps: list[TrailStep] = Field(default_factory=list)
    model: dict[str, str] | None = None
    software: str
    sha256: str


class View(_Model):
    """An image derived from an item (or the original itself) with its trail."""

    name: str
    file: str | None = None
    trail: Trail | None = None


class Alternative(_Model):
    """A competing reading of a value, with its confidence."""

    value: str
    confidence: float
    method: str | None = None
    """Which reading method proposed it, when it differs from the field's own."""


class CharAlternatives(_Model):
    """Top candidates for one character position of a line, best first."""

    position: int
    candidates: list[Alternative]


class Line(_Model):
    """Text read from a view: box, text, confidences, which view and model read it.

    The box is in the photo's pixels as shown (EXIF orientation applied; see ``ItemResult.images``).
    """

    text: str
    confidence: float
    box: list[Point]
    file: str
    char_confidences: list[float] = Field(default_factory=list)
    char_alternatives: list[CharAlternatives] = Field(default_factory=list)
    alternatives: list[Alternative] = Field(default_factory=list)
    view: str = "original"
    model: str | None = None
    alterations: list[dict[str, Any]] = Field(default_factory=list)
    """Characters showing signs of over-stamping: ``{"position", "score", "evidence"}`` (position in ``text``)."""


class Evidence(_Model):
    """Where a field's value came from."""

    file: str | None = None
    sha256: str | None = None
    box: list[Point] | None = Field(
        default=None,
        description="The line's four corners (x, y) in the photo's pixels as shown, EXIF orientation applied "
        "(the batch line's `images` gives each photo's shown and stored size), clipped to the photo",
    )
    line_text: str | None = None
    method: str = "direct"
    view: str = "original"


class HistoryEntry(_Model):
    """One change of a field's review state: who, when, what."""

    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: str
    action: ReviewStatus
    old_value: Any = None
    new_value: Any = None
    note: str | None = None


class RecordField(_Model):
    """A value the record claims, always a suggestion until an examiner confirms it."""

    value: Any
    text_as_marked: str | None = None
    confidence: float
    alternatives: list[Alternative] = Field(default_factory=list)
    evidence: Evidence = Field(default_factory=Evidence)
    status: ReviewStatus = "suggested"
    history: list[HistoryEntry] = Field(default_factory=list)
    flags: list[dict[str, Any]] = Field(default_factory=list)
    method: str | None = None
    """How the value was read: ``direct``, ``chain:<name>``, ``photometric:<view>`` or ``restoration``."""


class ImageInfo(_Model):
    """How a photo was decoded for reading: boxes are in its pixels as shown (EXIF orientation applied)."""

    width: int
    height: int
    """Size of the working copy the boxes refer to (EXIF orientation applied)."""
    stored_width: int
    stored_height: int
    """Size of the pixels as stored in the file, before EXIF orientation."""
    exif_transposed: bool
    """Whether an EXIF orientation tag turned or mirrored the stored pixels."""
    decoded_gray: bool = False
    """Whether the photo was decoded straight to gray to bound memory (over 24 MP; reading needs no colour)."""
    scaled_to_8bit: str | None = None
    """How a gray photo deeper than 8 bits (16-bit PNG or TIFF, 32-bit integer or float TIFF) became the 8-bit working
    copy, e.g. ``uint16 samples >> 4 (largest value 4095: 12 significant bits)``; None for an 8-bit photo."""


class ItemResult(_Model):
    """The answer for one item (a photo, or a multi-light folder): the batch JSONL line's content."""

    item: str
    files: list[str]
    sha256: dict[str, str]
    status: Literal["ok", "error"]
    error: str | None = None
    record: dict[str, Any] = Field(default_factory=dict)
    lines: list[Line] = Field(default_factory=list)
    views: list[View] = Field(default_factory=list)
    images: dict[str, ImageInfo] = Field(default_factory=dict)
    """File -> how it was decoded (the frame of every box)."""
    timings_ms: dict[str, float] = Field(default_factory=dict)
    software: dict[str, str] = Field(default_factory=dict)
    """What made this answer: marktrace, onnxruntime, OpenCV and numpy versions, and the detector and
    recognizer files (``name@version``, variant, SHA-256). Reads depend on all of them; empty on an error line."""

    def to_json_dict(self) -> dict[str, Any]:
        """Render as the JSON object of the batch output contract."""
        return self.model_dump(mode="json")
