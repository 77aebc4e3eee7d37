"""Checking saved derived images against their trails (``marktrace verify-view``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    """A worn photo read with every chain tried and kept (--save-enhanced): (photo, views folder, trails)."""
    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference.items import discover_items
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    root = tmp_path_factory.mktemp("verify")
    photo = root / "in" / "worn.png"
    photo.parent.mkdir()
    image = render_marking(1_250_000_555, SynthConfig(fonts="train", wear=(0.5, 0.6), rotation="upright")).image
    assert cv2.imwrite(str(photo), image)
    views = root / "views"
    reader = MarkingReader.from_settings(ReaderSettings(threads=1, confident=1.01, detector_sides=(),
                                                        turn_oblique=False, save_enhanced=views))
    [item] = discover_items(photo.parent)
    result = reader.read_item(item, photo.parent)
    assert result.status == "ok" and len(result.views) == len(reader.settings.chains)
    return photo, views, sorted(views.rglob("*.trail.json"))


def test_saved_chain_views_replay_bit_for_bit(saved: tuple[Path, Path, list[Path]]) -> None:
    from marktrace.inference.enhance.verify import check_view, load_view

    photo, _views, trails = saved
    assert trails
    for trail in trails:
        check = check_view(load_view(trail), [photo.parent], trail_file=trail)
        assert check.status == "verified", check
        assert check.replayed_sha256 == check.saved_sha256 == check.expected_sha256


def test_a_changed_saved_image_a_changed_step_and_a_wrong_original_are_caught(
    saved: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    from marktrace.inference.enhance.verify import check_view, load_view

    photo, _views, trails = saved
    view = load_view(trails[0])
    assert view.file is not None
    pixels = cv2.imread(view.file, cv2.IMREAD_UNCHANGED)
    pixels[0, 0] ^= 1  # one bit of one pixel
    tampered = tmp_path / "tampered.png"
    assert cv2.imwrite(str(tampered), pixels)
    check = check_view(view, [photo], saved=tampered)
    assert check.status == "mismatch" and "saved image" in check.detail
    assert check.replayed_sha256 == check.expected_sha256 != check.saved_sha256

    assert view.trail is not None
    steps = [s.model_copy(deep=True) for s in view.trail.steps]
    step, key = next((st, k) for st in steps for k, v in st.params.items()
                     if isinstance(v, int | float) and not isinstance(v, bool))
    step.params[key] = step.params[key] + 1
    edited = view.model_copy(update={"file": None, "trail": view.trail.model_copy(update={"steps": steps})})
    assert check_view(edited, [photo]).status == "mismatch"
    older = edited.model_copy(update={"trail": edited.trail.model_copy(update={"software": "marktrace 0.0.9"})})
    check = check_view(older, [photo])  # a trail from another version says so when it does not replay
    assert check.status == "mismatch" and "recorded by marktrace 0.0.9; replayed by marktrace" in check.detail

    other = tmp_path / "other.png"
    assert cv2.imwrite(str(other), np.full((40, 60, 3), 128, np.uint8))
    wrong = check_view(view, [other])
    assert wrong.status == "error" and "not among the files given" in wrong.detail


def test_a_learned_view_is_reported_as_not_replayable() -> None:
    from marktrace.inference.enhance.verify import check_view
    from marktrace.inference.schema import Trail, View

    view = View(name="restoration", trail=Trail(source_sha256=["a" * 64], software="x", sha256="b" * 64,
                                                 model={"name": "marktrace-restorer", "version": "0.1.0",
                                                        "sha256": "c" * 64}))
    check = check_view(view, [])
    assert check.status == "not_replayable" and "marktrace-restorer@0.1.0" in check.detail


def test_verify_view_command(saved: tuple[Path, Path, list[Path]], tmp_path: Path) -> None:
    from marktrace.cli import _register, app

    _register()
    photo, _views, trails = saved
    ok = CliRunner().invoke(app, ["verify-view", *map(str, trails), "--original", str(photo), "--json"])
    assert ok.exit_code == 0, ok.output
    rows = [json.loads(line) for line in ok.output.splitlines() if line.startswith("{")]
    assert [r["status"] for r in rows] == ["verified"] * len(trails)
    broken = tmp_path / "broken.trail.json"
    broken.write_text("{not json")
    bad = CliRunner().invoke(app, ["verify-view", str(broken), str(trails[0]), "-o", str(photo), "--json"])
    assert bad.exit_code == 1
    rows = [json.loads(line) for line in bad.output.splitlines() if line.startswith("{")]
    assert [r["status"] for r in rows] == ["error", "verified"] and "broken.trail.json" in rows[0]["detail"]


def test_saved_photometric_views_replay_from_the_item_folder(tmp_path: Path) -> None:
    from marktrace.datasets.synth import SynthConfig, render_stack
    from marktrace.inference.enhance.verify import check_view, load_view
    from marktrace.inference.items import discover_items
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    stack = render_stack(1_250_000_556, SynthConfig(fonts="train", wear=(0.8, 0.9), image_size=(200, 400)), 4)
    folder = tmp_path / "in" / "stack"
    folder.mkdir(parents=True)
    lights = {}
    # names that do not sort in shot order: the trail, not the file names, fixes the stack's order
    for i, (image, (az, el)) in enumerate(zip(stack.images, stack.lights, strict=True)):
        name = f"{'dcba'[i]}.png"
        assert cv2.imwrite(str(folder / name), image)
        lights[name] = {"azimuth_deg": az, "elevation_deg": el}
    (folder / "lights.json").write_text(json.dumps(lights))
    reader = MarkingReader.from_settings(ReaderSettings(threads=1, stack_agreement=1.01,
                                                        save_enhanced=tmp_path / "views"))
    [item] = discover_items(tmp_path / "in")
    result = reader.read_item(item, tmp_path / "in")
    assert [v.name for v in result.views][:2] == ["photometric:relit_ratio", "photometric:shaded_relief"]
    trails = sorted((tmp_path / "views").rglob("*.trail.json"))
    assert len(trails) == len(result.views)
    for trail in trails:
        check = check_view(load_view(trail), [folder], trail_file=trail)
        assert check.status == "verified", check


def test_a_photo_decoded_in_gray_reads_as_in_colour_and_its_views_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference import images
    from marktrace.inference.enhance.verify import check_view, load_view
    from marktrace.inference.items import discover_items
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    marking = render_marking(1_250_000_557, SynthConfig(fonts="train", wear=(0.0, 0.1), rotation="upright"))
    photo = tmp_path / "in" / "big.png"
    photo.parent.mkdir()
    assert cv2.imwrite(str(photo), marking.image)
    [item] = discover_items(photo.parent)
    settings = ReaderSettings(threads=1, confident=1.01, detector_sides=(), turn_oblique=False)
    colour = MarkingReader.from_settings(settings).read_item(item, photo.parent)
    monkeypatch.setattr(images, "GRAY_ABOVE_PIXELS", 1000)  # every photo is "large" now
    reader = MarkingReader.from_settings(dataclasses.replace(settings, save_enhanced=tmp_path / "views"))
    gray = reader.read_item(item, photo.parent)
    assert gray.images["big.png"].decoded_gray and not colour.images["big.png"].decoded_gray
    assert gray.record["serial_number"]["value"] == colour.record["serial_number"]["value"]
    trails = sorted((tmp_path / "views").rglob("*.trail.json"))
    assert trails and len(trails) == len(gray.views)
    for trail in trails:  # the replay decodes the original in gray too, so the views match bit for bit
        assert check_view(load_view(trail), [photo.parent], trail_file=trail).status == "verified"


def test_a_moved_trail_is_checked_against_the_image_beside_it_and_a_lost_image_is_an_error(
    saved: tuple[Path, Path, list[Path]], tmp_path: Path
) -> None:
    """At another lab the recorded (absolute) path names nothing, or a stale copy; the file beside the trail counts."""
    import shutil

    from marktrace.inference.enhance.verify import check_view, load_view

    photo, _views, trails = saved
    view = load_view(trails[0])
    assert view.file is not None and Path(view.file).is_absolute()
    moved = tmp_path / "received"
    moved.mkdir()
    trail = Path(shutil.copy(trails[0], moved))
    image = moved / Path(view.file).name
    pixels = cv2.imread(view.file, cv2.IMREAD_UNCHANGED)
    pixels[0, 0] ^= 1
    assert cv2.imwrite(str(image), pixels)  # a changed copy beside the trail; the recorded file is intact
    check = check_view(load_view(trail), [photo.parent], trail_file=trail)
    assert check.status == "mismatch" and str(image) in check.detail
    image.unlink()
    lost = load_view(trail).model_copy(update={"file": str(tmp_path / "gone" / image.name)})
    check = check_view(lost, [photo.parent], trail_file=trail)
    assert check.status == "error" and "not found" in check.detail
