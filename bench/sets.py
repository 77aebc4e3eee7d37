"""Named held-out benchmark sets (data), rendered once into a cache folder in the ``datasets/`` format.

Every set uses the renderer's held-out fonts (``fonts="heldout"``) and seeds at or above
:data:`MIN_SEED` (training uses seeds below 1_300_000_000 and the training fonts). Each set has its own
seed block, so no two sets share a marking.

A set's items are written to ``<cache>/<set>-<n>-<hash>/`` with a ``manifest.jsonl`` that
:func:`marktrace.datasets.manifest.read_manifest` reads. A single-photo item is one PNG; a multi-light
item is a folder ``stacks/<i>/`` of PNGs plus ``lights.json`` (file name -> ``{"azimuth_deg",
"elevation_deg"}``, azimuth in the image plane from +x toward +y, elevation above the surface); its
manifest entry names the first shot as ``image`` (the truth polygons refer to it) and the folder as
``meta["item_dir"]``. Rendering is resumable: finished items (PNG + ``.json`` sidecar) are kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from marktrace.datasets.manifest import MANIFEST, Entry, LineLabel, read_manifest
from marktrace.datasets.synth import GENERATOR_VERSION, SynthConfig, render_marking, render_stack
from marktrace.inference.atomic import atomic_write_bytes, atomic_write_text

MIN_SEED = 1_700_000_000
"""Benchmark seeds start here; training never uses seeds at or above 1_300_000_000."""
SETS_VERSION = "bench-sets-1"
"""Bumped when the way a set is rendered changes (part of the cache key)."""
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"
LIGHTS_FILE = "lights.json"

_SERIAL_LABEL = re.compile(
    r"^\s*(?:(?:SERIAL\b\.?|SER\.|S/N|SN\b|N[O°]\.?(?=[\s\d#:.]))\s*[:#]?\s*)+", re.IGNORECASE
)
"""Leading labels, possibly stacked (``S/N No 4020``, ``SERIAL No 34346``, ``SN 044441``)."""


def normalize_serial(text: str) -> str:
    """The serial as scored: leading labels (``SER.``, ``S/N``, ``SN``, ``SERIAL``, ``No.``/``No``) and all spaces
    removed.

    Case is kept (serials are marked in upper case; reading ``a`` for ``A`` is an error).
    """
    return re.sub(r"\s+", "", _SERIAL_LABEL.sub("", text))


def serial_positions(line_text: str, indices: list[int]) -> list[int]:
    """Map character indices of a serial line's text to positions in :func:`normalize_serial` of it."""
    label = len(line_text) - len(_SERIAL_LABEL.sub("", line_text))
    return [len(re.sub(r"\s+", "", line_text[label:i])) for i in indices if i >= label and not line_text[i].isspace()]


@dataclass(frozen=True)
class SetPart:
    """A share of a set rendered with one renderer config (items cycle through a set's parts)."""

    label: str
    config: SynthConfig


@dataclass(frozen=True)
class Framing:
    """A marking photographed as part of a larger photo (a receiver side, a slide with its surroundings).

    The rendered photo is enlarged (a camera with more pixels) and set, with feathered edges, into a larger
    4:3 photo of plain metal: the photo's own light, without its text, plus fine sensor noise.
    """

    share: tuple[float, float] = (0.2, 0.5)
    """How much of the photo's width the marking's photo spans (uniform in this range)."""
    enlarge: tuple[float, float] = (1.5, 3.0)
    """The rendered photo's enlargement (uniform in this range)."""
    clutter: bool = False
    """Surround the marking with the rest of a weapon's surface instead of plain metal (:func:`clutter_surface`)."""
    max_width: int | None = None
    """Largest framed photo width (pixels): the enlargement is lowered to keep under it."""


CLUTTER_WIDTH = 1500
"""Width at which :func:`clutter_surface` draws (then enlarged to the photo, like a camera's soft detail)."""


def clutter_surface(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw what surrounds a marking on a weapon onto ``canvas`` (float32, H x W x 3): no text, but edges.

    Grain at several scales, brushing or machining streaks along a random direction, two to four part
    edges (a step in brightness with a highlight along it), screw heads and pin holes, and scratches.
    Everything a text detector might mistake for a line, drawn from ``rng`` only, at most
    :data:`CLUTTER_WIDTH` pixels wide and enlarged to the canvas.
    """
    full_height, full_width = canvas.shape[:2]
    scale = min(1.0, CLUTTER_WIDTH / full_width)
    width, height = max(2, round(full_width * scale)), max(2, round(full_height * scale))
    out = np.zeros((height, width), np.float32)
    for cells, amplitude in ((8, 14.0), (32, 9.0), (128, 5.0)):  # grain, coarse to fine
        noise = rng.normal(0, amplitude, (max(2, height * cells // width), cells)).astype(np.float32)
        out += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    streaks = rng.normal(0, 5.0, (max(2, height // 3), 6)).astype(np.float32)  # brushed along the photo's width
    streaks = cv2.resize(streaks, (width, height), interpolation=cv2.INTER_LINEAR)
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-30, 30)), 1.0)
    out += cv2.warpAffine(streaks, turn, (width, height), borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(int(rng.integers(2, 5))):  # part edges: one side darker, a highlight along the edge
        angle = float(rng.uniform(0, np.pi))
        nx, ny = np.cos(angle), np.sin(angle)
        offset = float(rng.uniform(0.1, 0.9)) * (abs(nx) * width + abs(ny) * height)
        dist = xx * nx + yy * ny - offset + min(0.0, nx * width) + min(0.0, ny * height)
        step = float(rng.uniform(-45, 45))
        soft = max(0.5, float(rng.uniform(1.0, 4.0)) * width / 2000)
        out += step * 0.5 * (1 + np.tanh(dist / (2 * soft)))
        out += float(rng.uniform(10, 50)) * np.exp(-(((dist - 3 * soft) / max(2 * soft, 1.0)) ** 2))
    for _ in range(int(rng.integers(1, 5))):  # screw heads and pin holes
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        radius = float(rng.uniform(0.01, 0.035)) * width
        r = np.hypot(xx - cx, yy - cy)
        disk = np.clip(radius - r, 0, 1)
        ring = np.exp(-((r - radius) / (0.08 * radius)) ** 2)
        out += -35 * disk + 40 * ring
        if rng.random() < 0.6:  # a screwdriver slot
            slot = np.zeros((height, width), np.float32)
            a = float(rng.uniform(0, np.pi))
            p0 = (int(cx - 0.8 * radius * np.cos(a)), int(cy - 0.8 * radius * np.sin(a)))
            p1 = (int(cx + 0.8 * radius * np.cos(a)), int(cy + 0.8 * radius * np.sin(a)))
            cv2.line(slot, p0, p1, 1.0, max(2, int(0.15 * radius)))
            out -= 50 * slot
    scratches = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(10, 40))):
        x0, y0 = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        a, length = float(rng.uniform(0, np.pi)), float(rng.uniform(0.02, 0.3)) * width
        p1 = (int(x0 + length * np.cos(a)), int(y0 + length * np.sin(a)))
        cv2.line(scratches, (int(x0), int(y0)), p1, float(rng.choice([-1.0, 1.0]) * rng.uniform(10, 35)),
                 max(1, int(width / 2000)))
    out += cv2.GaussianBlur(scratches, (0, 0), 0.8)
    return canvas + cv2.resize(out, (full_width, full_height), interpolation=cv2.INTER_LINEAR)[:, :, None]


def frame_photo(image: np.ndarray, framing: Framing, seed: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Set ``image`` into a larger photo as :class:`Framing` says; returns it, the enlargement and the offset.

    A point ``p`` of ``image`` is at ``p * enlargement + offset`` in the framed photo.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x6672616D])
    enlarge = float(rng.uniform(*framing.enlarge))
    share = float(rng.uniform(*framing.share))
    if framing.max_width is not None:
        enlarge = min(enlarge, framing.max_width * share / image.shape[1])
    big = cv2.resize(image, None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_CUBIC)
    h, w = big.shape[:2]
    ramp = max(4, min(h, w) // 8)
    width = int(round(w / share))
    height = max(int(round(width * 0.75)), h + 2 * ramp)
    light = cv2.resize(cv2.resize(image, (4, 3), interpolation=cv2.INTER_AREA), (width, height),
                       interpolation=cv2.INTER_CUBIC).astype(np.float32)
    if framing.clutter:
        light = clutter_surface(light, np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x636C7574]))
    canvas = (light + rng.normal(0, 3, light.shape)).clip(0, 255)
    x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    mask = np.zeros((h, w), np.float32)
    mask[ramp:-ramp, ramp:-ramp] = 1.0  # feathered: a hard rectangle edge would itself look like a line
    mask = cv2.GaussianBlur(mask, (0, 0), ramp / 2)[:, :, None]
    canvas[y : y + h, x : x + w] = mask * big + (1 - mask) * canvas[y : y + h, x : x + w]
    return canvas.round().astype(np.uint8), enlarge, (x, y)


@dataclass(frozen=True)
class BenchSet:
    """A named held-out set: what to render, from which seeds, as photos or multi-light stacks."""

    name: str
    description: str
    issue: str
    seed_base: int
    parts: tuple[SetPart, ...]
    kind: Literal["photo", "stack"] = "photo"
    n_lights: int = 8
    require_role: str | None = None
    """Keep only markings that have a line with this role (seeds without one are skipped)."""
    target_exact: float | None = None
    """marktrace's serial exact-match target from the issue's "Done when" (None: no target)."""
    framing: Framing | None = None
    """Photos only: set each rendered photo into a larger one (:func:`frame_photo`)."""

    def settings(self) -> dict[str, Any]:
        """JSON-able description (the cache key is a hash of it)."""
        settings = {
            "name": self.name,
            "seed_base": self.seed_base,
            "kind": self.kind,
            "n_lights": self.n_lights if self.kind == "stack" else None,
            "require_role": self.require_role,
            "parts": [{"label": p.label, "config": p.config.model_dump(mode="json")} for p in self.parts],
            "generator": GENERATOR_VERSION,
            "generator_source": generator_fingerprint(),
            # the renderer's resampling and filters are OpenCV's: another version renders other pixels
            "opencv": cv2.__version__,
            "sets_version": SETS_VERSION,
        }
        if self.framing is not None:  # only then: the other sets keep their cache keys
            framing = asdict(self.framing)
            if not self.framing.clutter and self.framing.max_width is None:  # the framed set keeps its key
                del framing["clutter"], framing["max_width"]
            settings["framing"] = framing
        return settings

    def key(self) -> str:
        """Short hash of :meth:`settings`."""
        blob = json.dumps(self.settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


@functools.cache
def generator_fingerprint() -> str:
    """Short hash of the renderer's source files and font names, so a changed renderer re-renders the sets."""
    import marktrace.datasets as pkg

    root = Path(pkg.__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("synth.py", "text.py", "fontlib.py"):
        path = root / name
        digest.update(name.encode() + (path.read_bytes() if path.is_file() else b""))
    fonts = root / "fonts"
    if fonts.is_dir():
        digest.update("\n".join(sorted(p.name for p in fonts.iterdir())).encode())
    return digest.hexdigest()[:12]


def _cfg(**kw: Any) -> SynthConfig:
    return SynthConfig(fonts="heldout", **kw)


SETS: dict[str, BenchSet] = {
    s.name: s
    for s in (
        BenchSet(
            "clean",
            "new markings (wear 0-0.1), mild camera effects",
            "2",
            1_700_000_000,
            (SetPart("clean", _cfg(wear=(0.0, 0.1), camera=0.5)),),
            target_exact=0.95,
        ),
        BenchSet(
            "worn",
            "a third to half of the depth gone (wear 0.33-0.5)",
            "2",
            1_710_000_000,
            (SetPart("worn", _cfg(wear=(0.33, 0.5))),),
            target_exact=0.80,
        ),
        BenchSet(
            "ground",
            "ground to 15-35% of the depth (wear 0.65-0.85), single photos",
            "3",
            1_720_000_000,
            (SetPart("ground", _cfg(wear=(0.65, 0.85))),),
            target_exact=0.50,
        ),
        BenchSet(
            "multilight",
            "8-light stacks (known directions), ground to 8-25% of the depth (wear 0.75-0.92)",
            "3",
            1_730_000_000,
            (SetPart("multilight", _cfg(wear=(0.75, 0.92), camera=0.5)),),
            kind="stack",
            n_lights=8,
            target_exact=0.80,
        ),
        BenchSet(
            "overstamp",
            "one over-stamped serial digit in every marking (overstamp_prob 1.0), wear 0-0.2",
            "3",
            1_740_000_000,
            (SetPart("overstamp", _cfg(wear=(0.0, 0.2), camera=0.5, overstamp_prob=1.0)),),
        ),
        BenchSet(
            "rotated",
            "any orientation in the image plane (upside down and sideways included), wear 0-0.4",
            "2",
            1_770_000_000,
            (SetPart("rotated", _cfg(wear=(0.0, 0.4), rotation="any")),),
        ),
        BenchSet(
            "framed",
            "the marking's photo enlarged 1.5-3x and spanning 20-50% of a larger photo's width (wear 0-0.4)",
            "2",
            1_780_000_000,
            (SetPart("framed", _cfg(wear=(0.0, 0.4), camera=0.5)),),
            framing=Framing(),
        ),
        BenchSet(
            "cluttered",
            "the marking's photo spanning 12-40% of a larger photo's width (at most 4032 px, a 12 MP phone photo) "
            "whose surroundings hold part edges, screw heads, scratches and grain (wear 0-0.4)",
            "2",
            1_790_000_000,
            (SetPart("cluttered", _cfg(wear=(0.0, 0.4), camera=0.5)),),
            framing=Framing(share=(0.12, 0.4), clutter=True, max_width=4032),
        ),
        BenchSet(
            "makers",
            "maker line present; alternate clean (wear 0-0.1) and worn (wear 0.33-0.5) items",
            "4",
            1_750_000_000,
            (
                SetPart("clean", _cfg(wear=(0.0, 0.1), camera=0.5, n_lines=(3, 4))),
                SetPart("worn", _cfg(wear=(0.33, 0.5), n_lines=(3, 4))),
            ),
            require_role="maker",
        ),
    )
}


@dataclass
class BenchItem:
    """One thing an engine reads: a photo, or the photos of one multi-light stack, with its truth."""

    set: str
    id: str
    files: list[str]
    """Absolute paths of the photos."""
    truth: str
    """The serial as marked (label included); scored through :func:`normalize_serial`."""
    part: str = ""
    lights: dict[str, tuple[float, float]] | None = None
    """File name -> (azimuth_deg, elevation_deg) for a multi-light item."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other truth: maker / country / import lines, over-stamped character positions."""

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (what the worker subprocess reads)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchItem:
        """Inverse of :meth:`to_json`."""
        lights = data.get("lights")
        return cls(
            set=data["set"],
            id=data["id"],
            files=list(data["files"]),
            truth=data["truth"],
            part=data.get("part", ""),
            lights={k: (float(v[0]), float(v[1])) for k, v in lights.items()} if lights else None,
            extra=dict(data.get("extra", {})),
        )


def get_set(name: str) -> BenchSet:
    """A set by name, or a ValueError listing the known names."""
    try:
        return SETS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark set {name!r}; known: {', '.join(SETS)}") from None


def set_folder(bench_set: BenchSet, n: int, cache: Path = DEFAULT_CACHE) -> Path:
    """The cache folder of ``n`` items of a set."""
    return Path(cache) / f"{bench_set.name}-{n}-{bench_set.key()}"


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"{path}: could not encode PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.tobytes())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


_META_KEYS = ("method", "finish", "wear", "fonts", "overstamped", "etch_reveal", "rotation_deg", "serial_relief",
              "overstamp_visible")


def _render_item(bench_set: BenchSet, index: int, seed: int, folder: Path) -> Entry | None:
    """Render one item into ``folder``; None when the marking lacks the set's required role."""
    part = bench_set.parts[index % len(bench_set.parts)]
    if bench_set.kind == "stack":
        stack = render_stack(seed, part.config, bench_set.n_lights, known_directions=True)
        lines, serial, meta = stack.lines, stack.serial, stack.meta
    else:
        marking = render_marking(seed, part.config)
        lines, serial, meta = marking.lines, marking.serial, marking.meta
    if bench_set.require_role and not any(ln.role == bench_set.require_role for ln in lines):
        return None
    info: dict[str, Any] = {k: meta[k] for k in _META_KEYS if k in meta}
    info.update(
        seed=seed,
        index=index,
        part=part.label,
        serial=serial,
        overstamped_chars=[ln.overstamped for ln in lines],
    )
    if bench_set.kind == "stack":
        rel_dir = f"stacks/{index:05d}"
        lights: dict[str, dict[str, float]] = {}
        for shot, (image, (az, el)) in enumerate(zip(stack.images, stack.lights, strict=True)):
            name = f"shot_{shot:02d}.png"
            _write_png(folder / rel_dir / name, image)
            lights[name] = {"azimuth_deg": round(az, 3), "elevation_deg": round(el, 3)}
        atomic_write_text(folder / rel_dir / LIGHTS_FILE, json.dumps(lights, indent=1))
        image_rel = f"{rel_dir}/shot_00.png"
        info.update(item_dir=rel_dir, lights_file=LIGHTS_FILE)
    else:
        image_rel = f"images/{index:05d}.png"
        photo = marking.image
        if bench_set.framing is not None:
            photo, enlarge, (dx, dy) = frame_photo(photo, bench_set.framing, seed)
            info.update(framing={"enlarge": enlarge, "offset": [dx, dy]})
            lines = [ln.model_copy(update={"polygon": [(x * enlarge + dx, y * enlarge + dy) for x, y in ln.polygon]})
                     for ln in lines]
        _write_png(folder / image_rel, photo)
    return Entry(
        image=image_rel,
        source="synthetic",
        meta=_jsonable(info),
        lines=[LineLabel(text=ln.text, role=ln.role, polygon=ln.polygon) for ln in lines],
    )


def materialize(
    bench_set: BenchSet,
    n: int,
    cache: Path = DEFAULT_CACHE,
    on_item: Callable[[int], None] | None = None,
) -> Path:
    """Render (or reuse) ``n`` items of a set; return the folder holding ``manifest.jsonl``.

    ``on_item(count)`` is called after each item is ready (for a progress bar).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    folder = set_folder(bench_set, n, cache)
    manifest = folder / MANIFEST
    if manifest.is_file() and len(read_manifest(manifest)) == n:
        if on_item:
            on_item(n)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "bench_set.json", json.dumps(bench_set.settings(), indent=1))
    sidecars = folder / "entries"
    sidecars.mkdir(exist_ok=True)
    entries: list[str] = []
    seed = bench_set.seed_base
    for index in range(n):
        side = sidecars / f"{index:05d}.json"
        if side.is_file():
            line = side.read_text(encoding="utf-8").strip()
            seed = int(json.loads(line)["meta"]["seed"]) + 1
        else:
            entry = None
            while entry is None:
                entry = _render_item(bench_set, index, seed, folder)
                seed += 1
            line = entry.model_dump_json(exclude_none=True)
            atomic_write_text(side, line)
        entries.append(line)
        if on_item:
            on_item(index + 1)
    atomic_write_text(manifest, "".join(e + "\n" for e in entries))
    return folder


def _lights_of(folder: Path, lights_file: str) -> dict[str, tuple[float, float]]:
    path = folder / lights_file
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: (float(v["azimuth_deg"]), float(v["elevation_deg"])) for name, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid lights file ({exc})") from exc


def load_items(folder: Path, set_name: str) -> list[BenchItem]:
    """The benchmark items of a dataset folder (rendered set or a lab's real photos).

    An entry's serial truth is its line with role ``serial``; entries without one are skipped. An entry
    with ``meta["item_dir"]`` is a multi-light item: every image in that folder, with its lights file.

    Raises:
        FileNotFoundError / ManifestError: the folder has no valid manifest.
        ValueError: no entry has a serial line, or an image is missing (the message names it).
    """
    root = Path(folder).resolve()
    items: list[BenchItem] = []
    for no, entry in enumerate(read_manifest(root), start=1):
        serial = next((ln.text for ln in entry.lines if ln.role == "serial"), None)
        if serial is None or not normalize_serial(serial):
            continue
        meta = entry.meta
        lights: dict[str, tuple[float, float]] | None = None
        if meta.get("item_dir"):
            item_dir = root / str(meta["item_dir"])
            lights_file = str(meta.get("lights_file", LIGHTS_FILE))
            files = sorted(
                str(p)
                for p in item_dir.iterdir()
                if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
            )
            if (item_dir / lights_file).is_file():
                lights = _lights_of(item_dir, lights_file)
            item_id = str(meta["item_dir"])
        else:
            files = [str(root / entry.image)]
            item_id = entry.image
        missing = [f for f in files if not Path(f).is_file()]
        if missing or not files:
            raise ValueError(f"{root / MANIFEST}:{no}: image(s) missing: {missing or item_id}")
        by_role = {ln.role: ln.text for ln in reversed(entry.lines)}
        extra: dict[str, Any] = {"maker": by_role.get("maker"), "country": by_role.get("country"),
                                 "import": by_role.get("import"), "model": by_role.get("model")}
        per_line = meta.get("overstamped_chars")
        if isinstance(per_line, list) and len(per_line) == len(entry.lines):
            serial_index = next(i for i, ln in enumerate(entry.lines) if ln.role == "serial")
            extra["serial_overstamped"] = serial_positions(serial, [int(c) for c in per_line[serial_index]])
        if meta.get("overstamp_visible") is not None:
            extra["overstamp_visible"] = float(meta["overstamp_visible"])
        if isinstance(meta.get("method"), str):
            extra["method"] = meta["method"]  # how the marking was made (stamped, laser_etched, ...)
        relief = meta.get("serial_relief")
        if isinstance(relief, list) and relief:
            # the serial proper is the line's last characters (a leading label such as `SN` is not scored)
            scored = relief[-len(normalize_serial(serial)):]
            extra["serial_relief_min"] = min(float(v) for v in scored)
        items.append(
            BenchItem(
                set=set_name,
                id=item_id,
                files=files,
                truth=serial,
                part=str(meta.get("part", "")),
                lights=lights,
                extra={k: v for k, v in extra.items() if v is not None},
            )
        )
    if not items:
        raise ValueError(f"{root}: no entry has a line with role 'serial'")
    return items
