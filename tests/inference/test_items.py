import json

import pytest

from marktrace.inference.items import discover_items


def test_discovers_photos_and_multi_light_folders(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not an image")
    case = tmp_path / "case1"
    case.mkdir()
    (case / "b.PNG").write_bytes(b"x")
    stack = case / "rti"
    stack.mkdir()
    for name in ("l1.jpg", "l2.jpg", "l3.jpg"):
        (stack / name).write_bytes(b"x")
    (stack / "lights.json").write_text(json.dumps({"l1.jpg": {"azimuth_deg": 0, "elevation_deg": 30}}))
    lp = tmp_path / "lpstack"
    lp.mkdir()
    (lp / "s.lp").write_text("1\nx.jpg 0 0 1\n")
    (lp / "x.jpg").write_bytes(b"x")
    items = discover_items(tmp_path)
    by_name = {item.name: item for item in items}
    assert set(by_name) == {"a.jpg", "case1/b.PNG", "case1/rti", "lpstack"}
    assert by_name["case1/rti"].kind == "multi_light"
    assert [f.name for f in by_name["case1/rti"].files] == ["l1.jpg", "l2.jpg", "l3.jpg"]
    assert by_name["lpstack"].light_file.name == "s.lp"
    assert by_name["a.jpg"].kind == "photo"


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        discover_items(tmp_path / "nope")


def test_empty_folder_has_no_items(tmp_path):
    (tmp_path / "empty").mkdir()
    assert discover_items(tmp_path) == []
