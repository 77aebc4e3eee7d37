"""Shared fixtures: tiny trained-and-exported models (timm-style test models) built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny training run (a few steps of the ``tiny`` preset); needs torch."""
    pytest.importorskip("torch", reason="training tests need the [train] extra")
    from marktrace.training.config import load_config
    from marktrace.training.train import train

    out = tmp_path_factory.mktemp("runs")
    return train(load_config("tiny"), out, progress=lambda _: None)


@pytest.fixture(scope="session")
def tiny_models(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny run exported to ONNX with a registry, as ``export-models`` does."""
    from marktrace.models.publish import export_run

    out = tmp_path_factory.mktemp("models")
    export_run(tiny_run, out, "0.0.1", calibrate_images=8)
    registry = json.loads((out / "registry.json").read_text())
    return {m["task"]: out / m["file"] for m in registry["models"]} | {"dir": out}


@pytest.fixture(scope="session")
def tiny_restorer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny restorer training run (a few steps of the ``tiny-restorer`` preset); needs torch."""
    pytest.importorskip("torch", reason="training tests need the [train] extra")
    from marktrace.training.config import load_restorer_config
    from marktrace.training.restorer import train_restorer

    out = tmp_path_factory.mktemp("restorer-runs")
    return train_restorer(load_restorer_config("tiny-restorer"), out, progress=lambda _: None)


@pytest.fixture(scope="session")
def tiny_restorer(tiny_restorer_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny restorer run exported to ONNX (``export-models`` on a restorer run); returns the file."""
    from marktrace.models.publish import export_run

    out = tmp_path_factory.mktemp("restorer-models")
    result = export_run(tiny_restorer_run, out, "0.0.1")
    return Path(result["restorer"]["path"])
