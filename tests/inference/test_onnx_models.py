"""Loading ONNX models: the metadata's pre-processing and the session's signature must fit what inference does.

The graphs here are tiny hand-built ONNX files (``onnx.helper``, no torch) whose inputs and outputs have the
shapes and dtypes under test; the shipped files must keep loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from marktrace.inference.onnx_models import (
    ACCEPTED_PREPROCESSING,
    ModelMetadataError,
    load_model,
    parse_metadata,
)
from marktrace.models.onnx_metadata import read_metadata
from marktrace.models.registry import SHIPPED_DIR, load_registry

Dims = list[int | str]

CHARSET = "abc"
"""Charset of the hand-built recognizers: 3 characters, so 4 classes with the CTC blank."""


def _props(task: str, **overrides: str) -> dict[str, str]:
    """Complete, accepted metadata for ``task``; ``overrides`` replace or add keys."""
    accepted = ACCEPTED_PREPROCESSING[task]
    props = {
        "marktrace_schema": "1",
        "task": task,
        "name": f"test-{task}",
        "version": "0.0.0",
        "training_commit": "0000000",
        "input_layout": accepted["input_layout"][0],
        "normalisation": accepted["normalisation"][0],
    }
    props |= {
        "line_detection": {"long_side": "640", "stride": "4", "threshold": "0.7", "min_score": "0.75"},
        "line_recognition": {"charset": json.dumps(CHARSET), "blank_index": "0", "input_height": "64"},
        "restoration": {"input_height": "32", "threshold": "0.5"},
        "overstamp_scoring": {"input_height": "64", "input_width": "64"},
    }[task]
    return props | overrides


def _const(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _save(
    path: Path,
    props: dict[str, str],
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, int, Dims]],
    output: tuple[str, int, Dims],
    initializers: list[onnx.TensorProto] | None = None,
) -> Path:
    """Write a graph with the given nodes, inputs and output (declared shapes as given) and metadata."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(name, dtype, dims) for name, dtype, dims in inputs],
        [helper.make_tensor_value_info(*output)],
        initializer=initializers or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _detector(path: Path, props: dict[str, str], channels_in: int = 3, doubled: bool = False) -> Path:
    """uint8 (batch, h, w, C) -> float (batch, C, h, w); ``doubled`` concatenates the maps to 2C channels."""
    nodes = [
        helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x"], ["t" if doubled else "maps"], perm=[0, 3, 1, 2]),
    ]
    if doubled:
        nodes.append(helper.make_node("Concat", ["t", "t"], ["maps"], axis=1))
    out = (channels_in * 2) if doubled else channels_in
    pixels: tuple[str, int, Dims] = ("pixels", TensorProto.UINT8, ["batch", "height", "width", channels_in])
    return _save(path, props, nodes, [pixels], ("maps", TensorProto.FLOAT, ["batch", out, "height", "width"]))


def _recognizer(path: Path, props: dict[str, str], height: int | str = 64, classes: int = len(CHARSET) + 1) -> Path:
    """uint8 (batch, 1, height, width) -> float (batch, width, classes) (mean over rows, broadcast to classes)."""
    nodes = [
        helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axis2"], ["u"]),
        helper.make_node("Expand", ["u", "classes"], ["probs"]),
    ]
    pixels: tuple[str, int, Dims] = ("pixels", TensorProto.UINT8, ["batch", 1, height, "width"])
    return _save(
        path,
        props,
        nodes,
        [pixels],
        ("probs", TensorProto.FLOAT, ["batch", "width", classes]),
        [_const("axis2", [2]), _const("classes", [1, 1, classes])],
    )


def _restorer(path: Path, props: dict[str, str], out_dtype: int = TensorProto.FLOAT) -> Path:
    """uint8 (batch, 1, 32, width) -> the same shape, cast to ``out_dtype``."""
    nodes = [helper.make_node("Cast", ["pixels"], ["mask"], to=out_dtype)]
    pixels: tuple[str, int, Dims] = ("pixels", TensorProto.UINT8, ["batch", 1, 32, "width"])
    return _save(path, props, nodes, [pixels], ("mask", out_dtype, ["batch", 1, 32, "width"]))


def _patch_scorer(
    path: Path,
    props: dict[str, str],
    width: int = 64,
    in_dtype: int = TensorProto.UINT8,
    axes: tuple[int, ...] = (1, 2, 3),
) -> Path:
    """(batch, 1, 64, width) -> float mean over ``axes`` (all but the batch: one logit per patch)."""
    nodes = [
        helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["logits"], axes=list(axes), keepdims=0),
    ]
    out: Dims = ["batch"] + [1] * (3 - len(axes))
    pixels: tuple[str, int, Dims] = ("pixels", in_dtype, ["batch", 1, 64, width])
    return _save(path, props, nodes, [pixels], ("logits", TensorProto.FLOAT, out))


# --- the shipped files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", load_registry(SHIPPED_DIR), ids=lambda m: m.file)
def test_every_shipped_model_loads(model: Any) -> None:
    loaded = load_model(model.path(SHIPPED_DIR), model.task, threads=1)
    accepted = ACCEPTED_PREPROCESSING[model.task]
    assert loaded.meta.input_layout in accepted["input_layout"]
    assert loaded.meta.normalisation in accepted["normalisation"]


@pytest.mark.parametrize("key", ["input_layout", "normalisation"])
@pytest.mark.parametrize("model", load_registry(SHIPPED_DIR), ids=lambda m: m.file)
def test_a_shipped_file_with_other_preprocessing_metadata_is_refused(model: Any, key: str) -> None:
    props = read_metadata(model.path(SHIPPED_DIR))
    parse_metadata(model.file, props, model.task)
    bad = {**props, key: "NCHW float32, already normalised to [-1, 1]"}
    with pytest.raises(ModelMetadataError) as info:
        parse_metadata(model.file, bad, model.task)
    message = str(info.value)
    assert message.startswith(f"{model.file}: metadata {key} is 'NCHW float32, already normalised to [-1, 1]'")
    assert repr(props[key]) in message  # the value expected


def test_the_restorer_accepts_both_in_graph_normalisations() -> None:
    for value in ACCEPTED_PREPROCESSING["restoration"]["normalisation"]:
        assert parse_metadata("r.onnx", _props("restoration", normalisation=value)).normalisation == value
    with pytest.raises(ModelMetadataError, match=r"r\.onnx: metadata normalisation is 'x / 255'.*expects one of"):
        parse_metadata("r.onnx", _props("restoration", normalisation="x / 255"))


def test_a_layout_accepted_for_one_task_is_refused_for_another() -> None:
    detector_layout = ACCEPTED_PREPROCESSING["line_detection"]["input_layout"][0]
    with pytest.raises(ModelMetadataError, match="metadata input_layout is 'NHWC uint8 RGB.*line_recognition"):
        parse_metadata("rec.onnx", _props("line_recognition", input_layout=detector_layout))


def test_patch_scorer_patches_must_be_square() -> None:
    assert parse_metadata("p.onnx", _props("overstamp_scoring")).input_width == 64
    with pytest.raises(ModelMetadataError, match=r"p\.onnx: metadata input_width is 48, expected 64 \(= input_height"):
        parse_metadata("p.onnx", _props("overstamp_scoring", input_width="48"))
    shipped = next(m for m in load_registry(SHIPPED_DIR) if m.task == "overstamp_scoring")
    props = read_metadata(shipped.path(SHIPPED_DIR))
    with pytest.raises(ModelMetadataError, match="input_width is 32, expected 64"):
        parse_metadata(shipped.file, {**props, "input_width": "32"}, "overstamp_scoring")


# --- the session's signature against the metadata ----------------------------------------------------------------


def test_well_formed_hand_built_models_load_and_run(tmp_path: Path) -> None:
    det = load_model(_detector(tmp_path / "det.onnx", _props("line_detection")), "line_detection", threads=1)
    assert det.session.run(None, {"pixels": np.zeros((1, 32, 64, 3), np.uint8)})[0].shape == (1, 3, 32, 64)
    rec = load_model(_recognizer(tmp_path / "rec.onnx", _props("line_recognition")), "line_recognition", threads=1)
    assert rec.session.run(None, {"pixels": np.zeros((2, 1, 64, 40), np.uint8)})[0].shape == (2, 40, 4)
    res = load_model(_restorer(tmp_path / "res.onnx", _props("restoration")), "restoration", threads=1)
    assert res.session.run(None, {"pixels": np.zeros((1, 1, 32, 16), np.uint8)})[0].shape == (1, 1, 32, 16)
    patch = load_model(_patch_scorer(tmp_path / "p.onnx", _props("overstamp_scoring")), "overstamp_scoring", threads=1)
    assert patch.session.run(None, {"pixels": np.zeros((5, 1, 64, 64), np.uint8)})[0].shape == (5,)


def test_symbolic_dimensions_pass(tmp_path: Path) -> None:
    path = _recognizer(tmp_path / "rec.onnx", _props("line_recognition"), height="height")
    assert load_model(path, "line_recognition", threads=1).meta.input_height == 64


def test_recognizer_class_count_must_be_charset_plus_blank(tmp_path: Path) -> None:
    path = _recognizer(tmp_path / "rec.onnx", _props("line_recognition"), classes=5)
    with pytest.raises(ModelMetadataError) as info:
        load_model(path, "line_recognition", threads=1)
    assert str(info.value).startswith(f"{path}: line_recognition output 'probs' has shape ['batch', 'width', 5]")
    assert "dimension 2 is 5, expected 4 (classes: 3 charset characters + the CTC blank)" in str(info.value)


REFUSED_GRAPHS = [
    # (case, builder, file, task, builder options, the refusal's message)
    ("recognizer input height", "_recognizer", "rec.onnx", "line_recognition", {"height": 32},
     r"rec\.onnx: line_recognition input 'pixels'.*dimension 2 is 32, expected 64 \(metadata input_height\)"),
    ("detector output channels", "_detector", "det.onnx", "line_detection", {"doubled": True},
     r"det\.onnx: line_detection output 'maps'.*dimension 1 is 6, expected 3 \(channels: line-core probability"),
    ("detector input channels", "_detector", "det.onnx", "line_detection", {"channels_in": 1},
     r"line_detection input 'pixels'.*dimension 3 is 1, expected 3"),
    ("input dtype", "_patch_scorer", "p.onnx", "overstamp_scoring", {"in_dtype": TensorProto.FLOAT},
     r"p\.onnx: input 'pixels' is tensor\(float\), inference feeds tensor\(uint8\)"),
    ("output dtype", "_restorer", "res.onnx", "restoration", {"out_dtype": TensorProto.UINT8},
     r"res\.onnx: output 'mask' is tensor\(uint8\), inference reads"),
    ("patch width", "_patch_scorer", "p.onnx", "overstamp_scoring", {"width": 48},
     r"dimension 3 is 48, expected 64 \(metadata input_width\)"),
    ("output rank", "_patch_scorer", "p.onnx", "overstamp_scoring", {"axes": (2, 3)},
     r"output 'logits' has shape \['batch', 1\] \(rank 2\), inference expects rank 1"),
]


@pytest.mark.parametrize(("builder", "file", "task", "options", "message"), [c[1:] for c in REFUSED_GRAPHS],
                         ids=[c[0] for c in REFUSED_GRAPHS])
def test_a_graph_that_disagrees_with_its_metadata_is_refused(
    tmp_path: Path, builder: str, file: str, task: str, options: dict[str, Any], message: str
) -> None:
    path = globals()[builder](tmp_path / file, _props(task), **options)
    with pytest.raises(ModelMetadataError, match=message):
        load_model(path, task, threads=1)


def test_the_metadata_is_checked_before_the_graph(tmp_path: Path) -> None:
    props = _props("line_recognition", normalisation="none: feed float32 in [-1, 1]")
    with pytest.raises(ModelMetadataError, match="metadata normalisation is 'none: feed float32"):
        load_model(_recognizer(tmp_path / "rec.onnx", props, classes=9), "line_recognition", threads=1)
