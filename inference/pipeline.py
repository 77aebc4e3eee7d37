"""The reading pipeline: photo -> detected lines -> recognised text -> record, on the shipped ONNX models."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from marktrace.inference.assemble import (
    add_character_alternatives,
    build_record,
    clip_line_box,
    clip_record_boxes,
    drop_detached_end,
    merge_alternatives,
    reads_agree,
    scale_alternatives,
    serial_consensus,
)
from marktrace.inference.atomic import atomic_write_bytes
from marktrace.inference.ctc import DecodedText, greedy_decode
from marktrace.inference.detect import DetectedLine, postprocess_maps, prepare_detector_input, text_region
from marktrace.inference.geometry import pad_quad, quad_size, quad_to_list, rectify_line, rotate_quad, to_gray
from marktrace.inference.images import (
    DEFAULT_MAX_PIXELS,
    HEAP_MMAP_BYTES,
    ImageLoadError,
    LoadedImage,
    decode_image,
    map_large_allocations_from_large_photos,
    sha256_file,
)
from marktrace.inference.items import Item
from marktrace.inference.lexicon import MakerLexicon, Reading, fill_manufacturer
from marktrace.inference.onnx_models import LoadedModel, load_model
from marktrace.inference.reader import LightDirections
from marktrace.inference.recognize import WIDTH_MULTIPLE, batch_line_crops
from marktrace.inference.schema import Alternative, CharAlternatives, ImageInfo, ItemResult, Line, TrailStep, View

CROP_PAD_X = 0.2
CROP_PAD_Y = 0.1
"""Margins (in line heights) added around a detected line before it is cut for the recognizer."""
EXTENSION_MIN_CHAR = 0.8
"""The least confidence of each character a grown serial box adds (:attr:`ReaderSettings.serial_extensions`)."""
EXTENSION_MAX_DROP = 0.01
"""How far a grown serial box's line confidence may fall below the first read's and the read still be kept."""
EXTENSION_STRIP_OVERLAP = 1.0
"""How far (line heights) the screening strip at an end of the serial line reaches back into its box."""
EXTENSION_EDGE_MARGIN = 0.1
"""How far (line heights) beyond the box's edge a screening strip's character must lie to count as new."""

MAX_BATCH = 16
MAX_WIDTH_RATIO = 1.35
RETRY_BELOW = 0.9
"""A restored line read with less confidence than this is also read rotated by 180 degrees."""
FLIP_MARGIN = 0.15
"""The rotated reading must beat the upright one by this much times the direction confidence (the detector's
direction is evidence too: symmetric strings such as 'T696822' / 'ZZ89691' read well both ways), less the
photo's vote (see :meth:`MarkingReader._read_lines`)."""
CHAIN_REGION_PAD_LINES = 2.0
"""Margin (line heights) of the region a large photo's enhancement chains are cut to (see ``_chain_attempts``)."""
ZOOM_MAX_STEPS = 3
"""At most this many successive detections on a narrower text region (see :attr:`ReaderSettings.zoom_to_text`)."""
OBLIQUE_DEG = 20.0
"""A line this many degrees or more off the horizontal (either way) makes an unsure photo worth reading turned."""

_VIEW_SINK: ContextVar[dict[str, bytes] | None] = ContextVar("marktrace_view_sink", default=None)
"""Where :meth:`MarkingReader._keep_view` also puts derived views (PNG bytes) during :meth:`read_with_views`."""


@dataclass(frozen=True)
class ReaderSettings:
    """How the reader loads and runs its models (frozen: read once at start)."""

    detector: Path | None = None
    """ONNX detector; ``None`` uses the shipped default (checksum verified)."""
    recognizer: Path | None = None
    threads: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    long_side: int | None = None
    """Detector input size (longer side); ``None`` uses the model's metadata."""
    max_line_width: int = 1024
    registry_files: tuple[Path, ...] = field(default_factory=tuple)
    enhance: bool = True
    """Try enhancement chains (single photos) or photometric views (multi-light) when the direct read is unsure."""
    confident: float = 0.6
    """A serial read at this confidence or above is not enhanced further."""
    confident_stack: float = 0.6
    """The same bar for multi-light items when :attr:`stack_consensus` is off: below it, photometric views are
    read too. Raising it reads views more often and costs more CPU per stack; on development stacks it did not
    read more serials right."""
    stack_consensus: bool = True
    """A multi-light item's serial is chosen by a confidence-weighted vote over all its reads (each photo read
    directly, each relief view) instead of its single most confident read, and its relief views are all read
    unless the direct reads already agree (:attr:`stack_agreement`). The field says so in a ``consensus``
    flag. Development stacks (8 lights, ground): 58 of 140 right against 51 in training fonts, 44 of 100 against
    41 in fonts recognizer 1.0.0 never saw; held-out ``multilight`` n=100: 53% against 54% with the 1.0.x models,
    62% against 55% with 1.1.0 (``inference/enhance/README.md``). ``False`` restores the most confident read."""
    stack_agreement: float = 0.6
    """The direct reads of a stack agree when one value, read by at least three of them, holds this share of
    their summed serial confidence; the relief views are then not made."""
    chains: tuple[str, ...] = ("blackhat_clahe", "flatten_clahe")
    chain_confidence_weight: float = 0.15
    """A serial read through an enhancement chain is reported at this share of its own confidence, and so are its
    alternatives (the read chosen is not changed): chains run only on photos whose direct read was unsure, and there
    their reads are rarely right (2 of 39 on development `ground` and `worn` photos, at a mean confidence of 0.46).
    1.0 turns it off."""
    chain_max_pixels: int = 12 * 1024 * 1024
    """A chain's working copy (the photo, or its text region) of more pixels than this is shrunk to it first (a
    recorded ``resize`` step, pixel averaging, after the chain's ``gray`` step when it starts with one), so the
    chains' filters work on a bounded image: a 70-megapixel photo then costs about the memory of a 12-megapixel
    one, and its lines keep far more pixels than the recognizer's input height. 12 MP kept the held-out
    ``framed`` set's reads (n=200: 68.0%, as 16 MP) at a peak of 474 MB (16 MP: 514 MB). 12 Mi (12,582,912)
    rather than 12,000,000 so that a 12 MP phone photo (4032 x 3024: 12,192,768 pixels) is not shrunk by 1.6%, a
    full-size colour copy and an area resampling per chain for nothing. 0 turns it off."""
    heap_mmap_bytes: int = HEAP_MMAP_BYTES
    """From the first photo of more than :data:`~marktrace.inference.images.HEAP_MAP_ABOVE_PIXELS` (8 MP) a reader
    of these settings decodes, blocks of this many bytes or more (a large photo's working copies) get their own
    mapping from the C heap, process-wide (glibc ``mallopt``,
    :func:`~marktrace.inference.images.map_large_allocations`), so they go back to the system when freed instead of
    staying with the process between photos. Held-out ``cluttered`` and ``framed`` photos (12 MP phone photos and
    1.4-70 MP ones) read in one process: peaks of 522-632 MB with glibc's default, 434-465 MB with 16 MB, for 5-9%
    more CPU time (README, "Benchmark"). A process that reads only smaller photos keeps glibc's default (there the
    mapped blocks cost 5-10% more CPU time and lower no peak). 0 leaves the C heap as it is."""
    turn_oblique: bool = True
    """When the direct read of a single photo is unsure and its longest line runs more than
    :data:`OBLIQUE_DEG` off the horizontal, read the photo again turned so that line is level (the
    detector reads level lines best). Boxes are mapped back to the original pixels; the turned working
    copy is never written. Measured on the held-out ``rotated`` set (see README). A photo at least twice the
    detector's input size is turned only after :attr:`detector_sides`, if still unsure (the turned copy is a
    full-size warp, and on large photos the other sizes settle most reads)."""
    detector_sides: tuple[int, ...] = (448, 1280, 2048)
    """When the direct read of a single photo is unsure, detect its lines again at these detector input
    sizes (longer side, pixels), in order, until a serial is read confidently. Close-ups whose characters
    are large for the detector's default size are found and cut better at a smaller size; a marking that is a
    small part of a large photo, among edges and scratches the detector also takes for lines (so that
    ``zoom_to_text`` finds no one region to zoom into), is found at a larger one. A size above the model's
    default is used only on photos larger than it (never to enlarge one). The read stays ``direct`` on the
    original photo (only the detector's working copy is resized). 2048 (since reader 0.5.3) reaches the markings
    that span a tenth to a third of a 12 MP phone photo, whose characters are too small for the detector at 1280."""
    anchor_regions: int = 2
    """When a single photo at least twice the detector's input size is still unsure after ``detector_sides``, read
    again the region around each of its most promising lines (the highest line confidence times
    ``min(1, characters / 3)``; a line inside a region already read is skipped), this many at most, until a serial
    is read confidently: 3 line widths by 8 line heights (at least 24 line heights wide), detected and read as a
    working copy cut from the photo (flag ``read_in_region``; boxes in the photo's pixels). A marking among edges,
    screw heads and scratches that the detector also takes for short lines spans a small part of the photo, but those
    lines spread over all of it, so ``zoom_to_text`` finds no one region to zoom into (see README, "Reading photos").
    0 turns it off."""
    turn_read_below: float = 0.95
    """A line is also read turned by 180 degrees (the turn decision, :func:`orientation_flips`) only when its upright
    read's confidence is below this, unless one of the lines so read turns: then every line is read turned and the
    photo decides as one (an upside-down photo's symmetric serial, `V1988B` read `8886TA` at 0.95 or more, turns
    with the rest). Reading confident lines only one way saved 15% / 8% / 6% of the CPU per photo on the held-out
    `clean` / `worn` / `rotated` sets (n=100) with the same records but for one confidence (README, "Reading
    photos"). 1.0 reads every line both ways."""
    zoom_to_text: bool = True
    """When the lines found in a photo larger than the detector's input span at most
    :data:`~marktrace.inference.detect.ZOOM_MAX_SHARE` of its longer side (a marking photographed as a small
    part of a large photo), detect again on their region, cut with a margin from the photo (a working copy),
    so the characters reach the detector at the sizes it was trained on. Boxes stay in the photo's pixels and
    the read stays ``direct``. No effect on photos the marking fills (see README, "Reading photos")."""
    serial_crop_pads: tuple[tuple[float, float], ...] = ((0.1, 0.1), (0.2, 0.2))
    """A single photo's serial line is also cut with these margins (along, across the line; in line heights) around
    its detected box, besides the first cut's (:data:`CROP_PAD_X`, :data:`CROP_PAD_Y`), and each cut is read. The
    most confident read of the line is kept (flag ``read_recut``; the box stays the detected one), and the serial's
    confidence is scaled by the square of the share of cuts whose read gives the same serial (flag
    ``cut_disagreement`` with every cut's read and serial when they differ): the recognizer reads some lines
    differently from crops a few pixels apart, and such reads are far less often right. Costs one recognizer batch
    of the serial line; ``()`` turns both off (see README, "Reading photos")."""
    serial_extensions: tuple[float, ...] = (0.75, 1.5)
    """The serial line of a single photo, and of each photo and relief view a multi-light stack reads before its vote,
    is also read from its box grown along the line by these many line heights, at
    its start and at its end separately (smallest first): the detector sometimes ends a box inside the marking
    (``KE18608`` for ``6KE18608``). A grown read is kept when it reads the same characters plus new ones at that end,
    each at least :data:`EXTENSION_MIN_CHAR`, at a line confidence no more than :data:`EXTENSION_MAX_DROP` below the
    first read's, and the serial it gives contains the first one (flag ``read_extended``; the box grows with it).
    Costs one recognizer batch of two short strips (the screen), and one more for an end that passes it; ``()``
    turns it off (see README, "Reading photos")."""
    drop_detached_end: bool = True
    """A serial line's last character read unsurely and standing apart from the others (a proof or inspection stamp
    struck beside the serial, read as the nearest character: ``CE 2568 7`` for ``CE 2568`` and a star) is taken off
    the serial's value, the full read kept as an alternative, with a ``detached_end_dropped`` flag
    (:func:`~marktrace.inference.assemble.detached_end`; README, "Reading photos"). ``False`` keeps the value as
    parsed."""
    character_alternatives: int = 2
    """At most this many alternative serials, each the value with one character read below 0.9 replaced by the
    recognizer's runner-up there (``method: "character"``; a ``character_alternatives`` flag gives the position and
    both characters; :func:`~marktrace.inference.assemble.add_character_alternatives`): the misread character of a
    wrong serial is usually its least sure one, and its runner-up often the true one. 0 turns it off (see README,
    "Reading photos")."""
    split_stacked_rows: bool = True
    """Cut a detector component that holds stacked lines into its rows (a maker line the map bridged to the import
    line under it, flush-left lines joined into an ``E``; ``inference/detect.py::split_rows``, CONTRACT.md §4 step
    3). ``False`` reads each component as one line, as readers before 0.4.0 did."""
    max_photometric_views: int = 5
    max_stack_direct_reads: int = 12
    """A multi-light item's photos read directly (each on its own), spread evenly over the stack in file order;
    all of them still make the photometric stack. A 60-photo dome capture differs only in its lighting, so
    reading every photo adds seconds and little else; stacks of up to this many are all read."""
    flag_alterations: bool = False
    """Over-stamp flags on the serial field (``overstamp_suspected``: position in the value, score, evidence;
    never a change of the text), scored by a logistic regression on the recognizer's per-step probabilities
    (``inference/enhance/alteration.py``). Off by default: on the held-out ``overstamp`` benchmark set it
    flags 2.6% of clean characters but finds only 20% of the over-stamped ones (issue 3 asks >= 80% at < 5%),
    so an unflagged character is no evidence of an original one."""
    save_enhanced: Path | None = None
    """Folder that receives every derived image with its trail (``--save-enhanced``)."""
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    """onnxruntime execution providers in order of preference (e.g. ``("CUDAExecutionProvider",)`` with the
    ``[gpu]`` extra); unavailable ones are dropped with a log line and CPU is always the fallback."""
    variant: str = "auto"
    """Which registered variant of the shipped models to load when no path is given: ``fp32``, ``int8``, or
    ``auto`` (INT8 on the CPU: measured as accurate as FP32 on 300 clean and 300 worn held-out markings and
    about 1.75x faster; FP32 when a GPU execution provider is asked for)."""

    restoration: bool = False
    """Learned restoration (issue 3): when the direct read and the chains are all unsure on a single photo, restore
    the line crops with the restorer model and read the drawn glyph masks (method ``restoration``, a suggestion
    flagged as such). Off by default: see the restorer's model card for the measured effect."""
    restorer: Path | None = None
    """ONNX restorer; ``None`` uses the shipped default (checksum verified). Loaded on first use only."""
    lexicon_makers: bool = True
    """When no maker was read, look for the registry's manufacturer marks in the recognizer's character
    probabilities of the lines no field but the country rests on, over every attempt made on the photo
    (``inference/lexicon.py``): a match fills ``manufacturer`` with ``evidence.method = "lexicon"``, the
    attempt's view, a ``lexicon_match`` flag and a lowered confidence."""

    def resolved_variant(self) -> str:
        """The variant ``auto`` stands for with these providers (others are returned as given)."""
        if self.variant != "auto":
            return self.variant
        return "int8" if all(p == "CPUExecutionProvider" for p in self.providers) else "fp32"


@dataclass
class _Attempt:
    lines: list[Line]
    record: dict[str, Any]
    method: str
    view: str
    decoded: list[DecodedText] = field(default_factory=list)
    """The recognizer's decoding of each line (per-step probabilities kept), parallel to ``lines``."""


@dataclass(frozen=True)
class _CutRead:
    """One read of a line cut with some margin (the cut kept for over-stamp flags; None when not at hand)."""

    margin: tuple[float, float]
    text: DecodedText
    crop: np.ndarray | None


_CutKey = tuple[str, tuple[tuple[float, float], ...]]


def _cut_key(line: Line) -> _CutKey:
    return line.file, tuple((float(x), float(y)) for x, y in line.box)


def _serial_confidence(attempt: _Attempt) -> float:
    serial = attempt.record.get("serial_number")
    return float(serial["confidence"]) if isinstance(serial, dict) else 0.0


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


@dataclass
class _Candidate:
    detected: DetectedLine
    crop: np.ndarray
    flipped: bool


@dataclass
class _StackBuild:
    """A multi-light item's photos as they are read, one at a time (:meth:`MarkingReader._add_stack_photo`)."""

    n: int
    """Photos the item has: the stack's working size is the one for all of them."""
    chosen: frozenset[int]
    """Positions (in the item's file order) of the photos read directly."""
    direct: list[_Attempt] = field(default_factory=list)
    """Each photo's direct read, in order."""
    shown: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Photo name -> (width, height) as shown (EXIF orientation applied)."""
    photo_size: tuple[int, int] | None = None
    """(width, height) of the first photo; the working copies hold while every photo has it."""
    read_s: float = 0.0
    """Seconds spent in the direct reads (apart from decoding)."""

    def working_copies_hold(self, loaded: int) -> bool:
        """Whether the kept working copies are the stack's: every photo decoded, all of one size."""
        return loaded == self.n and all(size == self.photo_size for size in self.shown.values())


class MarkingReader:
    """Reads markings from photos with one detector and one recognizer session, loaded once."""

    def __init__(self, detector: LoadedModel, recognizer: LoadedModel, settings: ReaderSettings) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.settings = settings
        self.charset = recognizer.meta.charset
        self.height = recognizer.meta.input_height
        self.long_side = settings.long_side or detector.meta.long_side
        self.model_label = model_file_label(recognizer)
        """Which recognizer file read a line (``name@version``, ``-int8`` for the quantized variant)."""
        self.software = reading_software(detector, recognizer)
        """What every answer of this reader was made with (``ItemResult.software``)."""
        from marktrace.inference.registry import load_registry

        self.registry = load_registry(settings.registry_files)
        self.maker_lexicon = MakerLexicon(self.registry, self.charset)
        """The registry's manufacturer marks, indexed for spotting in the recognizer's probabilities."""
        self._restorer: LoadedModel | None = None
        self._restorer_record: dict[str, str] = {}
        self._flag_warning: str | None = None
        if settings.flag_alterations:  # load (and verify) the flagger and its patch scorer now, not mid-batch
            from marktrace.inference.enhance.alteration import shipped_overstamp_model

            self._flag_warning = flagger_mismatch(shipped_overstamp_model().training, self.model_label, recognizer)
        if settings.restoration:  # likewise the restorer: a wrong file is refused at start, not item by item
            self.restorer_model()

    @classmethod
    def from_settings(cls, settings: ReaderSettings | None = None) -> MarkingReader:
        """Load the models named by ``settings`` (default: the shipped ones, checksums verified)."""
        settings = settings or ReaderSettings()
        from marktrace.models.registry import default_model, verify_file

        map_large_allocations_from_large_photos(settings.heap_mmap_bytes)

        variant = settings.resolved_variant()
        det_path = settings.detector or verify_file(default_model("line_detection", variant=variant))
        rec_path = settings.recognizer or verify_file(default_model("line_recognition", variant=variant))
        providers = list(settings.providers)
        detector = load_model(det_path, "line_detection", threads=settings.threads, providers=providers)
        recognizer = load_model(rec_path, "line_recognition", threads=settings.threads, providers=providers)
        return cls(detector, recognizer, settings)

    def warm_up(self) -> None:
        """Run both models once on a blank image."""
        blank = np.full((96, 320, 3), 128, np.uint8)
        self.read_image(blank, "warm-up", "")

    # -- detection and recognition -------------------------------------------------------------
    def detect(self, image: np.ndarray, long_side: int | None = None) -> list[DetectedLine]:
        """Line quads in original pixels; the detector sees the photo (BGR or gray) at ``long_side``.

        ``long_side`` defaults to the detector model's. With :attr:`ReaderSettings.zoom_to_text`, when the
        lines found span a small part of a large photo, the detector runs again on that region (a working copy
        cut from the photo; the photo is not changed) and its lines replace the first ones, up to
        :data:`ZOOM_MAX_STEPS` times.
        """
        side = long_side or self.long_side
        lines = self._detect_once(image, side)
        region, origin = image, np.zeros(2, np.float32)
        for _ in range(ZOOM_MAX_STEPS if self.settings.zoom_to_text else 0):
            box = text_region([line.quad for line in lines], region.shape, side)
            if box is None:
                break
            x0, y0, x1, y1 = box
            sub = region[y0:y1, x0:x1]  # a view: OpenCV reads it in place, no copy of a large photo
            found = self._detect_once(sub, side)
            if not found:  # keep what the wider view found
                break
            region, origin, lines = sub, origin + np.array([x0, y0], np.float32), found
        if not origin.any():
            return lines
        return [DetectedLine(np.asarray(d.quad, np.float32) + origin, d.score, d.direction_confidence) for d in lines]

    def _detect_once(self, image: np.ndarray, long_side: int) -> list[DetectedLine]:
        """One detector pass over the whole of ``image`` (BGR or gray) at ``long_side``."""
        prepared = prepare_detector_input(image, long_side)
        maps = self.detector.session.run(None, {self.detector.input_name: prepared.tensor})[0][0]
        meta = self.detector.meta
        return postprocess_maps(
            maps, meta.stride, prepared.scale, meta.threshold, meta.min_score, geometry=meta.line_geometry,
            split_stacked=self.settings.split_stacked_rows,
        )

    def recognize(self, crops: Sequence[np.ndarray]) -> list[DecodedText]:
        """Decode gray line crops (height = the model's input height), batching crops of similar width."""
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
        results: list[DecodedText | None] = [None] * len(crops)
        start = 0
        while start < len(order):
            end = start + 1
            first_width = crops[order[start]].shape[1]
            while (
                end < len(order)
                and end - start < MAX_BATCH
                and crops[order[end]].shape[1] <= first_width * MAX_WIDTH_RATIO
            ):
                end += 1
            group = order[start:end]
            batch = batch_line_crops([crops[i] for i in group], self.height)
            probs = self.recognizer.session.run(None, {self.recognizer.input_name: batch})[0]
            for row, index in enumerate(group):
                results[index] = greedy_decode(probs[row], self.charset)
            start = end
        return [r for r in results if r is not None]

    def read_image(self, image: np.ndarray, file: str, sha256: str, view: str = "original") -> list[Line]:
        """Detect and recognise every line of one image (BGR or gray); boxes are in the image's pixels."""
        return [line for line, _ in self._read_lines(image, file, view)]

    def _read_lines(
        self, image: np.ndarray, file: str, view: str, long_side: int | None = None
    ) -> list[tuple[Line, DecodedText]]:
        """:meth:`read_image`, each line with the decoding it came from, in reading order."""
        detected = self.detect(image, long_side)
        # gray once per photo, not once per line; a gray view (an enhancement chain's) is read as it is
        gray = to_gray(image) if detected and image.ndim == 3 else image
        candidates: list[_Candidate] = []
        for det in detected:
            quad = pad_quad(det.quad, CROP_PAD_X, CROP_PAD_Y)
            crop = rectify_line(gray, quad, self.height, self.settings.max_line_width)
            candidates.append(_Candidate(det, crop, False))
        upright = self.recognize([c.crop for c in candidates])
        # The 180-degree decision: every line read below `turn_read_below` is also read upside down. The
        # detector's direction can be wrong for a whole photo (an upside-down photo), and symmetric strings
        # ('X6Z0Z' / '2029X') read almost as well both ways, so each line's own evidence (the rotated reading's
        # score gain) is joined by the photo's vote: the mean gain of the other lines read both ways. When one of
        # them turns, the photo may be upside down: every line is then read turned and the photo decides as one.
        bar = self.settings.turn_read_below
        rotated: dict[int, _Candidate] = {}
        turned: dict[int, DecodedText] = {}

        def decide(lines: list[int]) -> dict[int, bool]:
            fresh = [i for i in lines if i not in turned]
            for i in fresh:
                rotated[i] = _Candidate(candidates[i].detected, np.ascontiguousarray(candidates[i].crop[::-1, ::-1]),
                                        True)
            turned.update(zip(fresh, self.recognize([rotated[i].crop for i in fresh]), strict=True))
            return dict(zip(lines, orientation_flips(
                [_score(turned[i]) - _score(upright[i]) for i in lines],
                [candidates[i].detected.direction_confidence for i in lines],
            ), strict=True))

        flips = decide([i for i, u in enumerate(upright) if bar >= 1.0 or u.confidence < bar])
        if any(flips.values()) and len(flips) < len(candidates):
            flips = decide(list(range(len(candidates))))
        best = [
            (rotated[i], turned[i]) if flips.get(i) else (cand, upright[i]) for i, cand in enumerate(candidates)
        ]
        lines: list[tuple[Line, DecodedText]] = []
        for cand, text in best:
            if not text.text.strip():
                continue
            quad = cand.detected.quad
            if cand.flipped:
                quad = quad[[2, 3, 0, 1]]
            line = _to_line(text, quad, file, view, self.model_label, cand.detected.score)
            if self.settings.flag_alterations:
                line.alterations = _alterations(cand.crop, text, self._flag_warning)
            lines.append((line, text))
        lines.sort(key=lambda pair: (round(min(p[1] for p in pair[0].box) / 20), min(p[0] for p in pair[0].box)))
        return lines

    # -- items ----------------------------------------------------------------------------------
    def _attempt(
        self,
        image: np.ndarray,
        file: str,
        sha256: str,
        method: str,
        view: str,
        scale: float = 1.0,
        to_original: np.ndarray | None = None,
        long_side: int | None = None,
    ) -> _Attempt:
        """Read one image: the photo, a view of it, or a working copy.

        Boxes go back to the photo's pixels by ``1 / scale`` or by the 2x3 affine ``to_original``.
        """
        pairs = self._read_lines(image, file, view, long_side)
        lines = [line for line, _ in pairs]
        if scale != 1.0:
            for line in lines:
                line.box = [(round(x / scale, 1), round(y / scale, 1)) for x, y in line.box]
        if to_original is not None:
            for line in lines:
                line.box = quad_to_list(rotate_quad(line.box, to_original))
        record = build_record(lines, {file: sha256}, self.registry, method=method, view=view)
        return _Attempt(lines=lines, record=record, method=method, view=view, decoded=[text for _, text in pairs])

    def read_loaded(self, item_name: str, images: Sequence[LoadedImage], lights: LightDirections | None) -> ItemResult:
        """Read decoded photos of one item, trying enhanced and photometric views when the direct read is unsure.

        The reading with the most confident serial number wins; the serials of the other attempts become
        its alternatives, and the views that were tried are listed with their trails.
        """
        t0 = time.perf_counter()
        chosen = self.direct_read_indices(len(images))
        attempts = [self._direct_attempt(img, in_stack=len(images) >= 3) for i, img in enumerate(images) if i in chosen]
        return self._read_decoded(item_name, images, lights, attempts, t0)

    def _direct_attempt(self, image: LoadedImage, in_stack: bool) -> _Attempt:
        """A photo read directly; a multi-light stack's photo with its serial box grown too (``serial_extensions``).

        A single photo's serial box is grown later, on its most confident read only (:meth:`_read_decoded`).
        """
        attempt = self._attempt(image.image, image.path, image.sha256, "direct", "original")
        if in_stack and self.settings.serial_extensions:
            attempt = self._extended_attempt(image, attempt)
        return attempt

    def direct_read_indices(self, n: int) -> frozenset[int]:
        """Positions of an item's ``n`` photos that are read directly.

        All of them for one or two photos or a stack of up to :attr:`ReaderSettings.max_stack_direct_reads`;
        else that many, spread evenly over the file order (first and last included).
        """
        cap = max(1, self.settings.max_stack_direct_reads)
        if n < 3 or n <= cap:
            return frozenset(range(n))
        return frozenset(int(round(i * (n - 1) / (cap - 1))) for i in range(cap)) if cap > 1 else frozenset({0})

    def _read_decoded(
        self,
        item_name: str,
        images: Sequence[LoadedImage],
        lights: LightDirections | None,
        attempts: list[_Attempt],
        t0: float,
        shown: Mapping[str, tuple[int, int]] | None = None,
        photo_size: tuple[int, int] | None = None,
    ) -> ItemResult:
        """:meth:`read_loaded` once every photo has been read directly (``attempts``, in order; timed from ``t0``).

        The photos of a multi-light item (three or more) are only used in gray from here on (the photometric
        stack), so :meth:`_read_stack` hands them over in gray, as the stack's working copies of photos of
        ``photo_size`` (width, height) when given; ``shown`` then gives each photo's size as shown.
        """
        from marktrace.inference.enhance.photometric import LightFileError

        timings: dict[str, float] = {"direct_ms": _ms(t0)}
        problems: list[str] = [note for img in images for note in img.notes]
        views: list[View] = []

        def size_shown(img: LoadedImage) -> tuple[int, int]:
            return (shown or {}).get(img.path, (int(img.image.shape[1]), int(img.image.shape[0])))

        cut_reads: dict[_CutKey, list[_CutRead]] = {}  # a serial line's reads with every margin, by (file, box)
        cuts_on = len(images) < 3 and bool(self.settings.serial_crop_pads)
        if cuts_on and self.settings.serial_extensions:
            t_extend = time.perf_counter()
            position, (reference, direct) = max(enumerate(zip(images, attempts, strict=False)),
                                                key=lambda p: _serial_confidence(p[1][1]))
            attempts[position] = self._extended_attempt(reference, direct)
            timings["extend_ms"] = _ms(t_extend)
        if cuts_on:
            t_recut = time.perf_counter()
            reference, direct = max(zip(images, attempts, strict=False), key=lambda p: _serial_confidence(p[1]))
            recut = self._recut_attempt(reference, direct, cut_reads)
            if recut is not None:
                attempts.append(recut)
            timings["recut_ms"] = _ms(t_recut)
        best = max(attempts, key=_serial_confidence)
        vote_on_stack = len(images) >= 3 and self.settings.stack_consensus
        if vote_on_stack:
            unsure = not reads_agree(attempts, self.settings.stack_agreement)
        else:
            bar = self.settings.confident_stack if len(images) >= 3 else self.settings.confident
            unsure = _serial_confidence(best) < bar
        if unsure and self.settings.enhance:
            t1 = time.perf_counter()
            if len(images) >= 3:
                try:
                    views += self._photometric_attempts(images, lights, attempts, photo_size)
                except LightFileError as exc:  # the item is still read from its photos; the examiner is told why
                    problems.append(f"{item_name}: no photometric views ({exc}); read from the single photos")
                timings["photometric_ms"] = _ms(t1)
            else:
                # attempts[:len(images)] are the direct reads, one per photo, in order
                reference, direct = max(zip(images, attempts, strict=False), key=lambda p: _serial_confidence(p[1]))
                large = max(reference.image.shape[:2]) >= 2 * self.long_side

                def still_unsure() -> bool:
                    return max(map(_serial_confidence, attempts)) < self.settings.confident

                def turn() -> None:
                    t_turn = time.perf_counter()
                    if self._turned_attempt(reference, direct, attempts) is not None:
                        timings["turn_ms"] = _ms(t_turn)

                if self.settings.turn_oblique and not large:  # a large photo is turned after the other sizes
                    turn()
                if self.settings.detector_sides and still_unsure():
                    t_side = time.perf_counter()
                    photo_side = max(reference.image.shape[:2])
                    for side in self.settings.detector_sides:
                        if side > self.long_side and side >= photo_side:
                            continue  # would only enlarge the photo for the detector
                        attempts.append(self._attempt(reference.image, reference.path, reference.sha256, "direct",
                                                      "original", long_side=side))
                        if _serial_confidence(attempts[-1]) >= self.settings.confident:
                            break
                    timings["detector_sides_ms"] = _ms(t_side)
                if self.settings.turn_oblique and large and still_unsure():
                    turn()
                if self.settings.anchor_regions and large and still_unsure():
                    t_anchor = time.perf_counter()
                    self._anchor_attempts(reference, attempts)
                    timings["anchor_ms"] = _ms(t_anchor)
                if still_unsure():
                    t_chain = time.perf_counter()
                    views += self._chain_attempts(reference, attempts)
                    timings["chains_ms"] = _ms(t_chain)
                if self.settings.restoration and still_unsure():
                    t2 = time.perf_counter()
                    views += self._restoration_attempt(reference, attempts)
                    timings["restoration_ms"] = _ms(t2)
            best = max(attempts, key=_serial_confidence)
        vote = serial_consensus(attempts) if vote_on_stack else None
        if vote is not None:
            best = attempts[vote.attempt]
        record = merge_alternatives(best, attempts)
        if cuts_on:
            t_agree = time.perf_counter()
            self._cut_agreement(record, best, images, cut_reads)
            timings["recut_ms"] = round(timings.get("recut_ms", 0.0) + _ms(t_agree), 1)
        if vote is not None:
            serial = record["serial_number"]  # merge_alternatives' own copy
            serial["flags"] = [*(serial.get("flags") or []), vote.flag()]
        self._weigh_chain_read(record)
        self._finish_serial(record, best, images)
        hashes = {img.path: img.sha256 for img in images}
        if self.settings.lexicon_makers and record.get("manufacturer") is None:
            t3 = time.perf_counter()
            # The chosen attempt first; attempts without decodings (the restorer's suggestion) are not searched.
            readings = [Reading(a.lines, a.decoded, a.record, a.method, a.view)
                        for a in sorted(attempts, key=lambda a: a is not best) if a.decoded]
            fill_manufacturer(record, readings, self.maker_lexicon, self.registry, hashes)
            timings["lexicon_ms"] = _ms(t3)
        timings["total_ms"] = _ms(t0)
        shown = {img.path: size_shown(img) for img in images}
        clip_record_boxes(record, shown)
        return ItemResult(
            item=item_name,
            files=[img.path for img in images],
            sha256=hashes,
            status="ok",
            error="; ".join(problems) or None,
            record=record,
            lines=[clip_line_box(line, shown) for line in best.lines],
            views=views,
            images={
                img.path: ImageInfo(width=shown[img.path][0], height=shown[img.path][1],
                                    stored_width=img.original_size[0], stored_height=img.original_size[1],
                                    exif_transposed=img.exif_transposed, decoded_gray=img.decoded_gray,
                                    scaled_to_8bit=img.scaled_to_8bit)
                for img in images
            },
            timings_ms=timings,
            software=dict(self.software),
        )

    def _serial_line(self, attempt: _Attempt, files: Sequence[str]) -> int | None:
        """Index in ``attempt.lines`` of the line its serial was read from, on one of ``files``; None if none."""
        serial = attempt.record.get("serial_number")
        if not isinstance(serial, dict):
            return None
        line_text = (serial.get("evidence") or {}).get("line_text")
        return next((i for i, ln in enumerate(attempt.lines) if ln.text == line_text and ln.file in files), None)

    def _cut_reads(self, image: LoadedImage, box: Sequence[Sequence[float]],
                   margins: Sequence[tuple[float, float]]) -> list[_CutRead]:
        """Read the line in ``box`` (reading order, the photo's pixels) cut with each of ``margins``.

        The cuts come from the region they cover, made gray once there (not the whole of a large photo).
        """
        quads = [pad_quad(np.asarray(box, np.float32), px, py) for px, py in margins]
        reads, crops = self._read_quads(image, quads)
        if not reads:
            return []
        return [_CutRead(margin, text, crop) for margin, text, crop in zip(margins, reads, crops, strict=True)]

    def _read_quads(
        self, image: LoadedImage, quads: Sequence[np.ndarray]
    ) -> tuple[list[DecodedText], list[np.ndarray]]:
        """Read the regions ``quads`` (cut corners, reading order, the photo's pixels) of ``image`` in one batch.

        The cuts come from the region they cover, made gray once there (not the whole of a large photo); nothing
        is read (two empty lists) when that region is degenerate.
        """
        corners = np.concatenate(quads)
        h, w = image.image.shape[:2]
        x0, y0 = (max(0, int(np.floor(v)) - 2) for v in corners.min(axis=0))
        x1, y1 = (min(lim, int(np.ceil(v)) + 3) for v, lim in zip(corners.max(axis=0), (w, h), strict=True))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return [], []
        region = to_gray(image.image[y0:y1, x0:x1])
        origin = np.array([x0, y0], np.float32)
        crops = [rectify_line(region, q - origin, self.height, self.settings.max_line_width) for q in quads]
        return self.recognize(crops), crops

    def _extended_attempt(self, image: LoadedImage, direct: _Attempt, view: str = "original",
                          scale: float = 1.0) -> _Attempt:
        """``direct`` with its serial line read from a box grown along the line, where that reads more of it.

        ``direct`` was read from ``image`` as ``view`` (a photo, or a relief view of a multi-light stack); boxes are in
        the photo's pixels, ``scale`` times ``image``'s (a stack's working size).

        See :attr:`ReaderSettings.serial_extensions`. A cheap screen first: a short strip at each end (grown by the
        largest amount, reaching :data:`EXTENSION_STRIP_OVERLAP` line heights back into the box) is read, and only an
        end where that strip shows a confident character beyond the box's edge (:func:`characters_beyond`) has its
        whole grown line read, at every amount. Returns ``direct`` itself when the serial's line is not one of its
        lines on ``image``, no grown read passes, or the serial parsed from the grown read does not contain the first.
        """
        index = self._serial_line(direct, [image.path])
        serial = direct.record.get("serial_number")
        if direct.view != view or index is None or len(direct.decoded) != len(direct.lines) or not isinstance(
                serial, dict):
            return direct
        line, first = direct.lines[index], direct.decoded[index]
        box = np.asarray(line.box, np.float32)

        def read_quads(quads: Sequence[np.ndarray]) -> tuple[list[DecodedText], list[np.ndarray]]:
            return self._read_quads(image, [q * np.float32(scale) for q in quads])

        amounts = sorted(self.settings.serial_extensions)
        strips = [end_strip(box, end, amounts[-1], EXTENSION_STRIP_OVERLAP) for end in ("start", "end")]
        reads, crops = read_quads([pad_quad(q, CROP_PAD_X, CROP_PAD_Y) for q in strips])
        ends = [end for end, strip, read, cut in zip(("start", "end"), strips, reads, crops, strict=False)
                if characters_beyond(read, cut.shape[1], end, strip, amounts[-1])]
        if not ends:
            return direct
        # the grown lines of those ends, in one recognizer batch; the largest that passes at each end wins
        tries = [(end, amount) for end in ends for amount in amounts]
        reads, crops = read_quads([pad_quad(grow_along(box, end, amount), CROP_PAD_X, CROP_PAD_Y)
                                   for end, amount in tries])
        best: dict[str, tuple[float, DecodedText, np.ndarray]] = {}
        for (end, amount), read, cut in zip(tries, reads, crops, strict=False):
            if extension_accepted(best[end][1] if end in best else first, read, end):
                best[end] = (amount, read, cut)
        if not best:
            return direct
        grown = {end: best[end][0] if end in best else 0.0 for end in ("start", "end")}
        end = max(best, key=lambda e: best[e][1].confidence)
        _, text, crop = best[end]
        if len(best) == 2:  # both ends grew: read the box grown at both, kept when it extends the start's read
            both = grow_along(grow_along(box, "start", grown["start"]), "end", grown["end"])
            reads, crops = read_quads([pad_quad(both, CROP_PAD_X, CROP_PAD_Y)])
            if reads and extension_accepted(best["start"][1], reads[0], "end"):
                text, crop = reads[0], crops[0]
            else:  # only the more confident end's growth is kept
                grown["end" if end == "start" else "start"] = 0.0
        box = grow_along(grow_along(box, "start", grown["start"]), "end", grown["end"])
        flag = {"kind": "read_extended", "start_line_heights": grown["start"], "end_line_heights": grown["end"],
                "first_read": first.text, "first_box": [list(p) for p in line.box],
                "note": "the detected box ended inside the marking: the line was read again from the box grown along "
                        "it by these line heights, which read the same characters and more; the box is the grown one"}
        grown_attempt = self._with_line_read_again(image, direct, index, text, box, crop, flag)
        grown_serial = grown_attempt.record.get("serial_number")
        first_value = str(serial.get("value") or "")
        if not isinstance(grown_serial, dict) or not first_value or first_value not in str(grown_serial.get("value")):
            return direct
        return grown_attempt

    def _with_line_read_again(self, image: LoadedImage, direct: _Attempt, index: int, text: DecodedText,
                              box: np.ndarray, crop: np.ndarray | None, flag: dict[str, Any]) -> _Attempt:
        """``direct`` with line ``index`` read again as ``text`` in ``box``; its record rebuilt, ``flag`` on its fields.

        ``flag`` goes on each field the line carries. The line keeps its detector score's share of the confidence
        (:func:`_to_line`'s factor ``min(1, score / 0.8)``); its over-stamp flags are made again from ``crop`` when
        those are on.
        """
        line, first = direct.lines[index], direct.decoded[index]
        detector_factor = min(1.0, line.confidence / first.confidence) if first.confidence > 0 else 1.0
        fresh = _to_line(text, box, line.file, line.view, line.model or self.model_label, 0.8 * detector_factor)
        if self.settings.flag_alterations and crop is not None:
            fresh.alterations = _alterations(crop, text, self._flag_warning)
        lines = [*direct.lines[:index], fresh, *direct.lines[index + 1 :]]
        decoded = [*direct.decoded[:index], text, *direct.decoded[index + 1 :]]
        record = build_record(lines, {image.path: image.sha256}, self.registry, method=direct.method, view=direct.view)
        for value in record.values():
            if isinstance(value, dict) and (value.get("evidence") or {}).get("line_text") == fresh.text:
                value["flags"] = [*(value.get("flags") or []), dict(flag)]
        return _Attempt(lines=lines, record=record, method=direct.method, view=direct.view, decoded=decoded)

    def _recut_attempt(
        self, image: LoadedImage, direct: _Attempt, cut_reads: dict[_CutKey, list[_CutRead]]
    ) -> _Attempt | None:
        """``direct`` with its serial line read again from crops cut with :attr:`ReaderSettings.serial_crop_pads`.

        Every cut's read (the first cut's is ``direct``'s own) goes into ``cut_reads`` under the line's file and
        box. Returns None when the serial's line is not one of ``direct``'s lines on ``image`` or no new cut reads
        it more confidently (by the same score the 180-degree decision uses) as other text; else the attempt with
        that line's text, confidences and alternatives from the best cut, its record rebuilt, and a ``read_recut``
        flag on each field the line carries. The line's box stays the detected one.
        """
        index = self._serial_line(direct, [image.path])
        if direct.view != "original" or index is None or len(direct.decoded) != len(direct.lines):
            return None
        line, first = direct.lines[index], direct.decoded[index]
        cuts = self._cut_reads(image, line.box, self.settings.serial_crop_pads)
        cut_reads[_cut_key(line)] = [_CutRead((CROP_PAD_X, CROP_PAD_Y), first, None), *cuts]
        if not cuts:
            return None
        pick = max(cuts, key=lambda c: _score(c.text))
        text = pick.text
        if _score(text) <= _score(first) or text.text == first.text or not text.text.strip():
            return None
        px, py = pick.margin
        recut = {"kind": "read_recut", "pad_along": px, "pad_across": py, "first_read": first.text,
                 "first_score": round(_score(first), 4), "score": round(_score(text), 4),
                 "note": "the line was read again from a crop with these margins (line heights) around its detected "
                         "box, and read more confidently; the box is the detected one"}
        return self._with_line_read_again(image, direct, index, text, np.asarray(line.box, np.float32), pick.crop,
                                          recut)

    def _cut_agreement(
        self,
        record: dict[str, Any],
        best: _Attempt,
        images: Sequence[LoadedImage],
        cut_reads: dict[_CutKey, list[_CutRead]],
    ) -> None:
        """Scale the serial's confidence in ``record`` by how many cuts of its line give the same serial.

        Only for a serial read from a line on a photo itself (the direct read, another detector size, the photo
        read turned); a serial read from an enhancement view or the restorer is left as it is. The reads are those
        of :meth:`_recut_attempt` when the line is the direct read's, else the line is cut again with every margin
        and its own read counts too. Each read is parsed in place of the line (with the attempt's other lines); when
        ``k`` of ``n`` reads give the record's serial value (``59829WR.`` and ``59829WR`` give the same), the
        confidence and the alternatives already listed are multiplied by ``(k / n) ** 2`` and, when ``k < n``, a
        ``cut_disagreement`` flag lists the reads with their serials, and each other serial joins the alternatives
        (``method: "cut"``, its confidence scaled by its own share, never above the value's). Changes ``record`` in
        place.
        """
        serial = record.get("serial_number")
        paths = {img.path: img for img in images}
        index = self._serial_line(best, list(paths))
        if not isinstance(serial, dict) or best.view != "original" or index is None:
            return
        line = best.lines[index]
        reads = cut_reads.get(_cut_key(line))
        texts: list[tuple[tuple[float, float] | None, str]]
        if reads is not None:
            texts = [(c.margin, c.text.text) for c in reads]
        else:
            margins = [(CROP_PAD_X, CROP_PAD_Y), *self.settings.serial_crop_pads]
            cuts = self._cut_reads(paths[line.file], line.box, margins)
            if not cuts:
                return
            texts = [(None, line.text), *((c.margin, c.text.text) for c in cuts)]
        value = serial.get("value")
        values: dict[str, Any] = {line.text: value}  # the serial each read gives (None: none from that line)
        for _, text in texts:
            if text not in values:
                lines = [*best.lines[:index], line.model_copy(update={"text": text}), *best.lines[index + 1 :]]
                other = build_record(lines, {line.file: paths[line.file].sha256}, self.registry, method=best.method,
                                     view=best.view).get("serial_number")
                from_line = isinstance(other, dict) and (other.get("evidence") or {}).get("line_text") == text
                values[text] = other.get("value") if isinstance(other, dict) and from_line else None
        counts = Counter(values[t] for _, t in texts)
        agree = counts[value]
        if agree == len(texts):
            return
        factor = (agree / len(texts)) ** 2
        read_confidence = float(serial["confidence"])
        serial["confidence"] = round(read_confidence * factor, 4)
        # The readings already listed (the value's own confusable characters, the other attempts' serials) are
        # scaled with it: the disagreement discounts the read, not only the value chosen from it. The serials the
        # other cuts give join them (scaled by their own share, never above the value).
        alternatives = scale_alternatives(serial.get("alternatives") or [], factor)
        seen = {value, *(a.get("value") for a in alternatives)}
        for other_value, count in counts.items():
            if other_value is None or other_value in seen:
                continue
            seen.add(other_value)
            confidence = min(read_confidence * (count / len(texts)) ** 2, float(serial["confidence"]))
            alternatives.append({"value": other_value, "confidence": round(confidence, 4), "method": "cut"})
        alternatives.sort(key=lambda a: -float(a["confidence"]))
        serial["alternatives"] = alternatives
        serial["flags"] = [*(serial.get("flags") or []), {
            "kind": "cut_disagreement", "agree": agree, "of": len(texts), "factor": round(factor, 4),
            "reads": [{"text": t, "serial": values[t],
                       **({"pad_along": m[0], "pad_across": m[1]} if m else {"own_read": True})} for m, t in texts],
            "note": "crops of the line cut with other margins give other serials: the confidence is scaled by the "
                    "square of the share that agree, and so are the alternatives read before the cuts; compare the "
                    "reads with the photo",
        }]

    def _turned_attempt(self, image: LoadedImage, direct: _Attempt, attempts: list[_Attempt]) -> float | None:
        """Read ``image`` turned so its longest detected line is level; returns the turn (degrees) or None.

        The turn is a working copy (like EXIF orientation): the read stays ``direct`` on the original
        photo, with boxes mapped back to its pixels.
        """
        angle = level_turn(direct.lines)
        if angle is None:
            return None
        turned, to_original = turn_image(image.image, angle)
        attempt = self._attempt(turned, image.path, image.sha256, "direct", "original", to_original=to_original)
        turn = {"kind": "read_turned", "angle_deg": round(float(angle), 3),
                "note": "read from a working copy turned about the photo's centre (bilinear, replicated borders); "
                        "boxes are in the original photo's pixels"}
        _flag_fields(attempt.record, turn)
        attempts.append(attempt)
        return angle

    def _anchor_attempts(self, image: LoadedImage, attempts: list[_Attempt]) -> None:
        """Read the regions around the most promising lines found on ``image`` (:attr:`ReaderSettings.anchor_regions`).

        Each region is a working copy cut from the photo and read like the photo (detected at the model's size, then
        read); its attempt, with boxes in the photo's pixels and a ``read_in_region`` flag on each field, joins
        ``attempts``. Stops at the first confident serial.
        """
        height, width = image.image.shape[:2]
        lines = [line for a in attempts if a.view == "original" for line in a.lines if line.file == image.path]
        ranked = sorted(lines, key=lambda ln: -_length_weighted(ln.confidence, ln.text.replace(" ", "")))
        regions: list[tuple[int, int, int, int]] = []
        for line in ranked:
            if len(regions) >= self.settings.anchor_regions:
                break
            box = np.asarray(line.box, np.float32)
            cx, cy = (float(v) for v in box.mean(axis=0))
            if any(x0 <= cx < x1 and y0 <= cy < y1 for x0, y0, x1, y1 in regions):
                continue  # a line of a region already read
            line_width, line_height = quad_size(box)
            line_height = max(line_height, 8.0)
            half_w = max(1.5 * line_width, 12.0 * line_height)
            half_h = 4.0 * line_height
            region = (max(0, int(cx - half_w)), max(0, int(cy - half_h)),
                      min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h))))
            if region[2] - region[0] < 16 or region[3] - region[1] < 16:
                continue
            regions.append(region)
            x0, y0, x1, y1 = region
            crop = np.ascontiguousarray(image.image[y0:y1, x0:x1])
            to_original = np.array([[1, 0, x0], [0, 1, y0]], np.float32)
            attempt = self._attempt(crop, image.path, image.sha256, "direct", "original", to_original=to_original)
            flag = {"kind": "read_in_region", "region": [x0, y0, x1, y1], "anchor_line": line.text,
                    "note": "read from a working copy cut from the photo around one of its most promising lines "
                            "(the photo's other lines spread over all of it); boxes are in the photo's pixels"}
            _flag_fields(attempt.record, flag)
            attempts.append(attempt)
            if _serial_confidence(attempt) >= self.settings.confident:
                break

    def _finish_serial(self, record: dict[str, Any], best: _Attempt, images: Sequence[LoadedImage]) -> None:
        """The last steps on the serial's value, from its line in ``best`` (any view).

        A mark read beside the serial is taken off it (:func:`~marktrace.inference.assemble.drop_detached_end`, when
        :attr:`ReaderSettings.drop_detached_end` and the line's decoding is at hand); then the recognizer's runner-up
        at its unsure characters is offered (:func:`~marktrace.inference.assemble.add_character_alternatives`, at
        most :attr:`ReaderSettings.character_alternatives` of them).
        """
        serial = record.get("serial_number")
        if not isinstance(serial, dict):
            return
        index = self._serial_line(best, [img.path for img in images])
        if index is None:
            return
        line = best.lines[index]
        decoded = best.decoded[index] if len(best.decoded) == len(best.lines) else None
        if self.settings.drop_detached_end and decoded is not None and decoded.text == line.text:
            drop_detached_end(serial, decoded)
        if self.settings.character_alternatives > 0:
            add_character_alternatives(serial, line, self.settings.character_alternatives)

    def _weigh_chain_read(self, record: dict[str, Any]) -> None:
        """Report a serial read through an enhancement chain at a share of its confidence, its alternatives too.

        The share is :attr:`ReaderSettings.chain_confidence_weight`; a ``confidence_weighted`` flag keeps the
        confidence as read. The alternatives (the other attempts' serials, all read with less confidence than the
        chain's read, else it would not have been chosen) are scaled by the same share, so none is listed above the
        value chosen over it.
        """
        serial = record.get("serial_number")
        weight = self.settings.chain_confidence_weight
        if not isinstance(serial, dict) or weight >= 1.0 or not str(serial.get("method") or "").startswith("chain:"):
            return
        read = float(serial.get("confidence") or 0.0)
        serial["confidence"] = round(read * weight, 4)
        serial["alternatives"] = scale_alternatives(serial.get("alternatives") or [], weight)
        serial["flags"] = [*(serial.get("flags") or []), {
            "kind": "confidence_weighted", "read_confidence": round(read, 4), "weight": weight,
            "note": "read through an enhancement chain after an unsure direct read; such reads are rarely right, "
                    "so the confidence is scaled down, and the alternatives' with it",
        }]

    def _chain_attempts(self, image: LoadedImage, attempts: list[_Attempt]) -> list[View]:
        """Read the photo through each enhancement chain in turn until a serial is read confidently.

        On a large photo whose lines span a small part of it, each chain starts with a ``crop`` step to
        their region (with a margin of :data:`CHAIN_REGION_PAD_LINES` line heights), and a working copy still
        of more pixels than :attr:`ReaderSettings.chain_max_pixels` with a ``resize`` step: the view is smaller and
        cheaper, the trail records both, and boxes are mapped back to the photo's pixels.
        """
        from marktrace.inference.enhance.chains import get_chain, make_view, view_to_source

        found = [np.asarray(line.box, np.float32) for a in attempts for line in a.lines if line.file == image.path]
        region = text_region(found, image.image.shape, self.long_side, pad_lines=CHAIN_REGION_PAD_LINES)
        crop: list[TrailStep] = []
        resize: list[TrailStep] = []
        height, width = image.image.shape[:2]
        if region is not None:
            x0, y0, x1, y1 = region
            crop.append(TrailStep(name="crop", params={"x0": x0, "y0": y0, "x1": x1, "y1": y1}))
            width, height = x1 - x0, y1 - y0
        cap = self.settings.chain_max_pixels
        if cap and width * height > cap:
            shrink = (cap / (width * height)) ** 0.5
            resize.append(TrailStep(name="resize", params={
                "from_width": width, "from_height": height, "interpolation": "area",
                "width": max(1, round(width * shrink)), "height": max(1, round(height * shrink))}))
        framing = [*crop, *resize]
        to_original = view_to_source(framing).astype(np.float32) if framing else None
        views = []
        for chain in self.settings.chains:
            steps = get_chain(chain)
            # a chain that starts in gray is shrunk after that step: a third of the pixels to resample, same geometry
            lead = steps[:1] if steps and steps[0].name == "gray" else []
            enhanced, view = make_view(image.sha256, image.image, chain, [*crop, *lead, *resize, *steps[len(lead):]])
            views.append(self._keep_view(image.path, enhanced, view))
            attempt = self._attempt(enhanced, image.path, image.sha256, view.name, view.name, to_original=to_original)
            attempts.append(attempt)
            if _serial_confidence(attempt) >= self.settings.confident:
                break
        return views

    # -- learned restoration (issue 3) ------------------------------------------------------------
    def restorer_model(self) -> LoadedModel:
        """The restorer, loaded at start when ``settings.restoration``; checksum verified.

        ``settings.restorer``, or the shipped default.

        Raises:
            ModelMetadataError: the file is not a marktrace restoration model.
        """
        if self._restorer is None:
            from marktrace.inference.restore import RESTORATION_TASK, model_record
            from marktrace.models.registry import default_model, verify_file

            path = self.settings.restorer or verify_file(default_model(RESTORATION_TASK))
            model = load_model(path, RESTORATION_TASK, threads=self.settings.threads,
                               providers=list(self.settings.providers))
            self._restorer_record = model_record(model)
            self._restorer = model
        return self._restorer

    def _restoration_attempt(self, image: LoadedImage, attempts: list[_Attempt]) -> list[View]:
        """Restore the photo's line crops (detected on it, or read on any view), read the drawn glyph masks.

        Adds one attempt (method ``restoration``; its serial flagged as a learned suggestion) and returns the
        restored view (the drawings warped back onto the photo's frame) with its trail.
        """
        from marktrace.inference import restore

        model = self.restorer_model()
        found = [(d.quad, d.score) for d in self.detect(image.image)]
        found += [(np.asarray(ln.box, np.float32), 0.8) for a in attempts for ln in a.lines if ln.file == image.path]
        quads = restore.unique_quads(found)
        if not quads:
            return []
        height = model.meta.input_height
        max_width = max(height, self.settings.max_line_width * height // self.height)
        padded = [pad_quad(q, CROP_PAD_X, CROP_PAD_Y) for q, _ in quads]
        probs = restore.restore_crops(model, [rectify_line(image.image, q, height, max_width) for q in padded])
        drawn = [restore.render_mask(p, self.height) for p in probs]
        best = [(text, quad) for text, (quad, _) in zip(self.recognize(drawn), quads, strict=True)]
        retry = [i for i, (text, _) in enumerate(best) if text.confidence < RETRY_BELOW]
        turned = self.recognize([np.ascontiguousarray(drawn[i][::-1, ::-1]) for i in retry]) if retry else []
        for i, text in zip(retry, turned, strict=True):
            if _score(text) > _score(best[i][0]):
                best[i] = (text, best[i][1][[2, 3, 0, 1]])
        label = f"{restore.model_label(model)}+{self.model_label}"
        lines = [
            _to_line(text, quad, image.path, restore.VIEW_NAME, label, score)
            for (text, quad), (_, score) in zip(best, quads, strict=True)
            if text.text.strip()
        ]
        lines.sort(key=lambda ln: (round(min(p[1] for p in ln.box) / 20), min(p[0] for p in ln.box)))
        record = build_record(lines, {image.path: image.sha256}, self.registry, restore.VIEW_NAME, restore.VIEW_NAME)
        serial = record.get("serial_number")
        if isinstance(serial, dict) and serial.get("value"):
            serial["flags"] = [*serial.get("flags", []), restore.suggestion_flag(restore.model_label(model))]
        attempts.append(_Attempt(lines=lines, record=record, method=restore.VIEW_NAME, view=restore.VIEW_NAME))
        restored = restore.composite(image.image.shape[:2], drawn, padded)
        params = {
            "quads": [[[float(x), float(y)] for x, y in q] for q in padded],
            "input_height": height,
            "max_width": max_width,
            "render": {"height": self.height, "paper": restore.PAPER, "ink": restore.INK},
            "composite": "each drawing warped back onto its quad (bilinear), darkest wins, paper elsewhere",
        }
        view = restore.restoration_view(image.sha256, restored, self._restorer_record, params)
        return [self._keep_view(image.path, restored, view)]

    def _photometric_attempts(
        self,
        images: Sequence[LoadedImage],
        lights: LightDirections | None,
        attempts: list[_Attempt],
        photo_size: tuple[int, int] | None = None,
    ) -> list[View]:
        from marktrace.inference.enhance.photometric import iter_relief_views, stack_from_arrays

        names = [Path(img.path).name for img in images]
        # raises LightFileError (photos of different sizes, a photo without a light direction): read_loaded says so
        stack = stack_from_arrays(
            [img.image for img in images], names, [img.sha256 for img in images], dict(lights) if lights else None,
            photo_size=photo_size,
        )
        reference = images[0]
        views: list[View] = []
        # Views come in the order of their measured usefulness on ground markings (relit_ratio and
        # shaded_relief first, see inference/enhance/README.md) and each is computed only when reached.
        for relief, view in iter_relief_views(stack):
            if len(views) >= self.settings.max_photometric_views:
                break
            views.append(self._keep_view(reference.path, relief, view))
            attempt = self._attempt(relief, reference.path, reference.sha256, view.name, view.name, stack.scale)
            if self.settings.serial_extensions:
                attempt = self._extended_attempt(dataclasses.replace(reference, image=relief), attempt, view.name,
                                                 stack.scale)
            attempts.append(attempt)
            if not self.settings.stack_consensus and _serial_confidence(attempt) >= self.settings.confident_stack:
                break
        return views

    def _keep_view(self, source: str, image: np.ndarray, view: View) -> View:
        """Keep a derived image with its trail; originals are never touched.

        Under ``save_enhanced`` (if set) the image goes to ``<folder>/<source path, '/' as '__'>-<first 12 hex
        of the source's SHA-256>/<view>-<first 12 hex of its pixel SHA-256>.png`` with ``<same>.trail.json``
        beside it (both written atomically), so two sources never share a folder and other pixels of one view
        never replace a kept image. Inside :meth:`read_with_views` it is also kept in memory as PNG bytes.
        Lossless PNG: the decoded pixels hash to the trail's ``sha256``.

        Raises:
            OSError: the image could not be written (nothing is recorded as kept that was not written).
        """
        folder = self.settings.save_enhanced
        sink = _VIEW_SINK.get()
        if folder is None and sink is None:
            return view
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"{source}: could not encode the derived view {view.name!r} as PNG")
        png = encoded.tobytes()
        if sink is not None:
            sink[view.name] = png
        if folder is None:
            return view
        sources = view.trail.source_sha256 if view.trail is not None else []
        tag = f"-{sources[0][:12]}" if sources else ""
        target = Path(folder) / (Path(source).as_posix().replace("/", "__") + tag)
        target.mkdir(parents=True, exist_ok=True)
        # The pixel hash is in the name: another read of the same photo that makes other pixels for this
        # view (another detector, other light directions) writes beside it instead of over it.
        pixels = f"-{view.trail.sha256[:12]}" if view.trail is not None else ""
        stem = view.name.replace(":", "_").replace("/", "_") + pixels
        image_path = target / f"{stem}.png"
        atomic_write_bytes(image_path, png)
        view = view.model_copy(update={"file": str(image_path)})
        atomic_write_bytes(target / f"{stem}.trail.json", view.model_dump_json(indent=2).encode("utf-8"))
        return view

    def read_with_views(
        self, item_name: str, files: Sequence[tuple[str, bytes]], lights: LightDirections | None = None
    ) -> tuple[ItemResult, dict[str, bytes]]:
        """:meth:`read_uploaded`, also returning every derived view the read tried as PNG bytes by view name.

        The service keeps these beside the originals; each view's trail (steps, parameters, source SHA-256,
        software, its own pixel SHA-256) is in ``result.views``.
        """
        sink: dict[str, bytes] = {}
        token = _VIEW_SINK.set(sink)
        try:
            result = self.read_uploaded(item_name, files, lights)
        finally:
            _VIEW_SINK.reset(token)
        return result, sink

    def read_uploaded(
        self, item_name: str, files: Sequence[tuple[str, bytes]], lights: LightDirections | None = None
    ) -> ItemResult:
        """Read photos given as bytes; bad images give an error result naming the file."""
        loaded: list[LoadedImage] = []
        hashes: dict[str, str] = {}
        build = self._stack_build(len(files)) if len(files) >= 3 else None  # a stack: one colour photo at a time
        try:
            for position, (name, data) in enumerate(files):
                image = decode_image(data, name, self.settings.max_pixels)
                hashes[name] = image.sha256
                loaded.append(image if build is None else self._add_stack_photo(image, build, position))
        except ImageLoadError as exc:
            return ItemResult(
                item=item_name, files=[n for n, _ in files], sha256=hashes, status="error", error=str(exc)
            )
        if not loaded:
            return ItemResult(item=item_name, files=[], sha256={}, status="error", error=f"{item_name}: no images")
        if build is not None:
            data_of = dict(files)
            return self._read_stack(item_name, loaded, lights, build,
                                    lambda img: decode_image(data_of[img.path], img.path, self.settings.max_pixels))
        return self.read_loaded(item_name, loaded, lights)

    def _add_stack_photo(self, image: LoadedImage, build: _StackBuild, position: int) -> LoadedImage:
        """Read one photo of a stack directly (if its ``position`` is chosen); return the stack's working copy.

        Past its direct read a stack photo only feeds the photometric stack, so only its gray working copy
        (at most a few MP, the stack's own conversion) is kept: sixty 12 MP photos would otherwise hold 2 GB.
        A photo of another size than the first is kept in full-size gray (the stack will refuse the mix).
        """
        from marktrace.inference.enhance.photometric import stack_working_size, working_copy

        t_read = time.perf_counter()
        if position in build.chosen:
            build.direct.append(self._direct_attempt(image, in_stack=True))
        height, width = image.image.shape[:2]
        build.shown[image.path] = (width, height)
        if build.photo_size is None:
            build.photo_size = (width, height)
        if build.photo_size == (width, height):
            work_h, work_w, _ = stack_working_size(height, width, build.n)
            kept = working_copy(image.image, work_h, work_w)
        else:
            kept = to_gray(image.image)
        build.read_s += time.perf_counter() - t_read
        return dataclasses.replace(image, image=kept)

    def _stack_build(self, n: int) -> _StackBuild:
        return _StackBuild(n, self.direct_read_indices(n))

    def _read_stack(
        self,
        item_name: str,
        loaded: list[LoadedImage],
        lights: LightDirections | None,
        build: _StackBuild,
        decode_again: Callable[[LoadedImage], LoadedImage],
    ) -> ItemResult:
        """Finish a multi-light item read with :meth:`_add_stack_photo`.

        When some photo could not be decoded or the sizes differ, the kept copies are not the stack's: the
        photos are decoded again (``decode_again``), in gray for a stack of three or more, in colour for fewer
        (read as single photos).
        """
        t0 = time.perf_counter() - build.read_s
        if build.working_copies_hold(len(loaded)):
            return self._read_decoded(item_name, loaded, lights, build.direct, t0, build.shown, build.photo_size)
        if len(loaded) >= 3:
            gray = [dataclasses.replace(img, image=to_gray(decode_again(img).image)) for img in loaded]
            return self._read_decoded(item_name, gray, lights, build.direct, t0, build.shown)
        return self.read_loaded(item_name, [decode_again(img) for img in loaded], lights)

    def read_item(self, item: Item, root: Path) -> ItemResult:
        """Read one discovered item from disk (originals are only read)."""
        from marktrace.inference.images import load_image

        def label(path: Path) -> str:
            return item.file_label(path, root) if root.is_dir() else path.name

        names = [label(f) for f in item.files]
        if item.problem is not None:
            return ItemResult(item=item.name, files=names, sha256={}, status="error",
                              error=f"{item.name}: {item.problem}")
        if not item.files:
            return ItemResult(
                item=item.name,
                files=[],
                sha256={},
                status="error",
                error=f"{item.name}: folder holds no images",
            )
        loaded: list[LoadedImage] = []
        hashes: dict[str, str] = {}
        errors: list[str] = []
        # A stack's photos are read directly as they are decoded and then kept as the photometric stack's working
        # copies only: one colour photo in memory at a time, not sixty.
        build = self._stack_build(len(item.files)) if item.kind == "multi_light" and len(item.files) >= 3 else None
        t0 = time.perf_counter()
        for position, (path, name) in enumerate(zip(item.files, names, strict=True)):
            try:
                image = load_image(path, self.settings.max_pixels, name=name)
            except ImageLoadError as exc:
                errors.append(str(exc))
                with contextlib.suppress(OSError):
                    hashes[name] = sha256_file(path)  # the evidence is hashed even when it cannot be decoded
                continue
            hashes[name] = image.sha256
            loaded.append(image if build is None else self._add_stack_photo(image, build, position))
        load_ms = round((time.perf_counter() - t0 - (build.read_s if build else 0.0)) * 1000, 1)
        if errors and (item.kind == "photo" or not loaded):
            return ItemResult(item=item.name, files=names, sha256=hashes, status="error", error="; ".join(errors))
        lights = None
        if item.kind == "multi_light":
            from marktrace.inference.enhance.photometric import (
                LightFileError,
                load_light_directions,
                load_light_file,
            )

            light_label = label(item.light_file) if item.light_file is not None else None
            try:  # the light file the item was discovered with
                lights = (load_light_file(item.light_file, label=light_label) if item.light_file is not None
                          else load_light_directions(item.files[0].parent))
            except LightFileError as exc:
                errors.append(str(exc))
            errors.extend(stack_problems(item.name, light_label, lights, [f.name for f in item.files], len(loaded)))
        if build is not None:
            path_of = dict(zip(names, item.files, strict=True))
            result = self._read_stack(item.name, loaded, lights, build,
                                      lambda img: load_image(path_of[img.path], self.settings.max_pixels, img.path))
        else:
            result = self.read_loaded(item.name, loaded, lights)
        if errors:
            result.error = "; ".join([*errors, result.error] if result.error else errors)
        result.timings_ms = {"load_ms": load_ms, **result.timings_ms}
        result.files = names
        return result


def stack_problems(
    item_name: str, light_label: str | None, lights: LightDirections | None, file_names: Sequence[str], n_read: int
) -> list[str]:
    """What a multi-light item's examiner should know beyond each photo's own error.

    Photos its light file names that the folder lacks, and too few readable photos for relief views
    (photometric stereo needs three): the item is then read from its single photos.
    """
    problems: list[str] = []
    if lights:
        present = set(file_names)
        missing = sorted(name for name in lights if name not in present)
        if missing:
            named = light_label or item_name
            problems.append(f"{named}: names photo(s) the folder does not hold: {', '.join(missing)}")
    if n_read < 3:
        problems.append(f"{item_name}: {n_read} photo(s) read; relief views need at least 3, "
                        "so it was read from its single photos")
    return problems


def model_file_label(model: LoadedModel) -> str:
    """``name@version`` of a loaded model, ``-int8`` (or another variant) appended when it is not FP32."""
    variant = dict(model.meta.extra).get("variant", "fp32")
    return f"{model.meta.name}@{model.meta.version}" + ("" if variant == "fp32" else f"-{variant}")


def reading_software(detector: LoadedModel, recognizer: LoadedModel) -> dict[str, str]:
    """The versions and model files a reader's answers depend on (the same photo can read otherwise under others).

    Model files are named ``name@version[-variant]`` with the SHA-256 of the bytes they were loaded from
    (:attr:`LoadedModel.sha256`; none when not known).
    """
    import onnxruntime as ort

    import marktrace

    software = {"marktrace": marktrace.__version__, "onnxruntime": ort.__version__, "opencv": cv2.__version__,
                "numpy": np.__version__}
    for role, model in (("detector", detector), ("recognizer", recognizer)):
        software[role] = model_file_label(model)
        if model.sha256 is not None:
            software[f"{role}_sha256"] = model.sha256
    return software


def flagger_mismatch(training: dict[str, Any], model_label: str, recognizer: LoadedModel) -> str | None:
    """Why the over-stamp flagger's calibration may not hold for this recognizer, or None when it does.

    The flagger's threshold was set (at a measured false-flag rate) on one recognizer's probabilities, named
    in its ``training["recognizer"]`` as ``name@version[-variant] (first 16 hex of its SHA-256)``. Reading with
    another file (``--variant fp32``, a GPU provider, ``--recognizer``) still flags, with this warning.
    """
    trained_on = str(training.get("recognizer") or "")
    digest = recognizer.sha256[:16] if recognizer.sha256 is not None else "unknown file"
    reading_with = f"{model_label} ({digest})"
    if trained_on == reading_with:
        return None
    return (f"the over-stamp flagger was calibrated on {trained_on or 'an unnamed recognizer'}; this read used "
            f"{reading_with}, for which its false-flag rate was not measured")


def _alterations(crop: np.ndarray, text: DecodedText, warning: str | None = None) -> list[dict[str, Any]]:
    """Over-stamp flags for one line, scored from the recognizer's per-step probabilities.

    Only lines that could hold a serial are scored (at least 4 non-space characters, one a digit); see
    :func:`marktrace.inference.enhance.alteration.flag_overstamps`. A flag is evidence for an examiner
    (position, score, evidence); it never changes the text. A missing or altered model file raises.
    ``warning`` (from :func:`flagger_mismatch`) goes into every flag's evidence as ``calibration_warning``.
    """
    from marktrace.inference.enhance.alteration import OverstampModelError, flag_overstamps

    if text.probs is None or not text.charset or not any(ch.isdigit() for ch in text.text):
        return []
    try:
        flags = flag_overstamps(crop, text.text, text.char_steps, text.probs, text.charset)
    except OverstampModelError:
        raise
    except ValueError:
        return []
    if warning:
        for flag in flags:
            flag["evidence"]["calibration_warning"] = warning
    return flags


def orientation_flips(gains: Sequence[float], direction_confidences: Sequence[float]) -> list[bool]:
    """Which lines of one photo read rotated by 180 degrees (``models/CONTRACT.md`` section 7).

    ``gains[i]`` is the rotated reading's score minus the upright one's. A line flips when its own gain
    plus the mean gain of the photo's other lines exceeds :data:`FLIP_MARGIN` times the detector's
    direction confidence for it.
    """
    total = sum(gains)
    flips = []
    for gain, confidence in zip(gains, direction_confidences, strict=True):
        vote = (total - gain) / (len(gains) - 1) if len(gains) > 1 else 0.0
        flips.append(gain + vote > FLIP_MARGIN * confidence)
    return flips


def grow_along(quad: np.ndarray, end: str, line_heights: float) -> np.ndarray:
    """``quad`` (four corners in reading order) grown along its line by ``line_heights`` at its ``start`` or ``end``."""
    grown = np.asarray(quad, np.float32).copy()
    along = grown[1] - grown[0]
    length = float(np.linalg.norm(along))
    if line_heights <= 0 or length == 0:
        return grown
    step = along / length * float(np.linalg.norm(grown[3] - grown[0])) * line_heights
    if end == "start":
        grown[[0, 3]] -= step
    else:
        grown[[1, 2]] += step
    return grown


def end_strip(quad: np.ndarray, end: str, line_heights: float, overlap: float) -> np.ndarray:
    """A short strip at one end of ``quad`` (reading order), to screen that end for characters the box left out.

    It is grown by ``line_heights`` beyond the edge and reaches ``overlap`` line heights back inside (at most the
    whole box).
    """
    q = np.asarray(quad, np.float32)
    along = q[1] - q[0]
    length = float(np.linalg.norm(along))
    height = float(np.linalg.norm(q[3] - q[0]))
    if length == 0:
        return grow_along(q, end, line_heights)
    inside = along / length * min(overlap * height, length)
    grown = grow_along(q, end, line_heights)
    if end == "start":
        grown[1], grown[2] = q[0] + inside, q[3] + inside
    else:
        grown[0], grown[3] = q[1] - inside, q[2] - inside
    return grown


def characters_beyond(read: DecodedText, crop_width: int, end: str, strip: np.ndarray, line_heights: float) -> bool:
    """Whether the read of an :func:`end_strip` (grown ``line_heights`` past the box) shows a character beyond the box.

    That is a letter or digit of at least :data:`EXTENSION_MIN_CHAR` whose place lies beyond the edge by
    :data:`EXTENSION_EDGE_MARGIN` line heights (the strip cut with :data:`CROP_PAD_X`, :data:`CROP_PAD_Y`).
    A character's place is the centre of its time step: the recognizer's steps split the right-padded batch width
    (``crop_width`` rounded up to :data:`~marktrace.inference.recognize.WIDTH_MULTIPLE`) evenly, one step fewer
    than the width holds, as the CRNN's pooling leaves it.
    """
    if read.probs is None or not read.text:
        return False
    batch_width = int(np.ceil(crop_width / WIDTH_MULTIPLE) * WIDTH_MULTIPLE)
    step_width = batch_width / (read.probs.shape[0] + 1)
    strip_length = float(np.linalg.norm(strip[1] - strip[0]))
    height = float(np.linalg.norm(strip[3] - strip[0]))  # the box's: the strip shares its edges across the line
    if strip_length == 0 or height == 0:
        return False
    # the strip's crop spans the strip and CROP_PAD_X line heights either side; pixels per line height along it
    per_height = crop_width / (strip_length / height + 2 * CROP_PAD_X)
    # the box's edge lies line_heights in from the strip's outer end; a new character lies beyond it
    outer = (CROP_PAD_X + line_heights - EXTENSION_EDGE_MARGIN) * per_height
    edge = outer if end == "start" else crop_width - outer
    for ch, confidence, step in zip(read.text, read.char_confidences, read.char_steps, strict=False):
        if not ch.isalnum() or confidence < EXTENSION_MIN_CHAR:
            continue
        centre = (step + 1) * step_width
        if (end == "start" and centre < edge) or (end == "end" and centre > edge):
            return True
    return False


def extension_accepted(first: DecodedText, grown: DecodedText, end: str) -> bool:
    """Whether the read of a grown box (:func:`grow_along` at ``end``) extends ``first``.

    It must read the same characters (spaces aside) and new ones at that end only, letters, digits or inner hyphens,
    each at least :data:`EXTENSION_MIN_CHAR`, at a line confidence at most :data:`EXTENSION_MAX_DROP` below
    ``first``'s.
    """
    old = "".join(first.text.split())
    chars = [(ch, c) for ch, c in zip(grown.text, grown.char_confidences, strict=False) if not ch.isspace()]
    new = "".join(ch for ch, _ in chars)
    added = len(new) - len(old)
    if added <= 0 or not old or grown.confidence < first.confidence - EXTENSION_MAX_DROP:
        return False
    if end == "start":
        if not new.endswith(old):
            return False
        extra = chars[:added]
        outer = extra[0][0]
    else:
        if not new.startswith(old):
            return False
        extra = chars[-added:]
        outer = extra[-1][0]
    return outer.isalnum() and all((ch.isalnum() or ch == "-") and c >= EXTENSION_MIN_CHAR for ch, c in extra)


def _flag_fields(record: dict[str, Any], flag: dict[str, Any]) -> None:
    """Add a copy of ``flag`` to every field of ``record`` that has evidence (in place)."""
    for value in record.values():
        if isinstance(value, dict) and "evidence" in value:
            value["flags"] = [*(value.get("flags") or []), dict(flag)]


def _length_weighted(confidence: float, text: str) -> float:
    """A read's confidence, scaled down for fewer than three characters (one or two read from noise score high)."""
    return confidence * min(1.0, len(text) / 3)


def _score(text: DecodedText) -> float:
    return _length_weighted(text.confidence, text.text)


def _to_line(text: DecodedText, quad: np.ndarray, file: str, view: str, model: str, det_score: float) -> Line:
    alternatives = [
        CharAlternatives(position=i, candidates=[Alternative(value=c, confidence=round(p, 4)) for c, p in cands])
        for i, cands in enumerate(text.char_alternatives)
        if len(cands) > 1 and cands[1][1] > 0.02
    ]
    return Line(
        text=text.text,
        confidence=round(text.confidence * min(1.0, det_score / 0.8), 4),
        box=quad_to_list(quad),
        file=file,
        char_confidences=[round(c, 4) for c in text.char_confidences],
        char_alternatives=alternatives,
        view=view,
        model=model,
    )


def level_turn(lines: Sequence[Line]) -> float | None:
    """The turn (degrees, counter-clockwise on screen) that makes the longest line level, or None.

    None when there is no line or the longest one is already within :data:`OBLIQUE_DEG` of the
    horizontal (upside-down lines are left to the 180-degree retry).
    """
    if not lines:
        return None
    longest = max(lines, key=lambda ln: float(np.hypot(ln.box[1][0] - ln.box[0][0], ln.box[1][1] - ln.box[0][1])))
    (x0, y0), (x1, y1) = longest.box[0], longest.box[1]
    slope = float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))  # screen angle of the reading direction, y down
    tilt = (slope + 90.0) % 180.0 - 90.0  # the line's axis, ignoring which way it reads
    if abs(tilt) < OBLIQUE_DEG:
        return None
    return tilt


def turn_image(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned by ``angle`` degrees on a canvas that holds all of it, and the 2x3 matrix back.

    Positive angles turn a line that slopes down to the right (screen coordinates) level. Exact quarter
    turns are lossless; other angles interpolate bilinearly with replicated borders.
    """
    h, w = image.shape[:2]
    forward = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    cos, sin = abs(forward[0, 0]), abs(forward[0, 1])
    new_w, new_h = round(h * sin + w * cos), round(h * cos + w * sin)
    forward[0, 2] += new_w / 2.0 - w / 2.0
    forward[1, 2] += new_h / 2.0 - h / 2.0
    turned = cv2.warpAffine(image, forward, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return turned, cv2.invertAffineTransform(forward)
