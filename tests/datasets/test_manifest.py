"""Tests of the dataset manifest, validation, generation and the ``data`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from marktrace.datasets.cli import app
from marktrace.datasets.manifest import (
    Entry,
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
