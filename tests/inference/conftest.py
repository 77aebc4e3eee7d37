"""Fixtures shared by the inference tests."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from marktrace.inference.images import LoadedImage


def _as_loaded(image: np.ndarray, name: str = "photo.png") -> LoadedImage:
    from marktrace.inference.images import decode_image

    ok, buf = cv2.imencode(".png", image)
    assert ok
    return decode_image(bytes(buf), name)


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
