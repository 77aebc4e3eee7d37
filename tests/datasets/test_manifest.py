"""Tests of the dataset manifest, validation, generation and the ``data`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from marktrace.datasets import manifest as manifest_mod
from marktrace.datasets.cli import app
from marktrace.datasets.manifest import (
    Entry,
    GenerationConflict,
    LineLabel,
    ManifestError,
    generate_dataset,
    read_manifest,
    validate_dataset,
    write_manifest,
)
from marktrace.datasets.synth import SynthConfig

SMALL = SynthConfig(image_size=(96, 160))


def _img(path: Path, seed: int, size: tuple[int, int] = (40, 80)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, size=(*size, 3), dtype=np.uint8))


def test_manifest_round_trip(tmp_path: Path) -> None:
    entries = [
        Entry(
            image="a.png",
            lines=[LineLabel(text="AB1234", role="serial", polygon=[(0, 0), (10, 0), (10, 5), (0, 5)])],
            meta={"k": 1},
        ),
        Entry(image="b.png", lines=[LineLabel(text="MADE IN ITALY", role="country")], source="real"),
    ]
    path = write_manifest(tmp_path, entries)
    assert path.name == "manifest.jsonl"
    back = read_manifest(tmp_path)
    assert back == entries
    assert back[1].lines[0].polygon is None
    assert "polygon" not in path.read_text().splitlines()[1]


def test_read_manifest_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text('{"image": "a.png"}\n{"image": 3, "lines": "x"}\n')
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2"):
        read_manifest(tmp_path)


def test_validate_catches_each_error_kind(tmp_path: Path) -> None:
    _img(tmp_path / "ok.png", 0)
    _img(tmp_path / "dup.png", 0)  # same bytes as ok.png
    _img(tmp_path / "small.png", 1, size=(8, 8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    poly_out = [(0, 0), (500, 0), (500, 10), (0, 10)]
    rows = [
        Entry(image="ok.png", lines=[LineLabel(text="AB123", role="serial")]).model_dump_json(),
        "{not json",
        Entry(image="missing.png", lines=[LineLabel(text="X1")]).model_dump_json(),
        Entry(image="broken.png", lines=[LineLabel(text="X2")]).model_dump_json(),
        Entry(image="dup.png", lines=[LineLabel(text="CAL. 9mm", role="calibre")]).model_dump_json(),
        Entry(image="small.png", lines=[LineLabel(text="   ")]).model_dump_json(),
        Entry(image="ok.png", lines=[LineLabel(text="ЛК 4521", polygon=poly_out)]).model_dump_json(),
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    rep = validate_dataset(tmp_path)
    kinds = rep.counts()
    for kind in (
        "parse",
        "missing_image",
        "undecodable_image",
        "charset",
        "duplicate_image",
        "polygon_out_of_bounds",
        "empty_text",
        "too_small",
    ):
        assert kinds.get(kind, 0) >= 1, (kind, kinds)
    assert next(i for i in rep.issues if i.kind == "parse").line == 2
    assert next(i for i in rep.issues if i.kind == "missing_image").line == 3
    assert rep.per_role["serial"] == 1 and rep.per_role["calibre"] == 1
    assert not rep.ok
    # a custom charset that allows Cyrillic removes the charset issue
    rep2 = validate_dataset(tmp_path, charset="".join(chr(c) for c in range(32, 127)) + "ЛК")
    assert "charset" not in rep2.counts()


def test_generate_resume_and_validate(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    mpath = generate_dataset(out, 4, SMALL, seed=100, workers=1, progress=False)
    entries = read_manifest(mpath)
    assert len(entries) == 4 and all(e.source == "synthetic" for e in entries)
    assert all(any(ln.role == "serial" for ln in e.lines) for e in entries)
    rep = validate_dataset(out)
    assert rep.ok, rep.issues
    first = (out / entries[0].image).read_bytes()
    # resume: remove one image, keep the others; only the missing one is re-rendered, identically
    (out / entries[1].image).unlink()
    stamp = (out / entries[0].image).stat().st_mtime_ns
    generate_dataset(out, 4, SMALL, seed=100, workers=1, progress=False)
    assert (out / entries[1].image).is_file()
    assert (out / entries[0].image).stat().st_mtime_ns == stamp
    assert (out / entries[0].image).read_bytes() == first
    assert read_manifest(out) == entries


def test_cli_synth_validate_round_trip(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(
        app,
        ["synth", str(out), "--n", "3", "--seed", "5", "--fonts", "heldout", "--wear", "0.1,0.5", "--quiet"],
    )
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "synth_config.json").read_text())
    assert cfg["config"]["fonts"] == "heldout" and cfg["config"]["wear"] == [0.1, 0.5]
    res = runner.invoke(app, ["validate", str(out)])
    assert res.exit_code == 0, res.output
    assert "OK" in res.output
    # break it: the validator exits non-zero with a table naming the problem
    e = read_manifest(out)
    (out / e[0].image).unlink()
    res = runner.invoke(app, ["validate", str(out)])
    assert res.exit_code == 1
    assert "missing_image" in res.output
    res = runner.invoke(app, ["synth", str(tmp_path / "bad"), "--n", "1", "--wear", "0.9,0.1"])
    assert res.exit_code != 0


# ------------------------------------------------------------------------------ resume never mixes settings


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generate_refuses_other_settings_and_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, 2, SynthConfig(image_size=(96, 160), fonts="train"), seed=0, progress=False)
    before = _snapshot(out)
    held_out = SynthConfig(image_size=(96, 160), fonts="heldout")
    with pytest.raises(GenerationConflict) as err:
        generate_dataset(out, 2, held_out, seed=1_700_000_000, progress=False)
    msg = str(err.value)
    assert str(out) in msg and "seed: 0 -> 1700000000" in msg and "config.fonts: 'train' -> 'heldout'" in msg
    # only the seed differs: still refused
    with pytest.raises(GenerationConflict, match=r"seed: 0 -> 7"):
        generate_dataset(out, 2, SynthConfig(image_size=(96, 160), fonts="train"), seed=7, progress=False)
    assert _snapshot(out) == before  # synth_config.json, images, sidecars and manifest untouched
    # the same settings resume (and may extend n)
    generate_dataset(out, 3, SynthConfig(image_size=(96, 160), fonts="train"), seed=0, progress=False)
    entries = read_manifest(out)
    assert [e.meta["seed"] for e in entries] == [0, 1, 2]
    assert json.loads((out / "synth_config.json").read_text())["n"] == 3


def test_generate_refuses_a_folder_it_cannot_vouch_for(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    write_manifest(real, [Entry(image="a.png", source="real")])
    before = _snapshot(real)
    with pytest.raises(GenerationConflict, match=r"no synth_config.json"):
        generate_dataset(real, 1, SMALL, progress=False)
    assert _snapshot(real) == before  # the real dataset's manifest is not overwritten
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "synth_config.json").write_text('{"config": {"fonts": "train"', encoding="utf-8")
    with pytest.raises(GenerationConflict, match=r"broken/synth_config.json: unreadable"):
        generate_dataset(broken, 1, SMALL, progress=False)
    # an existing empty folder (or one with unrelated files) is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("x")
    assert len(read_manifest(generate_dataset(empty, 1, SMALL, progress=False))) == 1


def test_resume_rerenders_items_it_cannot_trust(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate_dataset(out, 5, SMALL, seed=3, progress=False)
    entries = read_manifest(out)
    pngs = [out / e.image for e in entries]
    sides = [p.with_suffix(".json") for p in pngs]
    good = {i: pngs[i].read_bytes() for i in range(5)}
    stamp = pngs[0].stat().st_mtime_ns
    sides[1].write_bytes(sides[1].read_bytes()[:40])  # half a sidecar
    sides[2].write_bytes(b"\xff\xfe" + sides[2].read_bytes())  # not UTF-8
    pngs[3].write_bytes(good[3][: len(good[3]) // 2])  # half a PNG
    other = json.loads(sides[4].read_text())
    other["meta"]["seed"] = 999  # a sidecar of another seed
    sides[4].write_text(json.dumps(other))
    generate_dataset(out, 5, SMALL, seed=3, progress=False)
    assert read_manifest(out) == entries
    assert all(pngs[i].read_bytes() == good[i] for i in range(5))
    assert all(Entry.model_validate_json(sides[i].read_bytes()) == entries[i] for i in range(5))
    assert pngs[0].stat().st_mtime_ns == stamp  # the sound item was kept


def test_sidecar_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ds"
    real_replace = manifest_mod.os.replace

    def crash_on_sidecar(src: str | Path, dst: str | Path) -> None:
        if str(dst).endswith(".json"):
            raise OSError("simulated crash while writing the sidecar")
        real_replace(src, dst)

    monkeypatch.setattr(manifest_mod.os, "replace", crash_on_sidecar)
    with pytest.raises(OSError, match="simulated crash"):
        generate_dataset(out, 1, SMALL, seed=9, progress=False)
    monkeypatch.setattr(manifest_mod.os, "replace", real_replace)
    side = out / "images/0000/0000000.json"
    assert not side.exists()  # no half sidecar under the real name for a resume to trust
    assert read_manifest(generate_dataset(out, 1, SMALL, seed=9, progress=False))[0].meta["seed"] == 9
    assert side.is_file()


def test_cli_synth_refuses_other_settings(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["synth", str(out), "--n", "1", "--seed", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["synth", str(out), "--n", "1", "--seed", "1700000000", "--fonts", "heldout", "--quiet"])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "already holds a generation" in res.output and "seed: 0 -> 1700000000" in res.output
    assert json.loads((out / "synth_config.json").read_text())["seed"] == 0


# ------------------------------------------------------------------------------ bad manifest content


def test_read_manifest_and_validate_name_a_non_utf8_line(tmp_path: Path) -> None:
    _img(tmp_path / "a.png", 0)
    mpath = tmp_path / "manifest.jsonl"
    mpath.write_bytes(b'{"image": "a.png"}\n{"image": "b\xe9.png"}\n')  # line 2 is Latin-1
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2: not valid UTF-8 \(byte 0xe9"):
        read_manifest(tmp_path)
    rep = validate_dataset(tmp_path)
    assert rep.n_entries == 1 and [(i.kind, i.line) for i in rep.issues] == [("parse", 2)]
    assert rep.issues[0].detail.startswith(f"{mpath}:2: not valid UTF-8")
    res = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "parse" in res.output and "UTF-8" in res.output
    mpath.write_bytes('{"image": "a.png"}\n'.encode("utf-16"))
    with pytest.raises(ManifestError, match=r"manifest.jsonl:1: .*looks like UTF-16"):
        read_manifest(mpath)


@pytest.mark.parametrize(
    ("rows", "line", "problem"),
    [
        (['{"image": "a.png"}', "[1, 2]"], 2, "each line must be one JSON object, got an array"),
        (['{"image": "a.png"}', '"a.png"'], 2, "got a string"),
        (['{"lines": []}'], 1, "image: Field required"),
        (['{"image": "a.png"}', "", '{"image": "a.png",'], 3, "Invalid JSON: .* at column"),
        (['{"image": "../x.png"}'], 1, r"image path '\.\./x\.png' leaves the dataset folder"),
        (['{"image": "images/../../x.png"}'], 1, "leaves the dataset folder"),
        (['{"image": "/etc/hostname"}'], 1, "is absolute"),
        (['{"image": "C:\\\\data\\\\x.png"}'], 1, "is absolute"),
        (['{"image": ""}'], 1, "image path is empty"),
        (['\ufeff{"image": "a.png"}'], 1, "byte-order mark"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, rows: list[str], line: int, problem: str) -> None:
    _img(tmp_path / "a.png", 0)
    mpath = tmp_path / "manifest.jsonl"
    mpath.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"manifest\.jsonl:{line}: .*{problem}"):
        read_manifest(tmp_path)
    rep = validate_dataset(tmp_path)
    parse = [i for i in rep.issues if i.kind == "parse"]
    assert [i.line for i in parse] == [line], rep.issues
    assert parse[0].detail.startswith(f"{mpath}:{line}: ")
    assert "missing_image" not in rep.counts()  # an escaping path is never looked up


def test_empty_manifest(tmp_path: Path) -> None:
    for content in ("", "\n  \n"):
        (tmp_path / "manifest.jsonl").write_text(content, encoding="utf-8")
        assert read_manifest(tmp_path) == []  # an empty dataset reads as no entries
        rep = validate_dataset(tmp_path)
        assert [(i.kind, i.line) for i in rep.issues] == [("parse", None)]
        assert f"{tmp_path / 'manifest.jsonl'}: the manifest has no entries" in rep.issues[0].detail


def test_entry_refuses_paths_outside_the_folder() -> None:
    for bad in ("../x.png", "/abs/x.png", "a/../../x.png", "..\\x.png", "D:x.png", ""):
        with pytest.raises(ValueError, match="image path"):
            Entry(image=bad)
    assert Entry(image="images/0000/0000001.png").image == "images/0000/0000001.png"
    assert Entry(image="./a..b.png").image == "./a..b.png"


def test_cli_validate_prints_paths_as_text(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text('{"image": "a[/b].png"}\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "missing_image" in res.output and "a[/b].png" in res.output


def test_polygons_are_checked_in_the_frame_training_sees_and_must_be_finite(tmp_path: Path) -> None:
    """A phone photo stored landscape with EXIF "rotate 90": training and the reader see it portrait."""
    from PIL import Image

    stored = Image.fromarray(np.full((40, 100, 3), 128, np.uint8))  # 100 wide, 40 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "phone.jpg", exif=exif)
    assert cv2.imread(str(tmp_path / "phone.jpg"), cv2.IMREAD_COLOR).shape[:2] == (100, 40)
    inside = [(2.0, 60.0), (38.0, 60.0), (38.0, 90.0), (2.0, 90.0)]  # fits 40 x 100, not 100 x 40
    outside = [(60.0, 2.0), (90.0, 2.0), (90.0, 30.0), (60.0, 30.0)]  # fits 100 x 40, not 40 x 100
    for polygon, ok in ((inside, True), (outside, False)):
        row = Entry(image="phone.jpg", lines=[LineLabel(text="AB123", polygon=polygon)]).model_dump_json()
        (tmp_path / "manifest.jsonl").write_text(row + "\n", encoding="utf-8")
        assert ("polygon_out_of_bounds" not in validate_dataset(tmp_path).counts()) is ok
    nan = '{"image": "phone.jpg", "lines": [{"text": "AB1", "polygon": [[NaN, 0], [5, 0], [5, 5], [0, 5]]}]}'
    (tmp_path / "manifest.jsonl").write_text(nan + "\n", encoding="utf-8")
    issue = next(i for i in validate_dataset(tmp_path).issues if i.kind == "parse")
    assert issue.line == 1 and "finite" in issue.detail
    with pytest.raises(ManifestError, match="manifest.jsonl:1"):
        read_manifest(tmp_path)


def test_the_default_charset_is_the_recognizers(tmp_path: Path) -> None:
    _img(tmp_path / "ok.png", 0)
    row = Entry(image="ok.png", lines=[LineLabel(text="PRIX 100€")]).model_dump_json()
    (tmp_path / "manifest.jsonl").write_text(row + "\n", encoding="utf-8")
    assert "charset" not in validate_dataset(tmp_path).counts()  # € is one of english_g2's characters


def test_validate_names_degenerate_polygons_folders_and_oversized_images(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    _img(tmp_path / "ok.png", 0)
    (tmp_path / "folder.png").mkdir()
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)  # a decompression bomb's header, no pixels
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    flat = [(10.0, 10.0)] * 4
    rows = [
        Entry(image="ok.png", lines=[LineLabel(text="AB123", polygon=flat)]),
        Entry(image="folder.png", lines=[LineLabel(text="X1")]),
        Entry(image="bomb.png", lines=[LineLabel(text="X2")]),
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in rows), encoding="utf-8")
    issues = {(i.kind, i.line): i.detail for i in validate_dataset(tmp_path).issues}
    assert "encloses no area" in issues[("degenerate_polygon", 1)]
    assert issues[("missing_image", 2)].endswith("a folder, not an image")
    assert "400,000,000 pixels" in issues[("undecodable_image", 3)]


def test_polygon_area_either_winding() -> None:
    square = [(0.0, 0.0), (4.0, 0.0), (4.0, 3.0), (0.0, 3.0)]
    assert manifest_mod.polygon_area(square) == manifest_mod.polygon_area(square[::-1]) == 12.0
