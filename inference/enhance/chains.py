r"""Enhancement chains as data, the forensic trail of a derived view, and its bit-exact replay.

A chain is a list of :class:`~marktrace.inference.schema.TrailStep` (step name + parameters). Named
default chains live in ``chains.yaml`` next to this module; a lab can load its own YAML/JSON file.

Hash definition (``Trail.sha256`` of every derived image): SHA-256 over the bytes
``b"marktrace-pixels-v1\\n" + f"{dtype}|{shape}\\n".encode() + pixel bytes (C order)``, where dtype is
numpy's ``str(array.dtype)`` (``uint8``) and shape the tuple, e.g. ``(480, 640, 3)``. Hashing raw
pixels makes the hash independent of any PNG/TIFF encoder; a saved PNG decodes to the same pixels
(BGR channel order for colour images, as OpenCV stores them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

import marktrace
from marktrace.inference.enhance.steps import StepError, apply_step, check_image, validate_step
from marktrace.inference.schema import Trail, TrailStep, View

DEFAULT_CHAINS_FILE = Path(__file__).with_name("chains.yaml")
HASH_DOMAIN = b"marktrace-pixels-v1\n"


def image_sha256(image: np.ndarray) -> str:
    """SHA-256 of an image's pixels, shape and dtype (see the module docstring for the exact bytes)."""
    arr = np.ascontiguousarray(image)
    digest = hashlib.sha256(HASH_DOMAIN)
    digest.update(f"{arr.dtype}|{tuple(arr.shape)}\n".encode())
    digest.update(arr.tobytes(order="C"))
    return digest.hexdigest()


def software_version() -> str:
    """The software string recorded in every trail: marktrace, OpenCV and numpy versions."""
    return f"marktrace {marktrace.__version__}; opencv {cv2.__version__}; numpy {np.__version__}"


def parse_chain(data: Any, source: str = "chain") -> list[TrailStep]:
    """Turn a list of ``{"name": ..., "params": {...}}`` mappings (or TrailSteps) into validated steps.

    Raises:
        StepError: naming ``source`` and the bad entry.
    """
    if not isinstance(data, list) or not data:
        raise StepError(f"{source}: a chain must be a non-empty list of steps")
    steps: list[TrailStep] = []
    for i, entry in enumerate(data):
        try:
            step = entry if isinstance(entry, TrailStep) else TrailStep.model_validate(entry)
        except Exception as exc:  # pydantic ValidationError or wrong type
            raise StepError(f"{source}: step {i} is not {{name, params}}: {exc}") from None
        try:
            steps.append(validate_step(step))
        except StepError as exc:
            raise StepError(f"{source}: step {i}: {exc}") from None
    return steps


def load_chains(path: str | Path) -> dict[str, list[TrailStep]]:
    """Load named chains from a YAML or JSON file mapping chain name -> list of steps.

    Raises:
        StepError: the file is missing, unparsable, or holds an invalid chain (message names the file).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StepError(f"{p}: cannot read chain file ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if p.suffix.lower() == ".json" else "YAML"
        raise StepError(f"{p}: not valid {kind}: {exc}") from None
    if not isinstance(data, Mapping) or not data:
        raise StepError(f"{p}: expected a mapping of chain name -> list of steps")
    return {str(name): parse_chain(steps, f"{p}: chain {name!r}") for name, steps in data.items()}


@lru_cache(maxsize=1)
def _defaults() -> dict[str, tuple[TrailStep, ...]]:
    return {k: tuple(v) for k, v in load_chains(DEFAULT_CHAINS_FILE).items()}


def default_chains() -> dict[str, list[TrailStep]]:
    """The registry of named default chains (a fresh copy; loaded lazily from ``chains.yaml``)."""
    return {k: [s.model_copy(deep=True) for s in v] for k, v in _defaults().items()}


def get_chain(name: str) -> list[TrailStep]:
    """One default chain by name.

    Raises:
        KeyError: unknown chain (the message lists the known ones).
    """
    chains = default_chains()
    if name not in chains:
        raise KeyError(f"unknown enhancement chain {name!r}; known: {', '.join(sorted(chains))}")
    return chains[name]


def source_to_view(steps: Sequence[TrailStep]) -> np.ndarray:
    """The 2x3 affine that takes a point in a chain's source pixels to the same point in its output.

    Of the steps, only ``crop`` (a shift by its corner) and ``resize`` (a scale about pixel centres) change
    geometry; the others keep every pixel where it is. A box in the source's pixels is drawn on the view
    through this matrix, and a box read on the view goes back through its inverse
    (:func:`view_to_source`).
    """
    matrix = np.eye(3)
    for step in steps:
        if step.name == "crop":
            shift = np.eye(3)
            shift[0, 2] = -float(step.params.get("x0", 0))
            shift[1, 2] = -float(step.params.get("y0", 0))
            matrix = shift @ matrix
        elif step.name == "resize":
            sx = float(step.params["width"]) / float(step.params["from_width"])
            sy = float(step.params["height"]) / float(step.params["from_height"])
            scale = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
            matrix = scale @ matrix
    return matrix[:2]


def view_to_source(steps: Sequence[TrailStep]) -> np.ndarray:
    """The 2x3 affine from a chain's output pixels back to its source's (the inverse of :func:`source_to_view`)."""
    return np.asarray(cv2.invertAffineTransform(source_to_view(steps)), np.float64)


def run_chain(image: np.ndarray, steps: Sequence[TrailStep | Mapping[str, Any]]) -> np.ndarray:
    """Run the steps in order on a uint8 gray/BGR image; the input array is never modified."""
    check_image(image, "chain input")
    parsed = parse_chain(list(steps))
    out = image
    for step in parsed:
        out = apply_step(out, step)
    if out is image:  # pragma: no cover - every step returns a new array
        out = image.copy()
    return out


def make_view(
    original_sha256: str,
    image: np.ndarray,
    chain_name: str,
    steps: Sequence[TrailStep | Mapping[str, Any]] | None = None,
) -> tuple[np.ndarray, View]:
    """Run a chain on the decoded original and return the image with its :class:`View` and trail.

    Args:
        original_sha256: SHA-256 of the original file's bytes (the evidence the image was decoded from).
        image: the decoded working copy of the original (uint8 gray or BGR).
        chain_name: the view's chain name; the view is named ``chain:<chain_name>``.
        steps: the chain; ``None`` takes the default chain of that name.
    """
    parsed = parse_chain(list(steps) if steps is not None else get_chain(chain_name), f"chain {chain_name!r}")
    out = run_chain(image, parsed)
    trail = Trail(
        source_sha256=[original_sha256],
        steps=parsed,
        software=software_version(),
        sha256=image_sha256(out),
    )
    return out, View(name=f"chain:{chain_name}", trail=trail)


def replay(trail: Trail, original_image: np.ndarray) -> np.ndarray:
    """Re-run a recorded chain trail on the decoded original and return the image."""
    if not trail.steps:
        raise StepError("trail has no steps to replay")
    return run_chain(original_image, trail.steps)


def verify_replay(trail: Trail, original_image: np.ndarray, original_sha256: str | None = None) -> bool:
    """True when replaying ``trail`` gives an image whose hash equals ``trail.sha256``.

    If ``original_sha256`` (the original file's hash) is given, it must also be one of the trail's sources.
    """
    if original_sha256 is not None and original_sha256 not in trail.source_sha256:
        return False
    return image_sha256(replay(trail, original_image)) == trail.sha256
