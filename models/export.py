"""Export trained checkpoints to self-describing ONNX files, failing when onnxruntime disagrees with torch.

Every export refuses a target file that already exists (unless ``overwrite=True``), writes to a temporary
file in the target's folder, adds the metadata, checks parity, and only then moves the file into place
with ``os.replace``: a failed or interrupted export leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from marktrace.inference.onnx_models import METADATA_SCHEMA_VERSION
from marktrace.models.networks.detector import DETECTOR_STRIDE, DetectorForExport, build_detector
from marktrace.models.networks.overstamp import PATCH_SIZE, PatchScorer, PatchScorerForExport
from marktrace.models.networks.overstamp import STANDARDIZE_EPS as PATCH_STANDARDIZE_EPS
from marktrace.models.networks.recognizer import RecognizerForExport, build_recognizer
from marktrace.models.networks.restorer import (
    RESTORER_MULTIPLE,
    STANDARDIZE_EPS,
    RestorerForExport,
    build_restorer,
)
from marktrace.models.onnx_metadata import write_metadata

OPSET = 17


class ExportParityError(RuntimeError):
    """onnxruntime's output differs from torch's beyond tolerance; the exported file was removed."""


class ExportTargetExistsError(FileExistsError):
    """The export's target file already exists and overwriting it was not asked for."""


def refuse_existing(path: Path, overwrite: bool = False) -> None:
    """Raise :class:`ExportTargetExistsError` naming ``path`` when it exists and ``overwrite`` is False."""
    if not overwrite and path.exists():
        raise ExportTargetExistsError(
            f"{path} already exists; refusing to overwrite it (choose another --version or --out, "
            "or pass --overwrite / overwrite=True to replace it)"
        )


def check_parity(module: torch.nn.Module, path: Path, samples: list[np.ndarray], atol: float) -> float:
    """Max absolute difference between torch and onnxruntime over ``samples``; raises above ``atol``.

    Give samples of different batch sizes and widths so the dynamic axes are exercised too. On a
    miss the checked file is deleted, so a disagreeing model can never be shipped by accident (the
    exports below check their temporary file, never the target).
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for sample in samples:
        with torch.no_grad():
            expected = module(torch.from_numpy(sample)).numpy()
        actual = session.run(None, {session.get_inputs()[0].name: sample})[0]
        if expected.shape != actual.shape:
            path.unlink(missing_ok=True)
            raise ExportParityError(f"{path}: output shape {actual.shape} != torch {expected.shape}")
        diff = float(np.abs(expected - actual).max())
        if not np.isfinite(diff) or diff > atol:
            path.unlink(missing_ok=True)
            raise ExportParityError(
                f"{path}: onnxruntime differs from torch by {diff:.2e} (tolerance {atol:.0e}) on input {sample.shape}"
            )
        worst = max(worst, diff)
    return worst


def _export_graph(
    module: torch.nn.Module, sample: np.ndarray, out: Path, output: str, dynamic_axes: dict[str, dict[int, str]]
) -> None:
    """Trace ``module`` on ``sample`` into ``out``: one uint8 input ``pixels``, one output (TorchScript exporter)."""
    torch.onnx.export(
        module,
        (torch.from_numpy(sample),),
        str(out),
        input_names=["pixels"],
        output_names=[output],
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        dynamo=False,
    )


def _base_props(name: str, version: str, task: str, commit: str, extra: dict[str, Any]) -> dict[str, str]:
    props = {
        "marktrace_schema": METADATA_SCHEMA_VERSION,
        "task": task,
        "name": name,
        "version": version,
        "training_commit": commit,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "opset": str(OPSET),
        "torch_version": torch.__version__,
    }
    props.update({k: str(v) for k, v in extra.items()})
    return props


def _export_checked(
    module: torch.nn.Module,
    trace_sample: np.ndarray,
    out: Path,
    output: str,
    dynamic_axes: dict[str, dict[int, str]],
    props: dict[str, str],
    samples: list[np.ndarray],
    atol: float,
    overwrite: bool,
) -> dict[str, Any]:
    """Export ``module`` to ``out`` with ``props`` as metadata, parity checked on ``samples``; the summary.

    The graph goes to a temporary file beside ``out``; the metadata is written and parity checked there,
    then ``os.replace`` moves it onto ``out``. On any failure only the temporary file is removed.

    Raises:
        ExportTargetExistsError: ``out`` exists and ``overwrite`` is False (checked before and after the work).
        ExportParityError: onnxruntime disagrees with torch.
    """
    refuse_existing(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{out.suffix}")
    try:
        _export_graph(module, trace_sample, tmp, output, dynamic_axes)
        write_metadata(tmp, props)
        try:
            diff = check_parity(module, tmp, samples, atol=atol)
        except ExportParityError as exc:  # name the target, not the temporary file
            raise ExportParityError(str(exc).replace(str(tmp), str(out))) from None
        refuse_existing(out, overwrite)  # a file that appeared meanwhile is not replaced either
        os.replace(tmp, out)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".tmp")):  # the latter: write_metadata's own temporary
            leftover.unlink(missing_ok=True)
    return {"path": str(out), "parity_max_abs_diff": diff, "metadata": props}


def export_detector(
    checkpoint: Path,
    out: Path,
    name: str,
    version: str,
    commit: str,
    sample_rgb: np.ndarray,
    long_side: int = 640,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the detector; ``sample_rgb`` is a (1, H, W, 3) uint8 input (H, W multiples of 32) for the parity check.

    Refuses an existing ``out`` unless ``overwrite``; ``out`` appears only once the export passed parity.
    """
    refuse_existing(out, overwrite)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = build_detector(state["size"])
    net.load_state_dict(state["state_dict"])
    module = DetectorForExport(net).eval()
    props = _base_props(
        name,
        version,
        "line_detection",
        commit,
        {
            "input_layout": "NHWC uint8 RGB; H and W multiples of 32",
            "normalisation": "x / 127.5 - 1 (inside the graph)",
            "outputs": "maps (N, 3, H/4, W/4): line-core probability, reading direction cos, sin",
            "long_side": long_side,
            "stride": DETECTOR_STRIDE,
            "threshold": 0.7,
            "min_score": 0.75,
            "core_shrink": 0.25,
            **(extra or {}),
        },
    )
    half = sample_rgb[:, : sample_rgb.shape[1] // 64 * 32 or 32, : sample_rgb.shape[2] // 64 * 32 or 32]
    axes = {"pixels": {0: "batch", 1: "height", 2: "width"}, "maps": {0: "batch", 2: "h4", 3: "w4"}}
    return _export_checked(module, sample_rgb, out, "maps", axes, props,
                           [sample_rgb, np.ascontiguousarray(half)], atol=1e-3, overwrite=overwrite)


def export_recognizer(
    checkpoint: Path,
    out: Path,
    name: str,
    version: str,
    commit: str,
    sample_gray: np.ndarray,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the recognizer; ``sample_gray`` is a (N, 1, 64, W) uint8 input for the parity check.

    Refuses an existing ``out`` unless ``overwrite``; ``out`` appears only once the export passed parity.
    """
    refuse_existing(out, overwrite)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    charset: str = state["charset"]
    net = build_recognizer(len(charset) + 1, state["size"])
    net.load_state_dict(state["state_dict"])
    module = RecognizerForExport(net).eval()
    props = _base_props(
        name,
        version,
        "line_recognition",
        commit,
        {
            "input_layout": "NCHW uint8 gray, H = input_height, W any multiple of 8 (right-padded by edge replication)",
            "normalisation": "x / 127.5 - 1 (inside the graph)",
            "outputs": "probs (N, T, C): softmax over blank + charset per time step, T = W / 4 - 1",
            "charset": json.dumps(charset),
            "blank_index": 0,
            "input_height": int(state.get("height", 64)),
            "decoding": "CTC greedy: argmax per step, collapse repeats, drop blank 0; class i>=1 is charset[i-1]",
            **(extra or {}),
        },
    )
    narrow = np.ascontiguousarray(sample_gray[:1, :, :, : max(8, sample_gray.shape[3] // 16 * 8)])
    axes = {"pixels": {0: "batch", 3: "width"}, "probs": {0: "batch", 1: "steps"}}
    return _export_checked(module, sample_gray[:1], out, "probs", axes, props, [sample_gray, narrow], atol=2e-3,
                           overwrite=overwrite)


def export_restorer(
    checkpoint: Path,
    out: Path,
    name: str,
    version: str,
    commit: str,
    sample_gray: np.ndarray,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the learned restorer; ``sample_gray`` is a (N, 1, H, W) uint8 input (H the checkpoint's height).

    Network only (uint8 in, normalisation and sigmoid inside the graph); the parity check runs a
    narrower crop too, so the dynamic width is exercised. Refuses an existing ``out`` unless ``overwrite``.
    """
    refuse_existing(out, overwrite)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    standardize = bool(state.get("standardize", False))
    net = build_restorer(state["size"], standardize)
    net.load_state_dict(state["state_dict"])
    module = RestorerForExport(net).eval()
    height = int(state["height"])
    if sample_gray.shape[2] != height:
        raise ValueError(f"parity sample is {sample_gray.shape[2]} px high, the restorer works at {height}")
    props = _base_props(
        name,
        version,
        "restoration",
        commit,
        {
            "input_layout": f"NCHW uint8 gray, H = input_height, W any multiple of {RESTORER_MULTIPLE} "
            "(right-padded by edge replication)",
            "normalisation": "x / 127.5 - 1 (inside the graph)"
            + (f"; then per crop (x - mean) / (std + {STANDARDIZE_EPS}) over C, H, W" if standardize else ""),
            "outputs": "mask (N, 1, H, W): glyph probability per pixel (sigmoid applied)",
            "input_height": height,
            "width_multiple": RESTORER_MULTIPLE,
            "threshold": float(state.get("threshold", 0.5)),
            "rendering": "read as dark glyphs on light: gray = 235 - 215 * p, resized to the recognizer's height",
            "status": "suggestion only: proposes what a faint marking says; never replaces the deterministic views",
            **(extra or {}),
        },
    )
    narrow = np.ascontiguousarray(sample_gray[:1, :, :, : max(RESTORER_MULTIPLE, sample_gray.shape[3] // 16 * 8)])
    axes = {"pixels": {0: "batch", 3: "width"}, "mask": {0: "batch", 3: "width"}}
    return _export_checked(module, sample_gray[:1], out, "mask", axes, props, [sample_gray, narrow], atol=1e-3,
                           overwrite=overwrite)


def export_patch_scorer(
    net: PatchScorer,
    out: Path,
    name: str,
    version: str,
    commit: str,
    sample_patches: np.ndarray,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the over-stamp patch scorer; ``sample_patches`` is a (N, 1, S, S) uint8 input for the parity check.

    Network only: uint8 patches in, the ``/ 255`` scaling and per-patch standardisation inside the graph, one
    logit per patch out (the flagger's logistic regression turns it into a probability). Refuses an existing
    ``out`` unless ``overwrite``.
    """
    if sample_patches.ndim != 4 or sample_patches.shape[1:] != (1, PATCH_SIZE, PATCH_SIZE):
        raise ValueError(f"parity sample must be (N, 1, {PATCH_SIZE}, {PATCH_SIZE}) uint8, got {sample_patches.shape}")
    refuse_existing(out, overwrite)
    module = PatchScorerForExport(net).eval()
    props = _base_props(
        name,
        version,
        "overstamp_scoring",
        commit,
        {
            "input_layout": f"NCHW uint8 gray patches, H = input_height, W = input_width (one character of a "
            f"{PATCH_SIZE} px line crop, centred on its CTC step)",
            "normalisation": f"x / 255, then per patch (x - mean) / (std + {PATCH_STANDARDIZE_EPS}) (inside the graph)",
            "outputs": "logits (N,): over-stamp logit per patch; an input of the flagger's logistic regression",
            "input_height": PATCH_SIZE,
            "input_width": PATCH_SIZE,
            "status": "evidence for an examiner: scores a character's look, never decides alteration",
            **(extra or {}),
        },
    )
    axes = {"pixels": {0: "batch"}, "logits": {0: "batch"}}
    return _export_checked(module, sample_patches[:1], out, "logits", axes, props,
                           [sample_patches, np.ascontiguousarray(sample_patches[:1])], atol=1e-3, overwrite=overwrite)
