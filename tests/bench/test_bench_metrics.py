"""Scoring, set rendering and result assembly of the benchmark (fast, no OCR engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.metrics import alteration_positions, alteration_scores, cer, closest_line, levenshtein, score, summarize
from bench.report import markdown, ratios, table_rows
from bench.sets import MIN_SEED, SETS, BenchItem, BenchSet, SetPart, load_items, materialize, normalize_serial


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("S/N 12 345", "12345"),
        ("SER. AB-12", "AB-12"),
        ("No. 77", "77"),
        ("No 725897", "725897"),
        ("No725897", "725897"),
        ("serial x9", "x9"),
        ("NORA 12", "NORA12"),
        ("SER123", "SER123"),
        ("SERIALS 4", "SERIALS4"),
        ("SN 044441", "044441"),
        ("SN12345", "SN12345"),
        ("S/N No 4020", "4020"),
        ("SERIAL No 34346", "34346"),
        ("SNOW 1", "SNOW1"),
    ],
)
def test_normalize_serial_strips_label_and_spaces(text: str, expected: str) -> None:
    assert normalize_serial(text) == expected


def test_levenshtein_and_cer() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0
    assert cer("AB 123", "AB123") == 0.0
    assert cer("AB1Z3", "AB123") == pytest.approx(0.2)
    assert cer("", "AB123") == 1.0
    assert score("ab123", "AB123") == {"exact": False, "cer": 0.4}  # case-sensitive


def test_closest_line_picks_min_distance_and_ignores_far_lines() -> None:
    lines = ["GLOCK", "AUSTRIA", "S/N BXK 1Z3", "CAL 9MM"]
    assert closest_line(lines, "BXK123") == "S/N BXK 1Z3"
    assert closest_line(["ZZZZZZZZZZ"], "AB") == ""  # no better than reading nothing
    assert closest_line([], "AB") == ""


def test_summarize_counts_errors_as_misses_and_times_per_image() -> None:
    rows: list[dict[str, Any]] = [
        {"exact": True, "cer": 0.0, "cpu_ms": 100.0, "wall_ms": 120.0, "n_images": 1, "error": None, "part": "a"},
        {"exact": False, "cer": 0.5, "cpu_ms": 300.0, "wall_ms": 280.0, "n_images": 1, "error": None, "part": "b"},
        {"exact": False, "cer": 1.0, "cpu_ms": 5.0, "wall_ms": 5.0, "n_images": 1, "error": "boom", "part": "b"},
        {"exact": True, "cer": 0.0, "cpu_ms": 800.0, "wall_ms": 900.0, "n_images": 8, "error": None, "part": "a"},
    ]
    s = summarize(rows)
    assert s["n"] == 4 and s["n_errors"] == 1
    assert s["exact"] == 0.5
    assert s["cer"] == pytest.approx((0.0 + 0.5 + 1.0 + 0.0) / 4)
    assert s["cpu_ms_per_image"] == pytest.approx(1200.0 / 10)
    assert s["by_part"] == {"a": {"n": 2, "exact": 1.0}, "b": {"n": 2, "exact": 0.0}}


def test_ratios_and_speed_targets() -> None:
    engines: dict[str, dict[str, Any]] = {
        "marktrace": {"cpu_ms_per_image": 50.0, "wall_ms_per_image": 40.0, "exact": 0.9},
        "rapidocr": {"cpu_ms_per_image": 250.0, "wall_ms_per_image": 200.0, "exact": 0.5},
        "easyocr": {"cpu_ms_per_image": 300.0, "wall_ms_per_image": 400.0, "exact": 0.3},
        "tesseract": {"unavailable": "no binary"},
    }
    r = ratios(engines)
    assert r["rapidocr"]["cpu_time_ratio"] == 5.0 and r["rapidocr"]["speed_target_met"] is True
    assert r["easyocr"]["cpu_time_ratio"] == 6.0 and r["easyocr"]["speed_target_met"] is False
    assert r["easyocr"]["wall_time_ratio"] == 10.0
    assert r["rapidocr"]["exact_delta"] == pytest.approx(0.4)
    assert "tesseract" not in r
    result = {"set": "clean", "n": 3, "engines": engines, "ratios": r}
    rows = {row[0]: row for row in table_rows(result)}
    assert rows["tesseract"][1].startswith("skipped")
    assert rows["rapidocr"][5] == "5.0"
    md = markdown([result], "python -m bench.recognition", {"threads": 2})
    assert "| rapidocr | 50.0% |" in md


def test_sets_are_heldout_and_disjoint() -> None:
    bases = sorted(s.seed_base for s in SETS.values())
    assert bases[0] >= MIN_SEED
    assert all(b - a >= 1_000_000 for a, b in zip(bases, bases[1:], strict=False))
    for s in SETS.values():
        assert all(p.config.fonts == "heldout" for p in s.parts)
    assert SETS["ground"].parts[0].config.wear == (0.65, 0.85)
    assert SETS["multilight"].kind == "stack" and SETS["multilight"].n_lights == 8


def test_materialize_photos_reuses_cache(tmp_path: Path) -> None:
    folder = materialize(SETS["clean"], 2, tmp_path)
    items = load_items(folder, "clean")
    assert len(items) == 2 and all(Path(i.files[0]).is_file() for i in items)
    assert items[0].truth and items[0].lights is None
    stamp = Path(items[0].files[0]).stat().st_mtime_ns
    assert materialize(SETS["clean"], 2, tmp_path) == folder
    assert Path(items[0].files[0]).stat().st_mtime_ns == stamp  # not re-rendered
    other = BenchSet("clean", "x", "2", SETS["clean"].seed_base + 5, SETS["clean"].parts)
    assert materialize(other, 2, tmp_path) != folder  # settings are part of the cache key


def test_materialize_stack_writes_lights_and_required_role(tmp_path: Path) -> None:
    small = BenchSet(
        "tinystack",
        "test",
        "3",
        MIN_SEED + 999_000_000,
        (SetPart("p", SETS["multilight"].parts[0].config.model_copy(update={"image_size": (128, 200)})),),
        kind="stack",
        n_lights=3,
        require_role="maker",
    )
    folder = materialize(small, 1, tmp_path)
    (item,) = load_items(folder, "tinystack")
    assert len(item.files) == 3 and item.lights is not None and set(item.lights) == {Path(f).name for f in item.files}
    lights = json.loads((Path(item.files[0]).parent / "lights.json").read_text())
    assert all(set(v) == {"azimuth_deg", "elevation_deg"} for v in lights.values())
    assert item.extra.get("maker")  # only markings with a maker line are kept
    assert BenchItem.from_json(json.loads(json.dumps(item.to_json()))) == item


def test_load_items_real_folder_and_errors(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 80, 3), 90, np.uint8))
    lines = [
        {
            "image": "a.png",
            "source": "real",
            "lines": [{"text": "GLOCK", "role": "maker"}, {"text": "AB 12", "role": "serial"}],
        },
        {"image": "a.png", "source": "real", "lines": [{"text": "no serial here", "role": "other"}]},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (item,) = load_items(tmp_path, "real-x")
    assert item.truth == "AB 12" and item.extra["maker"] == "GLOCK"
    (tmp_path / "manifest.jsonl").write_text(json.dumps({**lines[0], "image": "missing.png"}) + "\n")
    with pytest.raises(ValueError, match="missing"):
        load_items(tmp_path, "real-x")


def test_summarize_reports_each_reading_method() -> None:
    def row(method: str, exact: bool, cpu: float) -> dict[str, Any]:
        return {
            "exact": exact,
            "cer": 0.0 if exact else 1.0,
            "cpu_ms": cpu,
            "wall_ms": cpu,
            "n_images": 1,
            "error": None,
            "fields": {"method": method},
        }

    s = summarize([row("direct", True, 40.0), row("direct", False, 60.0), row("chain:clahe", True, 180.0)])
    assert s["by_method"]["direct"] == {"n": 2, "exact": 0.5, "cpu_ms_per_item": 50.0, "wall_ms_per_item": 50.0}
    assert s["by_method"]["chain:clahe"]["cpu_ms_per_item"] == 180.0


def test_serial_positions_skip_label_and_spaces() -> None:
    from bench.sets import serial_positions

    assert serial_positions("S/N GB 0609", [4, 7, 8]) == [0, 2, 3]
    assert serial_positions("12 345", [3]) == [2]
    assert serial_positions("SER. 12", [0]) == []  # inside the label


def test_alteration_scores_recall_and_false_flags() -> None:
    def row(truth: str, over: list[int], prediction: str, flags: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "truth": truth,
            "prediction": prediction,
            "truth_extra": {"serial_overstamped": over},
            "fields": {"serial_flags": flags},
        }

    rows = [
        row("AB 1234", [3], "AB 1234", [{"kind": "overstamp", "position": 4}]),  # value index 4 -> position 3
        row("998877", [0], "998877", [{"position": 5, "score": 3.1}]),  # raw flag_alterations shape, wrong place
        row("55661", [2], "55661", [{"kind": "confusable", "position": 2}]),  # not an alteration flag
    ]
    alt = alteration_scores(rows)
    assert alt == {
        "overstamped_chars": 3,
        "flag_recall": pytest.approx(1 / 3, abs=1e-4),
        "false_flag_rate": pytest.approx(1 / (5 + 5 + 4), abs=1e-4),
        "visible_overstamped_chars": 3,  # no visibility truth: all count as visible
        "visible_flag_recall": pytest.approx(1 / 3, abs=1e-4),
        "by_method": {},  # no marking method in the truth
    }
    assert alteration_scores([{**rows[0], "fields": {}}]) is None  # engine does not flag at all
    assert alteration_positions([{"kind": "alteration", "position": 2}], "A B C") == {1}


def test_alteration_scores_align_a_prediction_that_dropped_or_added_a_character() -> None:
    from bench.metrics import align_positions

    assert align_positions("AB234", "AB 1234") == {0: 0, 1: 1, 2: 3, 3: 4, 4: 5}  # '1' dropped
    rows = [
        # '1' dropped: the flag on '3' (prediction index 3) is on truth position 4, the over-stamped one
        {"truth": "AB1234", "prediction": "AB234", "truth_extra": {"serial_overstamped": [4]},
         "fields": {"serial_flags": [{"kind": "overstamp_suspected", "position": 3}]}},
        # an extra 'X' read: a flag on it is a false flag
        {"truth": "5566", "prediction": "55X66", "truth_extra": {"serial_overstamped": [0]},
         "fields": {"serial_flags": [{"kind": "overstamp_suspected", "position": 2},
                                     {"kind": "overstamp_suspected", "position": 0}]}},
    ]
    assert alteration_scores(rows) == {"overstamped_chars": 2, "flag_recall": 1.0,
                                       "false_flag_rate": pytest.approx(1 / 8, abs=1e-4),
                                       "visible_overstamped_chars": 2, "visible_flag_recall": 1.0, "by_method": {}}


def test_flag_recall_per_marking_method() -> None:
    from bench.report import alteration_summary

    def row(method: str, flagged: bool) -> dict[str, Any]:
        return {"truth": "123456", "prediction": "123456", "exact": True, "error": None, "cer": 0.0, "cpu_ms": 1.0,
                "wall_ms": 1.0, "n_images": 1, "truth_extra": {"serial_overstamped": [2], "method": method},
                "fields": {"serial_flags": [{"kind": "overstamp_suspected", "position": 2}] if flagged else []}}

    rows = [row("stamped", True), row("stamped", False), row("laser_etched", False), row("stamped", True)]
    alt = alteration_scores(rows)
    assert alt is not None and alt["flag_recall"] == 0.5
    assert alt["by_method"] == {"laser_etched": {"overstamped_chars": 1, "flag_recall": 0.0},
                                "stamped": {"overstamped_chars": 3, "flag_recall": pytest.approx(2 / 3, abs=1e-4)}}
    line = alteration_summary({"engines": {"marktrace-flags": {"alteration": alt}}})
    assert "by marking method: laser_etched 0.0% of 1, stamped 66.7% of 3" in line


def test_flag_recall_over_the_overstamps_whose_older_strike_shows() -> None:
    from bench.report import alteration_summary

    def row(visible: float, flagged: bool) -> dict[str, Any]:
        return {"truth": "123456", "prediction": "123456", "exact": True, "error": None, "cer": 0.0, "cpu_ms": 1.0,
                "wall_ms": 1.0, "n_images": 1,
                "truth_extra": {"serial_overstamped": [2], "overstamp_visible": visible},
                "fields": {"serial_flags": [{"kind": "overstamp_suspected", "position": 2}] if flagged else []}}

    rows = [row(0.5, True), row(0.3, False), row(0.02, False), row(0.09, False)]  # the last two hardly show
    alt = alteration_scores(rows)
    assert alt is not None and alt["flag_recall"] == 0.25
    assert alt["visible_overstamped_chars"] == 2 and alt["visible_flag_recall"] == 0.5
    line = alteration_summary({"engines": {"marktrace-flags": summarize(rows)}})
    assert "recall 25.0% (target ≥ 80%)" in line and "recall 50.0% over the 2 whose older strike shows" in line


def test_a_rendered_overstamp_says_how_much_of_the_older_strike_shows() -> None:
    from marktrace.datasets.synth import SynthConfig, render_marking

    config = SynthConfig(fonts="train", wear=(0.0, 0.0), overstamp_prob=1.0, image_size=(160, 320))
    shown = [render_marking(seed, config).meta["overstamp_visible"] for seed in range(6)]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in shown) and max(shown) > 0.1
    worn = [render_marking(seed, config.model_copy(update={"wear": (0.9, 0.9)})).meta["overstamp_visible"]
            for seed in range(6)]
    assert all(w <= v for v, w in zip(shown, worn, strict=True)) and sum(worn) < sum(shown)  # grinding hides it
    assert render_marking(0, config.model_copy(update={"overstamp_prob": 0.0})).meta["overstamp_visible"] is None


def test_maker_scores_use_the_registry_names_of_the_rendered_lines():
    from bench.metrics import maker_scores, truth_maker_country

    maker, country = truth_maker_country({"maker": "GLOCK", "country": "MADE IN AUSTRIA"})
    assert maker and country == "AT"
    rows = [
        {"truth_extra": {"maker": "GLOCK", "country": "AUSTRIA"}, "fields": {"manufacturer": maker,
                                                                          "country_of_manufacture": "AT"}},
        {"truth_extra": {"maker": "GLOCK", "country": "AUSTRIA"}, "fields": {"method": "direct"}},
        {"truth_extra": {"maker": "GLOCK"}},  # a peer: fills no fields, not scored
    ]
    assert maker_scores(rows) == {"n": 2, "manufacturer": 0.5, "country": 0.5}
    assert maker_scores([{"truth_extra": {}, "fields": {}}]) is None
    rows[0]["part"], rows[1]["part"] = "clean", "worn"
    assert maker_scores(rows) == {
        "n": 2, "manufacturer": 0.5, "country": 0.5,
        "by_part": {"clean": {"n": 1, "manufacturer": 1.0, "country": 1.0},
                    "worn": {"n": 1, "manufacturer": 0.0, "country": 0.0}},
    }


def test_maker_truth_takes_the_import_marks_country_but_never_its_maker():
    from bench.metrics import truth_maker_country

    # the import mark names the importer (SIG Sauer Inc.) and the country of manufacture
    assert truth_maker_country({"maker": "ZASTAVA KRAGUJEVAC", "import": "SIG ARMS INC EXETER NH SERBIA"}) == (
        "Zastava Arms", "RS")
    assert truth_maker_country({"maker": "SAKO LTD", "import": "CAI ST ALB VT FINLAND"}) == ("Sako", "FI")
    # a country line wins over the import mark; an import mark with no country leaves the maker's country
    assert truth_maker_country({"maker": "GLOCK", "country": "MADE IN AUSTRIA",
                                "import": "GLOCK INC SMYRNA GA"})[1] == "AT"
    assert truth_maker_country({"maker": "GLOCK", "import": "IMPORTED BY GLOCK INC SMYRNA GA"}) == ("Glock", "AT")
    # a maker the registry lacks has no truth, whatever the import mark names
    assert truth_maker_country({"maker": "NO SUCH MAKER", "import": "SIG ARMS INC EXETER NH"})[0] is None


def test_confidence_scores_split_reads_and_rank_right_above_wrong() -> None:
    from bench.metrics import confidence_scores

    def row(exact: bool, conf: float) -> dict[str, object]:
        return {"exact": exact, "error": None, "fields": {"serial_confidence": conf}}

    rows = [row(True, 0.95), row(True, 0.92), row(False, 0.91), row(True, 0.7), row(False, 0.3), row(False, 0.2),
            {"exact": False, "error": "unreadable", "fields": {}}]
    got = confidence_scores(rows)
    assert got is not None and got["n"] == 7
    assert got["confident"] == {"at": 0.9, "n": 3, "right": round(2 / 3, 4)}
    assert got["unsure"] == {"below": 0.6, "n": 3, "right": 0.0}  # the error counts as a wrong read at 0
    # right reads 0.95, 0.92, 0.7 against wrong 0.91, 0.3, 0.2, 0.0: 11 of 12 pairs ranked right
    assert got["auroc"] == round(11 / 12, 4)
    brier = ((0.05**2) + (0.08**2) + (0.91**2) + (0.3**2) + (0.3**2) + (0.2**2) + 0.0) / 7
    assert got["brier"] == round(brier, 4)
    assert got["exact_or_alternative"] is None  # no row lists alternatives
    listed = [{**r, "exact_or_alternative": ok} for r, ok in zip(rows, (True, True, True, True, True, False, False),
                                                                 strict=True)]
    assert confidence_scores(listed)["exact_or_alternative"] == round(5 / 7, 4)  # type: ignore[index]
    assert confidence_scores([{"exact": True, "error": None, "fields": {"method": "direct"}}]) is None
    assert confidence_scores([row(True, 0.5), row(True, 0.9)])["auroc"] is None  # type: ignore[index]


def test_confidence_scores_rate_the_alternatives_own_confidences() -> None:
    from bench.metrics import confidence_scores

    rows = [
        {"exact": False, "fields": {"serial_confidence": 0.1}, "alternative_scores": [[0.6, False], [0.05, True]]},
        {"exact": True, "fields": {"serial_confidence": 0.9}, "alternative_scores": [[0.2, False]]},
        {"exact": True, "fields": {"serial_confidence": 0.8}},  # an older row: no alternative confidences
    ]
    got = confidence_scores(rows)
    assert got is not None
    alternatives = got["alternatives"]
    assert alternatives["n"] == 3 and alternatives["right"] == round(1 / 3, 4)
    assert alternatives["mean_confidence"] == round((0.6 + 0.05 + 0.2) / 3, 4)
    assert alternatives["brier"] == round((0.6**2 + 0.95**2 + 0.2**2) / 3, 4)
    assert alternatives["above_value"] == 1  # the first row lists 0.6 above its value's 0.1
    assert "alternatives" not in confidence_scores(rows[2:])  # type: ignore[operator]


def test_the_report_gives_each_engine_its_confidence_line() -> None:
    rows = [{"exact": ok, "error": None, "cer": 0.0, "cpu_ms": 1.0, "wall_ms": 1.0, "n_images": 1,
             "fields": {"serial_confidence": c}} for ok, c in ((True, 0.95), (False, 0.4), (True, 0.5))]
    engines = {"marktrace": summarize(rows), "rapidocr": summarize([{**r, "fields": {}} for r in rows])}
    md = markdown([{"set": "clean", "n": 3, "engines": engines, "ratios": ratios(engines)}], "cmd", {"threads": 2})
    lines = [ln for ln in md.splitlines() if "serial confidence" in ln]
    assert len(lines) == 1 and lines[0].startswith("marktrace serial confidence")
    assert "at ≥ 0.9: 1 reads, 100.0% right" in lines[0] and "below 0.6: 2 reads, 50.0% right" in lines[0]
    assert "alternatives:" not in lines[0]  # no row carries the alternatives' confidences
    rows[1]["alternative_scores"] = [[0.7, False]]
    engines = {"marktrace": summarize(rows)}
    md = markdown([{"set": "clean", "n": 3, "engines": engines, "ratios": ratios(engines)}], "cmd", {"threads": 2})
    line = next(ln for ln in md.splitlines() if "serial confidence" in ln)
    assert "alternatives: 1 listed, 0.0% right at a mean confidence of 0.700" in line
    assert "an alternative above the value in 1 items" in line


@pytest.mark.parametrize(("read", "truth", "exact"), [
    ("SN1234567", "SN 1234567", True),  # a peer's line that runs the label into the digits
    ("SERIAL04412", "SERIAL 04412", True),
    ("SER 1234", "SER. 1234", True),
    ("1234567", "SN 1234567", True),
    ("SN123456", "123456", False),  # no label in the truth: SN is part of what was read
    ("SN1234568", "SN 1234567", False),
])
def test_a_label_is_removed_from_a_read_as_from_the_truth(read: str, truth: str, exact: bool) -> None:
    assert score(read, truth)["exact"] is exact
    if exact:
        assert cer(read, truth) == 0.0
    assert closest_line(["MADE IN ITALY", read], truth) == read


def test_an_item_without_a_serial_is_a_wrong_read_at_confidence_zero() -> None:
    from bench.metrics import confidence_scores

    rows = [{"exact": True, "fields": {"serial_confidence": 0.95}}, {"exact": False, "fields": {}},
            {"exact": False, "error": "boom"}]
    scores = confidence_scores(rows)
    assert scores is not None and scores["n"] == 3
    assert scores["unsure"] == {"below": 0.6, "n": 2, "right": 0.0} and scores["auroc"] == 1.0
    assert confidence_scores([{"exact": True, "fields": {}}]) is None  # an engine without confidences


def test_relief_scores_leave_out_markings_with_a_serial_character_ground_flat() -> None:
    from bench.metrics import FLAT_BELOW, relief_scores
    from bench.report import relief_summary

    def row(ok: bool, relief: float | None) -> dict[str, Any]:
        extra = {} if relief is None else {"serial_relief_min": relief}
        return {"exact": ok, "error": None, "cer": 0.0, "cpu_ms": 1.0, "wall_ms": 1.0, "n_images": 1,
                "truth_extra": extra}

    rows = [row(True, 0.6), row(False, 0.3), row(False, 0.0), row(False, FLAT_BELOW / 2), row(True, FLAT_BELOW)]
    assert relief_scores(rows) == {"n": 5, "flat": 2, "exact": round(2 / 3, 4)}
    assert relief_scores([row(True, None)]) is None  # real photos carry no relief truth
    engines = {"marktrace": summarize(rows), "rapidocr": summarize([{**r, "exact": False} for r in rows])}
    line = relief_summary({"engines": engines})
    assert line.startswith("Ground flat — 2 of 5 markings") and "on the other 3: marktrace 66.7%, rapidocr 0.0%" in line
    unground = [row(True, 0.9), row(False, 0.5)]
    assert relief_summary({"engines": {"marktrace": summarize(unground)}}) == ""  # nothing ground flat: no line


def test_a_rendered_sets_relief_truth_covers_the_serial_not_its_label(tmp_path: Path) -> None:
    small = BenchSet("tinyground", "test", "3", MIN_SEED + 998_000_000,
                     (SetPart("p", SETS["ground"].parts[0].config.model_copy(update={"image_size": (128, 200)})),))
    folder = materialize(small, 6, tmp_path)
    from marktrace.datasets.manifest import read_manifest

    entries = [e for e in read_manifest(folder / "manifest.jsonl")
               if any(ln.role == "serial" and normalize_serial(ln.text) for ln in e.lines)]
    items = load_items(folder, "tinyground")
    assert len(items) == len(entries) > 0
    for entry, item in zip(entries, items, strict=True):
        relief = (entry.meta or {})["serial_relief"]
        serial = normalize_serial(item.truth)
        assert len(relief) == len(item.truth.replace(" ", ""))  # one share per marked character, label included
        assert item.extra["serial_relief_min"] == min(relief[-len(serial):])


def test_a_ground_flat_label_does_not_count_against_the_serial(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 80, 3), 90, np.uint8))
    entry = {"image": "a.png", "source": "synthetic", "lines": [{"text": "SN 1234", "role": "serial"}],
             "meta": {"serial_relief": [0.0, 0.01, 0.5, 0.6, 0.7, 0.8]}}  # S and N ground flat, the digits not
    (tmp_path / "manifest.jsonl").write_text(json.dumps(entry) + "\n")
    (item,) = load_items(tmp_path, "x")
    assert item.extra["serial_relief_min"] == 0.5
