"""Service-side exports: the PDF report of a stored identification and the published JSON Schemas.

The report is :func:`marktrace.inference.export.render_pdf`, the same one ``marktrace export pdf`` writes.
Its photos come from the evidence store only: each original (and each stored derived view) is read and
hash-checked, then copied under a sanitised name into a private temporary folder that is the report's
``images_root``. Upload names never become paths, so a name like ``/etc/x.png`` or ``../x.png`` cannot
make the report read a file outside that folder.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marktrace.inference.export import render_pdf
from marktrace.inference.records import SCHEMA_DIR
from marktrace.inference.schema import ItemResult
from marktrace.service.evidence import EvidenceStore
from marktrace.service.store import StoredFile

SCHEMA_SUFFIX = ".json"


def _safe_name(name: str, taken: set[str]) -> str:
    """A file name of letters, digits, ``._-`` only (no separators, no leading dot), unique in ``taken``."""
    base = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120].lstrip(".") or "file"
    candidate, n = base, 1
    while candidate in taken:
        candidate, n = f"{n}-{base}", n + 1
    taken.add(candidate)
    return candidate


def report_item(result: dict[str, Any], files: Sequence[StoredFile], evidence: EvidenceStore, root: Path) -> ItemResult:
    """Copy the identification's evidence into ``root`` and return its item with names relative to ``root``.

    Raises:
        EvidenceError: a stored file is missing or altered.
    """
    item = ItemResult.model_validate(result)
    taken: set[str] = set()
    originals: dict[str, str] = {}
    views: dict[str, str] = {}
    for f in files:
        if f.kind not in ("original", "derived"):
            continue
        data = evidence.read_verified(f.sha256)
        safe = _safe_name(f.name if f.kind == "original" else f"view-{f.name}", taken)
        (root / safe).write_bytes(data)
        (originals if f.kind == "original" else views)[f.name] = safe

    def orig(name: str) -> str:
        # every listed file is stored; a name that is not (never expected) still cannot leave ``root``
        if name not in originals:
            originals[name] = _safe_name(f"missing-{name}", taken)
        return originals[name]

    return item.model_copy(
        update={
            "files": [orig(n) for n in item.files],
            "sha256": {orig(n): h for n, h in item.sha256.items()},
            "lines": [ln.model_copy(update={"file": orig(ln.file)}) for ln in item.lines],
            "views": [
                v.model_copy(
                    update={"file": views.get(v.name) or (originals.get(v.file) if v.file else None)}
                )
                for v in item.views
            ],
        }
    )


def render_report(result: dict[str, Any], files: Sequence[StoredFile], evidence: EvidenceStore) -> bytes:
    """The PDF report of a stored identification, as bytes.

    Raises:
        EvidenceError: a stored file is missing or altered.
        ExportError: the record does not fit ``identification-record.v1``.
    """
    with tempfile.TemporaryDirectory(prefix="marktrace-report-") as tmp:
        root = Path(tmp)
        images = root / "images"
        images.mkdir()
        item = report_item(result, files, evidence, images)
        out = render_pdf(item, root / "report.pdf", images_root=images)
        return out.read_bytes()


def schema_names() -> list[str]:
    """Names of the published schemas (``identification-record.v1``, ``tracing-request.v1``)."""
    return sorted(p.name[: -len(SCHEMA_SUFFIX)] for p in SCHEMA_DIR.glob(f"*.v[0-9]*{SCHEMA_SUFFIX}"))


def schema_bytes(name: str) -> bytes | None:
    """The published schema file's exact bytes; ``name`` with or without ``.json``; None if unknown."""
    bare = name[: -len(SCHEMA_SUFFIX)] if name.endswith(SCHEMA_SUFFIX) else name
    if bare not in schema_names():
        return None
    return (SCHEMA_DIR / f"{bare}{SCHEMA_SUFFIX}").read_bytes()


def schema_summary(name: str) -> dict[str, Any]:
    """Title and ``$id`` of a published schema."""
    data = schema_bytes(name)
    doc: dict[str, Any] = json.loads(data) if data is not None else {}
    return {"title": doc.get("title"), "id": doc.get("$id")}
