"""The reader interface shared by the batch CLI and the service.

:class:`MarkingReader` (in ``marktrace.inference.pipeline``) implements it with the shipped ONNX
models; tests may pass any object with the same methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from marktrace.inference.schema import ItemResult

LightDirections = Mapping[str, tuple[float, float]]
"""File name -> (azimuth_deg, elevation_deg); azimuth in the image plane from +x toward +y."""


class Reader(Protocol):
    """Reads one item (a photo, or photos of one marking under several lights) into an :class:`ItemResult`."""

    def read_uploaded(
        self,
        item_name: str,
        files: Sequence[tuple[str, bytes]],
        lights: LightDirections | None = None,
    ) -> ItemResult:
        """Read photos given as (file name, bytes); never raises for bad images (status "error")."""
        ...

    def warm_up(self) -> None:
        """Run the models once so the first real request is not slow."""
        ...
