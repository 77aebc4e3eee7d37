"""The registry of shipped models: files, versions, SHA-256 checksums and cards (torch-free)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from marktrace.inference.images import sha256_file

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
REGISTRY_FILE = "registry.json"


class ModelChecksumError(ValueError):
    """A model file does not match the checksum recorded in the registry; the message names the file."""


@dataclass(frozen=True)
class RegisteredModel:
    """One entry of ``registry.json``."""

    name: str
    version: str
    task: str
    file: str
    sha256: str
    card: str
    variant: str = "fp32"
    default: bool = False

    def path(self, folder: Path = SHIPPED_DIR) -> Path:
        """Absolute path of the ONNX file."""
        return folder / self.file


def load_registry(folder: Path = SHIPPED_DIR) -> list[RegisteredModel]:
    """Read ``registry.json`` of a model folder."""
    path = folder / REGISTRY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model registry not found")
    data = json.loads(path.read_text())
    return [RegisteredModel(**entry) for entry in data["models"]]


def default_model(task: str, folder: Path = SHIPPED_DIR, variant: str = "fp32") -> RegisteredModel:
    """The default shipped model for a task."""
    candidates = [m for m in load_registry(folder) if m.task == task and m.variant == variant]
    if not candidates:
        raise LookupError(f"no shipped {variant} model for task {task!r} in {folder}")
    defaults = [m for m in candidates if m.default]
    return (defaults or candidates)[-1]


def verify_file(model: RegisteredModel, folder: Path = SHIPPED_DIR) -> Path:
    """Check a registered model's file against its recorded SHA-256; return its path."""
    path = model.path(folder)
    if not path.is_file():
        raise ModelChecksumError(f"{path}: model file missing")
    actual = sha256_file(path)
    if actual != model.sha256:
        raise ModelChecksumError(f"{path}: SHA-256 {actual} does not match the registry's {model.sha256}")
    return path
