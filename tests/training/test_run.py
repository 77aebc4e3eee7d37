"""Run folders: atomic writes (config, run.json, checkpoints), failures recorded, checkpoints plain enough for
``torch.load(weights_only=True)``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import pytest
from pydantic import BaseModel

from marktrace.training import run as run_module
from marktrace.training.run import RunFolder, atomic_torch_save, atomic_write_bytes, atomic_write_text

torch = pytest.importorskip("torch")


class _Config(BaseModel):
    name: str = "unit"
    seed: int = 3


def _leftovers(folder: Path) -> list[str]:
    """Temporary files the atomic writers may have left in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name)


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second é")
    assert target.read_text(encoding="utf-8") == "second é"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_write_that_fails_midway_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    target = tmp_path / "run.json"
    target.write_text('{"old": true}')

    def boom(*_: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(run_module.os, failing, boom)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(target, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True}
    assert _leftovers(tmp_path) == []


def test_a_checkpoint_save_that_crashes_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "detector-best.pt"
    atomic_torch_save({"state_dict": {"w": torch.ones(3)}, "size": "tiny", "metrics": {"score": 0.5}}, path)
    real_save = torch.save

    def crash_midway(obj: object, handle: IO[bytes]) -> None:
        real_save(obj, handle)
        handle.flush()
        raise KeyboardInterrupt  # the process is stopped while the new checkpoint is half written

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"state_dict": {"w": torch.zeros(3)}, "size": "tiny", "metrics": {"score": 0.9}}, path)
    monkeypatch.undo()
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(state["state_dict"]["w"], torch.ones(3)) and state["metrics"] == {"score": 0.5}
    assert _leftovers(tmp_path) == []


def test_run_folder_keeps_run_json_whole_when_an_update_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunFolder(tmp_path, "unit", _Config(), extra={"status": "running"})
    assert (run.path / "config.yaml").read_text().startswith("name: unit")
    before = (run.path / "run.json").read_text()
    assert json.loads(before)["status"] == "running"

    def boom(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(run_module.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        run.update_info(final_metrics={"x": 1.0})
    run.mark_failed(RuntimeError("after the disk filled"))  # never raises, even when it cannot write
    monkeypatch.undo()
    assert (run.path / "run.json").read_text() == before
    assert _leftovers(run.path) == []
    run.mark_failed(ValueError("bad batch"))
    info = json.loads((run.path / "run.json").read_text())
    assert info["status"] == "failed" and info["error"] == "ValueError: bad batch" and info["failed"]


def _only_run(out: Path) -> Path:
    (folder,) = list(out.iterdir())
    return folder


def test_a_training_run_that_crashes_records_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.training import train as train_module
    from marktrace.training.config import load_config

    def broken(_: object) -> None:
        raise RuntimeError("detector weights unreadable")

    monkeypatch.setattr(train_module, "load_detector", broken)
    with pytest.raises(RuntimeError, match="unreadable"):
        train_module.train(load_config("tiny"), tmp_path, progress=lambda _: None)
    info = json.loads((_only_run(tmp_path) / "run.json").read_text())
    assert info["status"] == "failed" and info["error"] == "RuntimeError: detector weights unreadable"
    assert info["commit"] and "finished" not in info


def test_a_restorer_run_that_crashes_records_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from marktrace.training import restorer as restorer_module
    from marktrace.training.config import load_restorer_config

    threads = torch.get_num_threads()

    def broken(*_: object) -> None:
        raise MemoryError("no room for the network")

    monkeypatch.setattr(restorer_module, "build_restorer", broken)
    try:
        with pytest.raises(MemoryError):
            restorer_module.train_restorer(load_restorer_config("tiny-restorer"), tmp_path, progress=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    info = json.loads((_only_run(tmp_path) / "run.json").read_text())
    assert info["status"] == "failed" and info["error"] == "MemoryError: no room for the network"
    assert info["task"] == "restoration"


def test_finished_runs_say_so_and_their_checkpoints_load_with_weights_only(
    tiny_run: Path, tiny_restorer_run: Path
) -> None:
    for run in (tiny_run, tiny_restorer_run):
        assert json.loads((run / "run.json").read_text())["status"] == "completed"
        checkpoints = sorted((run / "checkpoints").glob("*.pt"))
        assert len(checkpoints) >= 2
        for path in checkpoints:
            state = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects in them
            assert state["state_dict"] and isinstance(state["size"], str)
        assert _leftovers(run) == []
        assert not [p for p in os.listdir(run) if p.startswith(".")]
