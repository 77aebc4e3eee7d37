"""Torch weights from a shipped ONNX file, so training can continue from the models in the repo.

Run folders (with their ``.pt`` checkpoints) live outside git; the shipped ONNX files are what every
checkout has. This module maps the initializers of an exported network back onto a freshly built torch
module of the same architecture:

* ``Conv`` nodes, in graph order, fill the ``Conv2d`` modules in forward order. Export folds a
  ``BatchNorm2d`` that follows a bias-free convolution into the convolution; such a norm layer is set to
  the identity (``weight = 1``, ``running_mean = 0``, ``running_var = 1 - eps``) and receives the folded
  bias as its ``bias``. Those layers must stay in eval mode while fine-tuning (see
  :func:`freeze_batchnorm`), because their batch statistics are gone.
* ``LSTM`` nodes fill ``nn.LSTM`` modules (ONNX gate order i, o, f, c becomes torch's i, f, g, o).
* ``MatMul`` with a constant right operand (and the ``Add`` after it) fill ``nn.Linear`` modules.

The result is checked: the torch module, wrapped for export, must give the ONNX file's outputs on a
probe input within ``atol``, or :class:`OnnxImportError` is raised. Before that, a file that is one of
its folder's registered models (its name listed in the ``registry.json`` beside it, as in
``models/shipped``) must match the SHA-256 recorded there (:func:`verify_if_registered`). Nothing is
trusted unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from marktrace.models.registry import REGISTRY_FILE, ModelChecksumError, load_registry, verify_file

__all__ = ["OnnxImportError", "freeze_batchnorm", "load_onnx_weights", "verify_if_registered"]


class OnnxImportError(RuntimeError):
    """An ONNX file's weights cannot be imported.

    The file does not fit the torch module, the imported module disagrees with it, or the file is a
    registered model whose bytes differ from its registry entry.
    """


def verify_if_registered(onnx_path: Path) -> bool:
    """Check ``onnx_path`` against its folder's ``registry.json`` when the registry lists its file name.

    Returns True when the file is registered there and its SHA-256 matches, False when it is not registered
    (no registry beside it, or no entry of that name).

    Raises:
        OnnxImportError: the file is registered but its SHA-256 differs from the recorded one.
    """
    path = Path(onnx_path).resolve()
    folder = path.parent
    if not (folder / REGISTRY_FILE).is_file():
        return False
    entry = next((m for m in load_registry(folder) if m.file == path.name), None)
    if entry is None:
        return False
    try:
        verify_file(entry, folder)
    except ModelChecksumError as exc:
        raise OnnxImportError(
            f"{onnx_path}: refusing to import the weights of a registered model that fails its checksum "
            f"({folder / REGISTRY_FILE}): {exc}"
        ) from exc
    return True


def _forward_order(
    module: nn.Module, probe: torch.Tensor, call: Callable[[torch.Tensor], torch.Tensor]
) -> list[nn.Module]:
    """Leaf modules of the kinds we map, in the order a forward pass calls them."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in module.modules()
        if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.LSTM | nn.Linear)
    ]
    try:
        with torch.no_grad():
            call(probe)
    finally:
        for h in hooks:
            h.remove()
    return order


def _lstm_gates(w: np.ndarray, hidden: int) -> np.ndarray:
    """ONNX gate blocks (i, o, f, c) along axis 0 -> torch's (i, f, g, o)."""
    i, o, f, c = (w[k * hidden : (k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, c, o], axis=0)


def load_onnx_weights(
    module: nn.Module,
    onnx_path: Path,
    probe: torch.Tensor,
    wrap: Callable[[Any], nn.Module],
    atol: float = 2e-3,
) -> float:
    """Fill ``module`` in place with the weights of ``onnx_path``; returns the measured max abs difference.

    Args:
        module: a freshly built network of the architecture the file was exported from.
        onnx_path: the exported file (the network only, as ``models/export.py`` writes it).
        probe: an input of the export wrapper (uint8, the layout the file takes) for the parity check.
        wrap: builds the export wrapper around ``module`` (``DetectorForExport``, ``RecognizerForExport``).
        atol: largest accepted difference between onnxruntime and torch on ``probe``.

    Raises:
        OnnxImportError: the file is a registered model that fails its checksum (:func:`verify_if_registered`),
            the graph's layers do not match the module's, or the outputs disagree.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    verify_if_registered(onnx_path)
    model = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    wrapped = wrap(module).eval()
    order = _forward_order(module, probe, wrapped)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers: list[tuple[str, list[np.ndarray]]] = []
    for node in model.graph.node:
        consts = [init[n] for n in node.input if n in init]
        if node.op_type == "Conv":
            layers.append(("conv", consts))
        elif node.op_type == "LSTM":
            w, r, b = (init[n] for n in node.input[1:4])
            layers.append(("lstm", [w, r, b]))
        elif node.op_type == "MatMul" and node.input[1] in init:
            bias: list[np.ndarray] = []
            for nxt in consumers.get(node.output[0], []):
                if nxt.op_type == "Add":
                    bias = [init[n] for n in nxt.input if n in init]
            layers.append(("linear", [init[node.input[1]], *bias]))
    state: dict[str, torch.Tensor] = {}
    names = {m: n for n, m in module.named_modules()}
    mods = [m for m in order if not isinstance(m, nn.BatchNorm2d)]
    after = dict(zip(order, order[1:], strict=False))  # the module each one's output feeds next
    if len(mods) != len(layers):
        raise OnnxImportError(f"{onnx_path}: {len(layers)} weighted layers in the graph, {len(mods)} in the module")
    for k, (mod, (kind, arrays)) in enumerate(zip(mods, layers, strict=True)):
        prefix = names[mod]
        if isinstance(mod, nn.Conv2d) and kind == "conv":
            weight = arrays[0]
            if tuple(weight.shape) != tuple(mod.weight.shape):
                raise OnnxImportError(f"{onnx_path}: conv {prefix} shape {mod.weight.shape} vs {weight.shape}")
            state[f"{prefix}.weight"] = torch.from_numpy(weight.copy())
            bias_arr = arrays[1] if len(arrays) > 1 else np.zeros(weight.shape[0], np.float32)
            following = after.get(mod)
            if mod.bias is not None:
                state[f"{prefix}.bias"] = torch.from_numpy(bias_arr.copy())
            elif isinstance(following, nn.BatchNorm2d):
                bn = names[following]
                state[f"{bn}.weight"] = torch.ones_like(following.weight)
                state[f"{bn}.bias"] = torch.from_numpy(bias_arr.copy())
                state[f"{bn}.running_mean"] = torch.zeros_like(following.running_mean)  # type: ignore[arg-type]
                state[f"{bn}.running_var"] = torch.full_like(following.running_var, 1.0 - following.eps)  # type: ignore[arg-type]
                state[f"{bn}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
            elif len(arrays) > 1 and np.any(arrays[1]):
                raise OnnxImportError(f"{onnx_path}: conv {prefix} has a bias in the graph but none in the module")
        elif isinstance(mod, nn.LSTM) and kind == "lstm":
            w, r, b = arrays
            hidden = mod.hidden_size
            for d, suffix in enumerate(["", "_reverse"][: w.shape[0]]):
                state[f"{prefix}.weight_ih_l0{suffix}"] = torch.from_numpy(_lstm_gates(w[d], hidden))
                state[f"{prefix}.weight_hh_l0{suffix}"] = torch.from_numpy(_lstm_gates(r[d], hidden))
                state[f"{prefix}.bias_ih_l0{suffix}"] = torch.from_numpy(_lstm_gates(b[d][: 4 * hidden], hidden))
                state[f"{prefix}.bias_hh_l0{suffix}"] = torch.from_numpy(_lstm_gates(b[d][4 * hidden :], hidden))
        elif isinstance(mod, nn.Linear) and kind == "linear":
            state[f"{prefix}.weight"] = torch.from_numpy(np.ascontiguousarray(arrays[0].T))
            if mod.bias is not None:
                bias_lin = arrays[1] if len(arrays) > 1 else np.zeros(mod.out_features, np.float32)
                state[f"{prefix}.bias"] = torch.from_numpy(bias_lin.copy())
        else:
            raise OnnxImportError(f"{onnx_path}: layer {k} is {kind} in the graph but {type(mod).__name__} {prefix}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise OnnxImportError(f"{onnx_path}: weights left unset {missing}, unknown {unexpected}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: probe.numpy()})[0]
    with torch.no_grad():
        got = wrapped.eval()(probe).numpy()
    if got.shape != expected.shape:
        raise OnnxImportError(f"{onnx_path}: output shape {got.shape} vs onnxruntime {expected.shape}")
    diff = float(np.abs(got - expected).max())
    if not diff <= atol:
        raise OnnxImportError(f"{onnx_path}: imported weights differ from onnxruntime by {diff:.2e} (> {atol})")
    return diff


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every ``BatchNorm2d`` in eval mode (running statistics, which an ONNX import set to identity).

    Call after each ``module.train()``; the norm layers' affine parameters still learn.
    """
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
