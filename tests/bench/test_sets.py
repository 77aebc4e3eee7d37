"""Benchmark sets: the ``framed`` and ``cluttered`` sets' photos and their moved truth polygons."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench.sets import SETS, Framing, clutter_surface, frame_photo, load_items, materialize


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


def _edge_energy(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(np.abs(cv2.Sobel(cv2.GaussianBlur(gray, (0, 0), 2.0), cv2.CV_32F, 1, 0)).mean())


def test_a_cluttered_frame_surrounds_the_same_marking_with_edges_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(90, 160, (60, 200, 3), dtype=np.uint8)
    plain_framing = Framing(share=(0.25, 0.25), enlarge=(2.0, 2.0))
    cluttered_framing = Framing(share=(0.25, 0.25), enlarge=(2.0, 2.0), clutter=True)
    plain, _, (x, y) = frame_photo(image, plain_framing, seed=9)
    cluttered, enlarge, offset = frame_photo(image, cluttered_framing, seed=9)
    assert offset == (x, y) and enlarge == 2.0 and cluttered.shape == plain.shape
    inside = (slice(y + 40, y + 80), slice(x + 100, x + 300))  # the marking, inside the feathered border
    assert np.array_equal(cluttered[inside], plain[inside])
    outside = (slice(0, max(y - 10, 40)), slice(None))
    assert _edge_energy(cluttered[outside]) > 3 * _edge_energy(plain[outside])
    assert np.array_equal(frame_photo(image, cluttered_framing, seed=9)[0], cluttered)
    assert not np.array_equal(frame_photo(image, cluttered_framing, seed=10)[0], cluttered)


def test_clutter_surface_adds_to_the_canvas_at_any_size() -> None:
    canvas = np.full((300, 4000, 3), 120, np.float32)
    out = clutter_surface(canvas, np.random.default_rng(2))
    assert out.shape == canvas.shape and out.dtype == np.float32
    assert np.allclose(out[..., 0], out[..., 1]) and out.std() > 5  # the same relief in every channel
    assert np.array_equal(clutter_surface(canvas, np.random.default_rng(2)), out)


def test_max_width_lowers_the_enlargement_and_the_framed_set_keeps_its_cache_key() -> None:
    image = np.zeros((100, 800, 3), np.uint8)
    framed, enlarge, _ = frame_photo(image, Framing(share=(0.2, 0.2), enlarge=(3.0, 3.0), max_width=4000), seed=1)
    assert enlarge == 1.0 and framed.shape[1] == 4000  # 800 px at a fifth of the width: 4000, not 12000
    assert "clutter" not in SETS["framed"].settings()["framing"]
    assert SETS["cluttered"].settings()["framing"]["clutter"] is True
    assert SETS["cluttered"].key() != SETS["framed"].key()


def _materialize_clean_slowly(cache: str) -> str:
    """One benchmark process rendering the clean set, each file's final rename held back 30 ms (a busy disk)."""
    import os
    import time

    replace = os.replace

    def slow_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        time.sleep(0.03)
        replace(src, dst)

    os.replace = slow_replace  # this worker process only
    return (materialize(SETS["clean"], 3, cache=Path(cache)) / "manifest.jsonl").read_text(encoding="utf-8")


def test_benchmarks_rendering_the_same_set_at_once_all_finish_with_the_same_manifest(tmp_path: Path) -> None:
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(3) as pool:
        manifests = pool.map(_materialize_clean_slowly, [str(tmp_path)] * 3)
    assert len(set(manifests)) == 1 and manifests[0].count("\n") == 3
    assert not list(tmp_path.rglob("*.tmp"))
    folder = materialize(SETS["clean"], 3, cache=tmp_path)
    assert len(load_items(folder, "clean")) == 3
