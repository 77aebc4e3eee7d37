"""Fixtures shared by the inference tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from marktrace.inference.images import LoadedImage


def _as_loaded(image: np.ndarray, name: str = "photo.png") -> LoadedImage:
    from marktrace.inference.images import decode_image

    ok, buf = cv2.imencode(".png", image)
    assert ok
    return decode_image(bytes(buf), name)


def _stack_folder(root: Path, n: int = 4, enlarge: float = 1.0) -> Path:
    from marktrace.datasets.synth import SynthConfig, render_stack

    stack = render_stack(1_960_000_123, SynthConfig(fonts="heldout", wear=(0.7, 0.8)), n_lights=n)
    folder = root / "rti"
    folder.mkdir()
    lights: dict[str, dict[str, float]] = {}
    for k, (image, (azimuth, elevation)) in enumerate(zip(stack.images, stack.lights, strict=True)):
        if enlarge != 1.0:
            image = cv2.resize(image, None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / f"shot_{k}.png"), image)
        lights[f"shot_{k}.png"] = {"azimuth_deg": azimuth, "elevation_deg": elevation}
    (folder / "lights.json").write_text(json.dumps(lights))
    return folder


@pytest.fixture(scope="session")
def stack_folder() -> Callable[..., Path]:
    """``stack_folder(root, n=4, enlarge=1.0)``: write ``root/rti``, a rendered ground marking photographed under ``n``
    lights (held-out fonts, PNG shots ``shot_<k>.png`` scaled by ``enlarge``, with ``lights.json``); returns it."""
    return _stack_folder


@pytest.fixture(scope="session")
def as_loaded() -> Callable[..., LoadedImage]:
    """A rendered image (BGR or gray) as the reader gets a photo: PNG-encoded, then decoded as ``photo.png``."""
    return _as_loaded


@pytest.fixture
def locked_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folders named ``locked`` cannot be listed (PermissionError), as for another user's folder.

    Simulated: the tests may run as root, who can list any folder.
    """
    import os

    real_scandir = os.scandir

    def scandir(path: str = ".") -> object:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture(scope="session")
def serial_photo() -> np.ndarray:
    """A rendered clean marking (held-out fonts, upright) whose direct read gives a serial."""
    from marktrace.datasets.synth import SynthConfig, render_marking

    return render_marking(1_250_000_322, SynthConfig(fonts="heldout", wear=(0.0, 0.1), rotation="upright")).image


def _decoded(text: str, confidence: float, chars: list[float] | None = None, steps: list[int] | None = None,
             crop_width: int | None = None) -> Any:
    """A decoding of ``text``; with ``crop_width``, per-step probabilities of the length the recognizer gives such
    a crop (a quarter of its width rounded up to 8, less one)."""
    from marktrace.inference.ctc import DecodedText

    per_char = chars if chars is not None else [confidence] * len(text)
    probs = None if crop_width is None else np.zeros((int(np.ceil(crop_width / 8) * 8) // 4 - 1, 97), np.float32)
    return DecodedText(
        text=text,
        confidence=confidence,
        char_confidences=tuple(per_char),
        char_alternatives=tuple(((ch, c),) for ch, c in zip(text, per_char, strict=True)),
        char_steps=tuple(steps if steps is not None else range(len(text))),
        probs=probs,
    )


def _direct(reader: Any, image: LoadedImage) -> Any:
    attempt = reader._attempt(image.image, image.path, image.sha256, "direct", "original")
    assert isinstance(attempt.record.get("serial_number"), dict), "the fixture photo must give a serial"
    return attempt


def _start(photo: np.ndarray, **settings: Any) -> tuple[Any, LoadedImage, Any]:
    """A one-thread reader with ``settings``, ``photo`` as loaded, and its direct attempt (which must give a serial)."""
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    reader = MarkingReader.from_settings(ReaderSettings(threads=1, **settings))
    image = _as_loaded(photo)
    return reader, image, _direct(reader, image)


def _serial_index(attempt: Any) -> int:
    line_text = attempt.record["serial_number"]["evidence"]["line_text"]
    return next(i for i, line in enumerate(attempt.lines) if line.text == line_text)


@pytest.fixture(scope="session")
def serial_reads() -> SimpleNamespace:
    """Helpers for tests of the serial line's re-reads: ``decoded(text, confidence, ...)`` a decoding,
    ``start(photo, **settings)`` a one-thread reader, the photo as loaded and its direct attempt (which must give a
    serial), ``index(attempt)`` the position of the serial's line in it."""
    return SimpleNamespace(decoded=_decoded, start=_start, index=_serial_index)
