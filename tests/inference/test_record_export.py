"""Exports: CSV, PDF report (rendered and checked on pixels and text), tracing request CLI, training set."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from marktrace.inference.export import (
    ExportError,
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


@pytest.fixture()
def batch(tmp_path: Path) -> Path:
    """A batch folder: one blue photo, one enhanced view, and the batch JSONL with a parsed record."""
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
             for k, t in enumerate(TEXTS)]
    record = parse_lines(lines, load_registry(), {"photos/pistol.png": sha})
    item = ItemResult(item="photos/pistol.png", files=["photos/pistol.png"], sha256={"photos/pistol.png": sha},
                      status="ok", record=record, lines=lines,
                      views=[View(name="original", file="photos/pistol.png"),
                             View(name="clahe", file="views/pistol_clahe.png",
                                  trail=Trail(source_sha256=[sha],
                                              steps=[TrailStep(name="clahe", params={"clip": 2.0})],
                                              software="marktrace 0.1.0", sha256=_sha(view)))],
                      timings_ms={"parse": 0.4})
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


def test_training_set_skips_unreviewed(batch: Path, tmp_path: Path) -> None:
    summary = export_training_set(batch, tmp_path / "ds")
    assert summary["items"] == 0
    assert (tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8") == ""
