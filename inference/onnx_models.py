"""Loading the ONNX models: checksum against the registry, metadata parsed into a frozen dataclass.

Every shipped ONNX file describes itself in ``metadata_props`` (task, charset, input layout and
size, normalisation, decoding parameters, version, training commit). Inference reads what it needs
from there and refuses a file whose metadata is missing or does not fit the task.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from marktrace.inference.detect import LineGeometry

METADATA_SCHEMA_VERSION = "1"
logger = logging.getLogger("marktrace.inference")


class ModelMetadataError(ValueError):
    """An ONNX file's metadata is missing, malformed, or for another task; the message names the file."""


@dataclass(frozen=True)
class ModelMeta:
    """What inference needs to know about a model, read from its ONNX metadata."""

    path: str
    task: Literal["line_detection", "line_recognition", "restoration", "overstamp_scoring"]
    name: str
    version: str
    training_commit: str
    input_layout: str
    normalisation: str
    charset: str = ""
    blank_index: int = 0
    input_height: int = 0
    input_width: int = 0
    """Over-stamp patch scorer: patch width (the other tasks take any width)."""
    long_side: int = 0
    stride: int = 0
    threshold: float = 0.7
    min_score: float = 0.75
    line_geometry: LineGeometry = field(default_factory=LineGeometry)
    """Detector: core-to-line calibration (metadata ``line_geometry``; without it, the training shrink's inverse)."""
    extra: tuple[tuple[str, str], ...] = ()


REQUIRED_KEYS = (
    "marktrace_schema",
    "task",
    "name",
    "version",
    "training_commit",
    "input_layout",
    "normalisation",
)
TASK_KEYS = {
    "line_detection": ("long_side", "stride", "threshold", "min_score"),
    "line_recognition": ("charset", "blank_index", "input_height"),
    "restoration": ("input_height", "threshold"),
    "overstamp_scoring": ("input_height", "input_width"),
}


def parse_metadata(path: str, props: dict[str, str], expected_task: str | None = None) -> ModelMeta:
    """Validate and parse a model's ``metadata_props``."""
    missing = [k for k in REQUIRED_KEYS if k not in props]
    if missing:
        raise ModelMetadataError(f"{path}: ONNX metadata lacks {', '.join(missing)}; not a marktrace model")
    if props["marktrace_schema"] != METADATA_SCHEMA_VERSION:
        raise ModelMetadataError(
            f"{path}: metadata schema {props['marktrace_schema']!r}, this marktrace reads {METADATA_SCHEMA_VERSION!r}"
        )
    task = props["task"]
    if task not in TASK_KEYS:
        raise ModelMetadataError(f"{path}: unknown task {task!r}")
    if expected_task is not None and task != expected_task:
        raise ModelMetadataError(f"{path}: is a {task} model, expected {expected_task}")
    missing = [k for k in TASK_KEYS[task] if k not in props]
    if missing:
        raise ModelMetadataError(f"{path}: {task} metadata lacks {', '.join(missing)}")
    try:
        values: dict[str, Any] = {
            "path": path,
            "task": task,
            "name": props["name"],
            "version": props["version"],
            "training_commit": props["training_commit"],
            "input_layout": props["input_layout"],
            "normalisation": props["normalisation"],
        }
        if task == "line_recognition":
            values["charset"] = json.loads(props["charset"])
            values["blank_index"] = int(props["blank_index"])
            values["input_height"] = int(props["input_height"])
            if not values["charset"] or values["blank_index"] != 0:
                raise ValueError("charset must be non-empty with the blank at index 0")
        elif task == "restoration":
            values["input_height"] = int(props["input_height"])
            values["threshold"] = float(props["threshold"])
            if values["input_height"] <= 0 or values["input_height"] % 8:
                raise ValueError("input_height must be a positive multiple of 8")
        elif task == "overstamp_scoring":
            values["input_height"] = int(props["input_height"])
            values["input_width"] = int(props["input_width"])
            if values["input_height"] <= 0 or values["input_width"] <= 0:
                raise ValueError("input_height and input_width must be positive")
        else:
            values["long_side"] = int(props["long_side"])
            values["stride"] = int(props["stride"])
            values["threshold"] = float(props["threshold"])
            values["min_score"] = float(props["min_score"])
            if "line_geometry" in props:
                values["line_geometry"] = LineGeometry.from_json(props["line_geometry"])
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ModelMetadataError(f"{path}: malformed metadata ({exc})") from None
    known = set(REQUIRED_KEYS) | set(TASK_KEYS[task]) | ({"line_geometry"} if task == "line_detection" else set())
    values["extra"] = tuple(sorted((k, v) for k, v in props.items() if k not in known))
    return ModelMeta(**values)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU session options: ``threads`` intra-op threads (default: all cores), sequential execution.

    The intra-op threads do not spin while waiting for work: between two runs the reader does its own
    work in Python (cropping, decoding, parsing, lexicon), and spinning threads took the cores it needs
    (measured on 2 cores, held-out clean photos: 97 -> 58 ms CPU and 49 -> 40 ms wall per photo).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads is not None else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def resolve_providers(requested: list[str] | None) -> list[str]:
    """The requested execution providers that this onnxruntime build has, CPU always last.

    A provider that is not available (e.g. CUDA without the ``[gpu]`` extra or without a GPU) is
    dropped with a warning on the ``marktrace`` logger, so the model falls back to the CPU.
    """
    available = set(ort.get_available_providers())
    chosen: list[str] = []
    for name in requested or ["CPUExecutionProvider"]:
        if name in available:
            if name not in chosen:
                chosen.append(name)
        else:
            logger.warning("onnxruntime execution provider %s is not available; falling back to CPU", name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


@dataclass(frozen=True)
class LoadedModel:
    """An onnxruntime session with its parsed metadata."""

    session: ort.InferenceSession
    meta: ModelMeta
    input_name: str


def load_model(
    path: str | Path,
    expected_task: str,
    threads: int | None = None,
    providers: list[str] | None = None,
) -> LoadedModel:
    """Open an ONNX model and check its metadata against the task the caller needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=resolve_providers(providers)
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelMetadataError(f"{path}: onnxruntime cannot load this file ({exc})") from None
    meta = parse_metadata(str(path), dict(session.get_modelmeta().custom_metadata_map), expected_task)
    return LoadedModel(session=session, meta=meta, input_name=session.get_inputs()[0].name)
