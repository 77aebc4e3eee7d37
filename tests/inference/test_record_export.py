"""Exports: CSV, PDF report (rendered and checked on pixels and text), tracing request CLI, training set."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from marktrace.inference.enhance.chains import image_sha256
from marktrace.inference.export import (
    ExportError,
    _put_value,
    export_training_set,
    read_batch,
    render_pdf,
    write_csv,
)
from marktrace.inference.export_cli import app
from marktrace.inference.parse import parse_lines
from marktrace.inference.records import IdentificationRecord, review_field
from marktrace.inference.registry import load_registry
from marktrace.inference.schema import ItemResult, Line, Trail, TrailStep, View

TEXTS = ["GLOCK 17", "MADE IN AUSTRIA", "9x19", "ABC123", "GLOCK INC SMYRNA GA"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pixels(path: Path) -> np.ndarray:
    """A saved view's pixels as OpenCV decodes them (gray stays 2-D, colour is BGR)."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels is not None, path
    return np.asarray(pixels)


def _pixel_sha(path: Path) -> str:
    """The trail hash of a saved view: ``chains.image_sha256`` of its pixels."""
    return image_sha256(_pixels(path))


def _pdf_text(path: Path) -> str:
    pypdf = pytest.importorskip("pypdf")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)


@pytest.fixture()
def batch(tmp_path: Path) -> Path:
    """A batch folder: one blue photo, one enhanced view, and the batch JSONL with a parsed record."""
    return _write_batch(tmp_path, TEXTS)


def _write_batch(tmp_path: Path, texts: list[str]) -> Path:
    photo = tmp_path / "photos" / "pistol.png"
    photo.parent.mkdir()
    img = Image.new("RGB", (640, 360), (20, 40, 230))
    draw = ImageDraw.Draw(img)
    for k in range(5):
        draw.rectangle([60, 40 + 60 * k, 400, 70 + 60 * k], fill=(230, 230, 230))
    img.save(photo)
    view = tmp_path / "views" / "pistol_clahe.png"
    view.parent.mkdir()
    Image.new("L", (640, 360), 128).save(view)
    sha = _sha(photo)
    lines = [Line(text=t, confidence=0.9, file="photos/pistol.png",
                  box=[(60.0, 40.0 + 60 * k), (400.0, 40.0 + 60 * k), (400.0, 70.0 + 60 * k), (60.0, 70.0 + 60 * k)])
             for k, t in enumerate(texts)]
    record = parse_lines(lines, load_registry(), {"photos/pistol.png": sha})
    item = ItemResult(item="photos/pistol.png", files=["photos/pistol.png"], sha256={"photos/pistol.png": sha},
                      status="ok", record=record, lines=lines,
                      views=[View(name="original", file="photos/pistol.png"),
                             View(name="clahe", file="views/pistol_clahe.png",
                                  trail=Trail(source_sha256=[sha],
                                              steps=[TrailStep(name="clahe", params={"clip": 2.0})],
                                              software="marktrace 0.1.0", sha256=_pixel_sha(view)))],
                      timings_ms={"parse": 0.4},
                      software={"marktrace": "0.5.0", "onnxruntime": "1.32.0", "opencv": "5.0.0", "numpy": "2.4.6",
                                "recognizer": "marktrace-line-recognizer@1.1.0-int8", "recognizer_sha256": "ab" * 32})
    failed = ItemResult(item="photos/broken.jpg", files=["photos/broken.jpg"], sha256={}, status="error",
                        error="photos/broken.jpg: not an image (truncated JPEG)")
    out = tmp_path / "batch.jsonl"
    out.write_text(json.dumps(item.to_json_dict()) + "\n" + json.dumps(failed.to_json_dict()) + "\n",
                   encoding="utf-8")
    return out


def test_read_batch_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "b.jsonl"
    p.write_text('{"item": "a"}\n', encoding="utf-8")
    with pytest.raises(ExportError, match=r"b\.jsonl:1: not a batch item result"):
        read_batch(p)
    p.write_text("\n{oops\n", encoding="utf-8")
    with pytest.raises(ExportError, match=r"b\.jsonl:2: not valid JSON"):
        read_batch(p)
    with pytest.raises(ExportError, match="not found"):
        read_batch(tmp_path / "missing.jsonl")


def test_csv_one_row_per_item(batch: Path, tmp_path: Path) -> None:
    out = write_csv(read_batch(batch), tmp_path / "out.csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert len(rows) == 2
    ok, bad = rows
    assert ok["serial_number"] == "ABC123" and ok["serial_status"] == "suggested"
    assert ok["manufacturer"] == "Glock" and ok["country_of_manufacture"] == "AT"
    assert ok["country_source"] == "read" and ok["calibre"] == "9x19mm" and ok["model"] == "17"
    assert "Glock Inc." in ok["import_marks"] and "SMYRNA GA" in ok["import_marks"]
    assert float(ok["serial_confidence"]) > 0
    assert bad["status"] == "error" and "truncated" in bad["error"] and bad["serial_number"] == ""


def test_csv_says_where_the_maker_comes_from_and_lists_its_alternatives(batch: Path, tmp_path: Path) -> None:
    items = read_batch(batch)
    rows = list(csv.DictReader(write_csv(items, tmp_path / "read.csv").open(encoding="utf-8-sig")))
    assert rows[0]["manufacturer_source"] == "read" and rows[0]["manufacturer_alternatives"] == ""
    maker = items[0].record["manufacturer"]
    maker["evidence"]["method"] = "lexicon"
    maker["alternatives"] = [{"value": "Carl Walther", "confidence": 0.123, "method": "lexicon"}]
    rows = list(csv.DictReader(write_csv(items, tmp_path / "lexicon.csv").open(encoding="utf-8-sig")))
    assert rows[0]["manufacturer_source"] == "registry mark matched to a worn read (lexicon)"
    assert rows[0]["manufacturer_alternatives"] == "Carl Walther (0.12)"
    assert rows[1]["manufacturer_source"] == "" and rows[1]["manufacturer_alternatives"] == ""  # the error item


def test_csv_neutralises_formulas(batch: Path, tmp_path: Path) -> None:
    items = read_batch(batch)
    items[0].record["serial_number"]["value"] = "=HYPERLINK(1)"
    rows = list(csv.DictReader(write_csv(items, tmp_path / "x.csv").open(encoding="utf-8-sig")))
    assert rows[0]["serial_number"] == "'=HYPERLINK(1)"


def test_pdf_shows_photo_fields_and_trail(batch: Path, tmp_path: Path) -> None:
    pypdfium2 = pytest.importorskip("pypdfium2")
    pypdf = pytest.importorskip("pypdf")
    item = read_batch(batch)[0]
    out = render_pdf(item, tmp_path / "report.pdf", images_root=batch.parent)
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(str(out)).pages)
    assert "ABC123" in text and "Glock" in text and "suggested" in text
    assert item.sha256["photos/pistol.png"] in text.replace("\n", "")
    assert "Processing trail" in text and "clahe" in text and "verified" in text
    flat = text.replace("\n", " ")
    assert "read with: marktrace 0.5.0, onnxruntime 1.32.0, opencv 5.0.0" in flat  # the install behind the reads
    assert "ab" * 32 in text.replace("\n", "")
    pdf = pypdfium2.PdfDocument(str(out))
    page = np.asarray(pdf[0].render(scale=1.0).to_pil().convert("RGB")).astype(int)
    r, g, b = page[..., 0], page[..., 1], page[..., 2]
    blue = (b > 180) & (r < 80) & (g < 100)
    red = (r > 200) & (g < 60) & (b < 60)
    assert blue.sum() > 20000, "the photo is not on page 1"
    assert red.sum() > 200, "the line boxes are not drawn"
    ys, xs = np.nonzero(blue)
    assert xs.max() - xs.min() > 200 and ys.max() - ys.min() > 100
    # the original was only read
    assert _sha(batch.parent / "photos" / "pistol.png") == item.sha256["photos/pistol.png"]


def test_pdf_reports_missing_image_and_mismatch(batch: Path, tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    item = read_batch(batch)[0]
    out = render_pdf(item, tmp_path / "r.pdf", images_root=tmp_path / "elsewhere")
    assert "Image not available" in pypdf.PdfReader(str(out)).pages[0].extract_text()
    item.sha256["photos/pistol.png"] = "0" * 64
    out2 = render_pdf(item, tmp_path / "r2.pdf", images_root=batch.parent)
    assert "MISMATCH" in "".join(p.extract_text() for p in pypdf.PdfReader(str(out2)).pages)


def test_pdf_verifies_views_against_their_trail(batch: Path, tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    item = read_batch(batch)[0]
    colour = np.zeros((90, 160, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 200, 90, 10  # BGR, channels distinct: order matters
    cv2.imwrite(str(batch.parent / "views" / "pistol_relief.png"), colour)
    item.views.append(View(name="relief", file="views/pistol_relief.png",
                           trail=Trail(source_sha256=[item.sha256["photos/pistol.png"]], steps=[],
                                       software="marktrace 0.1.0", sha256=image_sha256(colour))))
    text = _pdf_text(render_pdf(item, tmp_path / "ok.pdf", images_root=batch.parent)).replace("\n", " ")
    assert text.count("pixel SHA-256 verified against its trail") == 2  # the gray and the colour view
    assert "MISMATCH" not in text
    # the trail records the pixels, not the file: a re-encoded but identical view still verifies
    cv2.imwrite(str(batch.parent / "views" / "pistol_relief.png"), colour, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert "MISMATCH" not in _pdf_text(render_pdf(item, tmp_path / "ok2.pdf", images_root=batch.parent))
    # one changed pixel in the gray view: MISMATCH printed for that view only
    gray = _pixels(batch.parent / "views" / "pistol_clahe.png")
    gray[5, 5] += 1
    cv2.imwrite(str(batch.parent / "views" / "pistol_clahe.png"), gray)
    text = _pdf_text(render_pdf(item, tmp_path / "bad.pdf", images_root=batch.parent)).replace("\n", " ")
    assert "pixel SHA-256 MISMATCH with its trail" in text and image_sha256(gray) in text.replace(" ", "")
    assert text.count("pixel SHA-256 verified against its trail") == 1
    assert "SHA-256 verified; red boxes" in text  # the original is still fine


def test_pdf_prints_unreadable_view_and_photo(batch: Path, tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    item = read_batch(batch)[0]
    (batch.parent / "views" / "pistol_clahe.png").write_bytes(b"not a png at all")
    text = _pdf_text(render_pdf(item, tmp_path / "v.pdf", images_root=batch.parent)).replace("\n", " ")
    assert "image unreadable: views/pistol_clahe.png: not a recognised image format" in text
    photo = batch.parent / "photos" / "pistol.png"
    photo.write_bytes(photo.read_bytes()[:200])  # truncated: the header reads, the pixels do not
    text = _pdf_text(render_pdf(item, tmp_path / "p.pdf", images_root=batch.parent)).replace("\n", " ")
    assert "image unreadable: photos/pistol.png: corrupt or truncated PNG data" in text
    assert "MISMATCH (file now" in text  # the hash check still runs on what is there


def test_cli_pdf_continues_past_a_zero_byte_photo(batch: Path, tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    (batch.parent / "photos" / "empty.jpg").write_bytes(b"")
    empty = ItemResult(item="photos/empty.jpg", files=["photos/empty.jpg"],
                       sha256={"photos/empty.jpg": hashlib.sha256(b"").hexdigest()}, status="ok", record={})
    with batch.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(empty.to_json_dict()) + "\n")
    res = CliRunner().invoke(app, [str(batch), "--pdf-dir", str(tmp_path / "pdf")])
    assert res.exit_code == 0, res.output
    assert "PDF: 3 reports" in res.output
    assert sorted(p.name for p in (tmp_path / "pdf").iterdir()) == [
        "photos_broken.jpg.pdf", "photos_empty.jpg.pdf", "photos_pistol.png.pdf"]
    text = _pdf_text(tmp_path / "pdf" / "photos_empty.jpg.pdf").replace("\n", " ")
    assert "image unreadable: photos/empty.jpg: empty file (0 bytes)" in text
    assert "SHA-256 verified" in text
    assert "SHA-256 verified; red boxes: 5 lines read" in _pdf_text(tmp_path / "pdf" / "photos_pistol.png.pdf")


def test_cli_pdf_goes_on_past_an_item_whose_record_fails_the_schema(batch: Path, tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    bad = ItemResult(item="photos/odd.jpg", files=[], sha256={}, status="ok",
                     record={"serial_number": {"value": "X", "confidence": "not a number"}})
    with batch.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(bad.to_json_dict()) + "\n")
    res = CliRunner().invoke(app, [str(batch), "--pdf-dir", str(tmp_path / "pdf")])
    assert res.exit_code == 2, res.output
    assert "photos/odd.jpg: no PDF report" in res.output and "1 failed: photos/odd.jpg" in res.output
    assert "photos_pistol.png.pdf" in {p.name for p in (tmp_path / "pdf").iterdir()}
    assert "photos_odd.jpg.pdf" not in {p.name for p in (tmp_path / "pdf").iterdir()}


def test_pdf_draws_boxes_on_the_exif_oriented_photo(tmp_path: Path) -> None:
    """Boxes are in the reader's EXIF-corrected coordinates; the report must draw them on that image."""
    pypdfium2 = pytest.importorskip("pypdfium2")
    # stored 300x100 (landscape), EXIF orientation 6: displayed rotated 90° clockwise as 100x300.
    # stored pixel (x, y) -> displayed (99 - y, x): the green block at stored x 20..59, y 10..39
    # is displayed at x 60..89, y 20..59.
    stored = Image.new("RGB", (300, 100), (20, 40, 230))
    stored.paste((20, 220, 40), (20, 10, 60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "rotated.jpg"
    stored.save(photo, exif=exif, quality=95)
    from marktrace.inference.images import load_image

    shown = load_image(photo).image  # the reader's working copy (BGR)
    assert shown.shape[:2] == (300, 100) and shown[40, 75, 1] > 180 and shown[40, 75, 0] < 100
    box = [(55.0, 15.0), (95.0, 15.0), (95.0, 65.0), (55.0, 65.0)]  # around the green block, displayed coords
    item = ItemResult(item="rotated.jpg", files=["rotated.jpg"], sha256={"rotated.jpg": _sha(photo)}, status="ok",
                      record={}, lines=[Line(text="X1", confidence=0.9, file="rotated.jpg", box=box)])
    out = render_pdf(item, tmp_path / "r.pdf", images_root=tmp_path)
    page = np.asarray(pypdfium2.PdfDocument(str(out))[0].render(scale=2.0).to_pil().convert("RGB")).astype(int)
    r, g, b = page[..., 0], page[..., 1], page[..., 2]
    photo_px = ((b > 180) & (r < 80) & (g < 100)) | ((g > 170) & (r < 90) & (b < 110))
    green = (g > 170) & (r < 90) & (b < 110)
    red = (r > 200) & (g < 60) & (b < 60)
    assert red.sum() > 50 and green.sum() > 50
    py, px = np.nonzero(photo_px)
    assert py.max() - py.min() > 2 * (px.max() - px.min()), "the photo is not shown upright (portrait)"
    gy, gx = np.nonzero(green)
    ry, rx = np.nonzero(red)
    # the red box encloses the green block and sits within the photo, with the margins of the box above
    assert rx.min() < gx.min() and rx.max() > gx.max() and ry.min() < gy.min() and ry.max() > gy.max()
    scale = (px.max() - px.min()) / 100  # page pixels per photo pixel
    assert abs((rx.min() - px.min()) / scale - 55) < 3 and abs((ry.min() - py.min()) / scale - 15) < 3
    assert abs((rx.max() - px.min()) / scale - 95) < 3 and abs((ry.max() - py.min()) / scale - 65) < 3
    # the box's left edge itself, sampled halfway down
    mid_y = int(py.min() + 40 * scale)
    assert red[mid_y - 1:mid_y + 2, int(px.min() + 55 * scale) - 2:int(px.min() + 55 * scale) + 3].any()


def _confirm(batch: Path, fields: tuple[str, ...], correct: dict[str, str] | None = None) -> None:
    items = read_batch(batch)
    rec = IdentificationRecord.from_parsed(items[0].record)
    for f in fields:
        review_field(rec, f, "confirmed", "examiner-1")
    for f, v in (correct or {}).items():
        review_field(rec, f, "corrected", "examiner-1", value=v)
    items[0].record = rec.model_dump(mode="json")
    batch.write_text("".join(json.dumps(i.to_json_dict()) + "\n" for i in items), encoding="utf-8")


def test_cli_exports_csv_and_pdf(batch: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, [str(batch), "--csv", str(tmp_path / "o.csv"), "--pdf-dir", str(tmp_path / "pdf")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "pdf").iterdir()) == ["photos_broken.jpg.pdf", "photos_pistol.png.pdf"]


def test_cli_tracing_request_refuses_then_forces(batch: Path, tmp_path: Path) -> None:
    args = [str(batch), "--tracing-request", "photos/pistol.png", "--authority", "NFP", "--case-ref", "C-1",
            "--illicit", "illicit_under_national_law", "--legal-justification", "art. 1",
            "--intended-use", "investigation", "--out", str(tmp_path / "req.json")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3
    assert "serial_number" in res.output and "manufacturer" in res.output and "country_of_manufacture" in res.output
    assert not (tmp_path / "req.json").exists()
    res = CliRunner().invoke(app, [*args, "--force"])
    assert res.exit_code == 0, res.output
    req = json.loads((tmp_path / "req.json").read_text(encoding="utf-8"))
    assert req["unconfirmed"] is True and "serial_number" in req["unconfirmed_fields"]
    _confirm(batch, ("serial_number", "manufacturer", "country_of_manufacture"))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    req = json.loads((tmp_path / "req.json").read_text(encoding="utf-8"))
    assert req["unconfirmed"] is False and req["weapon"]["serial_number"] == "ABC123"


def test_cli_tracing_request_names_a_country_that_is_not_a_code(batch: Path, tmp_path: Path) -> None:
    # a review refuses such a correction (test_records); a record file edited by hand, or older, may still hold one
    _confirm(batch, ("serial_number", "manufacturer"), correct={"country_of_manufacture": "DE"})
    batch.write_text(batch.read_text(encoding="utf-8").replace('"DE"', '"Germany"'), encoding="utf-8")
    res = CliRunner().invoke(app, [str(batch), "--tracing-request", "photos/pistol.png", "--authority", "NFP",
                                   "--case-ref", "C-1", "--illicit", "illicit_under_national_law",
                                   "--legal-justification", "art. 1", "--intended-use", "investigation",
                                   "--out", str(tmp_path / "req.json")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output  # a message, no traceback
    assert "photos/pistol.png" in res.output and "'Germany' is not an ISO 3166-1 alpha-2 code" in res.output
    assert not (tmp_path / "req.json").exists()


def test_cli_tracing_request_needs_human_fields(batch: Path) -> None:
    res = CliRunner().invoke(app, [str(batch), "--tracing-request", "photos/pistol.png", "--force"])
    assert res.exit_code != 0
    assert "--authority" in res.output


def test_training_set_from_corrections(batch: Path, tmp_path: Path) -> None:
    _confirm(batch, ("manufacturer",), correct={"serial_number": "ABC128"})
    out = tmp_path / "ds"
    summary = export_training_set(batch, out)
    assert summary["items"] == 1 and summary["lines"] == 2
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["source"] == "real"
    texts = {ln["role"]: ln["text"] for ln in rows[0]["lines"]}
    assert texts == {"serial": "ABC128", "maker": "GLOCK 17"}
    assert all(len(ln["polygon"]) == 4 for ln in rows[0]["lines"])
    copied = out / rows[0]["image"]
    assert _sha(copied) == rows[0]["meta"]["sha256"] == _sha(batch.parent / "photos" / "pistol.png")
    manifest = pytest.importorskip("marktrace.datasets.manifest")
    entries = manifest.read_manifest(out / "manifest.jsonl")
    assert entries[0].source == "real" and {ln.role for ln in entries[0].lines} == {"serial", "maker"}


@pytest.mark.parametrize(("line", "marked", "value", "label"), [
    ("SN AB12O45", "SN AB12O45", "AB12045", "SN AB12045"),  # the parser's O -> 0, prefix kept
    ("No. 123-456", "NO. 123-456", "123-456", "No. 123-456"),  # case of the read kept
    ("AB 12345", "AB 12345", "AB12346", "AB 12346"),  # spacing on the metal kept
    ("ABC123 X", "ABC123", "ABC1234", "ABC1234 X"),  # a character the read missed
    ("SN 8B12345", "SN 8B12345", "AB12345", None),  # four characters for one: not placed
    ("GLOCK 17", "C3", "G3", None),  # not in the line
])
def test_an_examiner_value_is_placed_in_the_read_line(line: str, marked: str, value: str, label: str | None) -> None:
    assert _put_value(line, marked, value) == label


def test_training_labels_use_marked_text_not_normalised_values(tmp_path: Path) -> None:
    batch = _write_batch(tmp_path, ["HK G3", "MADE IN GERMANY", "SN AB12O45", "C3 AB99999"])
    rec = IdentificationRecord.from_parsed(read_batch(batch)[0].record)
    assert rec.serial_number is not None and rec.serial_number.value == "AB12045"
    _confirm(batch, ("serial_number", "model"), correct={"manufacturer": "Heckler & Koch GmbH",
                                                          "country_of_manufacture": "AT"})
    summary = export_training_set(batch, tmp_path / "ds")
    rows = [json.loads(x) for x in (tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = sorted(ln["text"] for ln in rows[0]["lines"])
    # the confirmed serial carries the parser's digit, not the recognizer's letter O; the corrected maker and
    # country lines are left out (their values are a name and a code, not what is stamped)
    assert texts == ["SN AB12045"]
    assert any("manufacturer" in why and "normalised" in why for why in summary["skipped"])
    assert any("country_of_manufacture" in why for why in summary["skipped"])


def test_a_registry_country_is_not_a_training_line(tmp_path: Path) -> None:
    batch = _write_batch(tmp_path, ["GLOCK 17", "ABC123"])
    rec = IdentificationRecord.from_parsed(read_batch(batch)[0].record)
    assert rec.country_of_manufacture is not None
    assert rec.country_of_manufacture.evidence.method == "registry_fallback"
    _confirm(batch, ("country_of_manufacture",))
    summary = export_training_set(batch, tmp_path / "ds")
    assert summary["lines"] == 0
    assert any("maker registry" in why for why in summary["skipped"])


def test_fields_on_one_line_make_one_label(tmp_path: Path) -> None:
    batch = _write_batch(tmp_path, ["HK G3 AB12345"])
    rec = IdentificationRecord.from_parsed(read_batch(batch)[0].record)
    assert rec.model is not None and rec.serial_number is not None
    assert rec.model.evidence.box == rec.serial_number.evidence.box
    _confirm(batch, ("serial_number",), correct={"model": "G36"})
    export_training_set(batch, tmp_path / "ds")
    rows = [json.loads(x) for x in (tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [ln["text"] for ln in rows[0]["lines"]] == ["HK G36 AB12345"]


def test_training_set_skips_unreviewed(batch: Path, tmp_path: Path) -> None:
    summary = export_training_set(batch, tmp_path / "ds")
    assert summary["items"] == 0
    assert (tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8") == ""


def test_a_photo_decoded_in_gray_goes_into_the_report_in_gray(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from marktrace.inference import images
    from marktrace.inference.export import _photo_rgb

    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), (200, 100, 50), np.uint8)).save(buffer, format="PNG")
    assert _photo_rgb(buffer.getvalue(), "a.png").mode == "RGB"
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 100)
    photo = _photo_rgb(buffer.getvalue(), "a.png")
    assert photo.mode == "L" and photo.size == (30, 20)


def test_a_corrected_field_is_shown_as_the_examiners_in_the_csv(batch: Path, tmp_path: Path) -> None:
    _confirm(batch, (), correct={"country_of_manufacture": "DE"})
    write_csv(read_batch(batch), tmp_path / "o.csv")
    with (tmp_path / "o.csv").open(encoding="utf-8-sig") as handle:  # the BOM spreadsheets want
        row = next(r for r in csv.DictReader(handle) if r["item"] == "photos/pistol.png")
    assert row["country_of_manufacture"] == "DE" and row["country_status"] == "corrected"
    assert row["country_source"] == "examiner examiner-1, machine suggested 'AT': read"


# -- bad paths and bad records: clear errors, nothing lost ------------------------------------------------------


def test_export_errors_are_messages_and_never_replace_the_batch(batch: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    before = batch.read_bytes()
    for args, message in (
        (["--csv", str(batch)], "the batch being exported"),
        (["--csv", str(tmp_path)], "a folder; give a file name"),
        (["--csv", str(batch / "x.csv")], "cannot write"),  # a path through a file
    ):
        res = runner.invoke(app, [str(batch), *args])
        assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
        assert message in " ".join(res.output.split())
    assert batch.read_bytes() == before
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    res = runner.invoke(app, [str(latin)])
    assert res.exit_code == 2 and "not UTF-8 text" in res.output


def test_a_bad_record_leaves_an_earlier_csv_and_training_manifest_as_they_were(batch: Path, tmp_path: Path) -> None:
    csv_out, dataset = tmp_path / "keep.csv", tmp_path / "ds"
    _confirm(batch, ("manufacturer",), correct={"serial_number": "ABC128"})
    runner = CliRunner()
    assert runner.invoke(app, [str(batch), "--csv", str(csv_out), "--training-set", str(dataset)]).exit_code == 0
    kept_csv, kept_manifest = csv_out.read_bytes(), (dataset / "manifest.jsonl").read_bytes()
    bad = json.loads(batch.read_text(encoding="utf-8").splitlines()[0])
    bad["item"] = "photos/z.png"
    bad["record"]["serial_number"]["confidence"] = "high"
    with batch.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(bad) + "\n")
    res = runner.invoke(app, [str(batch), "--csv", str(csv_out)])
    assert res.exit_code == 2 and "photos/z.png" in res.output
    assert csv_out.read_bytes() == kept_csv
    res = runner.invoke(app, [str(batch), "--training-set", str(dataset)])
    assert res.exit_code == 2 and (dataset / "manifest.jsonl").read_bytes() == kept_manifest


def test_an_image_already_in_a_training_set_folder_is_checked_not_trusted(batch: Path, tmp_path: Path) -> None:
    _confirm(batch, ("manufacturer",), correct={"serial_number": "ABC128"})
    dataset = tmp_path / "ds"
    export_training_set(batch, dataset)
    (image,) = (dataset / "images").iterdir()
    good = image.read_bytes()
    image.write_bytes(b"garbage")  # an interrupted copy, or a file put there by hand
    export_training_set(batch, dataset)
    assert image.read_bytes() == good


def test_reports_of_huge_values_and_clashing_names_are_all_written(batch: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    rows[0]["record"]["serial_number"]["value"] = "A" * 5000  # a record edited by hand
    twin = {**rows[1], "item": "photos_broken.jpg", "files": ["photos_broken.jpg"]}  # the same safe name
    batch.write_text("".join(json.dumps(r) + "\n" for r in [*rows, twin]), encoding="utf-8")
    res = CliRunner().invoke(app, [str(batch), "--pdf-dir", str(tmp_path / "pdf")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "pdf").iterdir()) == [
        "photos_broken.jpg-2.pdf", "photos_broken.jpg.pdf", "photos_pistol.png.pdf"]
    assert "(5000 characters)" in " ".join(_pdf_text(tmp_path / "pdf" / "photos_pistol.png.pdf").split())


def test_reports_warn_when_no_photo_is_found_under_the_images_root(batch: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, [str(batch), "--pdf-dir", str(tmp_path / "pdf"),
                                   "--images-root", str(tmp_path / "x")])
    assert res.exit_code == 0 and "none of the batch's photos was found" in " ".join(res.output.split())
    found = CliRunner().invoke(app, [str(batch), "--pdf-dir", str(tmp_path / "pdf2")])
    assert found.exit_code == 0 and "none of the batch's photos" not in found.output


def test_no_tracing_request_for_an_item_that_could_not_be_read(batch: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, [str(batch), "--tracing-request", "photos/broken.jpg", "--authority", "NFP",
                                   "--case-ref", "C-1", "--illicit", "illicit_under_national_law",
                                   "--legal-justification", "art. 1", "--intended-use", "investigation", "--force",
                                   "--out", str(tmp_path / "req.json")])
    assert res.exit_code == 2 and "could not be read" in " ".join(res.output.split())
    assert not (tmp_path / "req.json").exists()


def test_a_tracing_request_that_cannot_be_made_is_refused_before_anything_is_written(
    batch: Path, tmp_path: Path
) -> None:
    for extra in ([], ["--authority", "NFP", "--case-ref", "C-1", "--illicit", "illicit_under_national_law",
                       "--legal-justification", "art. 1", "--intended-use", "investigation"]):
        item = "photos/pistol.png" if not extra else "photos/none.png"  # no human fields, then an unknown item
        res = CliRunner().invoke(app, [str(batch), "--csv", str(tmp_path / "o.csv"), "--pdf-dir", str(tmp_path / "p"),
                                       "--tracing-request", item, *extra])
        assert res.exit_code == 2, res.output
        assert not (tmp_path / "o.csv").exists() and not (tmp_path / "p").exists()
