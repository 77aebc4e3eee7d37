"""The batch CLI's output contract, resume after a crash, and isolation of bad input (shipped models)."""

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from marktrace.cli import _register, app
from marktrace.datasets.synth import SynthConfig, render_marking
from marktrace.inference.pipeline import MarkingReader

_register()
runner = CliRunner()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header) with no real pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seized")
    plate = np.full((120, 420), 140, np.uint8)
    cv2.putText(plate, "AB123456", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.8, 60, 5)
    cv2.imwrite(str(root / "plate.png"), plate)
    case = root / "case-7"
    case.mkdir()
    marking = render_marking(1_960_000_001, SynthConfig(fonts="heldout", wear=(0, 0.05), rotation="small"))
    cv2.imwrite(str(case / "rifle.jpg"), marking.image)
    good = cv2.imencode(".png", plate)[1].tobytes()
    (case / "corrupt.png").write_bytes(good[: len(good) // 2])
    (case / "zero.jpg").write_bytes(b"")
    (case / "notes.jpg").write_text("this is a text file with an image name\n")
    (case / "huge.png").write_bytes(_png_header_only(20000, 20000))
    (root / "empty-folder").mkdir()
    stack = root / "stack"
    stack.mkdir()
    lights = {}
    for k, az in enumerate((0, 120, 240)):
        cv2.imwrite(str(stack / f"l{k}.png"), plate)
        lights[f"l{k}.png"] = {"azimuth_deg": az, "elevation_deg": 30}
    (stack / "lights.json").write_text(json.dumps(lights))
    return root


def _rows(out: Path) -> dict[str, dict]:
    return {row["item"]: row for row in map(json.loads, out.read_text().splitlines())}


def test_batch_contract_and_bad_input(photo_tree, tmp_path):
    before = {p: p.read_bytes() for p in photo_tree.rglob("*") if p.is_file()}
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", str(photo_tree), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output  # some items are error lines: the batch still ran to its end
    rows = _rows(out)
    assert set(rows) == {
        "plate.png",
        "case-7/rifle.jpg",
        "case-7/corrupt.png",
        "case-7/zero.jpg",
        "case-7/notes.jpg",
        "case-7/huge.png",
        "stack",
    }
    plate = rows["plate.png"]
    assert plate["status"] == "ok" and plate["error"] is None
    serial = plate["record"]["serial_number"]
    assert serial["value"] == "AB123456"
    assert 0.0 <= serial["confidence"] <= 1.0
    assert serial["evidence"]["file"] == "plate.png" and len(serial["evidence"]["box"]) == 4
    assert plate["sha256"]["plate.png"] == hashlib.sha256((photo_tree / "plate.png").read_bytes()).hexdigest()
    assert plate["lines"] and {"text", "confidence", "box", "file"} <= set(plate["lines"][0])
    assert "total_ms" in plate["timings_ms"]
    import cv2
    import onnxruntime as ort

    import marktrace

    software = plate["software"]  # what the read depends on, for an examiner who needs it repeated
    assert software["marktrace"] == marktrace.__version__ and software["onnxruntime"] == ort.__version__
    assert software["opencv"] == cv2.__version__ and "@" in software["detector"] and "@" in software["recognizer"]
    assert all(len(software[f"{role}_sha256"]) == 64 for role in ("detector", "recognizer"))
    assert rows["stack"]["software"] == software and rows["case-7/corrupt.png"]["software"] == {}
    expected_errors = {
        "case-7/corrupt.png": "corrupt or truncated",
        "case-7/zero.jpg": "empty file",
        "case-7/notes.jpg": "not a recognised image",
        "case-7/huge.png": "over the limit",
    }
    for item, message in expected_errors.items():
        row = rows[item]
        assert row["status"] == "error", item
        assert item in row["error"] and message in row["error"]
    assert rows["stack"]["status"] == "ok" and len(rows["stack"]["files"]) == 3
    assert {p: p.read_bytes() for p in photo_tree.rglob("*") if p.is_file()} == before, "originals changed"


def test_resume_skips_finished_items_and_repairs_a_torn_line(photo_tree, tmp_path):
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["batch", str(photo_tree), "--out", str(out), "--workers", "1"]).exit_code == 0
    lines = out.read_text().splitlines()
    # A crash while writing the last line: keep the others, tear the last one.
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    torn_item = json.loads(lines[-1])["item"]
    result = runner.invoke(app, ["batch", str(photo_tree), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "6 already done" in result.output.replace("\n", " ") or "6 item(s) already" in result.output
    again = out.read_text().splitlines()
    assert len(again) == len(lines)
    items = [json.loads(line)["item"] for line in again]
    assert sorted(items) == sorted(json.loads(line)["item"] for line in lines)
    assert items[-1] == torn_item


def test_folder_without_images_is_a_message_not_a_crash(tmp_path):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "report.pdf").write_bytes(b"%PDF-1.4")
    result = runner.invoke(app, ["batch", str(tmp_path / "nothing"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0
    assert "no images found" in result.output
    assert "1 other file not read (.pdf 1)" in " ".join(result.output.split())  # what was passed over


def test_parallel_workers_give_the_same_records(photo_tree, tmp_path):
    # FP32: its outputs are bit-identical whatever the thread count (one worker runs its models on every
    # core, parallel workers on one each). INT8's dynamically quantized recognizer is not: a weak line may
    # read differently, so the batch machinery is checked on FP32.
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    fp32 = ["--variant", "fp32"]
    assert runner.invoke(app, ["batch", str(photo_tree), "--out", str(one), "--workers", "1", *fp32]).exit_code == 0
    assert runner.invoke(app, ["batch", str(photo_tree), "--out", str(two), "--workers", "2", *fp32]).exit_code == 0
    a, b = _rows(one), _rows(two)
    assert a.keys() == b.keys()
    def serial(row: dict) -> object:
        return ((row.get("record") or {}).get("serial_number") or {}).get("value")

    for item in a:
        assert a[item]["status"] == b[item]["status"]
        assert serial(a[item]) == serial(b[item])
    assert any(serial(row) for row in a.values())  # the comparison covers real reads, not only empty ones


def dies_on_the_plate(item):
    """Stands in for a worker killed by a native crash or the OOM killer (module level: it is pickled)."""
    import os

    from marktrace.inference.batch import _WORKER_ROOT, _safe_read

    if item.name == "plate.png":
        os._exit(3)
    from marktrace.inference import batch as batch_module

    assert batch_module._WORKER_READER is not None and _WORKER_ROOT is not None
    return _safe_read(batch_module._WORKER_READER, item, _WORKER_ROOT)


def test_a_crashing_worker_costs_only_its_own_item(photo_tree, tmp_path, monkeypatch):
    from marktrace.inference import batch as batch_module
    from marktrace.inference.pipeline import ReaderSettings

    monkeypatch.setattr(batch_module, "_read_in_worker", dies_on_the_plate)
    out = tmp_path / "out.jsonl"
    summary = batch_module.run_batch(photo_tree, out, ReaderSettings(), workers=2)
    rows = _rows(out)
    assert len(rows) == 7 and summary.ok + summary.errors == 7
    assert rows["plate.png"]["status"] == "error" and "worker process failed" in rows["plate.png"]["error"]
    assert rows["case-7/rifle.jpg"]["status"] == "ok", rows["case-7/rifle.jpg"]["error"]
    assert rows["stack"]["status"] == "ok", rows["stack"]["error"]


def test_read_takes_relative_paths(photo_tree, monkeypatch):
    """``marktrace read sub/photo.png`` from the folder above: item names are relative, nothing crashes."""
    photo = photo_tree / "case-7" / "rifle.jpg"
    monkeypatch.chdir(photo_tree)
    relative = Path(photo.parent.name) / photo.name
    result = runner.invoke(app, ["read", "--json", str(relative)])
    assert result.exit_code == 0, result.output
    row = json.loads(next(line for line in result.output.splitlines() if line.startswith("{")))
    assert row["files"] == [photo.name] and row["status"] == "ok"


def test_read_prints_a_note_under_the_table_of_a_photo_read_with_one(photo_tree, tmp_path):
    """A multi-page TIFF is read from its first page; the table view says so (the JSON has it in ``error``)."""
    from PIL import Image

    page = Image.open(photo_tree / "case-7" / "rifle.jpg").convert("RGB")
    page.save(tmp_path / "scan.tif", save_all=True, append_images=[page.rotate(90)])
    result = runner.invoke(app, ["read", str(tmp_path / "scan.tif")])
    assert result.exit_code == 0, result.output
    assert "serial_number" in result.output
    assert "note scan.tif: multi-page TIFF; only its first page of 2 was read" in " ".join(result.output.split())
    plain = runner.invoke(app, ["read", str(photo_tree / "case-7" / "rifle.jpg")])
    assert plain.exit_code == 0 and "note " not in plain.output


def test_read_table_says_how_each_field_was_read():
    from marktrace.inference.cli import field_how

    lexicon = {"value": "Savage Arms", "method": "direct",
               "evidence": {"method": "lexicon", "line_text": "SNIGE ANMS"}}
    assert field_how(lexicon) == "lexicon (read 'SNIGE ANMS')"
    chain = {"value": "A123", "method": "chain:blackhat_clahe", "evidence": {"method": "serial_prefix"}}
    assert field_how(chain) == "chain:blackhat_clahe / serial_prefix"
    assert field_how({"value": "US", "evidence": {"method": "registry_fallback"}}) == "registry_fallback"
    assert field_how({"value": "x"}) == ""
    recut = {"value": "N541042", "evidence": {"method": "serial"},
             "flags": [{"kind": "read_recut"}, {"kind": "cut_disagreement", "agree": 2, "of": 3}]}
    assert field_how(recut) == "serial / recut / 2 of 3 cuts agree"
    grown = {"value": "6KE18608", "evidence": {"method": "serial_role_score"},
             "flags": [{"kind": "read_extended", "first_read": "KE18608"}]}
    assert field_how(grown) == "serial_role_score / box grown (first read 'KE18608')"
    marked = {"value": "CE2568", "evidence": {"method": "serial_role_score"},
              "flags": [{"kind": "detached_end_dropped", "read": "CE25687", "character": "7"}]}
    assert field_how(marked) == "serial_role_score / mark left off (read 'CE25687')"
    voted = {"value": "AS3167", "method": "direct", "flags": [{"kind": "consensus", "reads": 5, "of": 8}]}
    assert field_how(voted) == "vote 5 of 8 reads"
    voted_view = {**voted, "method": "photometric:relit_ratio"}
    assert field_how(voted_view) == "photometric:relit_ratio / vote 5 of 8 reads"


# -- model-free checks of isolation: the real ``read_item`` (loading, hashing, labels, errors), no models ---------


class ModelFreeReader:
    """Stands in for :class:`MarkingReader`: its real ``read_item`` loads and hashes every photo, then
    ``read_loaded`` answers "ok" without models (and raises for an item named ``boom``, a reader bug)."""

    def __init__(self, settings):
        self.settings = settings

    @classmethod
    def from_settings(cls, settings=None):
        from marktrace.inference.pipeline import ReaderSettings

        return cls(settings or ReaderSettings())

    read_item = MarkingReader.read_item  # the real one (tests patch the name ``MarkingReader`` itself)

    def read_loaded(self, item_name, images, lights):
        from marktrace.inference.schema import ItemResult

        if "boom" in item_name:
            raise RuntimeError("simulated reader bug")
        return ItemResult(
            item=item_name, files=[], sha256={img.path: img.sha256 for img in images}, status="ok"
        )


def _tiny_png(path: Path) -> bytes:
    cv2.imwrite(str(path), np.full((8, 8), 128, np.uint8))
    return path.read_bytes()


@pytest.fixture
def batch_module(monkeypatch):
    """``marktrace.inference.batch`` reading with :class:`ModelFreeReader` (no models: photos loaded and hashed)."""
    from marktrace.inference import batch

    monkeypatch.setattr(batch, "MarkingReader", ModelFreeReader)
    return batch


def test_symlinks_out_of_the_root_and_dangling_links_do_not_stop_a_batch(tmp_path, batch_module):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    linked = _tiny_png(outside / "real.png")
    root = tmp_path / "seized"
    (root / "case").mkdir(parents=True)
    good = _tiny_png(root / "good.png")
    (root / "case" / "link.png").symlink_to(outside / "real.png")
    (root / "case" / "dangling.png").symlink_to(tmp_path / "gone.png")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output  # the dangling link is an error line, the batch goes on
    rows = _rows(out)
    assert set(rows) == {"good.png", "case/link.png", "case/dangling.png"}
    assert rows["good.png"]["status"] == "ok"
    assert rows["good.png"]["sha256"] == {"good.png": hashlib.sha256(good).hexdigest()}
    link = rows["case/link.png"]
    assert link["status"] == "ok" and link["files"] == ["case/link.png"]
    assert link["sha256"] == {"case/link.png": hashlib.sha256(linked).hexdigest()}  # read through the link
    dangling = rows["case/dangling.png"]
    assert dangling["status"] == "error" and dangling["files"] == ["case/dangling.png"]
    assert "case/dangling.png" in dangling["error"] and "cannot read file" in dangling["error"]


def test_an_error_row_never_raises_whatever_the_paths(tmp_path):
    from marktrace.inference.batch import _error_row, _safe_read
    from marktrace.inference.items import Item

    stray = tmp_path / "not-under-root" / "x.png"
    item = Item(name="x.png", files=(stray,), kind="photo")
    row = _error_row(item, tmp_path / "root", "worker process failed")
    assert row["status"] == "error" and row["files"] == [str(stray)] and "x.png: worker process failed" in row["error"]

    class Broken:
        def read_item(self, item, root):
            raise RuntimeError("label of a stray path")

    row = _safe_read(Broken(), item, tmp_path / "root")
    assert row["status"] == "error" and "RuntimeError: label of a stray path" in row["error"]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_read_goes_on_after_a_failing_file_and_exits_non_zero(tmp_path, monkeypatch, as_json):
    from marktrace.inference import batch as batch_module

    monkeypatch.setattr(batch_module, "MarkingReader", ModelFreeReader)  # ``read`` loads through batch.load_reader
    first, boom, corrupt, last = (tmp_path / n for n in ("a.png", "boom.png", "corrupt.png", "z.png"))
    for path in (first, boom, last):
        _tiny_png(path)
    corrupt.write_bytes(b"not an image at all")
    args = ["read", *(["--json"] if as_json else []), *map(str, (first, boom, corrupt, last))]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    if as_json:
        rows = {row["item"]: row for row in map(json.loads, (ln for ln in result.output.splitlines() if ln[:1] == "{"))}
        assert list(rows) == ["a.png", "boom.png", "corrupt.png", "z.png"]
        assert rows["a.png"]["status"] == "ok" and rows["z.png"]["status"] == "ok"
        assert rows["boom.png"]["status"] == "error" and rows["boom.png"]["files"] == ["boom.png"]
        assert rows["boom.png"]["error"].startswith("boom.png: internal error while reading (RuntimeError")
        assert rows["corrupt.png"]["status"] == "error" and "corrupt.png: not a recognised image" in rows[
            "corrupt.png"
        ]["error"]
    else:
        text = " ".join(result.output.split())
        assert "boom.png: internal error while reading (RuntimeError: simulated reader bug)" in text
        assert "corrupt.png: not a recognised image" in text
        assert "a.png" in text and "z.png" in text  # the tables of the good files before and after
        assert text.count("no serial number found") == 2


def test_a_file_name_that_is_not_utf8_does_not_stop_a_batch_and_resumes(tmp_path, monkeypatch):
    import os

    from marktrace.inference import batch as batch_module
    from marktrace.inference.pipeline import ReaderSettings

    monkeypatch.setattr(batch_module, "MarkingReader", ModelFreeReader)
    root = tmp_path / "seized"
    root.mkdir()
    _tiny_png(root / "z.png")
    try:
        os.rename(root / "z.png", os.fsencode(root) + b"/a\xff.png")  # sorts first
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")
    _tiny_png(root / "z.png")
    out = tmp_path / "out.jsonl"
    summary = batch_module.run_batch(root, out, ReaderSettings(), workers=1)
    assert summary.ok == 2 and summary.errors == 0
    rows = _rows(out)
    assert set(rows) == {"a\udcff.png", "z.png"}
    again = batch_module.run_batch(root, out, ReaderSettings(), workers=1)
    assert again.skipped == 2 and again.ok == 0  # the escaped name reads back as the same item


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_bad_model_file_is_refused_before_anything_is_written(tmp_path, workers):
    root = tmp_path / "photos"
    root.mkdir()
    _tiny_png(root / "a.png")
    _tiny_png(root / "b.png")
    bad = tmp_path / "detector.onnx"
    bad.write_text("not a model")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", str(root), "--out", str(out), "--detector", str(bad), "--workers", workers])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "cannot start the reader" in text and "detector.onnx" in text
    assert not out.exists()  # no error line per item, so a corrected rerun reads them all
    result = runner.invoke(app, ["read", str(root / "a.png"), "--detector", str(bad)])
    assert result.exit_code == 2 and "cannot start the reader" in " ".join(result.output.split())


def test_an_out_path_that_is_not_a_batch_jsonl_is_left_as_it_is(tmp_path, batch_module):
    root = tmp_path / "photos"
    root.mkdir()
    photo = _tiny_png(root / "a.png")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"case 7: three rifles\nno final newline")
    for out in (notes, root / "a.png", tmp_path):
        before = out.read_bytes() if out.is_file() else None
        result = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"])
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert "not a marktrace batch JSONL" in text or "is a folder" in text
        if before is not None:
            assert out.read_bytes() == before  # not cut at its last newline, nothing appended
    assert (root / "a.png").read_bytes() == photo
    result = runner.invoke(app, ["batch", str(root), "--out", str(tmp_path / "out.jsonl"),
                                 "--save-enhanced", str(root / "views")])
    assert result.exit_code == 2 and "lies inside" in " ".join(result.output.split())


def test_file_names_are_printed_as_they_are_not_as_markup(tmp_path, batch_module):
    root = tmp_path / "x["
    root.mkdir()
    (root / "IMG [copy].jpg").write_bytes(b"not an image")
    (root / "b].jpg").write_bytes(b"not an image")
    result = runner.invoke(app, ["batch", str(root), "--out", str(tmp_path / "out.jsonl"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "IMG [copy].jpg" in text and "b].jpg" in text
    assert len(_rows(tmp_path / "out.jsonl")) == 2


def test_a_pool_broken_while_submitting_costs_no_item(tmp_path, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from marktrace.inference import batch as batch_module

    broken_once: list[bool] = []

    class BreaksOnce(ProcessPoolExecutor):
        """A worker died while the parent was writing: the next submit finds the pool broken."""

        def submit(self, fn, /, *args, **kwargs):
            if len(broken_once) == 0:
                broken_once.append(True)
                raise BrokenProcessPool("a child process terminated abruptly")
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(batch_module, "ProcessPoolExecutor", BreaksOnce)
    monkeypatch.setattr(batch_module, "MarkingReader", ModelFreeReader)
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _tiny_png(root / name)
    out = tmp_path / "out.jsonl"
    summary = batch_module.run_batch(root, out, batch_module.ReaderSettings(), workers=2)
    assert broken_once and summary.errors == 0 and summary.ok == 3
    assert {row["status"] for row in _rows(out).values()} == {"ok"}


def test_a_locked_folder_gets_an_error_line_and_the_batch_goes_on(tmp_path, batch_module, locked_folders):
    (tmp_path / "photos" / "locked").mkdir(parents=True)
    _tiny_png(tmp_path / "photos" / "a.png")
    out = tmp_path / "out.jsonl"
    batch_module.run_batch(tmp_path / "photos", out, batch_module.ReaderSettings(), workers=1)
    rows = _rows(out)
    assert rows["a.png"]["status"] == "ok"
    assert rows["locked"]["status"] == "error"
    assert rows["locked"]["error"].startswith("locked: folder cannot be listed (Permission denied)")


def test_a_linked_single_photo_keeps_its_name_in_a_batch(tmp_path, batch_module):
    target = tmp_path / "store" / "IMG_0001.png"
    target.parent.mkdir()
    photo = _tiny_png(target)
    link = tmp_path / "rifle-serial.png"
    link.symlink_to(target)
    out = tmp_path / "out.jsonl"
    batch_module.run_batch(link, out, batch_module.ReaderSettings(), workers=1)
    (row,) = _rows(out).values()
    assert row["item"] == "rifle-serial.png" and row["files"] == ["rifle-serial.png"]
    assert row["sha256"] == {"rifle-serial.png": hashlib.sha256(photo).hexdigest()}


def test_a_labs_registry_file_is_read_and_a_bad_one_refused_at_start(tmp_path):
    lab = tmp_path / "lab.yaml"
    lab.write_text("makers:\n  - {id: lab-maker, name: Lab Maker, kind: manufacturer, country: NL, "
                   "marks: [LABMAKER ARMS], models: [LM-1]}\n", encoding="utf-8")
    root = tmp_path / "photos"
    root.mkdir()
    plate = np.full((120, 520), 150, np.uint8)
    cv2.putText(plate, "LABMAKER ARMS", (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.6, 40, 4)
    cv2.imwrite(str(root / "a.png"), plate)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", str(root), "--out", str(out), "--registry", str(lab), "--workers", "1"])
    assert result.exit_code == 0, result.output
    row = _rows(out)["a.png"]
    assert row["status"] == "ok"
    assert [line["text"] for line in row["lines"]] == ["LABMAKER ARMS"]
    assert (row["record"].get("manufacturer") or {}).get("value") == "Lab Maker"  # known only from the lab's file
    bad = tmp_path / "bad.yaml"
    bad.write_text("makers:\n  - {id: bad2, name: Bad, kind: manufacturer, country: XX, marks: [BAD ARMS]}\n")
    out2 = tmp_path / "out2.jsonl"
    result = runner.invoke(app, ["batch", str(root), "--out", str(out2), "--registry", str(bad), "--workers", "1"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "cannot start the reader" in text and "bad.yaml" in text
    assert not out2.exists()


def test_read_of_a_folder_without_photos_is_an_error_naming_it(tmp_path, batch_module):
    empty, notes = tmp_path / "empty", tmp_path / "notes"
    empty.mkdir()
    notes.mkdir()
    (notes / "report.pdf").write_bytes(b"%PDF-1.4")
    _tiny_png(tmp_path / "a.png")
    result = runner.invoke(app, ["read", str(empty), str(notes), str(tmp_path / "a.png")])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"{empty}: no images found" in text
    assert f"{notes}: no images found (1 other file not read (.pdf 1))" in text
    assert "a.png" in text  # the photo after them is still read


def test_read_names_a_link_loop_rather_than_a_missing_file(tmp_path, batch_module):
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(tmp_path / "other.jpg")
    (tmp_path / "other.jpg").symlink_to(loop)
    result = runner.invoke(app, ["read", str(loop)])
    assert result.exit_code == 1
    assert "loop.jpg: cannot be reached (Too many levels of symbolic links)" in " ".join(result.output.split())


def test_read_and_batch_do_not_refuse_their_arguments_for_access_checks(tmp_path, batch_module, monkeypatch):
    """The command line does not stop on an argument ``os.access`` calls unreadable (as it would for all files):
    the file's own read decides, and its failure is that item's error line (root reads it here)."""
    photo = tmp_path / "photo.png"
    _tiny_png(photo)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if Path(path) in (photo, tmp_path)
                        else real_access(path, mode, *a, **k))
    assert runner.invoke(app, ["read", str(photo)]).exit_code == 0
    result = runner.invoke(app, ["batch", str(tmp_path), "--out", str(tmp_path.parent / "o.jsonl"), "--workers", "1"])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_its_own_error_not_a_usage_error(tmp_path, batch_module):
    locked = tmp_path / "locked.png"
    _tiny_png(locked)
    locked.chmod(0)
    _tiny_png(tmp_path / "b.png")
    try:
        result = runner.invoke(app, ["read", "--json", str(locked), str(tmp_path / "b.png")])
    finally:
        locked.chmod(0o644)
    assert result.exit_code == 1, result.output
    rows = [json.loads(ln) for ln in result.output.splitlines() if ln[:1] == "{"]
    assert [r["status"] for r in rows] == ["error", "ok"] and "Permission denied" in rows[0]["error"]


def test_retry_errors_reads_failed_items_again_and_keeps_the_rest(tmp_path, batch_module):
    root = tmp_path / "seized"
    root.mkdir()
    good = _tiny_png(root / "good.png")
    (root / "late.png").write_bytes(good[: len(good) // 2])  # copied half-way when the batch ran
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"]).exit_code == 0
    first = out.read_text().splitlines()
    assert _rows(out)["late.png"]["status"] == "error"
    (root / "late.png").write_bytes(good)  # the copy finished
    again = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1"])
    assert again.exit_code == 0 and out.read_text().splitlines() == first  # a plain resume redoes nothing
    retried = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1", "--retry-errors"])
    assert retried.exit_code == 0, retried.output
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == next(ln for ln in first if json.loads(ln)["item"] == "good.png")
    assert {item: row["status"] for item, row in _rows(out).items()} == {"good.png": "ok", "late.png": "ok"}


def test_a_batch_with_nothing_to_read_writes_no_output_file(tmp_path, batch_module):
    (tmp_path / "nothing").mkdir()
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["batch", str(tmp_path / "nothing"), "--out", str(out)])
    assert result.exit_code == 0 and "no images found" in result.output
    assert not out.exists()


def test_a_light_file_naming_missing_photos_is_noted_with_its_batch_name(tmp_path):
    stack = tmp_path / "seized" / "case" / "stack"
    stack.mkdir(parents=True)
    plate = np.full((80, 260), 140, np.uint8)
    cv2.putText(plate, "AB1234", (10, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.4, 60, 4)
    lights = {}
    for k in range(3):
        cv2.imwrite(str(stack / f"l{k}.png"), plate)
        lights[f"l{k}.png"] = {"azimuth_deg": 120 * k, "elevation_deg": 30}
    lights["l9.png"] = {"azimuth_deg": 45, "elevation_deg": 30}
    (stack / "lights.json").write_text(json.dumps(lights))
    (tmp_path / "seized" / "broken").mkdir()
    (tmp_path / "seized" / "broken" / "a.png").write_bytes(_tiny_png(tmp_path / "x.png"))
    (tmp_path / "seized" / "broken" / "stack.lp").write_text("5\na.png 0 0 1\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["batch", str(tmp_path / "seized"), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output  # both items are read; what is wrong is said in `error`
    rows = _rows(out)
    assert rows["case/stack"]["status"] == "ok"
    assert "case/stack/lights.json: names photo(s) the folder does not hold: l9.png" in rows["case/stack"]["error"]
    broken = rows["broken"]["error"]
    assert broken.startswith("broken/stack.lp: header says 5 photos") and str(tmp_path) not in broken
    assert "broken: 1 photo(s) read; relief views need at least 3" in broken


def test_fail_on_errors_makes_a_batch_with_error_lines_exit_1(tmp_path, batch_module):
    root = tmp_path / "seized"
    root.mkdir()
    _tiny_png(root / "good.png")
    (root / "bad.jpg").write_text("not an image")
    plain = runner.invoke(app, ["batch", str(root), "--out", str(tmp_path / "a.jsonl"), "--workers", "1"])
    assert plain.exit_code == 0 and "1 errors" in plain.output
    strict = runner.invoke(app, ["batch", str(root), "--out", str(tmp_path / "b.jsonl"), "--workers", "1",
                                 "--fail-on-errors"])
    assert strict.exit_code == 1 and len((tmp_path / "b.jsonl").read_text().splitlines()) == 2
