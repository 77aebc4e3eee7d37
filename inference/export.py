"""Exports from a batch JSONL: examiner CSV, tracing-request JSON, PDF report, training set.

Every export reads the same :class:`~marktrace.inference.schema.ItemResult` lines that
``marktrace batch`` writes; none computes anything the batch did not (design.md). Originals are never
modified: the PDF draws boxes on a copy in memory (EXIF orientation applied, as the reader did), the
training export copies files and checks their SHA-256 against the batch. The PDF checks originals
against their file SHA-256 and derived views against their trail's pixel hash, and prints an
unreadable image as such instead of stopping.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from marktrace import __version__
from marktrace.inference.atomic import atomic_write_bytes, atomic_write_text
from marktrace.inference.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    decode_image,
    probe_image,
    sha256_bytes,
    sha256_file,
)
from marktrace.inference.records import IdentificationRecord, TracingRequest
from marktrace.inference.schema import ItemResult, RecordField

CSV_COLUMNS: tuple[str, ...] = (
    "item", "files", "status", "error",
    "serial_number", "serial_confidence", "serial_status", "serial_alternatives",
    "manufacturer", "manufacturer_confidence", "manufacturer_source", "manufacturer_status",
    "manufacturer_alternatives",
    "country_of_manufacture", "country_confidence", "country_source", "country_status",
    "model", "type", "calibre", "calibre_confidence", "year_of_manufacture",
    "import_marks", "proof_marks", "other_markings", "serial_obliterated", "notes", "sha256",
)
"""Column order of the examiner CSV (one row per item)."""

ROLE_OF_FIELD: dict[str, str] = {
    "serial_number": "serial", "manufacturer": "maker", "country_of_manufacture": "country", "model": "model",
    "calibre": "calibre", "year_of_manufacture": "year", "type": "other", "import_marks": "import",
    "proof_marks": "proof", "other_markings": "other",
}
"""Field name → line role in the ``datasets/`` manifest format."""

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage


class ExportError(ValueError):
    """An export input is unreadable or inconsistent; the message names the file and the problem."""


def read_batch(path: Path) -> list[ItemResult]:
    """Read a batch JSONL file (one ``ItemResult`` per line).

    Raises:
        ExportError: the file is missing, or a line is not valid JSON or not an item result.
    """
    if path.is_dir():
        raise ExportError(f"{path}: a folder, not a batch JSONL file")
    if not path.is_file():
        raise ExportError(f"{path}: batch file not found")
    items: list[ItemResult] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "a batch JSONL is written by `marktrace batch`") from None
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            items.append(ItemResult.model_validate(json.loads(raw)))
        except json.JSONDecodeError as exc:
            torn = " (a torn last line: `marktrace batch` with the same --out repairs it)" if n == len(lines) else ""
            raise ExportError(f"{path}:{n}: not valid JSON ({exc.msg}, column {exc.colno}){torn}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ExportError(f"{path}:{n}: not a batch item result ({loc}: {first['msg']})") from None
    return items


def record_of(item: ItemResult) -> IdentificationRecord:
    """The item's identification record (empty for items that failed)."""
    try:
        return IdentificationRecord.from_parsed(item.record, item=item.item, sha256=item.sha256)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ExportError(f"item {item.item!r}: record does not match identification-record.v1 "
                          f"({'.'.join(str(p) for p in first['loc'])}: {first['msg']})") from None


def _v(f: RecordField | None) -> str:
    return "" if f is None or f.value is None else str(f.value)


def _safe(text: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) without losing the text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _import_text(rec: IdentificationRecord) -> str:
    parts = []
    for im in rec.import_marks:
        city = _v(im.city)
        city_flags = im.city.flags if im.city else []
        state = next((fl.get("state") for fl in city_flags if fl.get("kind") == "us_state"), None)
        bits = [_v(im.importer), f"{city} {state}".strip() if state else city, _v(im.country), _v(im.year)]
        parts.append(", ".join(b for b in bits if b))
    return "; ".join(parts)


def csv_row(item: ItemResult) -> dict[str, str]:
    """One examiner-friendly CSV row for an item."""
    rec = record_of(item) if item.status == "ok" else IdentificationRecord(item=item.item)
    s, m, c = rec.serial_number, rec.manufacturer, rec.country_of_manufacture
    row = {
        "item": item.item,
        "files": " | ".join(item.files),
        "status": item.status,
        "error": item.error or "",
        "serial_number": _v(s),
        "serial_confidence": f"{s.confidence:.2f}" if s else "",
        "serial_status": s.status if s else "",
        "serial_alternatives": " | ".join(a.value for a in s.alternatives) if s else "",
        "manufacturer": _v(m),
        "manufacturer_confidence": f"{m.confidence:.2f}" if m else "",
        "manufacturer_source": _source(m, detail=False) if m else "",
        "manufacturer_status": m.status if m else "",
        "manufacturer_alternatives": " | ".join(f"{a.value} ({a.confidence:.2f})" for a in m.alternatives) if m else "",
        "country_of_manufacture": _v(c),
        "country_confidence": f"{c.confidence:.2f}" if c else "",
        "country_source": _source(c, detail=False) if c else "",
        "country_status": c.status if c else "",
        "model": _v(rec.model),
        "type": _v(rec.type),
        "calibre": _v(rec.calibre),
        "calibre_confidence": f"{rec.calibre.confidence:.2f}" if rec.calibre else "",
        "year_of_manufacture": _v(rec.year_of_manufacture),
        "import_marks": _import_text(rec),
        "proof_marks": " | ".join(_v(p) for p in rec.proof_marks),
        "other_markings": " | ".join(_v(o) for o in rec.other_markings),
        "serial_obliterated": _v(rec.serial_obliterated),
        "notes": rec.notes or "",
        "sha256": " | ".join(f"{k}={v}" for k, v in item.sha256.items()),
    }
    return {k: _safe(v) for k, v in row.items()}


def write_csv(items: Iterable[ItemResult], out: Path) -> Path:
    """Write the examiner CSV (UTF-8 with BOM so spreadsheet programs read accents and Cyrillic)."""
    buffer = io.StringIO(newline="")
    w = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS))
    w.writeheader()
    for it in items:  # every row is made before anything is written: a bad record leaves the old file as it was
        w.writerow(csv_row(it))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, buffer.getvalue(), encoding="utf-8-sig")
    return out


def write_tracing_request(request: TracingRequest, out: Path) -> Path:
    """Write a tracing request as JSON (schema ``tracing-request.v1``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(request.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
    return out


def find_item(items: Sequence[ItemResult], item_id: str) -> ItemResult:
    """The item whose name (or one of whose files) equals ``item_id``."""
    for it in items:
        if it.item == item_id or item_id in it.files:
            return it
    raise ExportError(f"item {item_id!r} not in the batch (items: {', '.join(i.item for i in items[:10])}"
                      f"{' ...' if len(items) > 10 else ''})")


def resolve_image(name: str, images_root: Path | None) -> Path | None:
    """Find an item's image: absolute, relative to ``images_root``, or relative to the cwd."""
    p = Path(name)
    for cand in ([p] if p.is_absolute() else ([images_root / p] if images_root else []) + [p]):
        if cand.is_file():
            return cand
    return None


# ---------------------------------------------------------------------------------------------- PDF
_FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf")


def _font() -> str:
    """A font with Latin, Cyrillic and Greek if the system has one, else Helvetica (Latin only)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "MarktraceSans" in pdfmetrics.getRegisteredFontNames():
        return "MarktraceSans"
    for cand in _FONT_CANDIDATES:
        if Path(cand).is_file():
            pdfmetrics.registerFont(TTFont("MarktraceSans", cand))
            return "MarktraceSans"
    return "Helvetica"


def _read_bytes(path: Path, name: str) -> bytes:
    """The file's bytes (read-only).

    Raises:
        ImageLoadError: naming ``name`` when the file cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"{name}: cannot read file ({exc.strerror or exc})") from None


def _photo_rgb(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> PILImage:
    """An original photo as the reader saw it: EXIF orientation applied, RGB (gray for one decoded in gray).

    Record boxes are in the pixel coordinates of the reader's working copy, which
    :func:`~marktrace.inference.images.decode_image` makes with ``PIL.ImageOps.exif_transpose``; the
    report decodes with the same function so the boxes land where the lines were read.

    Raises:
        ImageLoadError: naming ``name`` and the problem (empty, not an image, too large, corrupt).
    """
    from PIL import Image

    pixels = decode_image(data, name, max_pixels=max_pixels).image
    if pixels.ndim == 2:  # a photo over GRAY_ABOVE_PIXELS is decoded in gray, as the reader saw it
        return Image.fromarray(pixels)
    return Image.fromarray(pixels[:, :, ::-1].copy())


def _view_pixels(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A derived view's stored pixels, decoded as OpenCV wrote them (gray, or BGR/BGRA; no EXIF rotation).

    These are the pixels the view's trail hash (``chains.image_sha256``) was computed on.

    Raises:
        ImageLoadError: naming ``name`` and the problem (empty, not an image, too large, corrupt).
    """
    import cv2
    import numpy as np

    fmt, _, _ = probe_image(data, name, max_pixels=max_pixels)  # header only: refuses bombs before decoding
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageLoadError(f"{name}: corrupt or truncated {fmt} data ({exc})") from None
    if pixels is None or pixels.size == 0:
        raise ImageLoadError(f"{name}: corrupt or truncated {fmt} data (OpenCV could not decode it)")
    return pixels


def _pixels_rgb(pixels: np.ndarray) -> PILImage:
    """An RGB copy of gray, BGR or BGRA pixels (other depths scaled to 8 bits) for drawing."""
    import cv2
    import numpy as np
    from PIL import Image

    arr = pixels
    if arr.dtype != np.uint8:
        wide = arr.astype(np.float64)
        lo, hi = float(wide.min()), float(wide.max())
        arr = ((wide - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(wide)).astype(np.uint8)
    if arr.ndim == 2:
        rgb = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif arr.shape[2] == 4:
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    elif arr.shape[2] == 1:
        rgb = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return Image.fromarray(rgb)


def _boxed_image(image: PILImage, boxes: Sequence[Sequence[tuple[float, float]]], max_px: int = 1600) -> io.BytesIO:
    """A PNG of an (in-memory, RGB) image with line boxes drawn in red, scaled down to ``max_px``.

    ``boxes`` are in the image's pixel coordinates; originals on disk are never touched.
    """
    from PIL import ImageDraw

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = min(1.0, max_px / max(rgb.size))
    rgb = (rgb.resize((max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale)))) if scale < 1.0
           else rgb.copy())
    draw = ImageDraw.Draw(rgb)
    width = max(2, int(max(rgb.size) / 300))
    for box in boxes:
        pts = [(float(x) * scale, float(y) * scale) for x, y in box]
        if len(pts) >= 2:
            draw.line([*pts, pts[0]], fill=(255, 0, 0), width=width)
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    buf.seek(0)
    return buf


def _source(fld: RecordField, detail: bool = True) -> str:
    """Where a field's value comes from, for a reader of the report (``detail``: the reading method) or the CSV.

    A corrected value is the examiner's, whatever the machine read; the machine's source follows it.
    """
    if fld.evidence.method == "registry_fallback":
        machine = "maker registry (not read)"
    elif fld.evidence.method == "lexicon":
        machine = "registry mark matched to a worn read (lexicon)"
    else:
        machine = f"read ({fld.evidence.method})" if detail else "read"
    if fld.status == "corrected":
        last = next((h for h in reversed(fld.history) if h.action == "corrected"), None)
        who = f" {last.actor}" if last is not None else ""
        was = f", machine suggested {last.old_value!r}" if last is not None and last.old_value is not None else ""
        return f"examiner{who}{was}: {machine}"
    return machine


def _field_rows(rec: IdentificationRecord) -> list[tuple[str, RecordField | None]]:
    rows: list[tuple[str, RecordField | None]] = [
        (name, getattr(rec, name)) for name in ("serial_number", "manufacturer", "country_of_manufacture", "model",
                                                "type", "calibre", "year_of_manufacture", "serial_obliterated")
    ]
    for n, im in enumerate(rec.import_marks):
        for k in ("importer", "city", "country", "year"):
            if getattr(im, k) is not None:
                rows.append((f"import_marks[{n}].{k}", getattr(im, k)))
    rows += [(f"proof_marks[{n}]", f) for n, f in enumerate(rec.proof_marks)]
    rows += [(f"other_markings[{n}]", f) for n, f in enumerate(rec.other_markings)]
    return rows


def render_pdf(item: ItemResult, out: Path, images_root: Path | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Write a printable PDF report for one item: photos with boxes, views, fields, trail.

    Images are looked up relative to ``images_root``. Problems are printed on the page rather than
    hidden or fatal: a missing image, an unreadable one (``image unreadable: <file>: <reason>``), an
    original whose SHA-256 differs from the batch, or a derived view whose pixel hash
    (:func:`marktrace.inference.enhance.chains.image_sha256`) differs from its trail (``MISMATCH``).
    Photos and views larger than ``max_pixels`` are not decoded.
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from reportlab.platypus.flowables import Flowable

    font = _font()
    styles = getSampleStyleSheet()
    body = ParagraphStyle("mt-body", parent=styles["BodyText"], fontName=font, fontSize=8.5, leading=10.5)
    h1 = ParagraphStyle("mt-h1", parent=styles["Heading1"], fontName=font, fontSize=15)
    h2 = ParagraphStyle("mt-h2", parent=styles["Heading2"], fontName=font, fontSize=11.5)
    mono = ParagraphStyle("mt-mono", parent=body, fontName="Courier", fontSize=7, leading=8.5)

    def esc(text: Any) -> str:
        return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def short(text: Any) -> str:  # a table cell holds a page at most: a longer value is cut, and says so
        value = str(text)
        return value if len(value) <= PDF_CELL_CHARS else f"{value[:PDF_CELL_CHARS]}... ({len(value)} characters)"

    out.parent.mkdir(parents=True, exist_ok=True)
    rec = record_of(item) if item.status == "ok" else IdentificationRecord(item=item.item)
    story: list[Flowable] = [
        Paragraph("marktrace identification report", h1),
        Paragraph(f"Item: <b>{esc(item.item)}</b> &nbsp; status: {esc(item.status)} &nbsp; "
                  f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by marktrace {__version__}", body),
        Paragraph("All values are machine suggestions until an examiner confirms them (status column).", body),
    ]
    if item.error:
        story.append(Paragraph(f"<b>Error:</b> {esc(item.error)}", body))
    frame_w, frame_h = A4[0] - 36 * mm, 105 * mm

    def place(buf: io.BytesIO, share: float) -> Image:
        img = Image(buf)
        ratio = min(frame_w * share / img.imageWidth, frame_h * share / img.imageHeight)
        img.drawWidth, img.drawHeight = img.imageWidth * ratio, img.imageHeight * ratio
        return img

    def unreadable(exc: ImageLoadError) -> Paragraph:
        return Paragraph(f"<b>image unreadable:</b> {esc(exc)}", body)

    # photos with boxes
    for f in item.files:
        story.append(Paragraph(f"Photo: {esc(f)}", h2))
        path = resolve_image(f, images_root)
        expected = item.sha256.get(f)
        if path is None:
            story.append(Paragraph(f"<b>Image not available</b> at {esc(f)} (images root: {esc(images_root)})", body))
        else:
            boxes = [ln.box for ln in item.lines if ln.file == f]
            try:
                raw = _read_bytes(path, f)
            except ImageLoadError as exc:
                story.append(unreadable(exc))
            else:
                actual = sha256_bytes(raw)
                verdict = "verified" if expected == actual else f"MISMATCH (file now {actual})"
                try:
                    story.append(place(_boxed_image(_photo_rgb(raw, f, max_pixels), boxes), 1.0))
                except ImageLoadError as exc:
                    story.append(unreadable(exc))
                    story.append(Paragraph(f"SHA-256 {verdict}; {len(boxes)} lines read (boxes not drawn)", body))
                else:
                    story.append(Paragraph(f"SHA-256 {verdict}; red boxes: {len(boxes)} lines read", body))
        story.append(Paragraph(esc(expected or "no SHA-256 in batch"), mono))
    # enhanced views, each checked against its trail's pixel hash before it is printed
    views = [v for v in item.views if v.file and v.name != "original"]
    if views:
        from marktrace.inference.enhance.chains import image_sha256, source_to_view
        from marktrace.inference.geometry import rotate_quad

        story.append(Paragraph("Enhanced views", h2))
        for v in views:
            assert v.file is not None
            path = resolve_image(v.file, images_root)
            story.append(Paragraph(f"View <b>{esc(v.name)}</b>: {esc(v.file)}", body))
            if path is None:
                story.append(Paragraph("(view image not available)", body))
                continue
            try:
                pixels = _view_pixels(_read_bytes(path, v.file), v.file, max_pixels)
            except ImageLoadError as exc:
                story.append(unreadable(exc))
                continue
            actual = image_sha256(pixels)
            if v.trail is None:
                check = "pixel SHA-256 not checked: the view has no trail"
            elif actual == v.trail.sha256:
                check = "pixel SHA-256 verified against its trail"
            else:
                check = f"pixel SHA-256 MISMATCH with its trail (image now {actual})"
            # a chain of a large photo may crop to the text region and shrink: boxes are in the photo's pixels
            to_view = source_to_view(v.trail.steps if v.trail is not None else [])
            boxes = [[(float(x), float(y)) for x, y in rotate_quad(ln.box, to_view)]
                     for ln in item.lines if ln.view == v.name]
            story.append(place(_boxed_image(_pixels_rgb(pixels), boxes, max_px=900), 0.5))
            story.append(Paragraph(check, body))
    # fields
    story.append(Paragraph("Fields", h2))
    data: list[list[Any]] = [[Paragraph(f"<b>{t}</b>", body) for t in
                              ("Field", "Value", "As marked", "Conf.", "Status", "Source")]]
    for name, fld in _field_rows(rec):
        if fld is None:
            data.append([Paragraph(name, body), Paragraph("-", body), "", "", "", ""])
            continue
        method = _source(fld)
        alts = ", ".join(f"{short(a.value)} ({a.confidence:.2f})" for a in fld.alternatives[:3])
        value = esc(short(fld.value)) + (f"<br/><font size=7>alt: {esc(alts)}</font>" if alts else "")
        data.append([Paragraph(name, body), Paragraph(value, body),
                     Paragraph(esc(short(fld.text_as_marked or "")), body),
                     f"{fld.confidence:.2f}", fld.status, Paragraph(esc(method), body)])
    table = Table(data, colWidths=[44 * mm, 40 * mm, 32 * mm, 12 * mm, 18 * mm, 28 * mm], repeatRows=1)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                               ("FONTNAME", (0, 0), (-1, -1), font), ("FONTSIZE", (0, 0), (-1, -1), 8),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story.append(table)
    # trail
    story.append(Paragraph("Processing trail", h2))
    for f, h in item.sha256.items():
        story.append(Paragraph(f"source {esc(f)}", body))
        story.append(Paragraph(esc(h), mono))
    for v in item.views:
        story.append(Paragraph(f"view <b>{esc(v.name)}</b> {esc(v.file or '')}", body))
        if v.trail is not None:
            steps = "; ".join(f"{s.name}({', '.join(f'{k}={p}' for k, p in s.params.items())})" for s in v.trail.steps)
            story.append(Paragraph(f"steps: {esc(steps or '-')}; software {esc(v.trail.software)}"
                                   + (f"; model {esc(v.trail.model)}" if v.trail.model else ""), body))
            for src in v.trail.source_sha256:
                story.append(Paragraph(f"from {esc(src)}", mono))
            story.append(Paragraph(f"own {esc(v.trail.sha256)}", mono))
    models = sorted({ln.model for ln in item.lines if ln.model})
    if models:
        story.append(Paragraph(f"recognition models: {esc(', '.join(models))}", body))
    if item.software:  # the install the reads depend on (ItemResult.software)
        versions = ", ".join(f"{k} {v}" for k, v in item.software.items() if not k.endswith("_sha256"))
        story.append(Paragraph(f"read with: {esc(versions)}", body))
        for key, digest in item.software.items():
            if key.endswith("_sha256"):
                story.append(Paragraph(f"{esc(key.removesuffix('_sha256'))} file {esc(digest)}", mono))
    if item.timings_ms:
        story.append(Paragraph("timings (ms): " + esc(", ".join(f"{k} {v:.0f}" for k, v in item.timings_ms.items())),
                               body))
    story.append(Spacer(1, 4 * mm))
    doc = SimpleDocTemplate(str(out), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, title=f"marktrace report {item.item}", author="marktrace")
    doc.build(story)
    return out


PDF_CELL_CHARS = 300
"""Longest value a PDF report's field table shows in full (a record edited by hand may hold more)."""


def pdf_name(item: ItemResult) -> str:
    """A safe file name for an item's report."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in item.item)
    return f"{safe or 'item'}.pdf"


# ----------------------------------------------------------------------------------- training export
def _reviewed(f: RecordField | None) -> bool:
    return f is not None and f.status in ("confirmed", "corrected") and f.value is not None


MARKED_VALUE_FIELDS = frozenset({"serial_number", "model", "proof_marks", "other_markings"})
"""Fields whose value is the marked text itself (so an examiner's value can be written into the line);
the others hold a normalised name or code (``Heckler & Koch``, ``DE``, ``9x19mm``) that is not what is stamped."""


def _put_value(line: str, marked: str, value: str) -> str | None:
    """``line`` with ``value`` written over the characters of ``marked`` it replaces, or ``None``.

    The value is aligned to the marked text (``SN AB12O45`` → ``AB12045``): characters of the marked text
    the value leaves out (a prefix, spacing) are kept, since they are on the metal; characters it adds are
    inserted; a substitution must be one character for one. Anything else (a stretch replaced by one of
    another length) cannot be placed safely, and the line is not used.
    """
    from difflib import SequenceMatcher

    at = line.upper().find(marked.upper())
    if at < 0:
        return None
    segment = line[at: at + len(marked)]
    out: list[str] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, segment.upper(), value.upper(), autojunk=False).get_opcodes():
        if tag in ("equal", "delete"):
            out.append(segment[i1:i2])
        elif tag == "insert" or i2 - i1 == j2 - j1:
            out.append(value[j1:j2])
        else:
            return None
    return line[:at] + "".join(out) + line[at + len(marked):]


def _training_line(line: str, fields: Sequence[tuple[str, RecordField]]) -> tuple[str | None, str]:
    """The label of one recognised line from the reviewed fields read on it, or ``None`` and why not.

    A field whose value is marked text puts its value into the line where the machine read otherwise; a
    confirmed normalised field (maker, country, calibre, year, importer) vouches for the line only if what it
    was read from is in the line as read; a corrected one cannot say what is marked, so the line is not used.
    """
    text = line
    for name, f in fields:
        base = name.split("[")[0]
        marked = f.text_as_marked
        if not marked:
            return None, f"{name}: no marked text to place the value in"
        if base in MARKED_VALUE_FIELDS:
            placed = _put_value(text, marked, str(f.value))
            if placed is None:
                return None, f"{name}: the examiner's value {f.value!r} cannot be placed in the line {line!r}"
            text = placed
        elif f.status == "corrected":
            return None, f"{name}: corrected to the normalised value {f.value!r}, which is not the marked text"
        elif marked.upper() not in text.upper():
            return None, f"{name}: read as {marked!r}, which is not in the line {line!r} (lexicon or other view)"
    return text, ""


def export_training_set(records_jsonl: Path, out_dir: Path, images_root: Path | None = None) -> dict[str, Any]:
    """Write examiner-reviewed lines as a labelled dataset in the ``datasets/`` manifest format.

    For every item with confirmed or corrected fields, the image is copied (after checking its
    SHA-256 against the batch) to ``out_dir/images/`` and one ``manifest.jsonl`` line is written:
    ``{"image", "lines": [{"text", "role", "polygon"}], "source": "real", "meta": {"sha256", "item", ...}}``
    (``marktrace.datasets.manifest.Entry``). The reviewed fields read on one line make its label together
    (:func:`_training_line`); a line whose marked text cannot be rebuilt from them (a corrected maker or
    country, a value that does not align with the read) is skipped with the reason, and so is a field the
    reader did not read (a country from the maker registry) or read on a derived view.

    Returns:
        Summary counts: items, lines, skipped (with reasons).
    """
    items = read_batch(records_jsonl)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(exist_ok=True)
    root = images_root if images_root is not None else records_jsonl.parent
    summary: dict[str, Any] = {"items": 0, "lines": 0, "skipped": []}
    manifest: list[str] = []  # written at the end, at once: a failure leaves an earlier manifest as it was
    for it in items:
        if it.status != "ok":
            continue
        rec = record_of(it)
        fields: list[tuple[str, RecordField]] = [(n, f) for n, f in _field_rows(rec)
                                                 if f is not None and _reviewed(f) and n != "serial_obliterated"]
        on_line: dict[tuple[str, tuple[tuple[float, float], ...]], list[tuple[str, RecordField]]] = {}
        for name, f in fields:
            if f.evidence.method == "registry_fallback":
                summary["skipped"].append(f"{it.item}: {name} (from the maker registry, not read on the item)")
                continue
            if f.evidence.file is None or f.evidence.box is None or not f.evidence.line_text:
                summary["skipped"].append(f"{it.item}: {name} (no line box/text to rebuild)")
                continue
            if f.evidence.view not in ("original", ""):
                summary["skipped"].append(f"{it.item}: {name} (read on derived view {f.evidence.view})")
                continue
            polygon = tuple((float(x), float(y)) for x, y in f.evidence.box)
            on_line.setdefault((f.evidence.file, polygon), []).append((name, f))
        by_image: dict[str, list[dict[str, Any]]] = {}
        for (file, polygon), line_fields in on_line.items():
            read = {f.evidence.line_text for _, f in line_fields}
            if len(read) != 1:
                summary["skipped"].append(f"{it.item}: {', '.join(n for n, _ in line_fields)} "
                                          "(one box, different line texts)")
                continue
            text, why = _training_line(str(read.pop()), line_fields)
            if text is None:
                summary["skipped"].append(f"{it.item}: {why}")
                continue
            role = ROLE_OF_FIELD.get(line_fields[0][0].split("[")[0], "other")
            by_image.setdefault(file, []).append(
                {"text": text, "role": role, "polygon": [[x, y] for x, y in polygon]})
        for file, lines in by_image.items():
            src = resolve_image(file, root)
            if src is None:
                summary["skipped"].append(f"{it.item}: image {file} not found under {root}")
                continue
            digest = sha256_file(src)
            if it.sha256.get(file) not in (None, digest):
                summary["skipped"].append(f"{it.item}: image {file} SHA-256 differs from the batch")
                continue
            dest = out_dir / "images" / f"{digest[:16]}{src.suffix.lower()}"
            if not dest.is_file() or sha256_file(dest) != digest:  # never trust a file already there
                atomic_write_bytes(dest, src.read_bytes())
            manifest.append(json.dumps({"image": f"images/{dest.name}", "lines": lines, "source": "real",
                                        "meta": {"sha256": digest, "item": it.item, "file": file,
                                                 "exported_by": f"marktrace {__version__}"}},
                                       ensure_ascii=False) + "\n")
            summary["items"] += 1
            summary["lines"] += len(lines)
    atomic_write_text(out_dir / "manifest.jsonl", "".join(manifest))
    return summary


__all__ = [
    "CSV_COLUMNS",
    "ExportError",
    "csv_row",
    "export_training_set",
    "find_item",
    "pdf_name",
    "read_batch",
    "record_of",
    "render_pdf",
    "sha256_file",
    "write_csv",
    "write_tracing_request",
]
