"""Pieces of ``python -m marktrace.models.vectors``: card blocks, PNG fallbacks, INT8 builds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from marktrace.models.vectors import MAX_VECTOR_BYTES, _png, _small_png, replace_block


def test_replace_block_keeps_hand_written_text() -> None:
    card = "intro\n<!-- generated:files -->\nold\n<!-- /generated:files -->\nlimits\n"
    out = replace_block(card, "files", "| new |\n")
    assert out == "intro\n<!-- generated:files -->\n| new |\n<!-- /generated:files -->\nlimits\n"
    assert replace_block(out, "files", "| new |\n") == out


def test_replace_block_refuses_a_card_without_the_block() -> None:
    with pytest.raises(ValueError, match="generated:vectors"):
        replace_block("no markers here", "vectors", "x")


def test_small_png_falls_back_to_cheaper_forms_under_the_cap() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((120, 200, 3), 128, np.uint8)
    stored = _small_png(flat)
    assert stored is not None and stored[1] == "colour"
    noisy = rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)  # colour noise does not compress
    gray = cv2.cvtColor(noisy, cv2.COLOR_BGR2GRAY)
    assert len(_png(noisy)) > MAX_VECTOR_BYTES and len(_png(gray)) > MAX_VECTOR_BYTES  # colour, gray do not fit
    stored = _small_png(noisy)
    assert stored is not None and stored[1] == "gray, 3x3 blur"  # the first cheaper rung that fits
    assert stored[0] == _png(cv2.GaussianBlur(gray, (3, 3), 0.8)) and len(stored[0]) <= MAX_VECTOR_BYTES
    decoded = cv2.imdecode(np.frombuffer(stored[0], np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None and decoded.shape == (200, 260)  # stored as one gray channel
    huge = rng.integers(0, 256, (900, 900, 3), dtype=np.uint8)
    assert _small_png(huge) is None


def test_int8_variants_are_built_once_and_kept_unless_requantized(tiny_models: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    import shutil

    from marktrace.models.registry import load_registry
    from marktrace.models.vectors import build_variants

    folder = tmp_path / "models"
    shutil.copytree(tiny_models["dir"], folder)
    first = build_variants(folder)
    assert sorted(e["task"] for e in first) == ["line_detection", "line_recognition"]
    files = {e["file"]: (folder / e["file"]).stat().st_mtime_ns for e in first}
    assert build_variants(folder) == []  # verified INT8 files are kept as they are
    assert {f: (folder / f).stat().st_mtime_ns for f in files} == files
    rec = next(e for e in first if e["task"] == "line_recognition")
    (folder / rec["file"]).write_bytes(b"altered")  # no longer matches its entry: built again
    again = build_variants(folder)
    assert [e["file"] for e in again] == [rec["file"]]
    assert sorted(e["file"] for e in build_variants(folder, requantize=True)) == sorted(files)
    assert {m.file for m in load_registry(folder) if m.variant == "int8"} == set(files)
