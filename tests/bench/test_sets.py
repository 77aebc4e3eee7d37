"""Benchmark sets: the ``framed`` set's photos and their moved truth polygons."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench.sets import SETS, Framing, frame_photo, load_items, materialize


def test_frame_photo_places_the_enlarged_photo_where_it_says_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 200, 3), dtype=np.uint8)
    framed, enlarge, (x, y) = frame_photo(image, Framing(share=(0.25, 0.25), enlarge=(2.0, 2.0)), seed=5)
    assert enlarge == 2.0
    assert framed.shape[1] == 1600 and framed.shape[0] == 1200  # 400 px wide at a quarter of the width, 4:3
    big = cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    centre = framed[y + 40 : y + 80, x + 100 : x + 300].astype(int)  # inside the feathered border
    assert np.abs(centre - big[40:80, 100:300].astype(int)).max() <= 1
    again, _, offset = frame_photo(image, Framing(share=(0.25, 0.25), enlarge=(2.0, 2.0)), seed=5)
    assert offset == (x, y) and np.array_equal(again, framed)


def test_framed_set_moves_the_truth_polygons_with_the_photo(tmp_path: Path) -> None:
    folder = materialize(SETS["framed"], 2, cache=tmp_path)
    items = load_items(folder, "framed")
    assert len(items) == 2
    from marktrace.datasets.manifest import read_manifest
    from marktrace.datasets.synth import render_marking

    for entry in read_manifest(folder / "manifest.jsonl"):
        meta = entry.meta or {}
        photo = cv2.imread(str(folder / entry.image))
        original = render_marking(int(meta["seed"]), SETS["framed"].parts[0].config)
        enlarge, (dx, dy) = meta["framing"]["enlarge"], meta["framing"]["offset"]
        assert photo.shape[1] > original.image.shape[1] * enlarge * 1.9  # the marking spans at most half
        for label, truth in zip(entry.lines or [], original.lines, strict=True):
            moved = np.asarray(truth.polygon) * enlarge + (dx, dy)
            assert np.allclose(np.asarray(label.polygon), moved, atol=0.01)
