"""A stand-in reader for tests and service-overhead benchmarks: decodes each photo for real, reads nothing.

It satisfies :class:`marktrace.inference.reader.Reader` and also returns a derived view (a grey-scale
PNG) so the derived-image endpoints can be exercised. Use it with ``MARKTRACE_READER=
marktrace.service.fake_reader:FakeReader``; ``MARKTRACE_FAKE_DELAY_S`` adds a fixed per-item delay.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import cv2

from marktrace.inference.enhance.chains import image_sha256, software_version
from marktrace.inference.geometry import to_gray
from marktrace.inference.images import DEFAULT_MAX_PIXELS, decode_image
from marktrace.inference.reader import LightDirections
from marktrace.inference.schema import Evidence, ItemResult, Line, RecordField, Trail, TrailStep, View


class FakeReader:
    """Decodes photos (raising ImageLoadError on bad ones) and returns a deterministic placeholder record."""

    def __init__(self, delay_s: float | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        env_delay = os.environ.get("MARKTRACE_FAKE_DELAY_S")
        self.delay_s = delay_s if delay_s is not None else float(env_delay or 0.0)
        self.max_pixels = max_pixels
        self.warmed = False

    def warm_up(self) -> None:
        """Nothing to load; marks the reader warm."""
        self.warmed = True

    def read_with_views(
        self,
        item_name: str,
        files: Sequence[tuple[str, bytes]],
        lights: LightDirections | None = None,
    ) -> tuple[ItemResult, dict[str, bytes]]:
        """Read the item and return the derived images' bytes keyed by view name."""
        started = time.perf_counter()
        hashes: dict[str, str] = {}
        lines: list[Line] = []
        views: list[View] = []
        derived: dict[str, bytes] = {}
        for name, data in files:
            loaded = decode_image(data, name, max_pixels=self.max_pixels)
            hashes[name] = loaded.sha256
            grey = to_gray(loaded.image)
            ok, png = cv2.imencode(".png", grey)
            if not ok:  # pragma: no cover - cv2 encodes any uint8 image
                raise RuntimeError(f"{name}: could not encode the grey view")
            png_bytes = png.tobytes()
            view_name = f"grey:{name}"
            derived[view_name] = png_bytes
            views.append(
                View(
                    name=view_name,
                    file=name,
                    trail=Trail(
                        source_sha256=[loaded.sha256],
                        steps=[TrailStep(name="grey", params={})],
                        software=f"{software_version()}; fake reader",
                        sha256=image_sha256(grey),
                    ),
                )
            )
            h, w = grey.shape
            lines.append(
                Line(
                    text=f"MEAN{int(grey.mean()):03d}",
                    confidence=0.5,
                    box=[(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))],
                    file=name,
                    model="fake",
                )
            )
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        first = files[0][0]
        serial = RecordField(
            value=f"FAKE{hashes[first][:6].upper()}",
            text_as_marked=lines[0].text,
            confidence=0.5,
            evidence=Evidence(file=first, sha256=hashes[first], line_text=lines[0].text),
        )
        result = ItemResult(
            item=item_name,
            files=[n for n, _ in files],
            sha256=hashes,
            status="ok",
            record={"serial_number": serial.model_dump(mode="json")},
            lines=lines,
            views=views,
            timings_ms={"fake": (time.perf_counter() - started) * 1000.0},
        )
        return result, derived

    def read_uploaded(
        self,
        item_name: str,
        files: Sequence[tuple[str, bytes]],
        lights: LightDirections | None = None,
    ) -> ItemResult:
        """Read the item (the Reader protocol)."""
        return self.read_with_views(item_name, files, lights)[0]
