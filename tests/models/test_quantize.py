"""The registered INT8 variants derive from the current FP32 files and keep their metadata."""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx", reason="the INT8 build needs onnx (the [train] extra)")

from marktrace.models.quantize import int8_name  # noqa: E402
from marktrace.models.registry import SHIPPED_DIR, load_registry  # noqa: E402


def test_int8_name() -> None:
    assert int8_name("marktrace-line-detector-v1.0.0.onnx") == "marktrace-line-detector-v1.0.0-int8.onnx"


@pytest.mark.parametrize("task", ["line_detection", "line_recognition"])
def test_int8_variant_derives_from_the_shipped_fp32(task: str) -> None:
    models = [m for m in load_registry(SHIPPED_DIR) if m.task == task and m.default]
    fp32 = next(m for m in models if m.variant == "fp32")
    int8 = next(m for m in models if m.variant == "int8")
    assert int8.file == int8_name(fp32.file) and int8.version == fp32.version and int8.name == fp32.name
    props = {p.key: p.value for p in onnx.load(str(int8.path(SHIPPED_DIR)), load_external_data=False).metadata_props}
    parent = {p.key: p.value for p in onnx.load(str(fp32.path(SHIPPED_DIR)), load_external_data=False).metadata_props}
    assert props["parent_sha256"] == fp32.sha256, (
        "INT8 built from an older FP32: run python -m marktrace.models.vectors"
    )
    assert props["variant"] == "int8" and "quantization" in props
    assert {k: v for k, v in props.items() if k in parent} == parent
    ops = {node.op_type for node in onnx.load(str(int8.path(SHIPPED_DIR))).graph.node}
    assert "QuantizeLinear" in ops or "DynamicQuantizeLSTM" in ops
    assert "ConvInteger" not in ops  # no CPU kernel in onnxruntime
