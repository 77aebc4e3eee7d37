"""Lexicon spotting: CTC alignment of registry phrases to a line's probabilities, and the manufacturer fill."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from marktrace.inference.assemble import build_record
from marktrace.inference.ctc import DecodedText, greedy_decode
from marktrace.inference.lexicon import (
    CONFIDENCE_WEIGHT,
    MIN_SCORE,
    OPENING_MIN_SCORE,
    LexiconSpotter,
    MakerLexicon,
    Reading,
    ascii_upper,
    fill_manufacturer,
    replace_span,
)
from marktrace.inference.registry import load_registry
from marktrace.inference.schema import Line

CHARSET = "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BOX = [(0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0)]


def line_probs(read: str, runner_up: str | None = None, second: float = 0.4, step: int = 3) -> np.ndarray:
    """(T, C) probabilities whose best path reads ``read``; ``runner_up[i]`` gets ``second`` at character i."""
    steps = step * len(read) + 2
    probs = np.full((steps, len(CHARSET) + 1), 1e-4)
    probs[:, 0] = 1.0
    for i, ch in enumerate(read):
        t = 1 + step * i
        probs[t] = 1e-4
        probs[t, CHARSET.index(ch) + 1] = 1.0 - second if runner_up else 0.95
        if runner_up and runner_up[i] != ch:
            probs[t, CHARSET.index(runner_up[i]) + 1] = second
    return probs / probs.sum(axis=1, keepdims=True)


def decoded(read: str, runner_up: str | None = None, second: float = 0.4) -> DecodedText:
    text = greedy_decode(line_probs(read, runner_up, second), CHARSET)
    assert text.text == read
    return text


def test_ascii_upper_strips_accents_and_collapses_spaces() -> None:
    assert ascii_upper("Česká  zbrojovka") == "CESKA ZBROJOVKA"
    assert ascii_upper("Łucznik") == "LUCZNIK"


def test_a_phrase_the_decoding_reads_scores_zero_and_a_misread_one_scores_its_runner_up_ratio() -> None:
    spotter = LexiconSpotter(["IZHMASH", "VALMET", "WALTHER"], CHARSET)
    exact = spotter.spot(line_probs("VALMET"))
    assert exact[0].phrase == "VALMET"
    assert exact[0].score == pytest.approx(0.0, abs=1e-6)
    # IZMMAGH decoded, with H and S the runner-up at the two misread positions.
    misread = spotter.spot(line_probs("IZMMAGH", runner_up="IZHMASH", second=0.4))
    assert misread[0].phrase == "IZHMASH"
    expected = 2 * np.log(0.4 / 0.6) / 7  # two characters at 0.4 against a best path at 0.6
    assert misread[0].score == pytest.approx(expected, abs=1e-3)
    assert misread[1].score < misread[0].score - 1.0


def test_a_phrase_is_found_inside_a_longer_line_and_replaced_in_place() -> None:
    spotter = LexiconSpotter(["GLOCK"], CHARSET)
    text = decoded("GLOCK MADE IN AUSTRIA", runner_up="GLOCK MADE IN AUSTRIA")
    spot = spotter.spot(text.probs)[0]  # type: ignore[arg-type]
    assert spot.phrase == "GLOCK"
    assert spot.score == pytest.approx(0.0, abs=1e-6)
    assert spot.start == text.char_steps[0] and spot.end == text.char_steps[4]
    misread = decoded("6LOCX MADE IN AUSTRIA", runner_up="GLOCK MADE IN AUSTRIA", second=0.45)
    spot = spotter.spot(misread.probs)[0]  # type: ignore[arg-type]
    assert replace_span(misread.text, misread.char_steps, spot) == "GLOCK MADE IN AUSTRIA"


def test_spaces_and_punctuation_of_a_phrase_may_be_skipped_and_case_does_not_matter() -> None:
    spotter = LexiconSpotter(["HECKLER & KOCH"], CHARSET)
    glued = spotter.spot(line_probs("HECKLERKOCH"))
    assert glued[0].score == pytest.approx(0.0, abs=1e-6)
    lower = spotter.spot(line_probs("Heckler Koch"))
    assert lower[0].score == pytest.approx(0.0, abs=1e-6)
    # A letter is missing, not optional: its step at 1e-4 against 0.95 costs about 9 over the phrase's 11 letters.
    assert spotter.spot(line_probs("HECKLEKOCH"))[0].score < -0.7


def test_short_phrases_and_characters_outside_the_charset_are_not_indexed() -> None:
    spotter = LexiconSpotter(["FN", "CZ", "IMI", "SAKO", "SAKO", "ΑΒΓΔΕ"], CHARSET)
    assert spotter.phrases == ("SAKO",)


def test_the_bound_skips_only_phrases_that_could_not_reach_the_floor() -> None:
    phrases = [m for maker in load_registry().makers for m in maker.marks]
    spotter = LexiconSpotter(phrases, CHARSET)
    probs = line_probs("STURM RUGER & CO", runner_up="SNVRM RVGER 8 CO")
    full = {s.phrase: s.score for s in spotter.spot(probs)}
    floor = -1.5
    pruned = {s.phrase: s.score for s in spotter.spot(probs, floor=floor)}
    assert len(pruned) < len(full)
    assert {p for p, v in full.items() if v >= floor} <= set(pruned)
    for phrase, value in pruned.items():
        assert value == pytest.approx(full[phrase])


def test_the_maker_lexicon_refuses_noise_and_accepts_a_clear_match() -> None:
    lexicon = MakerLexicon(load_registry(), CHARSET)
    rng = np.random.default_rng(7)
    noise = rng.dirichlet(np.full(len(CHARSET) + 1, 0.3), size=60)
    assert lexicon.best(greedy_decode(noise, CHARSET)) is None
    spot = lexicon.best(decoded("IZMMAGH", runner_up="IZHMASH", second=0.4))
    assert spot is not None and spot.phrase == "IZHMASH"
    assert lexicon.best(DecodedText("IZMMAGH", 0.5, (), (), ())) is None  # no probabilities kept


def _line(text: DecodedText) -> Line:
    return Line(text=text.text, confidence=text.confidence, box=BOX, file="a.png")


def test_fill_manufacturer_records_a_lexicon_match_as_a_flagged_lower_confidence_suggestion() -> None:
    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    texts = [decoded("IZMMAGH", runner_up="IZHMASH", second=0.4), decoded("SN 12345")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, {"a.png": "ab" * 32}, registry)
    assert record["manufacturer"] is None
    assert fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry,
                             {"a.png": "ab" * 32})
    maker = record.get("manufacturer") or {}
    assert maker["value"] == "Kalashnikov Concern (Izhmash)"
    assert maker["evidence"]["method"] == "lexicon"
    assert maker["evidence"]["line_text"] == "IZMMAGH"  # what was read, not the phrase
    assert maker["text_as_marked"] == "IZHMASH"
    assert maker["confidence"] <= CONFIDENCE_WEIGHT
    flag = next(f for f in maker["flags"] if f["kind"] == "lexicon_match")
    assert flag["read"] == "IZMMAGH" and flag["phrase"] == "IZHMASH"
    country = record["country_of_manufacture"]
    assert country["value"] == "RU" and country["evidence"]["method"] == "registry_fallback"
    assert all(o["evidence"]["line_text"] != "IZMMAGH" for o in record["other_markings"])
    assert record["serial_number"]["value"] == "12345"


def test_fill_manufacturer_leaves_read_makers_import_lines_and_claimed_lines_alone() -> None:
    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    hashes = {"a.png": "cd" * 32}
    # A maker already read: nothing changes.
    texts = [decoded("GLOCK"), decoded("IZMMAGH", runner_up="IZHMASH")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, hashes, registry)
    before = record["manufacturer"]["value"]
    assert not fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry,
                                 hashes)
    assert record["manufacturer"]["value"] == before
    # The only candidate is an import mark: it names an importer, never the manufacturer.
    texts = [decoded("IMP IZMMAGH", runner_up="IMP IZHMASH")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, hashes, registry)
    assert not fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry,
                                 hashes)
    assert record["manufacturer"] is None


def test_fill_manufacturer_searches_a_line_the_country_was_read_on() -> None:
    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    hashes = {"a.png": "ef" * 32}
    texts = [decoded("IZMMAGH MADE IN RUSSIA", runner_up="IZHMASH MADE IN RUSSIA"), decoded("SN 12345")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, hashes, registry)
    assert record["manufacturer"] is None
    assert record["country_of_manufacture"]["evidence"]["line_text"] == texts[0].text
    read_country = dict(record["country_of_manufacture"])
    assert fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry, hashes)
    assert record["manufacturer"]["value"] == "Kalashnikov Concern (Izhmash)"
    assert record["manufacturer"]["evidence"]["line_text"] == texts[0].text
    assert record["country_of_manufacture"] == read_country  # the country as read stays as it was


def test_a_maker_phrase_never_takes_the_place_of_the_country_read_on_its_line() -> None:
    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    hashes = {"a.png": "ab" * 32}
    # RUSSIA's probabilities favour ROSSI (a maker's mark) just enough to pass the lexicon's bars on their own.
    country_line = decoded("IZHEVSK RUSSIA", runner_up="IZHEVSK ROSSI ", second=0.45)
    texts = [country_line, decoded("No 777715")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, hashes, registry)
    assert record["country_of_manufacture"]["value"] == "RU"
    assert lexicon.best(country_line, 6) is not None  # the spot alone would be taken
    assert not fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry,
                                 hashes)
    assert record["manufacturer"] is None and record["country_of_manufacture"]["value"] == "RU"
    # A maker phrase on another line is still taken, and the country stays the one read.
    texts = [country_line, decoded("IZMMAGH", runner_up="IZHMASH"), decoded("No 777715")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, hashes, registry)
    assert fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry, hashes)
    assert record["manufacturer"]["value"] == "Kalashnikov Concern (Izhmash)"
    assert record["manufacturer"]["evidence"]["line_text"] == "IZMMAGH"
    assert record["country_of_manufacture"]["value"] == "RU"


def test_fill_manufacturer_takes_a_maker_line_from_another_attempt_but_never_its_serial_line() -> None:
    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    hashes = {"a.png": "12" * 32}
    best_texts = [decoded("SN 12345")]
    best_lines = [_line(t) for t in best_texts]
    record = build_record(best_lines, hashes, registry)
    best = Reading(best_lines, best_texts, record, "direct", "original")
    # Another attempt read the serial line as a maker-like word: a field rests on it there, so it is skipped.
    other_texts = [decoded("IZMMAGH", runner_up="IZHMASH")]
    other_lines = [_line(t) for t in other_texts]
    other_record = build_record(other_lines, hashes, registry)
    other_record["serial_number"] = {"value": "X", "evidence": {"line_text": "IZMMAGH"}}
    assert not fill_manufacturer(record, [best, Reading(other_lines, other_texts, other_record, "chain:c", "v")],
                                 lexicon, registry, hashes)
    assert record["manufacturer"] is None
    # Left free there, the other attempt's maker line fills the record, with that attempt's view as evidence;
    # a country read on another line of that attempt is not taken, the maker's registry country is.
    other_texts = [other_texts[0], decoded("MADE IN CHINA")]
    other_lines = [_line(t) for t in other_texts]
    other = Reading(other_lines, other_texts, build_record(other_lines, hashes, registry), "chain:clahe", "chain:clahe")
    assert other.record["country_of_manufacture"]["value"] == "CN"
    assert fill_manufacturer(record, [best, other], lexicon, registry, hashes)
    maker = record["manufacturer"]
    assert maker["value"] == "Kalashnikov Concern (Izhmash)"
    assert maker["evidence"]["view"] == "chain:clahe" and maker["evidence"]["line_text"] == "IZMMAGH"
    country = record["country_of_manufacture"]
    assert country["value"] == "RU" and country["evidence"]["method"] == "registry_fallback"
    assert record["serial_number"]["value"] == "12345"  # the chosen attempt's fields are kept


def test_a_short_mark_must_clearly_beat_other_makers(monkeypatch: pytest.MonkeyPatch) -> None:
    import marktrace.inference.lexicon as lexicon_module

    lexicon = MakerLexicon(load_registry(), CHARSET)

    def read(second_d: float) -> DecodedText:
        # MAUSEN decoded: R is the runner-up of the N (MAUSER), D a weaker runner-up of the U (MADSEN).
        probs = line_probs("MAUSEN", runner_up="MAUSER", second=0.4)
        probs[1 + 3 * 2, CHARSET.index("D") + 1] = second_d
        return greedy_decode(probs / probs.sum(axis=1, keepdims=True), CHARSET)

    clear = lexicon.best(read(0.0001))
    assert clear is not None and clear.phrase == "MAUSER"  # no other maker near: taken
    close = read(0.12)  # MADSEN about 0.2 per letter behind MAUSER: enough for a long mark, not a short one
    assert lexicon.best(close) is None
    monkeypatch.setattr(lexicon_module, "MIN_MARGIN_SHORT", lexicon_module.MIN_MARGIN)
    spot = lexicon.best(close)
    assert spot is not None and spot.phrase == "MAUSER"


def test_a_worn_long_mark_is_taken_at_a_weak_score_and_a_weak_confidence() -> None:
    """``MEL-TER CNG`` with K, C and C as weak runner-ups: two letters in nine far behind, still clearly KEL-TEC CNC."""
    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    worn = decoded("MEL-TER CNG", runner_up="KEL-TEC CNC", second=0.02)
    spot = lexicon.best(worn)
    assert spot is not None and spot.phrase == "KEL-TEC CNC"
    assert MIN_SCORE <= spot.score < -0.7  # under the bar of the first lexicon, over today's
    hashes = {"a.png": "ab" * 32}
    texts = [worn, decoded("SN 12345")]
    lines = [_line(t) for t in texts]
    record = build_record(lines, hashes, registry)
    assert record["manufacturer"] is None
    assert fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry, hashes)
    maker = record["manufacturer"]
    assert maker["value"] == "Kel-Tec CNC Industries" and maker["evidence"]["method"] == "lexicon"
    assert maker["confidence"] <= round(float(np.exp(spot.score)) * CONFIDENCE_WEIGHT, 4) < 0.3
    # three letters far behind of nine: under the bar, nothing is filled
    assert lexicon.best(decoded("MEL-TER ZNG", runner_up="KEL-TEC CNC", second=0.01)) is None


def _one_search_decision(lexicon: MakerLexicon, text: DecodedText, floor: float) -> tuple[str, float] | None:
    """What :meth:`MakerLexicon.best` takes from one search of rivals down to ``floor`` (no opening rule)."""
    from marktrace.inference.lexicon import MIN_COVER, MIN_PHRASE_ALNUM

    assert text.probs is not None
    alnum = sum(ch.isalnum() for ch in text.text)
    low = max(MIN_PHRASE_ALNUM, int(np.ceil(MIN_COVER * alnum)))
    found = lexicon._clear_winner(lexicon.spotter.spot(text.probs, low, 2 * alnum + 4, floor), MIN_SCORE)
    return None if found is None else (found.phrase, found.score)


def test_the_two_step_rival_search_decides_as_one_search_down_to_the_widest_margin() -> None:
    """:meth:`MakerLexicon.best` looks for a short mark's rivals below the long marks' floor only when needed.

    Worn short marks with another mark's letters as runner-ups: the decisions equal those of one search down to
    the widest margin, and some of them differ from a search that never looks below the long marks' floor.
    """
    from marktrace.inference.lexicon import MIN_MARGIN, MIN_MARGIN_SHORT

    lexicon = MakerLexicon(load_registry(), CHARSET)
    marks = sorted(p for p in lexicon.spotter.phrases if 5 <= len(p) <= 6 and p.isascii() and p.isalpha())
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rng = np.random.default_rng(11)
    taken = shallow_differs = 0
    for _ in range(200):
        mark, rival = marks[rng.integers(len(marks))], marks[rng.integers(len(marks))]
        read = "".join(letters[rng.integers(26)] if rng.random() < 0.5 else ch for ch in mark)
        probs = np.full((3 * len(read) + 2, len(CHARSET) + 1), 1e-4)
        probs[:, 0] = 1.0
        for i, ch in enumerate(read):
            t = 1 + 3 * i
            probs[t] = 1e-4
            probs[t, CHARSET.index(ch) + 1] = 0.6
            for other in (mark, rival):
                if i < len(other) and other[i] != ch:
                    probs[t, CHARSET.index(other[i]) + 1] = float(rng.uniform(0.001, 0.3))
        text = greedy_decode(probs / probs.sum(axis=1, keepdims=True), CHARSET)
        got = lexicon.best(text)
        deep = _one_search_decision(lexicon, text, MIN_SCORE - MIN_MARGIN_SHORT)
        assert (None if got is None else (got.phrase, got.score)) == deep, read
        shallow_differs += _one_search_decision(lexicon, text, MIN_SCORE - MIN_MARGIN) != deep
        taken += got is not None
    assert shallow_differs >= 3 and 20 <= taken <= 180


def test_a_lexicon_match_lists_other_makers_that_reach_the_bar_as_alternatives() -> None:
    """QAUSEQ: MAUSER taken; MADSEN (weak D and N runner-ups) listed at its own lower confidence; records validate."""
    import jsonschema

    from marktrace.inference.records import load_schema

    registry = load_registry()
    lexicon = MakerLexicon(registry, CHARSET)
    hashes = {"a.png": "5a" * 32}

    def fill(second_d: float) -> dict[str, Any]:
        probs = line_probs("QAUSEQ", runner_up="MAUSER", second=0.4)
        probs[1 + 3 * 2, CHARSET.index("D") + 1] = second_d
        probs[1 + 3 * 5, CHARSET.index("N") + 1] = 0.05
        texts = [greedy_decode(probs / probs.sum(axis=1, keepdims=True), CHARSET), decoded("SN 12345")]
        lines = [_line(t) for t in texts]
        record = build_record(lines, hashes, registry)
        assert record["manufacturer"] is None
        assert fill_manufacturer(record, [Reading(lines, texts, record, "direct", "original")], lexicon, registry,
                                 hashes)
        jsonschema.validate(record, load_schema("identification-record.v1.json"))
        maker = record["manufacturer"]
        assert isinstance(maker, dict) and maker["value"] == registry.maker("mauser").name
        return maker

    maker = fill(0.01)  # MADSEN about -1.24 per letter: over the bar, 1.1 behind MAUSER
    rival = next(a for a in maker["alternatives"] if a["value"] == registry.maker("madsen").name)
    assert rival["method"] == "lexicon" and 0 < rival["confidence"] < maker["confidence"]
    assert rival["confidence"] == pytest.approx(np.exp(-1.24) * CONFIDENCE_WEIGHT, abs=0.01)
    # a D thirty times weaker: MADSEN under the bar, no alternative from the lexicon
    assert all(a.get("method") != "lexicon" for a in fill(0.0003)["alternatives"])


def test_a_long_maker_name_opening_a_garbled_line_is_taken_without_covering_half_of_it() -> None:
    """``XASTAVA`` + a worn town: ZASTAVA (7 of 16 letters) is too short for the cover rule but opens the line."""
    lexicon = MakerLexicon(load_registry(), CHARSET)
    opening = decoded("XASTAVAARIGULA1C", runner_up="ZASTAVAARIGULA1C", second=0.45)
    spot = lexicon.best(opening)
    assert spot is not None and spot.phrase == "ZASTAVA" and spot.score >= OPENING_MIN_SCORE
    # the same name after other letters does not open the line: the cover rule stands
    assert lexicon.best(decoded("QQQQXASTAVAWWWWWWW", runner_up="QQQQZASTAVAWWWWWWW", second=0.45)) is None
    # nor does a weaker read of it (X far ahead of Z): under the opening bar
    weak = decoded("XASTAVAARIGULA1C", runner_up="ZASTAVAARIGULA1C", second=0.05)
    assert lexicon.best(weak) is None


def test_the_reader_spots_makers_only_when_asked_and_none_was_read() -> None:
    import cv2

    from marktrace.inference.cli import _settings
    from marktrace.inference.images import DEFAULT_MAX_PIXELS, decode_image
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    assert _settings(None, None, DEFAULT_MAX_PIXELS, None, lexicon=False).lexicon_makers is False
    assert ReaderSettings().lexicon_makers is True
    plate = np.full((120, 520, 3), 200, np.uint8)
    cv2.putText(plate, "SN 40219", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.8, (30, 30, 30), 4)
    ok, buf = cv2.imencode(".png", plate)
    assert ok
    image = decode_image(bytes(buf), "plate.png")
    on = MarkingReader.from_settings(ReaderSettings(threads=1, enhance=False)).read_loaded("p", [image], None)
    off = MarkingReader.from_settings(ReaderSettings(threads=1, enhance=False, lexicon_makers=False))
    assert on.record["manufacturer"] is None and "lexicon_ms" in on.timings_ms
    assert "lexicon_ms" not in off.read_loaded("p", [image], None).timings_ms


def test_a_floor_only_leaves_out_phrases_under_it_and_changes_no_alignment() -> None:
    spotter = MakerLexicon(load_registry(), CHARSET).spotter
    probs = line_probs("SNIGE ANMS MADE IN USA", runner_up="SAVGE ARMS MADE IN USA", second=0.4)
    everything = spotter.spot(probs)
    floored = spotter.spot(probs, floor=-1.0)
    assert floored and len(floored) < len(everything)
    assert floored == [s for s in everything if s.score >= -1.0]  # same phrases, scores and spans
    assert floored[0].phrase.startswith("SAV") and floored[0].start > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_without_spans_equal_the_tracked_alignment_for_every_phrase(seed: int) -> None:
    """The untracked pass (the bound's survivors are scored by it) gives exactly the tracked pass's best scores,
    phrases with skippable spaces and punctuation (more than three predecessors) included."""
    group = MakerLexicon(load_registry(), CHARSET).spotter._group
    assert group is not None and group.preds.shape[0] > 3  # some phrase has skippable characters
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(len(CHARSET) + 1, 0.3), size=40)
    probs[:, 0] += rng.random(40)  # blanks, as a CTC line has
    probs /= probs.sum(axis=1, keepdims=True)
    ratios = np.minimum(np.log(probs[:, group.pair_a] + np.where(group.pair_b != group.pair_a,
                                                                 probs[:, group.pair_b], 0.0))
                        - np.log(probs.max(axis=1))[:, None], 0.0)
    keep = np.arange(len(group.phrases))
    untracked, _, _ = group._viterbi(ratios, keep, track=False)
    tracked, starts, ends = group._viterbi(ratios, keep, track=True)
    assert np.isfinite(untracked).sum() > 0.9 * keep.size  # phrases longer than the line stay -inf
    assert np.array_equal(untracked, tracked)
    assert np.all(starts <= ends)
