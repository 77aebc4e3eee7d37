"""``marktrace models verify`` passes on the shipped folder and fails, naming the file, when a byte changes."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from marktrace.models.cli import app
from marktrace.models.registry import SHIPPED_DIR, load_registry


def _copy_shipped(target: Path) -> Path:
    target.mkdir()
    shutil.copy2(SHIPPED_DIR / "registry.json", target / "registry.json")
    for model in load_registry(SHIPPED_DIR):
        shutil.copy2(model.path(SHIPPED_DIR), target / model.file)
    return target


def test_verify_passes_on_an_intact_copy(tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path / "models")
    result = CliRunner().invoke(app, ["verify", "--folder", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok") >= len(load_registry(folder))


def test_verify_fails_naming_the_file_when_a_byte_flips(tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path / "models")
    victim = next(m for m in load_registry(folder) if m.task == "line_recognition" and m.variant == "fp32")
    path = folder / victim.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["verify", "--folder", str(folder)], terminal_width=400)
    assert result.exit_code == 1
    failing = [line for line in result.output.splitlines() if "FAIL" in line]
    assert len(failing) == 1 and victim.file in failing[0] and "SHA-256" in failing[0]
