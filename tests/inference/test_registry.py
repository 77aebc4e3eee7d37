"""Registry data: every entry valid, marking strings unambiguous unless declared, lab files extend it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from marktrace.inference.registry import (
    FuzzyIndex,
    RegistryError,
    allowed_edits,
    compact,
    country_marking_strings,
    glyph_distance,
    load_registry,
    maker_marking_strings,
    skeleton,
    tokenize,
)


def edit_distance(a: str, b: str) -> int:
    """Plain Levenshtein distance: the reference the index's bit-parallel distance is checked against."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_bundled_registry_is_valid_and_large_enough() -> None:
    reg = load_registry()
    assert len(reg.makers) >= 100
    assert sum(m.kind == "importer" for m in reg.makers) >= 10
    assert len(reg.countries) >= 50
    codes = {c.code for c in reg.countries}
    for m in reg.makers:
        assert m.country in codes, m.id
        assert m.marks, m.id
    for h in reg.historic:
        assert set(h.successors) <= codes, h.name


def test_issue_makers_are_present_with_their_country() -> None:
    reg = load_registry()
    want = {"FN": "BE", "GLOCK": "AT", "BERETTA": "IT", "ZASTAVA": "RS", "H&K": "DE", "CZ": "CZ", "S&W": "US",
            "RUGER": "US", "TAURUS": "BR", "WALTHER": "DE", "STEYR": "AT", "SIG SAUER": "DE", "COLT": "US",
            "IZHMASH": "RU", "NORINCO": "CN", "FACTORY 66": "CN", "IZH": "RU", "FNH": "BE", "HK": "DE",
            "CESKA ZBROJOVKA": "CZ", "FN HERSTAL": "BE", "F.N.": "BE"}
    for mark, country in want.items():
        hits = reg.lookup_mark(compact(tokenize(mark)))
        assert hits, mark
        assert hits[0].maker.country == country, (mark, hits[0].maker.id)


def test_no_undeclared_shared_marking_strings() -> None:
    reg = load_registry()
    owners: dict[str, set[str]] = {}
    for m in reg.makers:
        for mark in m.marks:
            owners.setdefault(compact(tokenize(mark)), set()).add(m.id)
    for key, ids in owners.items():
        if len(ids) > 1:
            for mid in ids:
                declared = {compact(tokenize(a)) for a in reg.maker(mid).ambiguous_marks}
                assert key in declared, f"{key!r} shared by {sorted(ids)} but not declared by {mid}"


def test_country_names_cover_marking_languages() -> None:
    reg = load_registry()
    for name, code in {"BELGIQUE": "BE", "DEUTSCHLAND": "DE", "ITALIA": "IT", "ESPAÑA": "ES", "ALEMANHA": "DE",
                       "ГЕРМАНИЯ": "DE", "GERMANIYA": "DE", "NĚMECKO": "DE", "NEMAČKA": "DE", "ALMANYA": "DE",
                       "U.S.A.": "US", "W. GERMANY": "DE", "CESKOSLOVENSKO": "CZ", "СССР": "RU"}.items():
        hit = reg.country_by_name(compact(tokenize(name)))
        assert hit is not None and hit[0] == code, name


def test_cached_per_argument_set() -> None:
    assert load_registry() is load_registry()


def test_lab_file_extends_the_registry(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("makers:\n  - {id: lab-maker, name: Lab Maker, kind: manufacturer, country: NL, "
                   "marks: [LABMAKER ARMS], models: [LM-1]}\n", encoding="utf-8")
    reg = load_registry([lab])
    assert reg.lookup_mark("LABMAKERARMS")[0].maker.name == "Lab Maker"
    assert load_registry([lab]) is reg
    assert not load_registry().lookup_mark("LABMAKERARMS")


@pytest.mark.parametrize(("content", "needle"), [
    ("makers:\n  - {id: bad, name: Bad, kind: maker, country: NL, marks: [BAD ARMS]}\n", "makers[0] (id='bad')"),
    ("makers:\n  - {id: bad2, name: Bad, kind: manufacturer, country: XX, marks: [BAD ARMS]}\n", "not in countries"),
    ("makers:\n  - {id: glock, name: G, kind: manufacturer, country: AT, marks: [GX]}\n", "duplicate id"),
    ("makers:\n  - {id: fake-glock, name: G, kind: manufacturer, country: AT, marks: [GLOCK]}\n", "ambiguous_marks"),
    ("makers: [\n", "not valid YAML"),
    ("colours: []\n", "unknown top-level"),
    ("makers:\n  - {id: m1, name: M, kind: manufacturer, country: NL, marks: [A], models: [1.5]}\n", "quoted"),
])
def test_bad_lab_file_names_file_and_entry(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry([bad])
    assert needle in str(err.value)
    if needle not in ("ambiguous_marks", "not in countries"):
        assert str(bad) in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not found"):
        load_registry([tmp_path / "nope.yaml"])


def test_marking_strings_for_the_generator() -> None:
    strings = maker_marking_strings()
    assert "FN" in strings["FN Herstal"] and "GLOCK" in strings["Glock"]
    importers = maker_marking_strings(kind="importer")
    assert "Century International Arms" in importers and "Glock" not in importers
    assert "BELGIQUE" in country_marking_strings()["BE"]


def test_tokenize_normalises_marking_forms() -> None:
    assert tokenize("U.S.A.") == ["USA"]
    assert tokenize("SMITH & WESSON") == tokenize("SMITH&WESSON") == ["SMITH&WESSON"]
    assert tokenize("P.BERETTA") == ["P", "BERETTA"]
    assert tokenize("7.62X39") == ["7.62X39"]
    assert tokenize("ČESKÁ ZBROJOVKA") == ["CESKA", "ZBROJOVKA"]


def test_allowed_edits_grow_with_the_reference_length() -> None:
    assert [allowed_edits(n) for n in (2, 3, 4)] == [0.0, 0.0, 1.0]
    assert allowed_edits(3, short=1) == 1.0  # a strong context (MADE IN) allows one on three letters
    assert allowed_edits(5, 0.25) == 1.25 and allowed_edits(12, 0.25) == 3.0
    assert glyph_distance("GARATIA", "CROATIA") < edit_distance("GARATIA", "CROATIA")  # G/C: glyph neighbours
    assert glyph_distance(skeleton("0L1"), skeleton("OIL")) == 0.0  # confusable classes cost nothing


def test_fuzzy_index_finds_every_reference_within_the_budget() -> None:
    """The bigram filter loses nothing: the index answers what a brute-force comparison answers."""
    rng = random.Random(3)
    refs = ["".join(rng.choice("ABCEGKMNORSTUVW") for _ in range(rng.randint(3, 14))) for _ in range(300)]
    index = FuzzyIndex((r, r) for r in refs)
    for _ in range(300):
        base = rng.choice(refs)
        q = list(base)
        for _ in range(rng.randint(0, 4)):
            k = rng.randrange(len(q) + 1)
            op = rng.random()
            if op < 0.4 and k < len(q):
                q[k] = rng.choice("ABCEGKMNORSTUVW")
            elif op < 0.7:
                q.insert(k, rng.choice("ABCEGKMNORSTUVW"))
            elif q and k < len(q):
                del q[k]
        query = "".join(q)
        got = {h.key for h in index.search(query, 0.3)}
        want = set()
        for r in set(refs):
            budget = allowed_edits(len(r), 0.3)
            max_edits = int(budget) + (1 if len(r) >= 5 else 0)
            if edit_distance(query, r) <= max_edits and glyph_distance(query, r) <= budget:
                want.add(r)
        assert got == want, query


def test_registry_indexes_marks_and_country_names_for_approximate_lookup() -> None:
    reg = load_registry()
    hits = reg.index.maker_fuzzy.search("REEWGTONARNSCO", 0.25)
    assert hits and hits[0].payloads[0].maker.id == "remington" and hits[0].edits == 4
    assert not reg.index.maker_fuzzy.search("WTNNARENAA", 0.25)
    assert reg.index.country_fuzzy.search("AUSERIA", 0.4)[0].payloads[0][1] == "AT"
