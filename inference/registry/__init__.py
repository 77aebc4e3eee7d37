"""The registry of makers, importers, countries and documented codes, loaded from YAML data files.

The data lives next to this module (``makers.yaml``, ``countries.yaml``, ``codes.yaml``; sources in
``SOURCES.md``). A lab extends it with its own YAML file with the same top-level keys, passed to
:func:`load_registry`. Nothing is read at import time; :func:`load_registry` reads, validates and
indexes the files once per argument set.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_FILES: tuple[str, ...] = ("makers.yaml", "countries.yaml", "codes.yaml")

_ALPHA2 = re.compile(r"^[A-Z]{2}$")
_EXTRA_CHARS = str.maketrans({"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "ß": "SS",
                              "Đ": "D", "đ": "d", "’": "'", "‘": "'", "`": "'", "ı": "i", "№": "NO "})
_SPLIT = re.compile(r"[\s,;:()\[\]{}\"“”«»]+")
_ABBREV = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]?\.?$")
_DOT_SPLIT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_COMPACT_DROP = str.maketrans("", "", "-./'")
_SKELETON = str.maketrans({"0": "O", "D": "O", "Q": "O", "1": "I", "L": "I", "|": "I", "5": "S", "2": "Z",
                           "8": "B", "6": "G"})


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RegistryError(ValueError):
    """A registry file or entry is invalid; the message names the file and the entry."""


def normalize_text(text: str) -> str:
    """Upper-case, strip diacritics (Latin and Cyrillic alike), unify quotes; keeps the script."""
    text = text.translate(_EXTRA_CHARS)
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return stripped.upper()


def tokenize(text: str) -> list[str]:
    """Split a marking line into normalised tokens for lexicon matching.

    Abbreviations lose their dots (``U.S.A.`` → ``USA``), other dots that are not decimal points split
    (``P.BERETTA`` → ``P BERETTA``), apostrophes vanish (``COLT'S`` → ``COLTS``) and ``&`` glues its
    neighbours (``SMITH & WESSON`` → ``SMITH&WESSON``).
    """
    norm = normalize_text(text).replace("'", "")
    raw: list[str] = []
    for tok in _SPLIT.split(norm.replace("&", " & ")):
        if not tok:
            continue
        if _ABBREV.match(tok):
            raw.append(tok.replace(".", ""))
            continue
        raw.extend(p for p in _DOT_SPLIT.split(tok) if p and p.strip("-"))
    out: list[str] = []
    i = 0
    while i < len(raw):
        tok = raw[i]
        if tok == "&" and out and i + 1 < len(raw):
            out[-1] = out[-1] + "&" + raw[i + 1]
            i += 2
            continue
        if tok != "&":
            out.append(tok)
        i += 1
    return out


def compact(tokens: Iterable[str]) -> str:
    """Join tokens without separators, dropping hyphens, dots, slashes and apostrophes."""
    return "".join(tokens).translate(_COMPACT_DROP)


def skeleton(text: str) -> str:
    """Map OCR-confusable characters to one representative (0/O/D/Q, 1/I/L, 5/S, 2/Z, 8/B, 6/G)."""
    return text.translate(_SKELETON)


# ------------------------------------------------------------------------------ approximate matching
_GLYPH_NEIGHBOURS: frozenset[tuple[str, str]] = frozenset(
    pair
    for a, b in ("CG", "CO", "GO", "OU", "UV", "VY", "HN", "MN", "MW", "VW", "EF", "PR", "BR", "BE", "KX", "IT",
                 "IJ")
    for pair in ((a, b), (b, a))
)
"""Glyph-shape neighbours on the confusable skeleton (round, open, stroke-count classes): a substitution
between them costs half an edit in :func:`glyph_distance`. Skeleton classes (0/O/D/Q, 1/I/L, ...) cost 0."""

T = TypeVar("T")


def glyph_distance(a: str, b: str, band: int | None = None) -> float:
    """Edit distance where substituting glyph-shape neighbours (:data:`_GLYPH_NEIGHBOURS`) costs 0.5.

    Compare skeletons (:func:`skeleton`), so that the confusable classes cost nothing. With ``band``,
    only alignments that stay within ``band`` diagonals are considered (exact when the plain edit
    distance is at most ``band``).
    """
    inf = float("inf")
    width = len(b) + 1
    prev = [float(j) for j in range(width)]
    for i, ca in enumerate(a, 1):
        lo = 1 if band is None else max(1, i - band)
        hi = len(b) if band is None else min(len(b), i + band)
        cur = [inf] * width
        if lo == 1:
            cur[0] = float(i)
        for j in range(lo, hi + 1):
            cb = b[j - 1]
            sub = 0.0 if ca == cb else 0.5 if (ca, cb) in _GLYPH_NEIGHBOURS else 1.0
            cur[j] = min(prev[j] + 1.0, cur[j - 1] + 1.0, prev[j - 1] + sub)
        prev = cur
    return prev[-1]


def allowed_edits(length: int, ratio: float = 0.3, short: int = 0) -> float:
    """Most (glyph-weighted) edits accepted for a reference string of this length.

    None for strings of three characters or fewer (``short`` overrides: a strong context such as
    ``MADE IN`` allows one), one for four characters, ``ratio`` of the length (at least one) beyond.
    """
    if length <= 3:
        return float(short) if length == 3 else 0.0
    if length == 4:
        return 1.0
    return max(1.0, ratio * length)


def _bigrams(key: str) -> Counter[str]:
    padded = f"^{key}$"
    return Counter(padded[i:i + 2] for i in range(len(padded) - 1))


def _pattern_masks(ref: str) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, ch in enumerate(ref):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    return masks


def _bit_levenshtein(ref: str, masks: dict[str, int], text: str) -> int:
    """Levenshtein distance of ``text`` to ``ref`` (Myers/Hyyrö bit-parallel; ``masks`` from ``ref``)."""
    m = len(ref)
    if m == 0:
        return len(text)
    full = (1 << m) - 1
    top = 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in text:
        eq = masks.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score


@dataclass(frozen=True)
class FuzzyHit(Generic[T]):
    """One approximate match: the reference skeleton, its distances to the query and what it stands for."""

    key: str
    """Skeleton of the reference string matched."""
    distance: float
    """Glyph-weighted edit distance (:func:`glyph_distance`)."""
    edits: int
    """Plain edit count (Levenshtein) between the skeletons."""
    payloads: tuple[T, ...]

    @property
    def normalized(self) -> float:
        """Distance per character of the reference."""
        return self.distance / max(1, len(self.key))


class FuzzyIndex(Generic[T]):
    """Approximate lookup of short strings by confusable skeleton, built once at registry load.

    A query is compared with the references sharing enough character bigrams (the q-gram lemma: a string
    within ``k`` edits of a reference of length ``L`` shares at least ``max(len, L) + 1 - 2k`` padded
    bigrams with it), then verified by edit distance. A reference of length ``L`` matches when its
    glyph-weighted distance is at most :func:`allowed_edits` ``(L)`` and its plain edit count at most
    one more than that (glyph-neighbour substitutions count half). About 0.05 ms a query.
    """

    def __init__(self, items: Iterable[tuple[str, T]], min_len: int = 3) -> None:
        groups: dict[str, list[T]] = {}
        for key, payload in items:
            sk = skeleton(key)
            if len(sk) >= min_len:
                groups.setdefault(sk, []).append(payload)
        self.keys: list[str] = list(groups)
        self.payloads: list[tuple[T, ...]] = [tuple(groups[k]) for k in self.keys]
        self._masks = [_pattern_masks(k) for k in self.keys]
        counts = [_bigrams(k) for k in self.keys]
        self._vocab: dict[str, int] = {}
        for c in counts:
            for bg in c:
                self._vocab.setdefault(bg, len(self._vocab))
        self._counts = np.zeros((max(1, len(self._vocab)), len(self.keys)), dtype=np.int16)  # bigram x key
        for col, c in enumerate(counts):
            for bg, n in c.items():
                self._counts[self._vocab[bg], col] = n
        self._lengths = np.array([len(k) for k in self.keys], dtype=np.int32)
        self._budgets: dict[tuple[float, int], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _budget(self, ratio: float, short: int) -> tuple[np.ndarray, np.ndarray]:
        got = self._budgets.get((ratio, short))
        if got is None:
            budget = np.array([allowed_edits(int(n), ratio, short) for n in self._lengths], dtype=np.float64)
            max_edits = np.floor(budget).astype(np.int32) + (self._lengths >= 5)
            got = self._budgets[(ratio, short)] = (budget, max_edits)
        return got

    def search(self, key: str, ratio: float = 0.3, short: int = 0) -> list[FuzzyHit[T]]:
        """References within the allowed distance of ``key`` (compact form), nearest first."""
        q = skeleton(key)
        if not q or not self.keys:
            return []
        cols: list[int] = []
        qcounts: list[int] = []
        for bg, n in _bigrams(q).items():
            col = self._vocab.get(bg)
            if col is not None:
                cols.append(col)
                qcounts.append(n)
        if not cols:
            return []
        common = np.minimum(self._counts[cols], np.array(qcounts, dtype=np.int16)[:, None]).sum(axis=0)
        budget, max_edits = self._budget(ratio, short)
        n = len(q)
        ok = (np.abs(self._lengths - n) <= max_edits) & (
            common >= np.maximum(self._lengths, n) + 1 - 2 * max_edits)
        hits: list[FuzzyHit[T]] = []
        for idx in np.flatnonzero(ok).tolist():
            ref = self.keys[idx]
            edits = _bit_levenshtein(ref, self._masks[idx], q)
            if edits > max_edits[idx]:
                continue
            dist = glyph_distance(q, ref, int(max_edits[idx])) if edits else 0.0
            if dist <= budget[idx]:
                hits.append(FuzzyHit(ref, dist, edits, self.payloads[idx]))
        hits.sort(key=lambda h: (h.normalized, -len(h.key)))
        return hits


def _to_str_list(value: Any) -> Any:
    if isinstance(value, list):
        out = []
        for v in value:
            if isinstance(v, bool | float):
                raise ValueError(f"{v!r} must be a quoted string")
            out.append(str(v) if isinstance(v, int) else v)
        return out
    return value


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MakerEntry(_Entry):
    """A manufacturer or importer and the strings it marks."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    kind: Literal["manufacturer", "importer"]
    country: str = Field(pattern=r"^[A-Z]{2}$")
    marks: list[str] = Field(min_length=1)
    models: list[str] = Field(default_factory=list)
    city: str | None = None
    state: str | None = None
    cities: list[str] = Field(default_factory=list)
    ambiguous_marks: list[str] = Field(default_factory=list)
    notes: str | None = None

    _coerce = field_validator("marks", "models", "cities", "ambiguous_marks", mode="before")(_to_str_list)

    @field_validator("marks")
    @classmethod
    def _marks_not_empty(cls, v: list[str]) -> list[str]:
        for m in v:
            if not tokenize(m):
                raise ValueError(f"mark {m!r} has no letters or digits")
        return v


class CountryEntry(_Entry):
    """An ISO 3166-1 country with the names and adjectives marked on arms."""

    code: str = Field(pattern=r"^[A-Z]{2}$")
    alpha3: str = Field(pattern=r"^[A-Z]{3}$")
    name: str
    names: list[str] = Field(default_factory=list)
    adjectives: list[str] = Field(default_factory=list)


class HistoricCountry(_Entry):
    """A former state (ISO 3166-3) still marked on older arms, with its successor states."""

    name: str
    iso3166_3: str = Field(pattern=r"^[A-Z]{4}$")
    successors: list[str] = Field(min_length=1)
    names: list[str] = Field(min_length=1)


class YearCodeScheme(_Entry):
    """A documented year-code table (e.g. an Italian proof-house letter code)."""

    id: str
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    source: str
    codes: dict[str, int]


class ProofMark(_Entry):
    """A proof-mark text and what it means; proof gives the country of proof, not of manufacture."""

    mark: str
    meaning: str
    country: str | None = None
    numbered: bool = False
    """Whether the mark is followed by a number that belongs to it (``PTB 312``: an approval number), so that
    number is part of the proof mark and not a serial or a year."""


class MakerMatch(BaseModel):
    """An index entry: which maker a normalised marking string stands for."""

    model_config = ConfigDict(frozen=True)

    maker: MakerEntry
    mark: str
    ntokens: int


class RegistryIndex:
    """Lookup indices over validated registry entries (plain dicts: the parser's hot path)."""

    def __init__(self, makers: Sequence[MakerEntry], countries: Sequence[CountryEntry],
                 historic: Sequence[HistoricCountry], year_codes: Sequence[YearCodeScheme],
                 proof_marks: Sequence[ProofMark]) -> None:
        self.makers, self.countries, self.historic = list(makers), list(countries), list(historic)
        self.year_codes, self.proof_marks = list(year_codes), list(proof_marks)
        self.by_id: dict[str, MakerEntry] = {}
        self.mark_index: dict[str, list[MakerMatch]] = {}
        self.skeleton_index: dict[str, list[MakerMatch]] = {}
        self.model_index: dict[str, dict[str, str]] = {}
        self.city_index: dict[str, dict[str, str]] = {}
        self.country_names: dict[str, tuple[str, HistoricCountry | None]] = {}
        self.country_adjectives: dict[str, str] = {}
        self.country_by_code: dict[str, CountryEntry] = {}
        self.alpha3: dict[str, str] = {}
        self.proof_index: dict[str, ProofMark] = {}
        self.max_mark_tokens = 1
        self.max_country_tokens = 1
        self._build()
        self.model_keys: frozenset[str] = frozenset(k for models in self.model_index.values() for k in models)
        """Compact keys of every maker's model names (an exact model reading is not a misread maker)."""
        self.maker_fuzzy: FuzzyIndex[MakerMatch] = FuzzyIndex(
            ((key, h) for key, hits in self.mark_index.items() for h in hits), min_len=4)
        """Approximate lookup of marking strings (compact form, four characters or more)."""
        self.country_fuzzy: FuzzyIndex[tuple[str, str, HistoricCountry | None]] = FuzzyIndex(
            ((key, (key, code, hist)) for key, (code, hist) in self.country_names.items()), min_len=3)
        """Approximate lookup of country names (compact key, alpha-2, historic state)."""


    # ------------------------------------------------------------------ indices
    def _build(self) -> None:
        for c in self.countries:
            self.country_by_code[c.code] = c
            self.alpha3[c.alpha3] = c.code
            for n in [c.name, *c.names]:
                toks = tokenize(n)
                key = compact(toks)
                if key:
                    self.country_names.setdefault(key, (c.code, None))
                    self.max_country_tokens = max(self.max_country_tokens, len(toks))
            for a in c.adjectives:
                self.country_adjectives.setdefault(compact(tokenize(a)), c.code)
        for h in self.historic:
            for n in [h.name, *h.names]:
                toks = tokenize(n)
                self.country_names.setdefault(compact(toks), (h.successors[0], h))
                self.max_country_tokens = max(self.max_country_tokens, len(toks))
        for m in self.makers:
            self.by_id[m.id] = m
            for mark in m.marks:
                toks = tokenize(mark)
                key = compact(toks)
                match = MakerMatch(maker=m, mark=mark, ntokens=len(toks))
                bucket = self.mark_index.setdefault(key, [])
                if all(x.maker.id != m.id for x in bucket):
                    bucket.append(match)
                self.max_mark_tokens = max(self.max_mark_tokens, len(toks))
                if len(key) >= 3:
                    sk = skeleton(key)
                    sb = self.skeleton_index.setdefault(sk, [])
                    if all(x.maker.id != m.id for x in sb):
                        sb.append(match)
            models: dict[str, str] = {}
            for x in m.models:
                key = compact(tokenize(x))
                if key:
                    models.setdefault(key, x)
            self.model_index[m.id] = models
            cities = [*m.cities, *([m.city] if m.city else [])]
            self.city_index[m.id] = {compact(tokenize(c)): c for c in cities}
        for p in self.proof_marks:
            self.proof_index[compact(tokenize(p.mark))] = p

    # ------------------------------------------------------------------ lookups
    def maker(self, maker_id: str) -> MakerEntry:
        """The maker with this id (KeyError if unknown)."""
        return self.by_id[maker_id]

    def lookup_mark(self, key: str) -> list[MakerMatch]:
        """Makers whose marking string has this compact form (exact)."""
        return self.mark_index.get(key, [])

    def lookup_skeleton(self, key: str) -> list[MakerMatch]:
        """Makers whose marking string has the same confusable skeleton as ``key`` (compact form)."""
        return self.skeleton_index.get(skeleton(key), [])

    def matches_for_skeleton(self, sk: str) -> list[MakerMatch]:
        """Makers whose mark has exactly this skeleton."""
        return self.skeleton_index.get(sk, [])

    def models_of(self, maker_id: str) -> dict[str, str]:
        """Compact model key → model name as listed for this maker."""
        return self.model_index.get(maker_id, {})

    def cities_of(self, maker_id: str) -> dict[str, str]:
        """Compact city key → city name for this maker or importer."""
        return self.city_index.get(maker_id, {})

    def country_by_name(self, key: str) -> tuple[str, HistoricCountry | None] | None:
        """ISO alpha-2 (and historic state, if any) for a compact country-name key."""
        return self.country_names.get(key)

    def country_by_adjective(self, key: str) -> str | None:
        """ISO alpha-2 for a compact adjective key (``ITALIAN`` → ``IT``)."""
        return self.country_adjectives.get(key)

    def country(self, code: str) -> CountryEntry | None:
        """The country entry for an ISO alpha-2 code."""
        return self.country_by_code.get(code)

    def alpha2_from_alpha3(self, code: str) -> str | None:
        """ISO alpha-2 for an alpha-3 code."""
        return self.alpha3.get(code)

    def proof_mark(self, key: str) -> ProofMark | None:
        """The proof mark with this compact text, if listed."""
        return self.proof_index.get(key)


class Registry(BaseModel):
    """Validated registry data with lookup indices (built once, after validation)."""

    model_config = ConfigDict(extra="forbid")

    makers: list[MakerEntry] = Field(default_factory=list)
    countries: list[CountryEntry] = Field(default_factory=list)
    historic: list[HistoricCountry] = Field(default_factory=list)
    year_codes: list[YearCodeScheme] = Field(default_factory=list)
    proof_marks: list[ProofMark] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)

    _index: RegistryIndex = PrivateAttr()

    def model_post_init(self, __context: Any) -> None:
        """Build the lookup index of marks, codes and names once the entries are validated."""
        self._index = RegistryIndex(self.makers, self.countries, self.historic, self.year_codes, self.proof_marks)

    @property
    def index(self) -> RegistryIndex:
        """The lookup indices (use in hot loops: plain attribute access)."""
        return self._index

    @property
    def max_mark_tokens(self) -> int:
        """Most tokens in any marking string."""
        return self._index.max_mark_tokens

    def maker(self, maker_id: str) -> MakerEntry:
        """The maker with this id (KeyError if unknown)."""
        return self._index.maker(maker_id)

    def lookup_mark(self, key: str) -> list[MakerMatch]:
        """Makers whose marking string has this compact form (exact)."""
        return self._index.lookup_mark(key)

    def models_of(self, maker_id: str) -> dict[str, str]:
        """Compact model key → model name as listed for this maker."""
        return self._index.models_of(maker_id)

    def country_by_name(self, key: str) -> tuple[str, HistoricCountry | None] | None:
        """ISO alpha-2 (and historic state, if any) for a compact country-name key."""
        return self._index.country_by_name(key)

    def country(self, code: str) -> CountryEntry | None:
        """The country entry for an ISO alpha-2 code."""
        return self._index.country(code)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open("r", encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_YAML_LOADER)  # noqa: S506 - safe loader
    except FileNotFoundError as exc:
        raise RegistryError(f"{path}: registry file not found") from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: top level must be a mapping with keys makers/countries/historic/...")
    return data


_SECTIONS: dict[str, type[_Entry]] = {
    "makers": MakerEntry,
    "countries": CountryEntry,
    "historic": HistoricCountry,
    "year_codes": YearCodeScheme,
    "proof_marks": ProofMark,
}


def _entry_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        for key in ("id", "code", "name", "mark"):
            if key in raw:
                return f"[{index}] ({key}={raw[key]!r})"
    return f"[{index}]"


def _validate_files(paths: Sequence[Path]) -> Registry:
    sections: dict[str, list[Any]] = {k: [] for k in _SECTIONS}
    origin: dict[tuple[str, str], str] = {}
    for path in paths:
        data = _read_yaml(path)
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise RegistryError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected {sorted(_SECTIONS)}")
        for section, cls in _SECTIONS.items():
            items = data.get(section) or []
            if not isinstance(items, list):
                raise RegistryError(f"{path}: '{section}' must be a list")
            for i, raw in enumerate(items):
                label = f"{path}: {section}{_entry_label(raw, i)}"
                try:
                    entry = cls.model_validate(raw)
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()
                    )
                    raise RegistryError(f"{label}: {problems}") from None
                key_attr = {"makers": "id", "countries": "code", "year_codes": "id"}.get(section)
                if key_attr:
                    key = (section, str(getattr(entry, key_attr)))
                    if key in origin:
                        raise RegistryError(f"{label}: duplicate {key_attr} {key[1]!r} (first in {origin[key]})")
                    origin[key] = str(path)
                sections[section].append(entry)
    codes = {c.code for c in sections["countries"]}
    for m in sections["makers"]:
        if codes and m.country not in codes:
            raise RegistryError(
                f"maker {m.id!r} ({origin[('makers', m.id)]}): country {m.country!r} not in countries")
    # A marking string may map to several makers only when every one of them declares it ambiguous.
    owners: dict[str, list[tuple[MakerEntry, str]]] = {}
    for m in sections["makers"]:
        for mark in m.marks:
            owners.setdefault(compact(tokenize(mark)), []).append((m, mark))
    for mkey, lst in owners.items():
        ids = {m.id for m, _ in lst}
        if len(ids) > 1:
            undeclared = [m.id for m, mark in lst if compact(tokenize(mark)) not in
                          {compact(tokenize(a)) for a in m.ambiguous_marks}]
            if undeclared:
                raise RegistryError(
                    f"marking string {mkey!r} maps to several makers {sorted(ids)}; declare it in "
                    f"ambiguous_marks of {sorted(set(undeclared))} (files: "
                    f"{sorted({origin[('makers', i)] for i in ids})})"
                )
    return Registry.model_validate({**sections, "files": [str(p) for p in paths]})


@functools.lru_cache(maxsize=16)
def _load_cached(extra: tuple[Path, ...]) -> Registry:
    return _validate_files([DATA_DIR / f for f in DEFAULT_FILES] + list(extra))


def load_registry(extra_files: Sequence[Path | str] = ()) -> Registry:
    """Load, validate and index the bundled registry plus a lab's own files (cached per argument set).

    Raises:
        RegistryError: a file is missing or invalid, naming the file and the entry.
    """
    return _load_cached(tuple(Path(p).resolve() for p in extra_files))


def maker_marking_strings(registry: Registry | None = None, kind: str | None = None) -> dict[str, list[str]]:
    """Canonical maker name → the strings it marks, for the synthetic generator.

    Args:
        registry: a loaded registry (default: the bundled one).
        kind: ``"manufacturer"`` or ``"importer"`` to filter; ``None`` for both.
    """
    reg = registry if registry is not None else load_registry()
    return {m.name: list(m.marks) for m in reg.makers if kind is None or m.kind == kind}


def country_marking_strings(registry: Registry | None = None) -> dict[str, list[str]]:
    """ISO alpha-2 code → country names as marked (all languages), for the synthetic generator."""
    reg = registry if registry is not None else load_registry()
    return {c.code: [c.name, *c.names] for c in reg.countries}


__all__ = [
    "CountryEntry",
    "HistoricCountry",
    "MakerEntry",
    "MakerMatch",
    "ProofMark",
    "Registry",
    "RegistryIndex",
    "RegistryError",
    "YearCodeScheme",
    "FuzzyHit",
    "FuzzyIndex",
    "allowed_edits",
    "compact",
    "country_marking_strings",
    "glyph_distance",
    "load_registry",
    "maker_marking_strings",
    "normalize_text",
    "skeleton",
    "tokenize",
]
