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


def test_subfolders_of_a_multi_light_folder_are_walked(tmp_path):
    """Photos below a multi-light folder are items of their own, never silently dropped."""
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "lights.json").write_text(json.dumps({"l1.jpg": {"azimuth_deg": 0, "elevation_deg": 30}}))
    (stack / "l1.jpg").write_bytes(b"x")
    (stack / "l2.jpg").write_bytes(b"x")
    close_up = stack / "close-up"
    close_up.mkdir()
    (close_up / "detail.jpg").write_bytes(b"x")
    inner = stack / "inner-stack"
    inner.mkdir()
    (inner / "s.lp").write_text("1\na.jpg 0 0 1\n")
    (inner / "a.jpg").write_bytes(b"x")
    by_name = {item.name: item for item in discover_items(tmp_path)}
    assert set(by_name) == {"stack", "stack/close-up/detail.jpg", "stack/inner-stack"}
    assert by_name["stack"].kind == "multi_light"
    assert [f.name for f in by_name["stack"].files] == ["l1.jpg", "l2.jpg"]  # only its own photos
    assert by_name["stack/close-up/detail.jpg"].kind == "photo"
    assert by_name["stack/inner-stack"].kind == "multi_light" and by_name["stack/inner-stack"].light_file.name == "s.lp"


def test_the_root_itself_as_a_multi_light_folder_keeps_its_subfolders(tmp_path):
    (tmp_path / "lights.json").write_text("{}")
    (tmp_path / "l1.jpg").write_bytes(b"x")
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "p.png").write_bytes(b"x")
    names = [item.name for item in discover_items(tmp_path)]
    assert names == sorted([tmp_path.resolve().name, "extra/p.png"])


def test_symlinks_are_named_where_they_lie_not_where_they_point(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "real.jpg").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "link.jpg").symlink_to(outside / "real.jpg")
    (root / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    items = discover_items(root)
    assert [item.name for item in items] == ["dangling.jpg", "sub/link.jpg"]
    for item in items:
        (path,) = item.files
        assert item.file_label(path, root) == item.name  # as given
        assert item.file_label(path, root.resolve()) == item.name  # or resolved
    with pytest.raises(ValueError, match="not under the batch root"):
        items[0].file_label(outside / "real.jpg", root)


def test_a_linked_single_photo_keeps_its_own_name(tmp_path):
    (tmp_path / "real.jpg").write_bytes(b"x")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "real.jpg")
    (item,) = discover_items(tmp_path / "link.jpg")
    assert item.name == "link.jpg" and item.files[0].name == "link.jpg"


def test_the_light_file_is_chosen_as_the_reader_loads_it(tmp_path):
    """lights.json wins over .lp files, and the first .lp by name wins over later ones."""
    from marktrace.inference.enhance.photometric import find_light_file

    both = tmp_path / "both"
    both.mkdir()
    for name in ("a.lp", "lights.json", "p1.png", "p2.png", "p3.png"):
        (both / name).write_bytes(b"x")
    lps = tmp_path / "lps"
    lps.mkdir()
    for name in ("z.lp", "b.lp", "p1.png", "p2.png", "p3.png"):
        (lps / name).write_bytes(b"x")
    by_name = {it.name: it for it in discover_items(tmp_path)}
    for folder in (both, lps):
        assert by_name[folder.name].light_file == find_light_file(folder)
    assert by_name["both"].light_file.name == "lights.json" and by_name["lps"].light_file.name == "b.lp"


def test_heic_photos_and_camera_raw_files_become_items(tmp_path):
    for name in ("a.HEIC", "b.heif", "c.CR2", "d.dng", "notes.txt", "e.jpg"):
        (tmp_path / name).write_bytes(b"x")
    names = [item.name for item in discover_items(tmp_path)]
    assert names == ["a.HEIC", "b.heif", "c.CR2", "d.dng", "e.jpg"]  # raw files too: each gets its error line


def test_other_files_are_counted_by_suffix_without_housekeeping(tmp_path):
    from marktrace.inference.items import describe_other_files

    (tmp_path / "case").mkdir()
    for name in ("a.jpg", "b.CR2", "notes.txt", "more.TXT", "case/report.pdf", "case/lights.json", "case/s.lp",
                 ".DS_Store", "._a.jpg", "README"):
        (tmp_path / name).write_bytes(b"x")
    counts: dict[str, int] = {}
    discover_items(tmp_path, counts)
    assert counts == {".txt": 2, "": 1, ".pdf": 1}
    assert describe_other_files(counts) == "4 other files not read (.txt 2, no suffix 1, .pdf 1)"
    single: dict[str, int] = {}
    assert describe_other_files({}) == "" and [i.name for i in discover_items(tmp_path / "a.jpg", single)] == ["a.jpg"]
    assert single == {}


def test_light_files_match_in_any_case_and_hidden_copies_are_not_light_files(tmp_path):
    from marktrace.inference.items import light_file_in

    for folder, names in (("upper", ("Lights.json", "p1.png", "p2.png", "p3.png")),
                          ("mac", ("._stack.lp", "stack.lp", "p1.png", "p2.png", "p3.png")),
                          ("only-hidden", ("._stack.lp", "p1.png"))):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"x")
    by_name = {it.name: it for it in discover_items(tmp_path)}
    assert by_name["upper"].kind == "multi_light" and by_name["upper"].light_file.name == "Lights.json"
    assert by_name["mac"].light_file.name == "stack.lp"  # not the resource-fork copy ._stack.lp
    assert "only-hidden" not in by_name and by_name["only-hidden/p1.png"].kind == "photo"
    assert light_file_in(tmp_path, ["Lights.json", "lights.json"]).name == "lights.json"  # the exact name first


def test_linked_folders_are_walked_once_under_their_real_name(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "p.jpg").write_bytes(b"x")
    (root / "a-link").symlink_to(root / "real")  # sorts before "real": the real folder still names the photo
    (root / "real" / "loop").symlink_to(root)  # a loop back to the root
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "q.jpg").write_bytes(b"x")
    (root / "case").symlink_to(outside)  # only reachable through the link
    assert [item.name for item in discover_items(root)] == ["case/q.jpg", "real/p.jpg"]


def test_a_folder_that_cannot_be_listed_is_an_item_with_its_problem(tmp_path, locked_folders):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "p.jpg").write_bytes(b"x")
    (tmp_path / "open.jpg").write_bytes(b"x")
    items = {it.name: it for it in discover_items(tmp_path)}
    assert set(items) == {"locked", "open.jpg"}
    assert items["locked"].kind == "folder" and items["locked"].files == ()
    assert "cannot be listed (Permission denied)" in (items["locked"].problem or "")
