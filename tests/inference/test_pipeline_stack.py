"""Multi-light folders read one colour photo at a time: the same result as reading them all decoded at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest

from marktrace.datasets.synth import SynthConfig, render_stack
from marktrace.inference.images import load_image
from marktrace.inference.items import Item, discover_items
from marktrace.inference.pipeline import MarkingReader, ReaderSettings
from marktrace.inference.schema import ItemResult


@pytest.fixture(scope="module")
def reader() -> MarkingReader:
    # the direct reads never count as agreeing, so the photometric views are always made and read
    return MarkingReader.from_settings(ReaderSettings(stack_agreement=1.01, max_photometric_views=2))


def _comparable(result: ItemResult) -> dict[str, Any]:
    dumped = result.model_dump(mode="json")
    dumped.pop("timings_ms")
    return dumped


def _item(root: Path) -> Item:
    (item,) = discover_items(root)
    return item


@pytest.mark.parametrize("enlarge", [1.0, 4.0])  # 4x: photos over the stack's 2 MP cap, kept reduced
def test_a_stack_folder_reads_as_its_decoded_photos_would(
    reader: MarkingReader, tmp_path: Path, enlarge: float, stack_folder: Callable[..., Path]
) -> None:
    folder = stack_folder(tmp_path, enlarge=enlarge)
    item = _item(tmp_path)
    assert item.kind == "multi_light" and len(item.files) == 4
    streamed = reader.read_item(item, tmp_path)
    decoded = [load_image(f, name=f"rti/{f.name}") for f in item.files]
    lights = {name: (v["azimuth_deg"], v["elevation_deg"])
              for name, v in json.loads((folder / "lights.json").read_text()).items()}
    at_once = reader.read_loaded(item.name, decoded, lights)
    assert [v.name for v in streamed.views][:1] == ["photometric:relit_ratio"]  # the stack was used
    assert _comparable(streamed) == _comparable(at_once)
    assert set(streamed.timings_ms) >= {"load_ms", "direct_ms", "photometric_ms"}


def test_a_stack_with_too_few_readable_photos_is_read_from_them_in_colour(
    reader: MarkingReader, tmp_path: Path, stack_folder: Callable[..., Path]
) -> None:
    folder = stack_folder(tmp_path, n=3)
    for name in ("shot_1.png", "shot_2.png"):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 3])  # truncated
    item = _item(tmp_path)
    result = reader.read_item(item, tmp_path)
    assert result.status == "ok" and result.error is not None
    assert "rti/shot_1.png" in result.error and "rti/shot_2.png" in result.error
    single = reader.read_loaded(item.name, [load_image(folder / "shot_0.png", name="rti/shot_0.png")], None)
    assert [line.text for line in result.lines] == [line.text for line in single.lines]
    assert result.images["rti/shot_0.png"].width == single.images["rti/shot_0.png"].width


def test_an_uploaded_stack_reads_as_its_decoded_photos_would(
    reader: MarkingReader, tmp_path: Path, stack_folder: Callable[..., Path]
) -> None:
    folder = stack_folder(tmp_path)
    files = [(f"rti/{p.name}", p.read_bytes()) for p in sorted(folder.glob("*.png"))]
    lights = {name: (v["azimuth_deg"], v["elevation_deg"])
              for name, v in json.loads((folder / "lights.json").read_text()).items()}
    uploaded = reader.read_uploaded("rti", files, lights)
    from marktrace.inference.images import decode_image

    at_once = reader.read_loaded("rti", [decode_image(data, name) for name, data in files], lights)
    assert uploaded.views and _comparable(uploaded) == _comparable(at_once)
    bad = reader.read_uploaded("rti", [*files[:2], ("rti/broken.png", files[2][1][:100])], lights)
    assert bad.status == "error" and "rti/broken.png" in (bad.error or "")


def test_a_stack_photo_of_another_size_is_refused_by_name_as_before(
    reader: MarkingReader, tmp_path: Path, stack_folder: Callable[..., Path]
) -> None:
    folder = stack_folder(tmp_path)
    odd = cv2.imread(str(folder / "shot_2.png"))
    cv2.imwrite(str(folder / "shot_2.png"), cv2.resize(odd, None, fx=0.5, fy=0.5))
    item = _item(tmp_path)
    streamed = reader.read_item(item, tmp_path)
    assert streamed.error is not None
    assert "shot_2.png: size" in streamed.error and "no photometric views" in streamed.error
    decoded = [load_image(f, name=f"rti/{f.name}") for f in item.files]
    lights = {name: (v["azimuth_deg"], v["elevation_deg"])
              for name, v in json.loads((folder / "lights.json").read_text()).items()}
    assert _comparable(streamed) == _comparable(reader.read_loaded(item.name, decoded, lights))


def test_a_large_stack_is_read_directly_from_an_even_spread_of_its_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack_folder: Callable[..., Path]
) -> None:
    reader = MarkingReader.from_settings(
        ReaderSettings(stack_agreement=1.01, max_photometric_views=1, max_stack_direct_reads=3)
    )
    assert sorted(reader.direct_read_indices(7)) == [0, 3, 6]
    assert sorted(reader.direct_read_indices(3)) == [0, 1, 2] and sorted(reader.direct_read_indices(2)) == [0, 1]
    folder = stack_folder(tmp_path, n=7)
    item = _item(tmp_path)
    read_directly: list[str] = []
    original = MarkingReader._attempt

    def counting(self: MarkingReader, image: Any, file: str, *args: Any, **kwargs: Any) -> Any:
        if args[1] == "direct":
            read_directly.append(file)
        return original(self, image, file, *args, **kwargs)

    monkeypatch.setattr(MarkingReader, "_attempt", counting)
    streamed = reader.read_item(item, tmp_path)
    assert read_directly == ["rti/shot_0.png", "rti/shot_3.png", "rti/shot_6.png"]
    assert len(streamed.images) == 7 and streamed.views  # every photo is in the stack
    decoded = [load_image(f, name=f"rti/{f.name}") for f in item.files]
    lights = {name: (v["azimuth_deg"], v["elevation_deg"])
              for name, v in json.loads((folder / "lights.json").read_text()).items()}
    assert _comparable(streamed) == _comparable(reader.read_loaded(item.name, decoded, lights))


def _scripted_reads(monkeypatch: pytest.MonkeyPatch, direct: list[tuple[str, float]]) -> list[str]:
    """Make each direct read of a photo return the next scripted serial line; views read nothing. Returns the
    list of views read, in order."""
    from marktrace.inference import pipeline
    from marktrace.inference.assemble import build_record
    from marktrace.inference.schema import Line

    script = iter(direct)
    views_read: list[str] = []

    def scripted(self: MarkingReader, image: Any, file: str, sha256: str, method: str, view: str,
                 *args: Any, **kwargs: Any) -> Any:
        lines = []
        if method == "direct":
            text, confidence = next(script)
            lines = [Line(text=text, confidence=confidence, box=[(0, 0), (90, 0), (90, 20), (0, 20)], file=file)]
        else:
            views_read.append(view)
        record = build_record(lines, {file: sha256}, self.registry, method=method, view=view)
        return pipeline._Attempt(lines=lines, record=record, method=method, view=view)

    monkeypatch.setattr(MarkingReader, "_attempt", scripted)
    return views_read


def test_a_stack_serial_is_the_value_its_photos_agree_on_not_its_most_confident_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack_folder: Callable[..., Path]
) -> None:
    stack_folder(tmp_path, n=4)
    item = _item(tmp_path)
    direct = [("SN AB12345", 0.95), ("SN XY98765", 0.8), ("SN XY98765", 0.8), ("SN XY98765", 0.78)]
    views_read = _scripted_reads(monkeypatch, direct)
    result = MarkingReader.from_settings(ReaderSettings(max_photometric_views=3)).read_item(item, tmp_path)
    serial = result.record["serial_number"]
    assert serial["value"] == "XY98765"
    assert serial["evidence"]["file"] == "rti/shot_1.png"  # its most confident read
    consensus = [f for f in serial.get("flags", []) if f["kind"] == "consensus"]
    assert [(f["reads"], f["of"]) for f in consensus] == [(3, 4)]
    assert "AB12345" in [a["value"] for a in serial["alternatives"]]
    assert views_read == [] and not result.views  # the photos agreed: no relief views were made

    _scripted_reads(monkeypatch, direct)
    alone = MarkingReader.from_settings(ReaderSettings(stack_consensus=False)).read_item(item, tmp_path)
    assert alone.record["serial_number"]["value"] == "AB12345"
    assert not any(f["kind"] == "consensus" for f in alone.record["serial_number"].get("flags", []))


def test_a_stack_whose_photos_disagree_reads_every_relief_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack_folder: Callable[..., Path]
) -> None:
    stack_folder(tmp_path, n=4)
    item = _item(tmp_path)
    direct = [("SN AB12345", 0.95), ("SN XY98765", 0.7), ("SN CD55555", 0.7), ("SN EF77777", 0.7)]
    views_read = _scripted_reads(monkeypatch, direct)
    result = MarkingReader.from_settings(ReaderSettings(max_photometric_views=3)).read_item(item, tmp_path)
    # a confident first read used to end the search; now the views are all read since no value has a majority
    assert len(views_read) == 3 and len(result.views) == 3
    assert result.record["serial_number"]["value"] == "AB12345"


def test_a_stack_of_12_bit_gray_tiffs_reads_as_the_same_stack_in_8_bit_gray_png(
    reader: MarkingReader, tmp_path: Path
) -> None:
    """A scientific camera's RTI stack (12-bit samples in 16-bit TIFFs) is scaled, not clipped to white."""
    import numpy as np
    from PIL import Image

    stack = render_stack(1_960_000_123, SynthConfig(fonts="heldout", wear=(0.7, 0.8)), n_lights=4)
    results = {}
    for kind in ("png", "tif"):
        folder = tmp_path / kind / "rti"
        folder.mkdir(parents=True)
        lights: dict[str, dict[str, float]] = {}
        for k, (image, (azimuth, elevation)) in enumerate(zip(stack.images, stack.lights, strict=True)):
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            name = f"shot_{k}.{kind}"
            if kind == "png":
                cv2.imwrite(str(folder / name), gray)
            else:
                Image.fromarray(gray.astype(np.uint16) * 16 + 15).save(folder / name)  # 12 significant bits
            lights[name] = {"azimuth_deg": azimuth, "elevation_deg": elevation}
        (folder / "lights.json").write_text(json.dumps(lights))
        results[kind] = reader.read_item(_item(tmp_path / kind), tmp_path / kind)
    png, tif = results["png"], results["tif"]
    assert tif.status == "ok" and [v.name for v in tif.views] == [v.name for v in png.views]
    assert [v.name for v in tif.views][:1] == ["photometric:relit_ratio"]  # the stack was used
    assert [line.text for line in tif.lines] == [line.text for line in png.lines]
    assert (tif.record.get("serial_number") or {}).get("value") == (png.record.get("serial_number") or {}).get("value")
    for info in tif.images.values():
        assert info.scaled_to_8bit is not None and info.scaled_to_8bit.startswith("uint16 samples >> 4 (largest value ")
        assert info.scaled_to_8bit.endswith(": 12 significant bits)")
    assert all(info.scaled_to_8bit is None for info in png.images.values())
