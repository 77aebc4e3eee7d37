"""Loading the ONNX models: checksum against the registry, metadata parsed into a frozen dataclass.

Every shipped ONNX file describes itself in ``metadata_props`` (task, charset, input layout and
size, normalisation, decoding parameters, version, training commit). Inference reads what it needs
from there and refuses a file whose metadata is missing or does not fit the task: the declared
``input_layout`` and ``normalisation`` must be ones this code's pre-processing produces
(:data:`ACCEPTED_PREPROCESSING`), and at load time the onnxruntime session's input and output
signature (dtypes, and every dimension that is a static integer) must agree with the metadata
(:func:`check_session`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
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


ACCEPTED_PREPROCESSING: dict[str, dict[str, tuple[str, ...]]] = {
    "line_detection": {
        # inference/detect.py::prepare_detector_input: RGB uint8 (1, H, W, 3), zero-padded to multiples of 32.
        "input_layout": ("NHWC uint8 RGB; H and W multiples of 32",),
        "normalisation": ("x / 127.5 - 1 (inside the graph)",),
    },
    "line_recognition": {
        # inference/recognize.py::batch_line_crops: gray uint8 (N, 1, input_height, W), W a multiple of 8,
        # right-padded by repeating the last column.
        "input_layout": ("NCHW uint8 gray, H = input_height, W any multiple of 8 (right-padded by edge replication)",),
        "normalisation": ("x / 127.5 - 1 (inside the graph)",),
    },
    "restoration": {
        # inference/restore.py::restore_crops: batch_line_crops of one crop, so the recognizer's layout.
        "input_layout": ("NCHW uint8 gray, H = input_height, W any multiple of 8 (right-padded by edge replication)",),
        # The per-crop standardisation (restorer 0.1.0) happens in the graph too; both forms take raw uint8.
        "normalisation": (
            "x / 127.5 - 1 (inside the graph)",
            "x / 127.5 - 1 (inside the graph); then per crop (x - mean) / (std + 0.02) over C, H, W",
        ),
    },
    "overstamp_scoring": {
        # inference/enhance/alteration.py::character_patches: square uint8 (N, 1, S, S) windows of a 64 px crop.
        "input_layout": (
            "NCHW uint8 gray patches, H = input_height, W = input_width (one character of a 64 px line crop, "
            "centred on its CTC step)",
        ),
        "normalisation": ("x / 255, then per patch (x - mean) / (std + 0.02) (inside the graph)",),
    },
}
"""Per task, the ``input_layout`` and ``normalisation`` metadata values this code's pre-processing matches.

They are the exact strings ``models/export.py`` writes. Every accepted form takes raw uint8 pixels (the
graph normalises), so a file declaring anything else, e.g. float input normalised outside the graph, is
refused. A new exporter wording or in-graph constant must be added here deliberately, after checking that
inference still feeds what the graph expects.
"""


def check_preprocessing(path: str, task: str, props: dict[str, str]) -> None:
    """Refuse ``input_layout`` / ``normalisation`` values that this code's pre-processing does not produce.

    Raises:
        ModelMetadataError: naming the file, the key, the value found and the value(s) expected.
    """
    for key, accepted in ACCEPTED_PREPROCESSING[task].items():
        found = props[key]
        if found not in accepted:
            expected = repr(accepted[0]) if len(accepted) == 1 else "one of " + ", ".join(map(repr, accepted))
            raise ModelMetadataError(
                f"{path}: metadata {key} is {found!r}, but marktrace's {task} pre-processing expects {expected}"
            )


def parse_metadata(path: str, props: dict[str, str], expected_task: str | None = None) -> ModelMeta:
    """Validate and parse a model's ``metadata_props``.

    Raises:
        ModelMetadataError: a key is missing or malformed, the task is not ``expected_task``, the declared
            input layout or normalisation is not what inference feeds (:data:`ACCEPTED_PREPROCESSING`), or
            an over-stamp patch scorer's patches are not square.
    """
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
    check_preprocessing(path, task, props)
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
            charset = values["charset"]
            if not isinstance(charset, str) or not charset or values["blank_index"] != 0:
                raise ValueError("charset must be a non-empty JSON string with the blank at index 0")
            if len(set(charset)) != len(charset):
                raise ValueError("charset lists a character twice (classes would be ambiguous)")
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
    if task == "overstamp_scoring" and values["input_width"] != values["input_height"]:
        raise ModelMetadataError(
            f"{path}: metadata input_width is {values['input_width']}, expected {values['input_height']} "
            "(= input_height: inference cuts square patches input_height wide)"
        )
    known = set(REQUIRED_KEYS) | set(TASK_KEYS[task]) | ({"line_geometry"} if task == "line_detection" else set())
    values["extra"] = tuple(sorted((k, v) for k, v in props.items() if k not in known))
    return ModelMeta(**values)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU session options: ``threads`` intra-op threads (default: all cores), sequential execution.

    The intra-op threads do not spin while waiting for work: between two runs the reader does its own
    work in Python (cropping, decoding, parsing, lexicon), and spinning threads took the cores it needs
    (measured on 2 cores, held-out clean photos: 97 -> 58 ms CPU and 49 -> 40 ms wall per photo).

    onnxruntime's CPU memory arena is off: the arena keeps the largest buffers any run needed for the life of
    the session, on top of the next large photo (held-out ``framed`` photos read in one process: peak 589 ->
    509 MB, with no CPU time measurably lost there or on the held-out clean photos).

    Its memory pattern is off too: with it, a second run of the same input shape allocates one block for all the
    intermediate tensors the first run planned, live or not; the detector at 2048 px (unsure 12 MP photos) then
    took 140 MB beyond the input instead of 72-80 MB, for about 10% less time on that one pass.
    """
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
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


INPUT_DTYPE = "tensor(uint8)"
"""onnxruntime's name for the input dtype every task's pre-processing feeds."""
OUTPUT_DTYPE = "tensor(float)"
"""onnxruntime's name for float32, the output dtype inference reads."""

DimSpec = tuple[int, str] | None
"""One expected dimension: ``(size, why)``, or ``None`` for a dimension that may take any size."""


def expected_signature(meta: ModelMeta) -> tuple[tuple[DimSpec, ...], tuple[DimSpec, ...]]:
    """The input and output shapes inference relies on for ``meta``'s task (models/CONTRACT.md).

    Returns one :data:`DimSpec` per dimension of the (single) input and of the first output.
    """
    height = (meta.input_height, "metadata input_height")
    if meta.task == "line_detection":
        return (
            (None, None, None, (3, "RGB channels (NHWC)")),
            (None, (3, "channels: line-core probability, direction cos, direction sin"), None, None),
        )
    if meta.task == "line_recognition":
        classes = (len(meta.charset) + 1, f"classes: {len(meta.charset)} charset characters + the CTC blank")
        return (None, (1, "gray channel (NCHW)"), height, None), (None, None, classes)
    if meta.task == "restoration":
        return (
            (None, (1, "gray channel (NCHW)"), height, None),
            (None, (1, "mask channel"), height, None),
        )
    width = (meta.input_width, "metadata input_width")
    return (None, (1, "gray channel (NCHW)"), height, width), (None,)


def _check_shape(path: str, what: str, shape: Sequence[Any], expected: tuple[DimSpec, ...]) -> None:
    """Compare an onnxruntime shape with ``expected``; only static integer dimensions are checked."""
    if not shape:  # rank unknown to onnxruntime: nothing static to compare
        return
    if len(shape) != len(expected):
        raise ModelMetadataError(
            f"{path}: {what} has shape {list(shape)} (rank {len(shape)}), inference expects rank {len(expected)}"
        )
    for axis, (dim, spec) in enumerate(zip(shape, expected, strict=True)):
        if spec is None or not isinstance(dim, int) or dim < 0:
            continue  # any size allowed, or a symbolic / dynamic dimension
        size, why = spec
        if dim != size:
            raise ModelMetadataError(
                f"{path}: {what} has shape {list(shape)}: dimension {axis} is {dim}, expected {size} ({why})"
            )


def check_session(path: str, session: ort.InferenceSession, meta: ModelMeta) -> None:
    """Refuse a session whose inputs or outputs do not fit ``meta`` and what inference feeds and reads.

    Checks: exactly one input, of dtype uint8; at least one output, the first (the one inference reads)
    float32; and every dimension of both that is a static integer against :func:`expected_signature`
    (e.g. the recognizer's class count against ``len(charset) + 1``, its input height against
    ``input_height``, the detector's output channels). Symbolic dimensions pass.

    Raises:
        ModelMetadataError: naming the file, the tensor, what was found and what was expected.
    """
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelMetadataError(f"{path}: the graph has inputs {names}, inference feeds exactly one")
    if not outputs:
        raise ModelMetadataError(f"{path}: the graph has no outputs")
    expected_in, expected_out = expected_signature(meta)
    tensor_in, tensor_out = inputs[0], outputs[0]
    if tensor_in.type != INPUT_DTYPE:
        raise ModelMetadataError(f"{path}: input {tensor_in.name!r} is {tensor_in.type}, inference feeds {INPUT_DTYPE}")
    if tensor_out.type != OUTPUT_DTYPE:
        raise ModelMetadataError(
            f"{path}: output {tensor_out.name!r} is {tensor_out.type}, inference reads {OUTPUT_DTYPE} (float32)"
        )
    _check_shape(path, f"{meta.task} input {tensor_in.name!r}", tensor_in.shape, expected_in)
    _check_shape(path, f"{meta.task} output {tensor_out.name!r}", tensor_out.shape, expected_out)


@dataclass(frozen=True)
class LoadedModel:
    """An onnxruntime session with its parsed metadata."""

    session: ort.InferenceSession
    meta: ModelMeta
    input_name: str
    path: Path | None = None
    """The file it was loaded from (None for a session built in memory)."""
    sha256: str | None = None
    """SHA-256 of the bytes the session was built from (hashed once, at load; None when not known)."""


def load_model(
    path: str | Path,
    expected_task: str,
    threads: int | None = None,
    providers: list[str] | None = None,
) -> LoadedModel:
    """Open an ONNX model and check its metadata and its session's signature against the task the caller needs.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ModelMetadataError: onnxruntime cannot load the file, its metadata is missing, malformed, for
            another task or not what inference feeds (:func:`parse_metadata`), or the graph's inputs and
            outputs disagree with the metadata (:func:`check_session`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    data = path.read_bytes()  # read once: the session and the file's SHA-256 come from the same bytes
    try:
        session = ort.InferenceSession(
            data, sess_options=session_options(threads), providers=resolve_providers(providers)
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelMetadataError(f"{path}: onnxruntime cannot load this file ({exc})") from None
    meta = parse_metadata(str(path), dict(session.get_modelmeta().custom_metadata_map), expected_task)
    check_session(str(path), session, meta)
    return LoadedModel(session=session, meta=meta, input_name=session.get_inputs()[0].name, path=path,
                       sha256=hashlib.sha256(data).hexdigest())
