"""INT8 variants of the shipped models, built with ``onnxruntime.quantization`` (torch-free).

* Detector: static QDQ quantization of its convolutions (per-channel int8 weights) with uint8 activations
  kept through the graph (its resizes and concatenations too, so no float round trip between convs),
  calibrated by min/max on rendered photos (training fonts, a seed block used by no benchmark set).
* Recognizer: dynamic quantization of its LSTM, MatMul and Gemm weights (int8); optionally also static
  QDQ for its convolutions (``recognizer_conv_qdq``), calibrated on line crops cut from the same photos.
  ONNX Runtime's ``ConvInteger`` has no CPU kernel, so convolutions are only ever quantized in QDQ format.

Each variant keeps its FP32 parent's metadata (same name and version) plus ``variant``, ``quantization``
and ``parent_sha256``; it is registered in ``registry.json`` with ``"variant": "int8"``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from marktrace.models.onnx_metadata import read_metadata, write_metadata

CALIBRATION_SEED = 1_600_000_000
"""Calibration photos use seeds from here (training: < 1.3e9, benchmark sets: >= 1.7e9)."""


def int8_name(fp32_file: str) -> str:
    """``name-v1.0.0.onnx`` -> ``name-v1.0.0-int8.onnx``."""
    return fp32_file.removesuffix(".onnx") + "-int8.onnx"


def calibration_photos(count: int = 24) -> list[np.ndarray]:
    """Rendered BGR photos for calibration (training fonts, the calibration seed block)."""
    from marktrace.datasets.synth import SynthConfig, render_marking

    config = SynthConfig(fonts="train", wear=(0.0, 0.5), rotation="small", n_lines=(1, 4))
    return [render_marking(CALIBRATION_SEED + i, config).image for i in range(count)]


def calibration_crops(count: int = 24, height: int = 64) -> list[np.ndarray]:
    """Gray line crops (cut as inference cuts them) from the calibration photos."""
    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y

    config = SynthConfig(fonts="train", wear=(0.0, 0.5), rotation="small", n_lines=(1, 4))
    crops: list[np.ndarray] = []
    for i in range(count):
        marking = render_marking(CALIBRATION_SEED + 10_000 + i, config)
        for line in marking.lines:
            quad = pad_quad(np.asarray(line.polygon, np.float32), CROP_PAD_X, CROP_PAD_Y)
            crops.append(rectify_line(marking.image, quad, height))
    return crops


class _Reader:
    """A ``CalibrationDataReader`` over a list of input tensors."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]) -> None:
        self.input_name = input_name
        self._iter: Iterator[np.ndarray] = iter(tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._iter, None)
        return None if tensor is None else {self.input_name: tensor}


def _copy_metadata(parent: Path, target: Path, extra: dict[str, str]) -> None:
    """Give ``target`` the parent's metadata plus ``extra`` (quantization drops or keeps it unpredictably)."""
    from marktrace.inference.images import sha256_file

    props = read_metadata(parent)
    props.update(extra)
    props["parent_sha256"] = sha256_file(parent)
    write_metadata(target, props)


def _preprocess(src: Path, dst: Path) -> Path:
    """Shape inference and graph cleanup before quantization (falls back to the source file)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the original instead
        return src
    return dst


def quantize_detector(fp32: Path, out: Path, photos: list[np.ndarray] | None = None) -> Path:
    """Static QDQ int8 quantization of the detector's convolutions, calibrated on rendered photos."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from marktrace.inference.detect import prepare_detector_input
    from marktrace.inference.onnx_models import parse_metadata

    meta = parse_metadata(str(fp32), read_metadata(fp32), "line_detection")
    tensors = [prepare_detector_input(p, meta.long_side).tensor for p in (photos or calibration_photos())]
    with tempfile.TemporaryDirectory() as tmp:
        source = _preprocess(fp32, Path(tmp) / "pre.onnx")
        quantize_static(
            str(source),
            str(out),
            _Reader("pixels", tensors),  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    _copy_metadata(
        fp32,
        out,
        {
            "variant": "int8",
            "quantization": "static QDQ: Conv weights int8 per-channel, activations uint8 through the graph "
            "(MinMax calibration, "
            f"{len(tensors)} rendered photos, seeds from {CALIBRATION_SEED})",
        },
    )
    return out


def quantize_recognizer(fp32: Path, out: Path, conv_qdq: bool = False, crops: list[np.ndarray] | None = None) -> Path:
    """Dynamic int8 quantization of the recognizer's LSTM/MatMul/Gemm (and static QDQ convs if ``conv_qdq``)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from marktrace.inference.recognize import batch_line_crops

    description = "dynamic: LSTM, MatMul, Gemm weights int8"
    with tempfile.TemporaryDirectory() as tmp:
        source = _preprocess(fp32, Path(tmp) / "pre.onnx")
        if conv_qdq:
            staged = Path(tmp) / "conv.onnx"
            samples = [batch_line_crops([c], 64) for c in (crops or calibration_crops())]
            quantize_static(
                str(source),
                str(staged),
                _Reader("pixels", samples),  # type: ignore[arg-type]
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            source = staged
            description += f"; static QDQ: Conv int8 per-channel ({len(samples)} calibration crops)"
        quantize_dynamic(
            str(source),
            str(out),
            op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=False,
        )
    _copy_metadata(fp32, out, {"variant": "int8", "quantization": description})
    return out


def compare_speed(folder: Path, threads: int = 2, repeats: int = 15) -> dict[str, dict[str, float]]:
    """Median latency (ms) of each model's FP32 and INT8 files on the same inputs, runs interleaved.

    Inputs: one rendered photo at the detector's ``long_side`` and a batch of 4 line crops 256 px wide.
    """
    import time

    import onnxruntime as ort

    from marktrace.inference.detect import prepare_detector_input
    from marktrace.inference.onnx_models import session_options
    from marktrace.inference.recognize import batch_line_crops
    from marktrace.models.registry import load_registry

    photo = calibration_photos(1)[0]
    crops = [cv2_resize_crop(c) for c in calibration_crops(2)[:4]]
    inputs = {
        "line_detection": prepare_detector_input(photo, 640).tensor,
        "line_recognition": batch_line_crops(crops, 64),
    }
    results: dict[str, dict[str, float]] = {}
    for task, tensor in inputs.items():
        models = {m.variant: m for m in load_registry(folder) if m.task == task and m.default}
        sessions = {
            v: ort.InferenceSession(str(m.path(folder)), session_options(threads), providers=["CPUExecutionProvider"])
            for v, m in models.items()
        }
        times: dict[str, list[float]] = {v: [] for v in sessions}
        for session in sessions.values():
            session.run(None, {"pixels": tensor})
        for _ in range(repeats):
            for variant, session in sessions.items():
                start = time.perf_counter()
                session.run(None, {"pixels": tensor})
                times[variant].append((time.perf_counter() - start) * 1000)
        results[task] = {v: float(np.median(t)) for v, t in times.items()}
        if "fp32" in results[task] and "int8" in results[task]:
            results[task]["speedup"] = results[task]["fp32"] / results[task]["int8"]
    return results


def cv2_resize_crop(crop: np.ndarray, width: int = 256) -> np.ndarray:
    """A crop stretched to ``width`` (so the speed batch has a fixed shape)."""
    import cv2

    return cv2.resize(crop, (width, crop.shape[0]), interpolation=cv2.INTER_LINEAR)


if __name__ == "__main__":
    import json as _json

    from marktrace.models.registry import SHIPPED_DIR

    print(_json.dumps(compare_speed(SHIPPED_DIR), indent=1))
