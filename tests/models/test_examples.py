"""The integrator examples (Python with onnxruntime only, and Node.js) read the test vectors like ``marktrace read``."""

from __future__ import annotations

import ast
import functools
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from marktrace.models.registry import SHIPPED_DIR

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
VECTORS = SHIPPED_DIR / "vectors"
EXPECTED = json.loads((VECTORS / "expected.json").read_text())
IMAGES = [VECTORS / img["file"] for img in EXPECTED["images"]]
BOX_TOLERANCE = 0.15
"""The JS example resizes without OpenCV, so a border cell of the 1/4-scale core map can flip: its boxes may
move by up to this fraction of the line height (at least 3 px). Texts must match exactly."""


@functools.cache
def _marktrace_read(variant: str) -> dict[str, dict[str, Any]]:
    """``marktrace read --json --variant VARIANT`` on the vector images, by file name."""
    cmd = [sys.executable, "-m", "marktrace.cli", "read", "--json", "--variant", variant, *map(str, IMAGES)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {Path(r["files"][0]).name: r for r in results}


def _line_height(box: list[list[float]]) -> float:
    return float(((box[3][0] - box[0][0]) ** 2 + (box[3][1] - box[0][1]) ** 2) ** 0.5)


def _compare(
    example: list[dict[str, Any]], reference: dict[str, dict[str, Any]], box_tol: float | None, texts: bool = True
) -> None:
    """Same serials as ``marktrace read``, and (``texts``) the same line texts with boxes within ``box_tol`` px
    (``None``: the relative JS tolerance)."""
    assert len(example) == len(IMAGES)
    for result in example:
        name = Path(result["file"]).name
        ref = reference[name]
        serial = ref["record"]["serial_number"]["value"].replace(" ", "")
        assert any(serial in ln["text"].replace(" ", "") for ln in result["lines"]), f"{name}: serial {serial}"
        if not texts:
            continue
        assert [ln["text"] for ln in result["lines"]] == [ln["text"] for ln in ref["lines"]], name
        for mine, theirs in zip(result["lines"], ref["lines"], strict=True):
            diff = max(
                abs(a - b) for p, q in zip(mine["box"], theirs["box"], strict=True) for a, b in zip(p, q, strict=True)
            )
            tol = box_tol if box_tol is not None else max(3.0, BOX_TOLERANCE * _line_height(theirs["box"]))
            assert diff <= tol, f"{name}: box of {mine['text']!r} off by {diff:.1f} px"


def test_python_example_imports_no_marktrace() -> None:
    tree = ast.parse((EXAMPLES / "python_onnxruntime_only.py").read_text())
    modules = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    modules |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    third_party = modules - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"numpy", "cv2", "onnxruntime", "PIL"}, third_party


@pytest.mark.parametrize("variant", ["int8", "fp32"])
def test_python_example_matches_marktrace_read(variant: str) -> None:
    example = [sys.executable, str(EXAMPLES / "python_onnxruntime_only.py"), "--json", "--variant", variant]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([*example, *map(str, IMAGES)], capture_output=True, text=True, timeout=300, check=False,
                          env=env, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    reference = _marktrace_read("auto" if variant == "int8" else variant)
    _compare([json.loads(line) for line in done.stdout.splitlines()], reference, 0.11)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_js_example_matches_marktrace_read(variant: str) -> None:
    """FP32: the same texts and boxes as ``marktrace read``. INT8: the same serials (the JS example resizes
    without OpenCV, and an INT8 network can turn those 1-level pixel differences into another character on a
    weak non-serial line)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "!!! node/npm NOT ON PATH: THE JAVASCRIPT EXAMPLE (examples/js) WAS NOT TESTED !!!"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    js = EXAMPLES / "js"
    if not (js / "node_modules" / "onnxruntime-node").is_dir():
        install = _run([npm, "ci", "--no-audit", "--no-fund"], js, 600)
        if install.returncode != 0:
            install = _run([npm, "install", "--no-audit", "--no-fund"], js, 600)
        assert install.returncode == 0, install.stderr[-2000:]
    done = _run([node, "read.mjs", "--json", "--variant", variant, *map(str, IMAGES)], js, 300)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = _marktrace_read("auto" if variant == "int8" else variant)
    _compare([json.loads(line) for line in done.stdout.splitlines()], reference, None, texts=variant == "fp32")


def _run(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
