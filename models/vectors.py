"""Regenerate everything that depends on the shipped models' bytes, in one command (torch-free).

Run it after every export of the shipped models::

    python -m marktrace.models.vectors            # or: marktrace models regenerate

It (1) checks the FP32 files against ``registry.json``, (2) builds the INT8 variants and registers them
(:mod:`marktrace.models.quantize`), (3) renders the test-vector photos and writes
``shipped/vectors/expected.json`` (input-tensor checksums, raw-output summaries with tolerances, decoded
lines, quads and serials), and (4) rewrites the generated blocks of the model cards (files and SHA-256,
test vectors). Hand-written card text outside ``<!-- generated:NAME -->`` blocks is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from marktrace.inference.images import sha256_file
from marktrace.models.registry import SHIPPED_DIR, load_registry, verify_file

VECTORS_DIR = "vectors"
EXPECTED_FILE = "expected.json"
MAX_VECTOR_BYTES = 40 * 1024
VECTOR_SEED = 1_800_000_000
"""Test-vector photos use seeds from here (benchmark sets: 1.70e9-1.76e9, training: < 1.3e9)."""
SYNTH_VECTORS = 4
SAMPLE_POINTS = 8
TOLERANCE = {"mean": 2e-4, "std": 2e-4, "sample": 2e-3, "box_px": 1.5}
"""FP32 tolerances: different CPUs and runtime builds differ in the last bits; boxes in original pixels."""
REGENERATE = "python -m marktrace.models.vectors"
VECTOR_TASKS = ("line_detection", "line_recognition")
"""Tasks with INT8 variants and test vectors (the restorer's card only gets its files block)."""


@dataclass(frozen=True)
class VectorImage:
    """A candidate test image: PNG bytes and what it shows."""

    name: str
    png: bytes
    truth: list[str]
    serial: str
    source: str


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return bytes(buf)


def _small_png(image_bgr: np.ndarray) -> tuple[bytes, str] | None:
    """The photo as a PNG under the size cap: colour, else gray, else gray softened; ``None`` if none fits.

    Renders are noisy and noise does not compress, so the cheaper forms trade noise for size: a
    3x3 Gaussian blur (sigma 0.8), then 64 gray levels. Returns the bytes and how they were stored.
    """
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    blurred = cv2.GaussianBlur(gray, (3, 3), 0.8)
    ladder = (
        (image_bgr, "colour"),
        (gray, "gray"),
        (blurred, "gray, 3x3 blur"),
        ((blurred // 4) * 4, "gray, 3x3 blur, 64 levels"),
    )
    for candidate, label in ladder:
        data = _png(candidate)
        if len(data) <= MAX_VECTOR_BYTES:
            return data, label
    return None


def synth_candidates(start: int = VECTOR_SEED, count: int = 40) -> list[VectorImage]:
    """Held-out-font renders small enough to commit (rotations of all kinds, mild wear)."""
    from marktrace.datasets.synth import SynthConfig, render_marking

    out: list[VectorImage] = []
    for i in range(count):
        seed = start + i
        rotation: Literal["small", "any", "upright"] = ("small", "any", "upright")[i % 3]
        config = SynthConfig(
            fonts="heldout", wear=(0.0, 0.15), camera=0.5, image_size=(400, 560), n_lines=(2, 3), rotation=rotation
        )
        marking = render_marking(seed, config)
        stored = _small_png(marking.image)
        if stored is not None:
            truth = [ln.text for ln in marking.lines]
            source = f"marktrace.datasets.synth heldout fonts, seed {seed}, rotation {rotation}; stored {stored[1]}"
            out.append(VectorImage(f"synth-{seed}.png", stored[0], truth, marking.serial, source))
    return out


def plate_candidates() -> list[VectorImage]:
    """A flat stamped-plate look drawn with ``cv2.putText`` (no renderer involved)."""
    out: list[VectorImage] = []
    for i, (maker, serial) in enumerate([("ACME ARMS CO", "SN A7K40219"), ("MADE IN ITALY", "B 493617")]):
        plate = np.full((150, 360, 3), (182, 178, 175), np.uint8)
        cv2.rectangle(plate, (6, 6), (353, 143), (120, 118, 116), 2)
        cv2.putText(plate, maker, (22, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (40, 40, 44), 2, cv2.LINE_AA)
        cv2.putText(plate, serial, (22, 115), cv2.FONT_HERSHEY_DUPLEX, 1.15, (30, 30, 34), 2, cv2.LINE_AA)
        rng = np.random.default_rng(7 + i)
        noisy = np.clip(plate.astype(np.int16) + rng.integers(-3, 4, plate.shape), 0, 255).astype(np.uint8)
        stored = _small_png(noisy)
        if stored is not None:
            source = f"cv2.putText plate; stored {stored[1]}"
            out.append(VectorImage(f"plate-puttext-{i}.png", stored[0], [maker, serial], serial, source))
    return out


def _summary(array: np.ndarray, points: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    return {
        "shape": list(array.shape),
        "mean": float(array.mean()),
        "std": float(array.std()),
        "samples": [{"index": list(p), "value": float(array[p])} for p in points],
    }


def _detector_points(maps: np.ndarray) -> list[tuple[int, ...]]:
    """Fixed sample positions in (N, 3, h, w): a grid over every channel plus the core map's maximum."""
    _, channels, h, w = maps.shape
    points: list[tuple[int, ...]] = []
    for k in range(SAMPLE_POINTS):
        row = (k * 7 + 3) * h // (SAMPLE_POINTS * 7 + 4)
        col = (k * 5 + 2) * w // (SAMPLE_POINTS * 5 + 3)
        points.append((0, k % channels, row, col))
    peak = np.unravel_index(int(maps[0, 0].argmax()), (h, w))
    points += [(0, c, int(peak[0]), int(peak[1])) for c in range(channels)]
    return points


def _recognizer_points(probs: np.ndarray) -> list[tuple[int, ...]]:
    """Fixed sample positions in (1, T, C): the winning class at a few evenly spaced steps."""
    steps = probs.shape[1]
    picks = sorted({int(round(s)) for s in np.linspace(0, steps - 1, SAMPLE_POINTS)})
    return [(0, t, int(probs[0, t].argmax())) for t in picks]


def describe_image(reader: Any, data: bytes, name: str) -> dict[str, Any]:
    """Everything the vectors record about one image, computed with the marktrace pipeline."""
    from marktrace.inference.detect import prepare_detector_input
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.images import decode_image
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y
    from marktrace.inference.recognize import batch_line_crops

    image = decode_image(data, name).image
    prepared = prepare_detector_input(image, reader.long_side)
    maps = reader.detector.session.run(None, {reader.detector.input_name: prepared.tensor})[0]
    detected = reader.detect(image)
    crops = []
    for det in detected:
        crop = rectify_line(image, pad_quad(det.quad, CROP_PAD_X, CROP_PAD_Y), reader.height)
        batch = batch_line_crops([crop], reader.height)
        probs = reader.recognizer.session.run(None, {reader.recognizer.input_name: batch})[0]
        crops.append(
            {
                "input_shape": list(batch.shape),
                "input_sha256": hashlib.sha256(batch.tobytes()).hexdigest(),
                "output": _summary(probs, _recognizer_points(probs)),
            }
        )
    lines = reader.read_image(image, name, "")
    result = reader.read_uploaded(name, [(name, data)])
    serial = result.record.get("serial_number")
    return {
        "detector_input": {
            "shape": list(prepared.tensor.shape),
            "sha256": hashlib.sha256(prepared.tensor.tobytes()).hexdigest(),
            "mean": float(prepared.tensor.mean()),
            "scale": prepared.scale,
        },
        "detector_output": _summary(maps, _detector_points(maps)),
        "detections": [{"quad": det.quad.round(2).tolist(), "score": round(det.score, 5)} for det in detected],
        "crops": crops,
        "lines": [{"text": ln.text, "box": [list(p) for p in ln.box], "confidence": ln.confidence} for ln in lines],
        "serial": serial.get("value") if isinstance(serial, dict) else None,
        "enhanced_views": len(result.views),
    }


STABILITY_SHIFT_PX = 0.05
"""A vector's line texts must not change when every crop corner moves by this much (see :func:`is_stable`)."""


def is_stable(reader: Any, data: bytes, name: str) -> bool:
    """Whether every detected line reads the same from crops cut 0.05 px up-left and down-right.

    Runtimes and languages round the crop geometry differently (float32 or float64, resampling);
    a line whose text flips under such a shift makes a fragile test vector.
    """
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.images import decode_image
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y

    image = decode_image(data, name).image
    detected = reader.detect(image)
    texts = []
    for shift in (0.0, -STABILITY_SHIFT_PX, STABILITY_SHIFT_PX):
        crops = [rectify_line(image, pad_quad(d.quad + shift, CROP_PAD_X, CROP_PAD_Y), reader.height) for d in detected]
        texts.append([t.text for t in reader.recognize(crops)] if crops else [])
    return all(t == texts[0] for t in texts[1:])


def _plain(text: str) -> str:
    return re.sub(r"^(S/N|SN|SER\.?|SERIAL|NO\.?)\s*", "", text.upper()).replace(" ", "")


def _accept(description: dict[str, Any], serial: str) -> bool:
    """A vector's serial must be read right by the direct read alone, every line confidently.

    Then small numeric differences between runtimes cannot flip a line, and ``marktrace read`` (which
    only enhances unsure reads) gives the same lines as a plain detector + recognizer pass.
    """
    lines = description["lines"]
    return (
        bool(lines)
        and description["enhanced_views"] == 0
        and description["serial"] is not None
        and _plain(description["serial"]) == _plain(serial)
        and min(ln["confidence"] for ln in lines) >= 0.8
    )


def build_vectors(
    folder: Path, reader: Any, int8_reader: Any | None, synth_count: int = SYNTH_VECTORS
) -> dict[str, Any]:
    """Choose the vector images, write them and ``expected.json``; returns the expected document."""
    target = folder / VECTORS_DIR
    target.mkdir(parents=True, exist_ok=True)
    chosen: list[tuple[VectorImage, dict[str, Any]]] = []
    for group, wanted in ((plate_candidates(), 1), (synth_candidates(), synth_count)):
        taken = 0
        for candidate in group:
            if taken >= wanted:
                break
            description = describe_image(reader, candidate.png, candidate.name)
            readers = [r for r in (reader, int8_reader) if r is not None]
            if _accept(description, candidate.serial) and all(
                is_stable(r, candidate.png, candidate.name) for r in readers
            ):
                chosen.append((candidate, description))
                taken += 1
    for old in target.glob("*.png"):
        old.unlink()
    det = reader.detector.meta.path
    rec = reader.recognizer.meta.path
    images = []
    for candidate, description in chosen:
        (target / candidate.name).write_bytes(candidate.png)
        entry = {
            "file": candidate.name,
            "sha256": hashlib.sha256(candidate.png).hexdigest(),
            "source": candidate.source,
            "truth": candidate.truth,
            **description,
        }
        entry.pop("enhanced_views")
        if int8_reader is not None:
            from marktrace.inference.images import decode_image

            lines = int8_reader.read_image(decode_image(candidate.png, candidate.name).image, candidate.name, "")
            entry["int8_lines"] = [ln.text for ln in lines]
        images.append(entry)
    document = {
        "regenerate": REGENERATE,
        "models": {
            "detector": {"file": Path(det).name, "sha256": sha256_file(Path(det))},
            "recognizer": {"file": Path(rec).name, "sha256": sha256_file(Path(rec))},
        },
        "tolerance": TOLERANCE,
        "notes": (
            "Inputs are decoded to RGB (EXIF orientation applied, alpha dropped; gray PNGs replicated to RGB). "
            "detector_input.sha256 is over the exact uint8 tensor of CONTRACT.md section 2 (OpenCV resize); "
            "crops[i] are batch-of-one recognizer inputs for detections[i]; sample values use the listed "
            "indices into the raw output. int8_lines are informative: INT8 kernels differ between CPUs."
        ),
        "images": images,
    }
    (target / EXPECTED_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return document


def build_variants(folder: Path, requantize: bool = False) -> list[dict[str, Any]]:
    """Build and register the INT8 variant of every default FP32 model in ``folder`` that lacks one.

    An INT8 file already registered for the same model name and version, whose SHA-256 matches its entry,
    is kept: quantization is not bit-reproducible across CPUs and onnxruntime builds, and the shipped INT8
    file is what the benchmarks measured and what the over-stamp flagger was calibrated on. ``requantize``
    rebuilds it anyway. Returns the entries written.
    """
    from marktrace.models.publish import update_registry
    from marktrace.models.quantize import int8_name, quantize_detector, quantize_recognizer

    registry = load_registry(folder)
    kept = {
        (m.name, m.version, m.task)
        for m in registry
        if m.variant == "int8" and (folder / m.file).is_file() and sha256_file(folder / m.file) == m.sha256
    }
    entries = []
    for model in registry:
        if model.variant != "fp32" or not model.default or model.task not in VECTOR_TASKS:
            continue  # the restorer has no INT8 variant (run only on unsure photos; FP32 is its reference)
        if not requantize and (model.name, model.version, model.task) in kept:
            continue
        fp32 = verify_file(model, folder)
        out = folder / int8_name(model.file)
        if model.task == "line_detection":
            quantize_detector(fp32, out)
        else:
            quantize_recognizer(fp32, out, conv_qdq=True)
        entries.append(
            {
                "name": model.name,
                "version": model.version,
                "task": model.task,
                "file": out.name,
                "sha256": sha256_file(out),
                "card": model.card,
                "variant": "int8",
                "default": True,
            }
        )
    update_registry(folder, entries)
    return entries


def replace_block(text: str, name: str, body: str) -> str:
    """Replace the content between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``."""
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"card has no <!-- generated:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def update_cards(folder: Path, expected: dict[str, Any] | None) -> list[Path]:
    """Rewrite the generated blocks (files and SHA-256; test vectors) of every card in the registry."""
    models = load_registry(folder)
    written = []
    for card in sorted({m.card for m in models}):
        path = folder / card
        if not path.is_file():
            raise FileNotFoundError(f"{path}: model card missing (registry.json names it)")
        rows = ["| variant | file | bytes | SHA-256 |", "|---|---|---|---|"]
        for m in sorted((m for m in models if m.card == card), key=lambda m: m.variant):
            size = m.path(folder).stat().st_size if m.path(folder).is_file() else 0
            rows.append(f"| {m.variant} | `{m.file}` | {size:,} | `{m.sha256}` |")
        text = replace_block(path.read_text(), "files", "\n".join(rows) + "\n")
        if expected is not None and any(m.task in VECTOR_TASKS for m in models if m.card == card):
            vec = ["| image | source | lines (expected text) | serial |", "|---|---|---|---|"]
            for img in expected["images"]:
                texts = " / ".join(f"`{ln['text']}`" for ln in img["lines"])
                vec.append(f"| `vectors/{img['file']}` | {img['source']} | {texts} | `{img['serial']}` |")
            text = replace_block(text, "vectors", "\n".join(vec) + "\n")
        path.write_text(text)
        written.append(path)
    return written


def regenerate(
    folder: Path = SHIPPED_DIR, variants: bool = True, threads: int | None = 2, requantize: bool = False
) -> dict[str, Any]:
    """The whole regeneration: missing INT8 variants (all with ``requantize``), vectors, card blocks.

    Returns a short summary.
    """
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings
    from marktrace.models.registry import default_model

    for model in load_registry(folder):
        if model.variant == "fp32":
            verify_file(model, folder)
    entries = build_variants(folder, requantize) if variants else []
    det = verify_file(default_model("line_detection", folder), folder)
    rec = verify_file(default_model("line_recognition", folder), folder)
    reader = MarkingReader.from_settings(ReaderSettings(detector=det, recognizer=rec, threads=threads))
    int8_reader = None
    if any(m.variant == "int8" for m in load_registry(folder)):
        int8_reader = MarkingReader.from_settings(
            ReaderSettings(
                detector=verify_file(default_model("line_detection", folder, "int8"), folder),
                recognizer=verify_file(default_model("line_recognition", folder, "int8"), folder),
                threads=threads,
            )
        )
    expected = build_vectors(folder, reader, int8_reader)
    cards = update_cards(folder, expected)
    return {
        "variants": [e["file"] for e in entries],
        "vectors": [img["file"] for img in expected["images"]],
        "cards": [str(c) for c in cards],
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``python -m marktrace.models.vectors [--folder F] [--no-variants] [--requantize]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--folder", type=Path, default=SHIPPED_DIR, help="model folder holding registry.json")
    parser.add_argument("--no-variants", action="store_true", help="build no INT8 files, not even missing ones")
    parser.add_argument("--requantize", action="store_true",
                        help="rebuild every INT8 file, even those that match their registry entry")
    args = parser.parse_args(argv)
    summary = regenerate(args.folder, variants=not args.no_variants, requantize=args.requantize)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()


__all__ = [
    "build_variants", "build_vectors", "describe_image", "is_stable", "regenerate", "replace_block", "update_cards"
]
