"""Read the markings on a photo with the marktrace ONNX models, using only onnxruntime, numpy, OpenCV and Pillow.

No marktrace import: this file follows ``models/CONTRACT.md`` step by step, as an integrator would.

    python examples/python_onnxruntime_only.py PHOTO [PHOTO ...] [--models models/shipped]
        [--variant int8|fp32] [--json]

Prints, per photo, the lines read (text, confidence, quad in photo pixels). With ``--json`` it
prints one JSON object per photo: ``{"file": ..., "lines": [{"text", "confidence", "box"}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

CROP_PAD_X = 0.2  # CONTRACT.md section 5.1
CROP_PAD_Y = 0.1
MAX_CROP_WIDTH = 1024
MAX_BATCH = 16  # section 5.6
MAX_WIDTH_RATIO = 1.35
FLIP_MARGIN = 0.15  # section 7


def open_model(path: Path) -> tuple[ort.InferenceSession, dict[str, str]]:
    """An onnxruntime session (CPU, 2 threads) and the model's metadata."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return session, dict(session.get_modelmeta().custom_metadata_map)


def load_rgb(path: Path) -> np.ndarray:
    """Section 1: decode to 8-bit RGB, EXIF orientation applied, alpha dropped."""
    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)


def detector_input(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """Section 2: resize (never beyond 2x), zero-pad right/bottom to multiples of 32, NHWC uint8 RGB."""
    h, w = rgb.shape[:2]
    s = min(long_side / max(h, w), 2.0)
    new_w, new_h = max(round(w * s), 1), max(round(h * s), 1)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    tensor = np.zeros((1, -(-new_h // 32) * 32, -(-new_w // 32) * 32, 3), np.uint8)
    tensor[0, :new_h, :new_w] = resized
    return tensor, 1.0 / s


def unit(v: np.ndarray) -> np.ndarray:
    """V / max(|v|, 1e-6)."""
    return v / max(float(np.hypot(v[0], v[1])), 1e-6)


def pad_quad(q: np.ndarray, px: float, py: float) -> np.ndarray:
    """Section 4: grow a reading-order quad by fractions of its height along and across the line."""
    height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    dx = unit((q[1] - q[0]) + (q[2] - q[3])) * px * height
    dy = unit((q[3] - q[0]) + (q[2] - q[1])) * py * height
    return np.stack([q[0] - dx - dy, q[1] + dx - dy, q[2] + dx + dy, q[3] - dx + dy]).astype(np.float32)


def reading_direction(corners: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float]:
    """Section 4.3.8: along the long axis, signed by the predicted direction (squarish cores: as predicted)."""
    edges = [corners[1] - corners[0], corners[2] - corners[1]]
    lengths = [float(np.hypot(*e)) for e in edges]
    k = int(np.argmax(lengths))
    if lengths[k] < 1.5 * max(lengths[1 - k], 1e-6):
        norm = float(np.hypot(*v))
        return (np.array([1.0, 0.0]), 0.0) if norm < 1e-6 else (v / norm, norm)
    axis = edges[k] / max(lengths[k], 1e-6)
    g = float(axis @ v)
    if g < 0 or (g == 0 and axis[0] < 0):
        axis = -axis
    return axis, abs(g)


def order_quad(corners: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Section 4.3.8: corners as top-left, top-right, bottom-right, bottom-left for a reader."""
    up = np.array([d[1], -d[0]])
    top = list(np.argsort(-(corners @ up), kind="stable")[:2])
    bottom = [i for i in range(4) if i not in top]
    along = corners @ d
    tl, tr = sorted(top, key=lambda i: along[i])
    bl, br = sorted(bottom, key=lambda i: along[i])
    return corners[[tl, tr, br, bl]]


def line_geometry(meta: dict[str, str]) -> dict[str, float]:
    """Section 4.3.7: the core-to-line calibration, or the inverse of the training shrink without one."""
    if "line_geometry" in meta:
        return {k: float(v) for k, v in json.loads(meta["line_geometry"]).items()}
    shrink = float(meta["core_shrink"])
    return {"height_per_core": 1 / (1 - 2 * shrink), "height_offset": 0.0, "length_per_core": 1.0,
            "length_per_height": 2 * shrink, "length_offset": 0.0}


def line_rectangle(points: np.ndarray, geo: dict[str, float]) -> np.ndarray:
    """Sections 4.3.5-4.3.7: axis, median core shape, grown to the line; corners in map cells."""
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(points.astype(np.float32))
    box = cv2.boxPoints(((cx, cy), (rw + 1.0, rh + 1.0), angle)).astype(np.float64)
    edges = [box[1] - box[0], box[2] - box[1]]
    a = unit(edges[int(np.argmax([np.hypot(*e) for e in edges]))])
    if a[0] < -1e-6 or (abs(a[0]) <= 1e-6 and a[1] < 0):
        a = -a
    n = np.array([-a[1], a[0]])
    u, w = points @ a, points @ n
    k = np.floor(u - u.min() + 0.5).astype(np.int64)
    counts, sums = np.bincount(k), np.bincount(k, weights=w)
    present = counts > 0
    t = float(np.median(counts[present]))
    m = float(len(counts))
    c = a * (u.min() + (m - 1) / 2) + n * float(np.median(sums[present] / counts[present]))
    height = max(geo["height_per_core"] * t + geo["height_offset"], 1.0)
    length = max(geo["length_per_core"] * m + geo["length_per_height"] * height + geo["length_offset"], height)
    ha, hn = a * length / 2, n * height / 2
    return np.stack([c - ha - hn, c + ha - hn, c + ha + hn, c - ha + hn])


def detect(session: ort.InferenceSession, meta: dict[str, str], rgb: np.ndarray) -> list[dict[str, Any]]:
    """Sections 2-4: line quads in photo pixels, with score and direction confidence."""
    tensor, scale = detector_input(rgb, int(meta["long_side"]))
    maps = session.run(None, {session.get_inputs()[0].name: tensor})[0][0]
    stride, geo = int(meta["stride"]), line_geometry(meta)
    binary = (maps[0] > float(meta["threshold"])).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    lines = []
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < 4:
            continue
        ys, xs = np.nonzero(labels == label)
        score = float(maps[0, ys, xs].mean())
        if score < float(meta["min_score"]):
            continue
        v = np.array([maps[1, ys, xs].mean(), maps[2, ys, xs].mean()])
        corners = line_rectangle(np.stack([xs, ys], 1).astype(np.float64) + 0.5, geo)
        d, conf = reading_direction(corners, v)
        lines.append({"quad": order_quad(corners * stride, d) * scale, "score": score, "conf": conf})
    return lines


def cut_crop(gray: np.ndarray, quad: np.ndarray, height: int) -> np.ndarray:
    """Section 5: perspective warp of the padded quad to a crop ``height`` high, bilinear, edge replicated."""
    q = pad_quad(quad, CROP_PAD_X, CROP_PAD_Y)
    width = float(np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
    line_h = float(np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
    out_w = int(min(max(round(width * height / max(line_h, 1.0)), height // 2), MAX_CROP_WIDTH))
    target = np.array([[0, 0], [out_w, 0], [out_w, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(q.astype(np.float32), target)
    return cv2.warpPerspective(gray, matrix, (out_w, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ctc_greedy(probs: np.ndarray, charset: str) -> tuple[str, float]:
    """Section 6: best path, collapse repeats, drop blank 0; confidence = geometric mean of run maxima."""
    best = probs.argmax(axis=1)
    chars, confs = [], []
    previous, t = 0, 0
    while t < len(best):
        cls = int(best[t])
        if cls in (0, previous):
            previous, t = cls, t + 1
            continue
        end = t
        while end + 1 < len(best) and best[end + 1] == cls:
            end += 1
        chars.append(charset[cls - 1])
        confs.append(float(probs[t : end + 1, cls].max()))
        previous, t = cls, end + 1
    conf = float(np.exp(np.mean(np.log(np.clip(confs, 1e-6, 1.0))))) if confs else 1.0
    return "".join(chars), conf


def recognize(session: ort.InferenceSession, charset: str, crops: list[np.ndarray]) -> list[tuple[str, float]]:
    """Section 5.5-5.6: batches of similar widths, right-padded by edge replication to a multiple of 8."""
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
    results: dict[int, tuple[str, float]] = {}
    start = 0
    while start < len(order):
        end = start + 1
        while (
            end < len(order)
            and end - start < MAX_BATCH
            and crops[order[end]].shape[1] <= crops[order[start]].shape[1] * MAX_WIDTH_RATIO
        ):
            end += 1
        group = order[start:end]
        width = -(-max(crops[i].shape[1] for i in group) // 8) * 8
        batch = np.stack([np.pad(crops[i], ((0, 0), (0, width - crops[i].shape[1])), mode="edge") for i in group])
        probs = session.run(None, {session.get_inputs()[0].name: batch[:, None]})[0]
        for row, index in enumerate(group):
            results[index] = ctc_greedy(probs[row], charset)
        start = end
    return [results[i] for i in range(len(crops))]


def score(text: str, confidence: float) -> float:
    """Section 7: a reading's score, its confidence times min(1, characters / 3)."""
    return confidence * min(1.0, len(text) / 3)


def read_photo(path: Path, models: Path, variant: str = "int8") -> dict[str, Any]:
    """Sections 1-7 end to end: the lines of one photo (``variant``: int8, as ``marktrace`` on a CPU, or fp32)."""
    registry = json.loads((models / "registry.json").read_text())["models"]
    files = {m["task"]: m["file"] for m in registry if m.get("variant", "fp32") == variant and m.get("default")}
    det_session, det_meta = open_model(models / files["line_detection"])
    rec_session, rec_meta = open_model(models / files["line_recognition"])
    charset, height = json.loads(rec_meta["charset"]), int(rec_meta["input_height"])
    rgb = load_rgb(path)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    detections = detect(det_session, det_meta, rgb)
    crops = [cut_crop(gray, det["quad"], height) for det in detections]
    # Section 7: every line read upright and upside down; the photo's other lines vote on the direction.
    upright = recognize(rec_session, charset, crops)
    turned = recognize(rec_session, charset, [np.ascontiguousarray(c[::-1, ::-1]) for c in crops])
    gains = [score(*t) - score(*u) for u, t in zip(upright, turned, strict=True)]
    total = sum(gains)
    best = {}
    for i in range(len(crops)):
        vote = (total - gains[i]) / (len(gains) - 1) if len(gains) > 1 else 0.0
        flip = gains[i] + vote > FLIP_MARGIN * detections[i]["conf"]
        best[i] = (True, *turned[i]) if flip else (False, *upright[i])
    lines = []
    for i, (flipped, text, conf) in best.items():
        if not text.strip():
            continue
        quad = detections[i]["quad"][[2, 3, 0, 1]] if flipped else detections[i]["quad"]
        box = [[round(float(x), 1), round(float(y), 1)] for x, y in quad]
        confidence = round(conf * min(1.0, detections[i]["score"] / 0.8), 4)
        lines.append({"text": text, "confidence": confidence, "box": box})
    lines.sort(key=lambda ln: (round(min(p[1] for p in ln["box"]) / 20), min(p[0] for p in ln["box"])))
    h, w = gray.shape
    for line in lines:  # boxes grown past the photo's edge are clipped to it (after the reading order is set)
        line["box"] = [[min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))] for x, y in line["box"]]
    return {"file": str(path), "lines": lines}


def main() -> int:
    """Command line: read each photo and print its lines."""
    parser = argparse.ArgumentParser(description="Read marking photos with the marktrace ONNX models.")
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "models" / "shipped")
    parser.add_argument("--json", action="store_true", help="one JSON object per photo")
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8", help="model variant (default int8)")
    args = parser.parse_args()
    for photo in args.photos:
        result = read_photo(photo, args.models, args.variant)
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(photo)
            for line in result["lines"]:
                print(f"  {line['text']!r:40} {line['confidence']:.3f}  {line['box']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
