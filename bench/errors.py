"""Where marktrace's serial misses come from: detector, recognizer or serial selection.

For every item of a held-out set, the full pipeline's serial is compared with the truth, and the serial
line is also read from its *truth* box (an oracle detector). Each miss lands in one class:

* ``det_miss``: no detected line has its centre inside the truth box;
* ``select``: some recognised line holds the serial, but the record chose another value;
* ``det_geom``: the recognizer reads the truth box right but the detected box wrong (crop geometry);
* ``recog``: the recognizer misreads even the truth box.

Usage: ``python -m bench.errors --set clean --n 100 [--variant int8] [--show 20]``. Prints a table of the
classes and the first misses of each; ``--out FILE`` writes every row as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.sets import get_set, load_items, materialize, normalize_serial
from marktrace.datasets.manifest import read_manifest

CLASSES = ("ok", "det_miss", "select", "det_geom", "recog")


def classify(pred: str, truth: str, oracle: str, lines: list[str], detected_in_truth: int) -> str:
    """The class of one item (see the module docstring)."""
    if pred == truth:
        return "ok"
    if detected_in_truth == 0:
        return "det_miss"
    if any(normalize_serial(t) == truth or truth in t.replace(" ", "") for t in lines):
        return "select"
    if normalize_serial(oracle) == truth:
        return "det_geom"
    return "recog"


def decompose(set_name: str, n: int, variant: str = "int8", threads: int = 2) -> list[dict[str, Any]]:
    """One row per item of the set: truth, prediction, oracle read, recognised lines and class."""
    from marktrace.inference.geometry import pad_quad, rectify_line
    from marktrace.inference.pipeline import CROP_PAD_X, CROP_PAD_Y, MarkingReader, ReaderSettings

    folder = materialize(get_set(set_name), n)
    items = load_items(folder, set_name)
    entries = {str((folder / e.image).resolve()): e for e in read_manifest(folder / "manifest.jsonl")}
    reader = MarkingReader.from_settings(ReaderSettings(variant=variant, threads=threads))
    rows = []
    for item in items:
        entry = entries[str(Path(item.files[0]).resolve())]
        image = cv2.imread(item.files[0], cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"{item.files[0]}: could not be read as an image")
        files = [(Path(f).name, Path(f).read_bytes()) for f in item.files]
        result = reader.read_uploaded(item.id, files, item.lights)
        serial = result.record.get("serial_number")
        pred = normalize_serial(str(serial.get("value") or "") if isinstance(serial, dict) else "")
        truth = normalize_serial(item.truth)
        label = next(ln for ln in entry.lines if ln.role == "serial")
        quad = np.asarray(label.polygon, np.float32)
        padded = pad_quad(quad, CROP_PAD_X, CROP_PAD_Y)
        crop = rectify_line(image, padded, reader.height, reader.settings.max_line_width)
        oracle = reader.recognize([crop])[0].text
        inside = sum(
            cv2.pointPolygonTest(quad.reshape(-1, 1, 2), tuple(map(float, d.quad.mean(0))), False) >= 0
            for d in reader.detect(image)
        )
        lines = [ln.text for ln in result.lines]
        rows.append({
            "id": item.id, "class": classify(pred, truth, oracle, lines, inside), "truth": truth, "marked": label.text,
            "prediction": pred, "oracle": oracle, "lines": lines, "meta": entry.meta,
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command line: decompose one set's misses and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.errors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="clean")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--variant", default="int8", choices=("int8", "fp32"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", type=int, default=5, help="misses printed per class")
    parser.add_argument("--out", type=Path, help="write every row as JSON here")
    args = parser.parse_args(argv)
    rows = decompose(args.set, args.n, args.variant, args.threads)
    counts = Counter(r["class"] for r in rows)
    print(f"{args.set} (n={len(rows)}, {args.variant}):")
    print("| class | items | share |\n|---|---:|---:|")
    for name in CLASSES:
        print(f"| {name} | {counts[name]} | {counts[name] / max(len(rows), 1):.0%} |")
    for name in CLASSES[1:]:
        for r in [r for r in rows if r["class"] == name][: args.show]:
            print(f"{name:8} {r['id']}: marked {r['marked']!r} read {r['prediction']!r}, "
                  f"truth box read {r['oracle']!r}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
