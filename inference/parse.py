"""Marking parser: recognised lines → identification-record fields, each with its evidence.

:func:`parse_lines` fills serial number, manufacturer, country of manufacture, model, type, calibre,
year of manufacture, import marks, proof marks and other markings from the lines a recogniser read,
using the registry (:mod:`marktrace.inference.registry`). Every value is a
:class:`~marktrace.inference.schema.RecordField` with status ``suggested``; confusable characters
resolved by a field's grammar are recorded in the field's ``flags``. Torch-free and fast (about a
millisecond for ten lines).

Maker and country names misread beyond the confusable classes are matched approximately
(:class:`~marktrace.inference.registry.FuzzyIndex`: glyph-weighted edit distance on the confusable
skeleton, more edits for longer names, more after ``MADE IN``), only where no name was read exactly;
each such match records its distance, what it was taken for and any equally near rival. A maker named
on an import mark (after ``IMPORTED BY`` or before a U.S. address) names the importer: it is used as
manufacturer only when no other maker is read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from marktrace.inference.registry import (
    FuzzyHit,
    FuzzyIndex,
    MakerEntry,
    MakerMatch,
    Registry,
    compact,
    glyph_distance,
    normalize_text,
    skeleton,
    tokenize,
)
from marktrace.inference.schema import Alternative, Evidence, Line, RecordField

FIELD_NAMES: tuple[str, ...] = (
    "serial_number",
    "manufacturer",
    "country_of_manufacture",
    "model",
    "type",
    "calibre",
    "year_of_manufacture",
    "import_marks",
    "proof_marks",
    "other_markings",
    "serial_obliterated",
)
"""The identification-record field names that :func:`parse_lines` fills (``notes`` is human-only)."""

CONFUSABLE_LETTER_TO_DIGIT: dict[str, str] = {"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "S": "5",
                                              "Z": "2", "B": "8", "G": "6"}
SURE_CHARACTER = 0.8
"""A recognised character at this confidence, with no competing digit, is not changed by the serial grammar."""
DIGIT_ALTERNATIVE_MIN = 0.25
"""A letter inside a serial's digit body becomes a digit when the recognizer gave that digit at least this
probability, or when it was unsure of the letter (< 0.5 with a weaker digit alternative, < SURE_CHARACTER with
none). Serials do mix letters into the body (56ZV01774), so a faint digit alternative alone is no reason."""
CONFUSABLE_DIGIT_TO_LETTER: dict[str, str] = {"0": "O", "1": "I", "5": "S", "2": "Z", "8": "B", "6": "G"}

US_STATES: frozenset[str] = frozenset(
    [
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
        "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
        "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
        "WI", "WY", "DC", "CONN", "MASS", "ILL", "CALIF", "FLA", "TENN", "MICH", "MINN", "WIS", "ARIZ"
    ]
)

_TYPE_WORDS: dict[str, str] = {
    "PISTOL": "pistol", "PISTOLE": "pistol", "PISTOLET": "pistol", "PISTOLA": "pistol", "ПИСТОЛЕТ": "pistol",
    "TABANCA": "pistol", "REVOLVER": "revolver", "REVOLVERS": "revolver", "REVOLVRE": "revolver",
    "РЕВОЛЬВЕР": "revolver", "RIFLE": "rifle", "GEWEHR": "rifle", "FUSIL": "rifle", "FUCILE": "rifle",
    "ВИНТОВКА": "rifle", "VINTOVKA": "rifle", "CARBINE": "rifle", "KARABINER": "rifle", "CARABINE": "rifle",
    "KARABIN": "rifle", "CARABINA": "rifle", "SHOTGUN": "shotgun", "FLINTE": "shotgun", "ESCOPETA": "shotgun",
    "SMG": "submachine gun", "MASCHINENPISTOLE": "submachine gun", "SUBMACHINE": "submachine gun",
    "MASCHINENGEWEHR": "machine gun", "AUTOMAT": "rifle", "АВТОМАТ": "rifle",
}
_MODEL_WORDS = frozenset({"MODEL", "MOD", "MODELO", "MODELE", "MODELL", "MODELLO", "TYPE", "TYP", "MLE", "MOD."})
_SERIAL_PREFIX = re.compile(
    r"(?:^|(?<=[\s:]))(?:(?:S/N|SN|SER(?:IAL)?(?:\s*N(?:O|R|UM)?)?|N[O0°º]|NR|NUM|№|SERIE|MATR(?:ICOLA)?|N)"
    r"(?:\s*[.:#-]\s*|\s+))+(?=[A-Z0-9А-ЯЁ])"
)
"""Serial labels before a serial, possibly stacked (``S/N No 4020``)."""
_NO_LABEL_MISREAD = re.compile(r"^[A-Z]?o[l1I]?(?=\.?\s+\S*\d)")
"""The label ``No`` read with its ``N`` lost or misread (``o.``, ``Mo``, ``Ko``, ``Nol`` before a token with a digit),
read case-sensitively: a marked serial's letters are capitals, and the label's small ``o`` is the one small letter
serial lines carry, so such a token is the label, not a letter prefix of the serial."""
_SERIAL_ORNAMENTS = "*#"
"""Characters set around a serial as ornament or label (``*0623128*``, ``#12345``), stripped from a candidate."""
_CALIBRE_FRAGMENT = re.compile(r"^\.?\d{1,2}X\d{2,3}$")
"""A metric calibre's ``bore X case`` shape (``62X39`` of ``7.62X39``): a serial candidate of this shape ranks lower."""
NO_DIGIT_PREFIX_SCORE = 0.3
"""Rank score of a serial read after a serial label that holds no digit (a role-scored candidate scores up to about
1.0): the label's own confusable letters let it through (``SN OIZSBL`` may be ``SN 0125B1``), but a serial with no
digit is far likelier a misread line."""
_FFL_SERIAL = re.compile(r"(?<![\w-])(\d{8})-([A-Z0-9]{2,})(?![\w-])")
_ISACS = re.compile(r"^([A-Z]{2})\s+([A-Z]{2,6})\s+(\d{2})\s+(\d{2})\s+(\d{3,10})(?:\s+(\d{2}))?$")
_IMPORT_ITI = re.compile(r"^([A-Z]{2})\s+(\d{2}|\d{4})$")
_BG_MAKAROV = re.compile(r"^([A-ZА-Я]{2})\s+(\d{2})\s+(\d{4})$")
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d)(?:Г|G|R)?$")
_ROMAN = re.compile(r"^[XVI]{1,6}$")
_CAL_PREFIX = re.compile(r"(?:CAL(?:IBRE|IBER|IBRO)?|KAL(?:IBER)?)\s*\.?\s*$")
_HAS_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")

_N = r"(?<![\d.])"  # no digit or dot before


_MODEL_MAY_HOLD = frozenset({"maker", "year"})
"""Uses of a token a registry model name of several words may still take (:meth:`_Parser._find_models`)."""


def _cal(pattern: str, value: str, conf: float = 0.95) -> tuple[re.Pattern[str], str, float]:
    return re.compile(pattern), value, conf


# Ordered most specific first; applied to the normalised line (upper case, decimal commas → dots).
_CALIBRES: list[tuple[re.Pattern[str], str, float]] = [
    _cal(_N + r"\.?50\s*BMG\b|\b12\.7\s*X\s*99(?:\s*MM)?", ".50 BMG"),
    _cal(r"\b12\.7\s*X\s*108(?:\s*MM)?", "12.7x108mm"),
    _cal(r"\b14\.5\s*X\s*114(?:\s*MM)?", "14.5x114mm"),
    _cal(r"\b7\.62\s*X\s*54\s*R?(?:\s*MM)?R?\b|\b7\.62\s*X\s*54R", "7.62x54mmR"),
    _cal(r"\b7\.62\s*X\s*39(?:\s*MM)?", "7.62x39mm"),
    _cal(r"\b7\.62\s*X\s*51(?:\s*MM)?(?:\s*NATO)?|\b7\.62\s*(?:MM\s*)?NATO\b", "7.62x51mm"),
    _cal(r"\b7\.62\s*X\s*25(?:\s*MM)?|\b7\.62\s*(?:MM\s*)?(?:TOKAREV|TT)\b", "7.62x25mm Tokarev"),
    _cal(r"\b7\.62\s*X\s*38\s*R?|\b7\.62\s*(?:MM\s*)?NAGANT\b", "7.62x38mmR Nagant"),
    _cal(r"\b5\.45\s*X\s*39(?:\s*MM)?", "5.45x39mm"),
    _cal(r"\b5\.56\s*X\s*45(?:\s*MM)?(?:\s*NATO)?|\b5\.56\s*(?:MM\s*)?NATO\b|\b5\.56\s*MM\b|" + _N + r"5\.56(?!\d)",
         "5.56x45mm"),
    _cal(r"\b5\.7\s*X\s*28(?:\s*MM)?", "5.7x28mm"),
    _cal(r"\b4\.6\s*X\s*30(?:\s*MM)?", "4.6x30mm"),
    _cal(r"\b9\s*X\s*19(?:\s*MM)?(?:\s*(?:LUGER|PARA(?:BELLUM)?|NATO))?", "9x19mm"),
    _cal(r"\b9\s*MM\s*(?:LUGER|PARA(?:BELLUM)?|P|NATO)\b|\b9\s*PARA(?:BELLUM)?\b|\b9\s*LUGER\b", "9x19mm"),
    _cal(r"\b9\s*X\s*18(?:\s*MM)?|\b9\s*(?:MM\s*)?(?:MAKAROV|MAK|PM)\b", "9x18mm Makarov"),
    _cal(r"\b9\s*X\s*21(?:\s*MM)?|\b9\s*(?:MM\s*)?IMI\b", "9x21mm"),
    _cal(r"\b9\s*X\s*17(?:\s*MM)?|\b9\s*MM\s*(?:KURZ|SHORT|BROWNING\s*(?:COURT|SHORT|KURZ)?)\b|"
         + _N + r"\.?380\s*(?:ACP|AUTO|A\.C\.P\.?)|\b9\s*K\b", ".380 ACP"),
    _cal(r"\b9\s*(?:X\s*23\s*|MM\s*)STEYR\b|\b9\s*X\s*23(?:\s*MM)?", "9x23mm Steyr"),
    _cal(r"\b9\s*MM\b", "9x19mm", 0.8),
    _cal(r"\b10\s*MM(?:\s*AUTO)?\b", "10mm Auto"),
    _cal(_N + r"\.?45\s*(?:ACP|AUTO|A\.C\.P\.?)|\b11\.43(?:\s*X\s*23)?(?:\s*MM)?", ".45 ACP"),
    _cal(_N + r"\.?45\s*(?:GAP|G\.A\.P\.?)\b", ".45 GAP"),
    _cal(_N + r"\.?45\s*(?:COLT|LC|L\.C\.|LONG\s*COLT)\b", ".45 Colt"),
    _cal(_N + r"\.?40\s*(?:S\s*&\s*W|SW|S\s*AND\s*W)\b|\b10\s*X\s*22(?:\s*MM)?", ".40 S&W"),
    _cal(_N + r"\.?357\s*SIG\b", ".357 SIG"),
    _cal(_N + r"\.?357\s*(?:MAG(?:NUM)?|REM(?:INGTON)?\s*MAG(?:NUM)?)\b|" + _N + r"\.357\b", ".357 Magnum"),
    _cal(_N + r"\.?38\s*(?:S\s*&\s*W\s*)?(?:SPL|SPECIAL|SPEC)\b", ".38 Special"),
    _cal(_N + r"\.?38\s*SUPER\b", ".38 Super"),
    _cal(_N + r"\.?38\s*(?:S\s*&\s*W)\b", ".38 S&W"),
    _cal(_N + r"\.?44\s*(?:REM(?:INGTON)?\s*)?MAG(?:NUM)?\b", ".44 Magnum"),
    _cal(_N + r"\.?44\s*(?:S\s*&\s*W\s*)?(?:SPL|SPECIAL)\b", ".44 Special"),
    # cartridges named after a maker: the maker's name here is a calibre, not who made the gun
    _cal(_N + r"\.?375\s*H\s*&\s*H(?:\s*MAG(?:NUM)?)?\b", ".375 H&H Magnum"),
    _cal(_N + r"\.?300\s*H\s*&\s*H(?:\s*MAG(?:NUM)?)?\b", ".300 H&H Magnum"),
    _cal(_N + r"\.?460\s*S\s*&\s*W(?:\s*MAG(?:NUM)?)?\b", ".460 S&W Magnum"),
    _cal(_N + r"\.?500\s*S\s*&\s*W(?:\s*MAG(?:NUM)?)?\b", ".500 S&W Magnum"),
    _cal(_N + r"\.?44\s*S\s*&\s*W(?:\s*MAG(?:NUM)?)?\b", ".44 Magnum"),
    _cal(_N + r"\.?300\s*(?:WEATHERBY|WBY)(?:\s*MAG(?:NUM)?)?\b", ".300 Weatherby Magnum"),
    _cal(_N + r"\.?257\s*(?:WEATHERBY|WBY)(?:\s*MAG(?:NUM)?)?\b", ".257 Weatherby Magnum"),
    _cal(_N + r"\.?22\s*(?:WMR|W\.M\.R\.?|WIN\s*MAG(?:NUM)?|MAG(?:NUM)?)\b", ".22 WMR"),
    _cal(_N + r"\.?22\s*(?:LR|L\.\s*R\.?|LONG\s*RIFLE)(?![A-Z])|\b5\.6\s*MM\b(?:\s*LR)?", ".22 LR"),
    _cal(_N + r"\.?22\s*SHORT\b", ".22 Short"),
    _cal(_N + r"\.?22\s*LONG\b", ".22 Long"),
    _cal(_N + r"\.?22\s*(?:WRF|W\.R\.F\.?)", ".22 WRF"),
    _cal(_N + r"\.?22\s*HORNET\b", ".22 Hornet"),
    _cal(_N + r"\.?243\s*WIN(?:CHESTER)?\b", ".243 Winchester"),
    _cal(_N + r"\.?270\s*WIN(?:CHESTER)?\b", ".270 Winchester"),
    _cal(_N + r"\.?45\s*-\s*70(?:\s*GOV(?:T|ERNMENT)?)?", ".45-70 Government"),
    _cal(_N + r"\.?25\s*-\s*06(?:\s*REM(?:INGTON)?)?", ".25-06 Remington"),
    _cal(_N + r"\.?300\s*SAV(?:AGE)?\b", ".300 Savage"),
    _cal(_N + r"\.?45\s*WIN(?:CHESTER)?\s*MAG(?:NUM)?\b", ".45 Winchester Magnum"),
    _cal(r"\b7\.63\s*(?:X\s*25\s*)?(?:MM\s*)?(?:MAUSER\b)?(?![\d.])|" + _N + r"\.?30\s*MAUSER\b", "7.63x25mm Mauser"),
    _cal(_N + r"\.?38\s*(?:LONG\s*)?COLT\b|" + _N + r"\.?38\s*LC\b", ".38 Long Colt", 0.8),
    _cal(_N + r"\.223\b(?:\s*REM(?:INGTON)?\b)?|" + _N + r"223\s*REM(?:INGTON)?\b", ".223 Remington"),
    _cal(_N + r"\.?308\s*WIN(?:CHESTER)?\b|" + _N + r"\.308\b", ".308 Winchester"),
    _cal(_N + r"\.?30\s*-\s*06(?:\s*(?:SPRG|SPRINGFIELD|SPR|SPRGFLD))?", ".30-06 Springfield"),
    _cal(_N + r"\.?30\s*-\s*30(?:\s*WIN(?:CHESTER)?)?", ".30-30 Winchester"),
    _cal(_N + r"\.?30\s*(?:CARBINE|M1\s*CARBINE)\b", ".30 Carbine"),
    _cal(_N + r"\.303\b(?:\s*BRIT(?:ISH)?\b)?|\b303\s*BRIT(?:ISH)?\b", ".303 British"),
    _cal(_N + r"\.?300\s*(?:WIN(?:CHESTER)?\s*MAG(?:NUM)?|WM)\b", ".300 Winchester Magnum"),
    _cal(_N + r"\.?300\s*(?:BLK|BLACKOUT|AAC(?:\s*BLACKOUT)?)\b", ".300 Blackout"),
    _cal(r"\b6\.5\s*(?:MM\s*)?(?:CREEDMOOR|CM)\b", "6.5 Creedmoor"),
    _cal(_N + r"\.?338\s*(?:LAPUA(?:\s*MAG(?:NUM)?)?|LM)\b|\b8\.6\s*X\s*70(?:\s*MM)?", ".338 Lapua Magnum"),
    _cal(r"\b7\.92\s*X\s*57(?:\s*MM)?|\b8\s*X\s*57\s*(?:IS|JS|I|J)?\b|\b8\s*MM\s*MAUSER\b", "7.92x57mm Mauser"),
    _cal(r"\b7\.5\s*X\s*55(?:\s*MM)?", "7.5x55mm Swiss"),
    _cal(r"\b7\.5\s*X\s*54(?:\s*MM)?", "7.5x54mm French"),
    _cal(r"\b6\.5\s*X\s*55(?:\s*MM)?", "6.5x55mm"),
    _cal(r"\b7\s*X\s*57(?:\s*MM)?", "7x57mm Mauser"),
    _cal(r"\b7\.65\s*X\s*53(?:\s*MM)?", "7.65x53mm Mauser"),
    _cal(r"\b7\.65\s*X\s*21(?:\s*MM)?|\b7\.65\s*(?:MM\s*)?PARA(?:BELLUM)?\b", "7.65x21mm Parabellum"),
    _cal(r"\b7\.65\s*X\s*17(?:\s*MM)?|\b7\.65\s*(?:MM)?(?:\s*BROWNING)?(?!\d)|" + _N + r"\.?32\s*(?:ACP|AUTO)\b",
         ".32 ACP"),
    _cal(r"\b6\.35\s*(?:MM)?(?:\s*BROWNING)?(?!\d)|" + _N + r"\.?25\s*(?:ACP|AUTO)\b", ".25 ACP"),
    _cal(_N + r"\.?32\s*H\s*&\s*R\s*MAG(?:NUM)?\b", ".32 H&R Magnum"),
    _cal(_N + r"\.?32\s*S\s*&\s*W(?:\s*LONG)?\b", ".32 S&W Long"),
    _cal(_N + r"\.?17\s*HMR\b", ".17 HMR"),
    _cal(_N + r"\.410\b(?:\s*(?:GA|GAUGE|BORE))?|\b410\s*(?:GA|GAUGE|BORE|G)\b", ".410 bore"),
    _cal(r"\b(10|12|16|20|24|28|32|36)\s*(?:GA\b\.?|GAUGE\b|G\.A\.|BORE\b)", "{0} gauge"),
    # European shotguns mark gauge / chamber length in mm (12/70, 12/76, 20/76, 16/65): the chamber stays in
    # text_as_marked; a month/year date reads the same, hence the lower confidence
    _cal(r"(?<![\d/.])(10|12|16|20|24|28|32|36)\s*/\s*(?:65|67|67\.5|70|73|76|89)(?![\d/.])", "{0} gauge", 0.8),
    # "CAL. 12" on a shotgun; 32 and 36 after CAL are the .32 and .36 bores of handguns, not gauges
    _cal(r"\b(?:CAL(?:IBRE|IBER|IBRO)?|KAL(?:IBER)?)\.?\s*(10|12|16|20|24|28)\b(?!\.\d)", "{0} gauge", 0.85),
    _cal(r"\b8\s*MM\b", "8mm", 0.6),
    _cal(_N + r"\.(\d{2,3})\s*CAL(?:IBRE|IBER)?\b\.?", ".{0} calibre", 0.6),
    _cal(_N + r"\.22\b(?!\s*-)", ".22 LR", 0.75),
    _cal(_N + r"\.45\b(?!\s*-)", ".45 ACP", 0.7),
    # A calibre named only by its number: kept as marked, at a low confidence, so that the number is
    # neither a serial nor its "CAL" an importer's code (CAI)
    _cal(r"\b(?:CAL(?:IBRE|IBER|IBRO)?|KAL(?:IBER)?)\.?\s*\.(\d{2,3})\b(?!\.\d)", ".{0} calibre", 0.6),
    _cal(r"\b(?:CAL(?:IBRE|IBER|IBRO)?|KAL(?:IBER)?)\.?\s*(\d{1,2}\.\d{1,2})\b", "{0}mm", 0.6),
    _cal(r"\b(?:CAL(?:IBRE|IBER|IBRO)?|KAL(?:IBER)?)\.?\s*([5-9])\b(?!\.\d)", "{0}mm", 0.6),
    _cal(r"\b(?:CAL(?:IBRE|IBER|IBRO)?|KAL(?:IBER)?)\.?\s*(\d{2,3})\b(?!\.\d)", ".{0} calibre", 0.6),
]
_GAUGE_RE = re.compile(r"gauge|bore")


@dataclass
class _Cand:
    """A candidate value for one field, from one line."""

    value: Any
    conf: float
    line: int
    text: str
    method: str = "direct"
    flags: list[dict[str, Any]] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _LineState:
    line: Line
    norm: str
    tokens: list[str]
    used: list[str | None]
    conf: float
    imp_prefix: int = 0
    """Tokens of an import prefix (``IMPORTED BY``, ``IMP``) at the start of the line; 0 if none."""
    addr: int | None = None
    """Index of the U.S. State token closing a U.S. address (``... EXETER NH``), if any."""
    state_at: int | None = None
    """Index of a U.S. State token after a place name at the end of the line (``SPRINGFIELD MA``)."""
    addr_countries: set[str] = field(default_factory=set)
    """Countries named after the address (``... EXETER NH SERBIA``: the country of origin)."""
    import_country: _Cand | None = None
    """The importer's own country read on an import mark (``IMPORTED BY MARSTAR CANADA``), not a country of
    manufacture; attached to the line's import mark once its importer is known."""


def _evidence(line: Line, sha256: Mapping[str, str], method: str) -> Evidence:
    return Evidence(file=line.file, sha256=sha256.get(line.file), box=list(line.box), line_text=line.text,
                    method=method, view=line.view)


def _as_read(text: str, line_text: str) -> str:
    """``text`` (the parser's upper-case form) as the line reads it, case and all (``NO 392505`` in ``No 392505``).

    The parser's own form when the line does not hold it letter for letter (accents dropped, spacing changed).
    """
    folded = _folded(line_text)
    at = folded.find(text) if text and folded is not None else -1
    return line_text[at:at + len(text)] if at >= 0 else text


@functools.lru_cache(maxsize=4096)
def _folded(line_text: str) -> str | None:
    """``line_text`` upper-cased with accents dropped, character for character (Česká -> CESKA).

    None when some character does not fold to exactly one.
    """
    per_char = [normalize_text(ch) for ch in line_text]
    return None if any(len(ch) != 1 for ch in per_char) else "".join(per_char)


def _field(c: _Cand, lines: Sequence[Line], sha256: Mapping[str, str]) -> RecordField:
    marked = _as_read(c.text, lines[c.line].text) if c.text else c.text
    return RecordField(value=c.value, text_as_marked=marked, confidence=round(max(0.0, min(1.0, c.conf)), 4),
                       alternatives=c.alternatives, evidence=_evidence(lines[c.line], sha256, c.method),
                       flags=c.flags)


_FUZZY_STOP = frozenset({"MADE", "IN", "CAL", "CALIBRE", "CALIBER", "MODEL", "MOD", "SN", "S/N", "NO", "SER",
                         "SERIAL", "PAT", "PATENT", "PATENTED", "PROOF", "PROOFED", "TYPE", "BY"})

LONGER_MARK_RATIO = 0.15
"""Largest normalised distance at which a window holding a long exact mark and more tokens is read as a longer mark."""
_NUMBERED_MARK = re.compile(r"^([A-Z]{2,5})(\d{1,4})$")
"""A proof mark glued to its number (``PTB312``); taken only for marks the registry lists as ``numbered``."""
_APPROVAL_NUMBER = re.compile(r"^\d{1,4}$")
"""The number after a numbered proof mark (``PTB 312``)."""
FUZZY_RATIO = 0.25
"""Approximate matches of marks and country names: glyph-weighted edits per character of the reference
(:func:`marktrace.inference.registry.allowed_edits`: none up to three characters, one for four)."""
FUZZY_RATIO_MADE_IN = 0.4
"""Country names right after ``MADE IN`` (or its misreading): the context allows more edits, and one on
three-letter names."""
FUZZY_RATIO_COUNTRY = 0.25
"""Country names with no ``MADE IN`` context (one edit at most; only when no country name was read exactly)."""
FUZZY_TIE = 0.5
"""Two references of different makers/countries within this distance of each other are ambiguous."""
IMPORT_PREFIX_FACTOR = 0.15
"""Weight of a maker named after an import prefix (``IMPORTED BY X``): it names the importer."""
US_ADDRESS_FACTOR = 0.25
"""Weight of a non-U.S. maker followed by a U.S. city and State: the address of its importer."""
US_ADDRESS_US_MAKER_FACTOR = 0.4
"""Weight of a U.S. maker followed by a U.S. address: its own seat, or an import mark of it as importer."""

_GENERIC_WORDS = frozenset({"ARMS", "ARM", "CO", "COMPANY", "INC", "MFG", "CORP", "CORPORATION", "LTD", "LLC", "GMBH",
                            "AG", "SA", "SPA", "AS", "FIREARMS", "ARMORY", "INDUSTRIES", "IND", "INTL",
                            "INTERNATIONAL", "DEFENSE", "DEFENCE", "WORKS", "FACTORY", "PLANT", "USA"})
"""Company-form and trade words: a window made of these alone is not fuzzy-matched to a maker."""
_PLACES_NOT_US = frozenset({("GARDONE", "VT"), ("TROMPIA", "VT"), ("LUMEZZANE", "VT"), ("SAREZZO", "VT")})
"""Places whose abbreviation reads like a U.S. State: GARDONE V.T. is Gardone Val Trompia (Beretta's seat)."""
_TRADE_WORDS = _GENERIC_WORDS | {"PRECISION", "TECHNOLOGIES", "TECHNOLOGY", "TACTICAL", "MANUFACTURING",
                                 "INDUSTRIAL", "WEAPONS", "WEAPON", "GUNS", "GUN", "RIFLES", "RIFLE", "GUNWORKS"}
"""Words many makers share: an approximate maker match must also match the words that are not these."""
_DISTINCT_RATIO = 0.34
"""Most glyph-weighted edits per character between a window's and a mark's own words (not trade words)."""
_GLUED_MADE = ("MADEIN", "MADE")
"""Endings split off a token that starts with a registry mark (``POFMADE`` -> ``POF`` ``MADE``)."""
_MADE_IN_PHRASES: tuple[str, ...] = ("MADEIN", "HECHOEN", "FABRIQUEEN", "FABBRICATOIN", "FEITONO", "FABRICADOEN")
_IMPORT_PHRASES: tuple[str, ...] = ("IMPORTEDBY", "IMPORTED", "IMPORTER", "IMPBY", "IMPORTADOPOR", "IMPORTEPAR")
_IMPORT_WORDS = frozenset({"IMP", "IMPD", "IMPT", "IMPORT"})
_NOT_STATES = frozenset({"IN", "DE", "OR"})
"""U.S. State codes that are common words on markings (``MADE IN``, ``FABRICA DE``): never an address."""


@functools.cache
def _phrase_index(phrases: tuple[str, ...]) -> FuzzyIndex[str]:
    return FuzzyIndex(((p, p) for p in phrases), min_len=4)


def _phrase_match(key: str, phrases: tuple[str, ...], ratio: float = FUZZY_RATIO) -> tuple[str, float] | None:
    """The phrase (compact form) nearest to ``key`` within the allowed edits, with its distance."""
    if len(key) < 4:
        return None
    hits = _phrase_index(phrases).search(key, ratio)
    return (hits[0].payloads[0], hits[0].distance) if hits else None


def _explained(hit: FuzzyHit[Any]) -> float:
    """How much of the marking an approximate match explains.

    The reference's length less the edits, times its similarity: of two overlapping readings the longer
    wins unless it is much farther.
    """
    return (len(hit.key) - hit.distance) * (1 - hit.normalized)


_ONLY_WHEN = "used as manufacturer only when no other maker is read"
_IMPORT_NOTES = {
    "import_prefix": f"named after an import prefix: the importer, {_ONLY_WHEN}",
    "us_address": f"followed by a U.S. address: an importer's (or the maker's own seat); {_ONLY_WHEN}",
    "registry_city": "followed by a city the registry lists for it (an importer's address, its State misread or "
                     f"missing); {_ONLY_WHEN}",
}
"""Why a maker's mark reads as an importer's, by :meth:`_Parser._import_factor`'s reason."""


def _import_flag(reason: str) -> dict[str, Any]:
    note = _IMPORT_NOTES[reason]
    return {"kind": "import_context", "reason": reason, "note": note}


def _partial_mark(key: str, mark: str) -> bool:
    """Whether ``key`` reads as ``mark`` with whole words left out (``HERSTAL`` of ``FN HERSTAL``).

    Such a reading is another string, not a misread one: a mark the registry does not list on its own
    (often a town, shared by several makers) must not be matched approximately.
    """
    toks = tokenize(mark)
    if len(toks) < 2:
        return False
    sk = skeleton(key)
    for a in range(len(toks)):
        for b in range(a + 1, len(toks) + 1):
            if (a, b) != (0, len(toks)) and skeleton(compact(toks[:a] + toks[b:])) == sk:
                return True
            if (a, b) != (0, len(toks)) and skeleton(compact(toks[a:b])) == sk:
                return True
    return False


def _letters_ok(tokens: Sequence[str], min_letters: int = 4, min_share: float = 0.75) -> bool:
    """Enough letters for an approximate name match (not a serial, calibre or code)."""
    text = "".join(tokens)
    letters = sum(1 for ch in text if ch.isalpha())
    return letters >= min_letters and letters >= min_share * len(text.replace("&", ""))


def _fuzzy_flag(key: str, hit: FuzzyHit[Any], to: str, **extra: Any) -> dict[str, Any]:
    """The record of an approximate match: what was read, what it was taken for, and how far apart."""
    return {"kind": "fuzzy", "edit_distance": hit.edits, "weighted_distance": round(hit.distance, 2),
            "normalized_distance": round(hit.normalized, 3), "from": key, "to": to, **extra}


def _clip01(x: float) -> float:
    return max(0.0, min(1.0, float(x)))


# ---------------------------------------------------------------------------------------- calibre
def _digitize_numeric_tokens(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Map letters confusable with digits inside number-like tokens (calibre grammar: digits)."""
    flags: list[dict[str, Any]] = []

    def fix(m: re.Match[str]) -> str:
        tok = m.group(0)
        if not _HAS_DIGIT.search(tok):
            return tok
        out = []
        for i, ch in enumerate(tok):
            nxt_digit = i + 1 < len(tok) and (tok[i + 1].isdigit() or tok[i + 1] == ".")
            prv_digit = i > 0 and (tok[i - 1].isdigit() or tok[i - 1] == ".")
            if ch in CONFUSABLE_LETTER_TO_DIGIT and ch not in "X" and (nxt_digit or prv_digit) and not (
                tok[i:].startswith("MM") or tok[max(0, i - 1):].startswith("MM")
            ):
                out.append(CONFUSABLE_LETTER_TO_DIGIT[ch])
                flags.append({"kind": "confusable", "field_grammar": "calibre digits", "from": ch,
                              "to": CONFUSABLE_LETTER_TO_DIGIT[ch], "token": tok})
            else:
                out.append(ch)
        return "".join(out)

    return re.sub(r"[.\w]+", fix, text), flags


CALIBRE_NAME_REACH = 2
"""A maker's mark within this many tokens after a calibre word (:data:`_CAL_PREFIX`) names the cartridge
(``CAL .4D S&W``)."""
_CALIBRE_NAME_WORDS = frozenset({
    "ACP", "AUTO", "BMG", "BLK", "BLACKOUT", "BORE", "BRIT", "BRITISH", "CARBINE", "COLT", "GAP", "GAUGE", "GOVT",
    "HORNET", "KURZ", "LAPUA", "LONG", "LUGER", "MAG", "MAGNUM", "MAKAROV", "MAUSER", "NAGANT", "NATO", "PARA",
    "PARABELLUM", "REM", "REMINGTON", "SAV", "SAVAGE", "SHORT", "SIG", "SPECIAL", "SPL", "SPRG", "SPRINGFIELD",
    "STEYR", "SUPER", "S&W", "TOKAREV", "WBY", "WEATHERBY", "WIN", "WINCHESTER", "WMR",
})
"""Words of the cartridge names :data:`_CALIBRES` knows (the letters after a calibre's number)."""


def _letter_calibre_words(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Map digits confusable with letters inside a cartridge's name word (calibre grammar: ``.45 C0LT``).

    Only a token that holds a digit and, with its confusable digits read as letters, becomes one of the
    words of a cartridge name (:data:`_CALIBRE_NAME_WORDS`) right after a number is changed; a serial's
    letters and digits are left as read.
    """
    flags: list[dict[str, Any]] = []

    def fix(m: re.Match[str]) -> str:
        number, space, tok = m.group(1), m.group(2), m.group(3)
        lettered = "".join(CONFUSABLE_DIGIT_TO_LETTER.get(ch, ch) for ch in tok)
        if lettered == tok or lettered not in _CALIBRE_NAME_WORDS:
            return m.group(0)
        for a, b in zip(tok, lettered, strict=True):
            if a != b:
                flags.append({"kind": "confusable", "field_grammar": "calibre name letters", "from": a, "to": b,
                              "token": tok})
        return number + space + lettered

    fixed = re.sub(r"(\d[\d.]*)(\s*)([A-Z0-9&]*\d[A-Z0-9&]*)(?![\w&])", fix, text)
    return fixed, flags


def _find_calibres(text: str) -> list[tuple[int, int, str, float]]:
    found: list[tuple[int, int, str, float]] = []
    taken = [False] * (len(text) + 1)
    for rx, value, conf in _CALIBRES:
        for m in rx.finditer(text):
            s, e = m.start(), m.end()
            if any(taken[s:e]):
                continue
            pre = _CAL_PREFIX.search(text[:s])
            if pre:
                s = pre.start()
            v = value.format(*(g for g in m.groups() if g)) if "{0}" in value else value
            found.append((s, e, v, conf))
            for i in range(s, e):
                taken[i] = True
    return found


def _covers_more(hits: Sequence[tuple[int, int, str, float]], than: Sequence[tuple[int, int, str, float]]) -> bool:
    """Whether calibre matches ``hits`` span more characters of the line than ``than`` do."""
    return sum(e - s for s, e, _, _ in hits) > sum(e - s for s, e, _, _ in than)


def _prep(text: str) -> str:
    t = normalize_text(text).replace("×", "X")
    return re.sub(r"(?<=\d),(?=\d)", ".", t)


@functools.cache
def _is_trade_word(token: str) -> bool:
    """A trade word, or one read with a glyph off (``ARNS``, ``INDUSTRIFS``; ``AC`` for ``AG``: a confusable one)."""
    if token in _TRADE_WORDS:
        return True
    key = skeleton(token)
    if len(token) in (2, 3):  # a short company form only with one confusable glyph (C/G), never any other edit
        return any(len(w) == len(token) and glyph_distance(key, skeleton(w)) <= 0.5 for w in _TRADE_WORDS)
    return len(token) >= 4 and any(abs(len(w) - len(token)) <= 1 and glyph_distance(key, skeleton(w)) <= 1
                                   for w in _TRADE_WORDS if len(w) >= 4)


def _own_words_match(window: Sequence[str], mark: str) -> bool:
    """Whether a window's own words (not trade words like ARMS) are near a mark's own words.

    ``STAG ARMS`` is near ``SIG ARMS`` as a whole, but STAG is not SIG; ``DAVIS INDUSTRIES`` is not
    ``COLT INDUSTRIES``. A window or mark of trade words alone is judged as a whole (by the caller).
    """
    own = skeleton(compact([t for t in window if not _is_trade_word(t)]))
    theirs = skeleton(compact([t for t in tokenize(mark) if not _is_trade_word(t)]))
    if not own or not theirs:
        return True
    return glyph_distance(own, theirs) <= _DISTINCT_RATIO * max(len(own), len(theirs))


def _year_misread(token: str, now: int) -> int | None:
    """The year a four-character token reads as with one confusable letter made a digit (``I987`` -> 1987)."""
    if len(token) != 4 or token.isdigit():
        return None
    letters = [ch for ch in token if not ch.isdigit()]
    if len(letters) != 1 or letters[0] not in CONFUSABLE_LETTER_TO_DIGIT or letters[0] in "XZS":
        return None
    digits = "".join(CONFUSABLE_LETTER_TO_DIGIT.get(ch, ch) for ch in token)
    return int(digits) if digits.isdigit() and 1870 <= int(digits) <= now else None


def _us_state_named(tokens: Sequence[str], s: int, n: int, code: str, made_in: bool) -> bool:
    """Whether the country name on ``tokens[s:s+n]`` is the U.S. State of that name.

    ``NEW MEXICO`` is the State; ``GEORGIA`` after a place name (``SMYRNA GEORGIA``, ``ATLANTA GEORGIA U.S.A.``)
    or before ``USA`` is the State too, unless the line says ``MADE IN GEORGIA``.
    """
    if made_in:
        return False
    if code == "MX" and s >= 1 and tokens[s - 1] == "NEW":
        return True
    if code == "GE":
        after = "".join(tokens[s + n:s + n + 3]).replace(".", "")
        place_before = s >= 1 and tokens[s - 1] not in ("OF", "REPUBLIC", "IN", "FROM")
        return place_before or after.startswith(("USA", "US"))
    return False


# ------------------------------------------------------------------------------------------ parse
class _Parser:
    def __init__(self, lines: Sequence[Line], registry: Registry, sha256: Mapping[str, str]) -> None:
        self.lines = lines
        self.reg = registry.index
        self.sha = sha256
        self.states: list[_LineState] = []
        self.makers: list[_Cand] = []
        self.countries: list[_Cand] = []
        self.calibres: list[_Cand] = []
        self.serials: list[_Cand] = []
        self.years: list[_Cand] = []
        self.pending_years: list[_Cand] = []
        self.prefixed_years: list[tuple[_Cand, int, int]] = []
        """Years read after a short letter token ('HY 1915'): (year candidate, letter token, year token)."""
        self.types: list[_Cand] = []
        self.imports: list[dict[str, _Cand | None]] = []
        self.proofs: list[_Cand] = []
        self.models: list[_Cand] = []
        self._fuzzy_cache: dict[str, list[FuzzyHit[MakerMatch]]] = {}

    # -------------------------------------------------------------- per line
    def run(self) -> dict[str, Any]:
        for i, line in enumerate(self.lines):
            self._line(i, line)
        return self._assemble()

    def _line(self, i: int, line: Line) -> None:
        conf = _clip01(line.confidence)
        norm = _prep(_NO_LABEL_MISREAD.sub("No", line.text, count=1))
        work = norm.strip()
        if not work:
            self.states.append(_LineState(line, norm, [], [], conf))
            return
        # ISACS 05.30 manufacture template: CC MFR YY TT SERIAL [CAL]
        m = _ISACS.match(re.sub(r"\s+", " ", work))
        if m and self.reg.country(m.group(1)):
            self._isacs(i, m, conf)
            self.states.append(_LineState(line, norm, [], [], conf))
            return
        m = _IMPORT_ITI.match(re.sub(r"\s+", " ", work))
        if m and any(m.group(2) in self.reg.models_of(h.maker.id) for h in self.reg.lookup_mark(m.group(1))):
            m = None  # 'CZ 85' is a maker code and a model of that maker, not an import mark
        if m and m.group(1) + m.group(2) in self.reg.model_keys:
            m = None  # 'PT 92' (Taurus), 'SA 80': a model name, not a country code and a year
        if m and len(m.group(2)) == 4 and not 1900 <= int(m.group(2)) <= datetime.now(UTC).year:
            m = None  # 'NO 1402', 'HU 0453': a label or letter prefix and a serial, not a country and a year
        if m and self.reg.country(m.group(1)):
            year, alts = self._two_digit_year(m.group(2))
            self.imports.append({
                "importer": None, "city": None,
                "country": _Cand(m.group(1), conf * 0.8, i, m.group(1), "iti_8b_import_mark"),
                "year": _Cand(year, conf * 0.6, i, m.group(2), "iti_8b_import_mark", alternatives=alts),
            })
            self.states.append(_LineState(line, norm, [], [], conf))
            return
        m = _BG_MAKAROV.match(re.sub(r"\s+", " ", work))
        if m:
            serial = m.group(1) + m.group(2) + m.group(3)
            self.serials.append(_Cand(serial, conf * 0.9, i, m.group(0), "pattern_bg_makarov",
                                      extra={"score": 0.9}))
            self.pending_years.append(_Cand(1960 + int(m.group(2)), min(0.4, conf * 0.4), i, m.group(2),
                                            "year_code_bg_makarov", extra={"scheme": "bg-makarov"},
                                            flags=[{"kind": "year_code", "scheme": "bg-makarov", "source":
                                                    "makarov.ch (single source)", "code": m.group(2)}]))
            self.states.append(_LineState(line, norm, [], [], conf))
            return
        # explicit serials (prefix words, FFL prefix) are cut out before tokenising
        for fm in _FFL_SERIAL.finditer(work):
            self.serials.append(_Cand(fm.group(0), conf, i, fm.group(0), "ffl_prefix_serial",
                                      flags=[{"kind": "ffl_prefix", "ffl_prefix": fm.group(1)}],
                                      extra={"score": 1.2, "start": fm.start()}))
            work = work[: fm.start()] + " " * len(fm.group(0)) + work[fm.end():]
        # calibres
        cal_hits = _find_calibres(work)
        flags: list[dict[str, Any]] = []
        if _HAS_DIGIT.search(work):
            # a cartridge's name read with a digit for a letter (.45 C0LT) is a calibre, not a plainer one (.45)
            lettered, letter_flags = _letter_calibre_words(work)
            if letter_flags and (hits := _find_calibres(lettered)) and _covers_more(hits, cal_hits):
                cal_hits, flags = hits, letter_flags
        if not cal_hits and _HAS_DIGIT.search(work):
            fixed, flags = _digitize_numeric_tokens(work)
            if flags:
                cal_hits = _find_calibres(fixed)
                if not cal_hits:
                    flags = []
        for s, e, v, c in cal_hits:
            self.calibres.append(_Cand(v, conf * c, i, work[s:e].strip(), "calibre_pattern", flags=list(flags)))
            if _GAUGE_RE.search(v):
                self.types.append(_Cand("shotgun", conf * 0.6, i, work[s:e].strip(), "derived_from_calibre"))
        for s, e, _, _ in sorted(cal_hits, reverse=True):
            work = work[:s] + " " * (e - s) + work[e:]
        # explicit serial prefix: S/N, NO., SER. ...
        for pm in _SERIAL_PREFIX.finditer(work):
            rest = work[pm.end():]
            sm = re.match(r"[A-Z0-9А-ЯЁ][A-Z0-9А-ЯЁ-]{1,}(?:\s[0-9]{2,}){0,2}", rest)
            if not sm or not _HAS_DIGIT.search(sm.group(0)) and sum(ch in CONFUSABLE_LETTER_TO_DIGIT
                                                                    for ch in sm.group(0)) < 3:
                continue
            if pm.group(0).strip() == "N" and not re.match(r"\s*[.:#°]", work[pm.start() + 1: pm.end()] + " "):
                continue  # a lone N is too weak a prefix without punctuation
            raw = sm.group(0)
            start = pm.end() + sm.start()
            # a label's reading with no digit at all ('SN ITZERI') is kept only where no other line gives a serial
            score = 1.3 if _HAS_DIGIT.search(raw) else NO_DIGIT_PREFIX_SCORE
            self.serials.append(_Cand(raw, conf, i, work[pm.start(): start + len(raw)].strip(),
                                      "serial_prefix", extra={"score": score, "start": start, "raw": raw}))
            work = work[: pm.start()] + " " * (start + len(raw) - pm.start()) + work[start + len(raw):]
        tokens = self._split_glued(tokenize(work))
        st = _LineState(line, norm, tokens, [None] * len(tokens), conf)
        self.states.append(st)
        self._import_context(st)
        self._importers(i, st)
        self._maker_tokens(i, st)
        self._country_tokens(i, st)
        self._fuzzy_importers(i, st)
        self._attach_import_country(i, st)
        self._misc_tokens(i, st)

    def _split_glued(self, tokens: list[str]) -> list[str]:
        """Split tokens glued from two words the parser knows.

        A mark (or ``MADE IN``) and a country name (``MADEINRUSSIA``), or a mark and ``MADE`` / ``MADEIN``
        (``IMIMADE IN ISRAEL``: the space after a short code lost on worn metal).
        """
        out: list[str] = []
        for tok in tokens:
            glued_made = next((tok[: -len(w)] for w in _GLUED_MADE if tok.endswith(w) and len(tok) > len(w)), None)
            if glued_made is not None and glued_made.isalpha() and self.reg.lookup_mark(glued_made):
                out += [glued_made, tok[len(glued_made):]]
                continue
            if len(tok) < 7 or not tok.isalpha() or self.reg.lookup_mark(tok) or self.reg.country_by_name(tok):
                out.append(tok)
                continue
            for cut in range(3, len(tok) - 3):
                left, right = tok[:cut], tok[cut:]
                if self.reg.country_by_name(right) and (
                    self.reg.lookup_mark(left) or _phrase_match(left, _MADE_IN_PHRASES) is not None
                ):
                    out += [left, right]
                    break
            else:
                out.append(tok)
        return out

    def _import_context(self, st: _LineState) -> None:
        """Find an import prefix (``IMPORTED BY``, ``IMP``, misread ones too) and a closing U.S. address."""
        toks = st.tokens
        for p in range(min(2, len(toks))):
            if p == 1 and len(toks[0]) > 2:
                break  # only a stray mark may come before the prefix
            end = 0
            if toks[p] in _IMPORT_WORDS:
                end = p + 1
            else:
                for m in (2, 1):
                    if p + m <= len(toks) and _letters_ok(toks[p:p + m], 4, 1.0) and _phrase_match(
                            compact(toks[p:p + m]), _IMPORT_PHRASES) is not None:
                        end = p + m
                        break
            if end:
                if end < len(toks) and skeleton(toks[end]) == "BY":
                    end += 1
                st.imp_prefix = end
                for k in range(end):
                    st.used[k] = "import_prefix"
                break
        # the address may be followed by a year and the country of origin
        j = len(toks) - 1
        while j >= 0:
            if toks[j].isdigit():
                j -= 1
                continue
            named = next(((m, hit[0]) for m in (2, 1) if j - m + 1 >= 0 and (
                hit := self.reg.country_by_name(compact(toks[j - m + 1:j + 1]))) is not None), None)
            if named is None:
                break
            st.addr_countries.add(named[1])
            j -= named[0]
        if j >= 1 and toks[j] in US_STATES and toks[j] not in _NOT_STATES and toks[j - 1] not in _GENERIC_WORDS and (
                toks[j - 1], toks[j]) not in _PLACES_NOT_US:
            st.state_at = j  # a State after a place name ('MFG CO' is a company, not Colorado)
            if j >= 2:
                st.addr = j  # ... after a name and a city: an address

    def _import_factor(self, st: _LineState, start: int, end: int, maker: MakerEntry) -> tuple[float, str | None]:
        """How much a maker matched on tokens ``start:end`` names an importer rather than the manufacturer.

        After an import prefix it names the importer; followed by a U.S. city and State (no other name in
        between, or the address inside the mark) it is the importer's address, or a U.S. maker's own seat,
        unless the maker's own country is named after the address.
        """
        if st.imp_prefix and start >= st.imp_prefix:
            return IMPORT_PREFIX_FACTOR, "import_prefix"
        if maker.country in st.addr_countries:
            return 1.0, None  # '... GARDONE V.T. ITALY': the maker's own address and country
        if st.addr is not None and start < st.addr and not any(
                u in ("maker", "importer") for u in st.used[end:st.addr]):
            if maker.country == "US":
                return US_ADDRESS_US_MAKER_FACTOR, "us_address"
            return US_ADDRESS_FACTOR, "us_address"
        if self._registry_city_follows(st, end, maker):
            return (US_ADDRESS_US_MAKER_FACTOR if maker.country == "US" else US_ADDRESS_FACTOR), "registry_city"
        return 1.0, None

    def _registry_city_follows(self, st: _LineState, end: int, maker: MakerEntry) -> bool:
        """Whether one of the registry's import cities of ``maker`` follows its mark (one or two tokens on).

        An import mark is the importer's name, city and State; the State is two letters and often misread
        (``EXETER MH``), so a city the registry lists for that name, read exactly or within one edit for a
        name of six letters or more, is the address without it. A manufacturer's own seat (``MOSSBERG NORTH
        HAVEN``) is where it made the weapon, not an import address, so it does not count.
        """
        seat = compact(maker.city.split()) if maker.city and maker.kind == "manufacturer" else None
        cities = {key: name for key, name in self.reg.cities_of(maker.id).items() if key != seat}
        if not cities:
            return False
        for m in (1, 2):
            if end + m > len(st.tokens) or any(st.used[end:end + m]):
                break
            key = compact(st.tokens[end:end + m])
            if key in cities or (len(key) >= 6 and any(
                    len(city) >= 6 and glyph_distance(key, city, band=2) <= 1.0 for city in cities)):
                return True
        return False

    def _two_digit_year(self, yy: str) -> tuple[int, list[Alternative]]:
        if len(yy) == 4:
            return int(yy), []
        now = datetime.now(UTC).year
        y = 2000 + int(yy)
        other = 1900 + int(yy)
        if y > now:
            y, other = other, y
        return y, [Alternative(value=str(other), confidence=0.3)]

    def _isacs(self, i: int, m: re.Match[str], conf: float) -> None:
        cc, mfr, yy, tt, serial, cal = m.groups()
        text = m.group(0)
        self.countries.append(_Cand(cc, conf * 0.9, i, cc, "isacs_template", extra={"prio": 2}))
        hits = self.reg.lookup_mark(mfr) or self.reg.lookup_skeleton(mfr)
        for h in hits:
            self.makers.append(_Cand(h.maker.id, conf * 0.9 / len(hits), i, mfr, "isacs_template",
                                     extra={"match": h}))
        year, alts = self._two_digit_year(yy)
        self.years.append(_Cand(year, conf * 0.5, i, yy, "isacs_template_2digit_year", alternatives=alts,
                                flags=[{"kind": "year_code", "scheme": "isacs-05.30-2digit",
                                        "note": "century ambiguous"}]))
        self.serials.append(_Cand(serial, conf, i, serial, "isacs_template", extra={"score": 1.2}))
        self.models.append(_Cand(tt, conf * 0.4, i, tt, "isacs_template_type_code",
                                 flags=[{"kind": "code", "note": "ISACS type/model code, not decoded"}]))
        if cal:
            self.calibres.append(_Cand(cal, conf * 0.3, i, cal, "isacs_template_calibre_code",
                                       flags=[{"kind": "code", "note": "ISACS calibre code, not decoded"}]))
        _ = text

    # -------------------------------------------------------------- makers & importers
    def _ngram_matches(self, st: _LineState, importer: bool) -> list[tuple[int, int, list[MakerMatch], str]]:
        """Longest-first exact/skeleton matches of marks over unused tokens."""
        out: list[tuple[int, int, list[MakerMatch], str]] = []
        toks = st.tokens
        n_max = self.reg.max_mark_tokens
        i = 0
        while i < len(toks):
            found = False
            for n in range(min(n_max, len(toks) - i), 0, -1):
                if any(st.used[i:i + n]):
                    continue
                key = compact(toks[i:i + n])
                if not key or (n == 1 and self._in_of_made_in(toks, i)):
                    continue
                method = "registry_exact"
                hits = [h for h in self.reg.lookup_mark(key) if (h.maker.kind == "importer") == importer]
                if not hits and len(key) >= 3 and _LETTER.search(key):
                    hits = [h for h in self.reg.lookup_skeleton(key) if (h.maker.kind == "importer") == importer
                            and len(compact(tokenize(h.mark))) == len(key)]
                    method = "registry_confusable"
                if hits:
                    out.append((i, n, hits, method))
                    for k in range(i, i + n):
                        st.used[k] = "importer" if importer else "maker"
                    i += n
                    found = True
                    break
            if not found:
                i += 1
        return out

    def _in_of_made_in(self, toks: Sequence[str], i: int) -> bool:
        """Whether token ``i`` is the ``IN`` of ``MADE IN <country>`` read wrong (``MADE FN BRAZIL``).

        Two characters right after ``MADE`` and before a country name (exact, or within the edits ``MADE IN``
        allows) are that word, never a maker's code: ``FN`` there is not FN Herstal.
        """
        if not (0 < i < len(toks) - 1 and len(toks[i]) == 2 and toks[i - 1] == "MADE"):
            return False
        if glyph_distance(toks[i], "IN") > 1.0:
            return False
        for m in (2, 1):
            key = compact(toks[i + 1:i + 1 + m])
            if i + 1 + m <= len(toks) and (self.reg.country_by_name(key) is not None or (
                    len(key) >= 4 and self.reg.country_fuzzy.search(key, FUZZY_RATIO_MADE_IN, 1))):
                return True
        return False

    def _confusable_flags(self, marked: str, mark: str) -> list[dict[str, Any]]:
        a, b = compact(tokenize(marked)), compact(tokenize(mark))
        if len(a) != len(b):
            return [{"kind": "fuzzy", "from": a, "to": b}]
        return [{"kind": "confusable", "field_grammar": "maker name letters", "position": k, "from": x, "to": y}
                for k, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]

    def _importers(self, i: int, st: _LineState) -> None:
        for start, n, hits, method in self._ngram_matches(st, importer=True):
            marked = " ".join(st.tokens[start:start + n])
            conf = st.conf * (0.95 if method == "registry_exact" else 0.8) / len(hits)
            flags = self._confusable_flags(marked, hits[0].mark) if method != "registry_exact" else []
            self._add_import(i, st, start, n, hits, method, conf, flags)

    def _add_import(self, i: int, st: _LineState, start: int, n: int, hits: Sequence[MakerMatch], method: str,
                    conf: float, flags: list[dict[str, Any]]) -> None:
        """An import mark naming ``hits[0]``'s maker as importer, with the city and State after it."""
        marked = " ".join(st.tokens[start:start + n])
        maker = hits[0].maker
        for k in range(start, start + n):
            st.used[k] = "importer"
        imp = _Cand(maker.name, conf, i, marked, method, flags=flags, extra={"maker": maker},
                    alternatives=[Alternative(value=h.maker.name, confidence=round(conf, 4)) for h in hits[1:]])
        # city (as marked) inside or after the importer mark, then a U.S. State code
        city: _Cand | None = None
        cities = self.reg.cities_of(maker.id)
        inner = hits[0].mark
        inner_toks = tokenize(inner)
        for a in range(len(inner_toks)):
            for b in range(min(len(inner_toks), a + 3), a, -1):
                key = compact(inner_toks[a:b])
                if a > 0 and key in cities and city is None:
                    city = _Cand(" ".join(inner_toks[a:b]), st.conf * 0.9, i, " ".join(inner_toks[a:b]),
                                 "registry_exact")
        state_in_mark = next((t for t in inner_toks[1:] if t in US_STATES), None)
        j = start + n
        for m in range(min(3, len(st.tokens) - j), 0, -1):
            key = compact(st.tokens[j:j + m])
            if city is None and key in cities and not any(st.used[j:j + m]):
                city = _Cand(" ".join(st.tokens[j:j + m]), st.conf * 0.9, i, " ".join(st.tokens[j:j + m]),
                             "registry_exact")
                for k in range(j, j + m):
                    st.used[k] = "importer_city"
                j += m
                break
        if city is None:
            # a town the registry does not list for this importer, before a U.S. State: the city as marked
            k = j
            while k < len(st.tokens) and not st.used[k] and st.tokens[k] in _GENERIC_WORDS:
                k += 1  # 'CENTURY INTL ARMS INC. WILLISTON VT'
            end = k
            while (end < len(st.tokens) and end - k < 3 and not st.used[end] and st.tokens[end] not in US_STATES
                   and any(ch.isalpha() for ch in st.tokens[end])):
                end += 1
            if k < end < len(st.tokens) and st.tokens[end] in US_STATES and not st.used[end]:
                marked_city = " ".join(st.tokens[k:end])
                city = _Cand(marked_city, st.conf * 0.7, i, marked_city, "as_marked",
                             flags=[{"kind": "city_not_in_registry",
                                     "note": "read on the mark; the registry lists other seats for this importer"}])
                for q in range(j, end):
                    st.used[q] = "importer_city"
                j = end
        state = state_in_mark
        if j < len(st.tokens) and st.tokens[j] in US_STATES and not st.used[j]:
            state = st.tokens[j]
            st.used[j] = "importer_state"
        if city is None and maker.city:
            city = _Cand(maker.city, conf * 0.5, i, "", "registry_fallback",
                         flags=[{"kind": "registry_fallback", "note": "the importer's seat in the registry; not "
                                 "read on the item"}])
        if city is not None:
            city.extra["state"] = state or maker.state
        country = _Cand(maker.country, conf * 0.9, i, state or marked,
                        "derived_from_us_state" if state and maker.country == "US" else "registry_fallback")
        self.imports.append({"importer": imp, "city": city, "country": country, "year": None})

    def _fuzzy_importers(self, i: int, st: _LineState, free: tuple[str | None, ...] = (None,)) -> bool:
        """On an import mark that named no importer exactly: the nearest importer's mark, if any.

        ``free``: the token labels that may be read again (a maker's name read on the mark, when it lost).
        """
        if not (st.imp_prefix or st.addr is not None) or any(
                u == "importer" or (u == "maker" and "maker" not in free) for u in st.used):
            return False
        end = st.addr if st.addr is not None else len(st.tokens)
        best: tuple[float, int, int, FuzzyHit[MakerMatch], str] | None = None
        for n in (4, 3, 2, 1):
            for s in range(st.imp_prefix, end - n + 1):
                toks = st.tokens[s:s + n]
                if any(u not in free for u in st.used[s:s + n]) or not _letters_ok(toks) or all(
                        t in _GENERIC_WORDS for t in toks):
                    continue
                key = compact(toks)
                for hit in self._search_makers(key):
                    if any(h.maker.kind == "importer" and not _partial_mark(key, h.mark) for h in hit.payloads):
                        quality = _explained(hit)
                        if best is None or quality > best[0]:
                            best = (quality, s, n, hit, key)
                        break
        if best is None:
            return False
        _, s, n, hit, key = best
        hits = [h for h in hit.payloads if h.maker.kind == "importer" and not _partial_mark(key, h.mark)]
        conf = st.conf * 0.9 * (1 - 1.2 * hit.normalized) / len(hits)
        self._add_import(i, st, s, n, hits, "registry_fuzzy", conf, [_fuzzy_flag(key, hit, compact(tokenize(
            hits[0].mark)))])
        return True

    def _search_makers(self, key: str) -> list[FuzzyHit[MakerMatch]]:
        got = self._fuzzy_cache.get(key)
        if got is None:
            got = self._fuzzy_cache[key] = self.reg.maker_fuzzy.search(key, FUZZY_RATIO)
        return got

    def _maker_tokens(self, i: int, st: _LineState) -> None:
        for start, n, hits, method in self._ngram_matches(st, importer=False):
            if any(_CAL_PREFIX.fullmatch(t) for t in st.tokens[max(0, start - CALIBRE_NAME_REACH):start]):
                continue  # CAL .4D S&W: a cartridge's name (a misread calibre), not who made the gun
            marked = " ".join(st.tokens[start:start + n])
            base = 0.95 if method == "registry_exact" else 0.82
            key_len = len(compact(st.tokens[start:start + n]))
            if key_len <= 2:
                base -= 0.1  # two-letter codes are weaker evidence
            for h in hits:
                flags = self._confusable_flags(marked, h.mark) if method != "registry_exact" else []
                factor, reason = self._import_factor(st, start, start + n, h.maker)
                if reason:
                    flags = [*flags, _import_flag(reason)]
                self.makers.append(_Cand(h.maker.id, st.conf * base * factor / len(hits), i, marked, method,
                                         flags=flags, extra={"match": h, "ntokens": n, "span": (start, n),
                                                             "import_ctx": reason}))

    def _fuzzy_makers(self, supersede_only: bool = False) -> None:
        """Approximate matches of marks on tokens no other field claimed (when no long mark matched exactly).

        Windows of one to four tokens are compared with the registry's marks by glyph-weighted edit distance
        on the confusable skeleton (:class:`~marktrace.inference.registry.FuzzyIndex`); per line, the best
        windows that do not overlap are kept. Confidence falls with the distance; two makers about as near
        make it ambiguous (lower confidence, the other listed as alternative). A window may cover a short
        exact match (``SIG`` in ``SIG SAVER``): the longer mark then supersedes it. Lines after an import
        prefix name importers and are skipped. With ``supersede_only`` (a long mark was read exactly) only windows
        that hold a long exact mark and more tokens are tried, and only a mark longer than it, within
        :data:`LONGER_MARK_RATIO`, is taken (``SIG ARMS AC``: ``SIG ARMS AG``, not ``SIGARMS``).
        """
        for i, st in enumerate(self.states):
            toks = st.tokens
            found: list[tuple[float, int, int, str, FuzzyHit[MakerMatch], list[MakerMatch]]] = []
            for n in (4, 3, 2, 1):
                for s in range(st.imp_prefix, len(toks) - n + 1):
                    used = st.used[s:s + n]
                    covered = [c for c in self.makers if c.line == i and "span" in c.extra
                               and s <= c.extra["span"][0] < s + n]
                    short_spans = [c for c in covered if len(compact(c.text.split())) <= 4]
                    # a longer exact mark may be superseded too, by a window that adds free tokens to it and is
                    # near a longer mark (SIG ARMS AC: SIGARMS exact, SIG ARMS AG one glyph away)
                    long_marks = [len(compact(c.text.split())) for c in covered if len(compact(c.text.split())) > 4
                                  and c.extra["span"][0] + c.extra["span"][1] <= s + n and c.extra["span"][1] < n]
                    if supersede_only and not long_marks:
                        continue
                    if any(u is not None and u not in ("maker", "country") for u in used) or (
                            "maker" in used and not short_spans and not long_marks) or (
                            "country" in used and not self._plain_countries_within(i, s, s + n)):
                        continue
                    if all(u in ("maker", "country") for u in used):
                        continue
                    window = toks[s:s + n]
                    if not _letters_ok(window) or any(t in _FUZZY_STOP for t in window) or all(
                            t in _GENERIC_WORDS for t in window) or (
                            st.state_at is not None and s <= st.state_at <= s + n):
                        continue  # ... or the State of a U.S. address, or the town just before it (NEWINGTON NH)
                    key = compact(window)
                    if key in self.reg.model_keys:
                        continue  # an exact model name, not a misread maker
                    for hit in self._search_makers(key):
                        if long_marks and not short_spans and (
                                hit.normalized > LONGER_MARK_RATIO or len(hit.key) <= max(long_marks)):
                            continue  # only a near, longer mark supersedes a long exact one
                        makers = [h for h in hit.payloads if h.maker.kind == "manufacturer"
                                  and not _partial_mark(key, h.mark) and _own_words_match(window, h.mark)]
                        if makers:
                            quality = _explained(hit)
                            found.append((quality, s, n, key, hit, makers))
                            break
            taken: set[int] = set()
            for _quality, s, n, key, hit, makers in sorted(found, key=lambda f: -f[0]):
                if taken & set(range(s, s + n)):
                    continue
                taken |= set(range(s, s + n))
                self._add_fuzzy_maker(i, st, s, n, key, hit, makers)

    def _plain_countries_within(self, i: int, start: int, end: int) -> bool:
        """Whether the country names read on tokens ``start:end`` of line ``i`` lie inside it, unmarked.

        Plain names only (no ``MADE IN``): a maker's name may contain one (``ISRAEL WEAPON INDUSTRIES``).
        """
        cands = [c for c in self.countries if c.line == i and "span" in c.extra
                 and c.extra["span"][0] < end and start < c.extra["span"][1]]
        return bool(cands) and all(c.extra["prio"] <= 1 and c.method == "country_name"
                                   and start <= c.extra["span"][0] and c.extra["span"][1] <= end for c in cands)

    def _add_fuzzy_maker(self, i: int, st: _LineState, s: int, n: int, key: str, hit: FuzzyHit[MakerMatch],
                         makers: list[MakerMatch]) -> None:
        rivals: dict[str, float] = {}
        for other in self._search_makers(key):
            if other.distance > hit.distance + FUZZY_TIE:
                break
            for h in other.payloads:
                if h.maker.kind == "manufacturer" and h.maker.id not in {m.maker.id for m in makers}:
                    rivals.setdefault(h.maker.id, other.distance)
        tied = [mid for mid, d in rivals.items() if d <= hit.distance]
        conf = st.conf * 0.9 * max(0.1, 1 - 1.2 * hit.normalized) / len(makers)
        if tied:
            conf *= 0.5
        elif rivals:
            conf *= 0.8
        span_covers = [c for c in self.makers if c.line == i and "span" in c.extra
                       and s <= c.extra["span"][0] < s + n]
        for c in span_covers:
            # a near mark that explains the whole window outranks the exact mark inside it (SIG SAUER read as
            # RIG SAUER, not J. P. Sauer's SAUER), which stays an alternative
            c.conf *= 0.3
        text = " ".join(st.tokens[s:s + n])
        for h in makers:
            factor, reason = self._import_factor(st, s, s + n, h.maker)
            flag = _fuzzy_flag(key, hit, compact(tokenize(h.mark)), mark=h.mark,
                               **({"ambiguous_with": sorted(rivals)} if rivals else {}))
            flags = [flag] + ([_import_flag(reason)] if reason else [])
            alts = [Alternative(value=self.reg.maker(mid).name, confidence=round(conf * 0.8, 4)) for mid in rivals]
            self.makers.append(_Cand(h.maker.id, conf * factor, i, text, "registry_fuzzy", flags=flags,
                                     alternatives=alts, extra={"match": h, "ntokens": n, "span": (s, n),
                                                               "import_ctx": reason}))
        # a country name inside the maker's name is part of the name (as with exact marks)
        self.countries = [c for c in self.countries if not (
            c.line == i and "span" in c.extra and s <= c.extra["span"][0] and c.extra["span"][1] <= s + n)]
        for k in range(s, s + n):
            st.used[k] = "maker"

    # -------------------------------------------------------------- countries
    def _country_tokens(self, i: int, st: _LineState) -> None:
        toks = st.tokens
        n_max = self.reg.max_country_tokens
        s = 0
        while s < len(toks):
            matched = False
            for n in range(min(n_max, len(toks) - s), 0, -1):
                if any(st.used[s:s + n]):
                    continue
                key = compact(toks[s:s + n])
                hit = self.reg.country_by_name(key)
                flags: list[dict[str, Any]] = []
                method = "country_name"
                if hit is None and _HAS_DIGIT.search(key) and len(key) >= 4:
                    lettered = "".join(CONFUSABLE_DIGIT_TO_LETTER.get(ch, ch) for ch in key)
                    hit = self.reg.country_by_name(lettered)
                    if hit is not None:
                        method = "country_name_confusable"
                        flags = [{"kind": "confusable", "field_grammar": "country name letters", "from": key,
                                  "to": lettered}]
                if hit is None:
                    continue
                code, historic = hit
                if code != "US" and st.state_at is not None and s + n == st.state_at:
                    continue  # '<place> <U.S. State>': a U.S. town (GEORGIA VT), not a country
                ctx, ctx_flag = self._made_in(st, s)
                if _us_state_named(toks, s, n, code, ctx > 0):
                    st.used[s:s + n] = ["us_state"] * n
                    s += n
                    matched = True
                    break
                if self._importers_country(i, st, s, n, code, method, flags):
                    s += n
                    matched = True
                    break
                if ctx_flag:
                    flags.append(ctx_flag)
                made_in = ctx > 0 or any(key.startswith(p) for p in _MADE_IN_PHRASES)
                if s >= 1 and toks[s - 1] in ("IND", "INDUSTRIA", "INDUSTRY"):
                    made_in = True
                prio = 3 if made_in else 1
                conf = st.conf * (0.95 if made_in else 0.85) * (0.9 if flags else 1.0)
                self._add_country(i, st, code, historic, conf, s - ctx, s + n, method, flags, prio)
                s += n
                matched = True
                break
            if not matched:
                s += 1
        # approximate country names right after MADE IN (the context is strong evidence)
        for s in range(1, len(toks)):
            if st.used[s] is not None:
                continue
            ctx, ctx_flag = self._made_in(st, s)
            if ctx:
                self._fuzzy_country(i, st, s, ctx, ctx_flag)
        # adjectives (weaker): ITALIAN, BELGE ...
        for k, tok in enumerate(toks):
            if st.used[k]:
                continue
            if st.state_at is not None and k + 1 == st.state_at:
                continue  # '<place> <U.S. State>': CHINO CA is a town in California, not 'Chinese'
            adj = self.reg.country_by_adjective(compact([tok]))
            if adj:
                self.countries.append(_Cand(adj, st.conf * 0.6, i, tok, "country_adjective", extra={"prio": 0}))
                st.used[k] = "country"

    def _importers_country(self, i: int, st: _LineState, s: int, n: int, code: str, method: str,
                           flags: list[dict[str, Any]]) -> bool:
        """Take a country named on an import mark as the importer's own, not the country of manufacture.

        After an import prefix, the United States (a U.S. importer's country) and any country with no U.S.
        address before it (``IMPORTED BY MARSTAR CANADA``) name where the importer is. A country after a
        U.S. address stays the country of origin (``CAI ST ALBANS VT ROMANIA``), as does one after ``FROM``.
        """
        if not st.imp_prefix or s < st.imp_prefix or (code != "US" and st.state_at is not None and s > st.state_at):
            return False
        if s >= 1 and st.tokens[s - 1] in ("FROM", "DE", "DA", "AUS"):
            return False
        st.import_country = _Cand(code, st.conf * 0.85, i, " ".join(st.tokens[s:s + n]), "import_mark_country",
                                  flags=[*flags, {"kind": "importer_country",
                                                  "note": "the importer's country, read on its import mark"}])
        for k in range(s, s + n):
            st.used[k] = "import_country"
        return True

    def _attach_import_country(self, i: int, st: _LineState) -> None:
        """Put a country read on line ``i``'s import mark into that mark (made here when no importer was known)."""
        country = st.import_country
        if country is None:
            return
        for imp in self.imports:
            importer = imp.get("importer")
            if importer is not None and importer.line == i:
                imp["country"] = country
                return
        name = [k for k in range(st.imp_prefix, len(st.tokens)) if st.used[k] is None]
        importer = None
        if name:
            marked = " ".join(st.tokens[k] for k in name)
            importer = _Cand(marked, st.conf * 0.6, i, marked, "import_mark_unregistered",
                             flags=[{"kind": "not_in_registry", "note": "an importer the registry does not list"}])
            for k in name:
                st.used[k] = "importer"
        self.imports.append({"importer": importer, "city": None, "country": country, "year": None})

    def _made_in(self, st: _LineState, s: int) -> tuple[int, dict[str, Any] | None]:
        """Tokens before ``s`` that read ``MADE IN`` (or a language's equivalent), allowing OCR edits.

        Returns how many tokens (0: none) and a flag when the phrase was matched approximately.
        """
        toks = st.tokens
        for m in (1, 2):
            if s - m < 0 or any(u is not None and u != "country" for u in st.used[s - m:s]):
                continue
            if not _letters_ok(toks[s - m:s], 4, 1.0):
                continue
            key = compact(toks[s - m:s])
            if key in _MADE_IN_PHRASES:
                return m, None
            got = _phrase_match(key, _MADE_IN_PHRASES)
            if got is not None:
                return m, {"kind": "fuzzy_context", "from": key, "to": got[0], "weighted_distance": got[1]}
        return 0, None

    def _add_country(self, i: int, st: _LineState, code: str, historic: Any, conf: float, start: int, end: int,
                     method: str, flags: list[dict[str, Any]], prio: float,
                     alts: list[Alternative] | None = None, extra: dict[str, Any] | None = None) -> None:
        alts = list(alts or [])
        if historic is not None:
            flags.append({"kind": "historic_country", "name": historic.name, "iso3166_3": historic.iso3166_3,
                          "successors": historic.successors})
            alts += [Alternative(value=c, confidence=round(conf * 0.5, 4)) for c in historic.successors[1:]]
            if len(historic.successors) > 1:
                conf *= 0.8
        self.countries.append(_Cand(code, conf, i, " ".join(st.tokens[start:end]), method, flags=flags,
                                    alternatives=alts, extra={"prio": prio, "span": (start, end), **(extra or {})}))
        for k in range(start, end):
            st.used[k] = "country"

    def _fuzzy_country(self, i: int, st: _LineState, s: int, ctx: int, ctx_flag: dict[str, Any] | None,
                       ratio: float = FUZZY_RATIO_MADE_IN) -> bool:
        """The nearest country name on one to three unused tokens from ``s`` (``ctx``: MADE IN tokens before)."""
        toks = st.tokens
        best: tuple[float, int, str, FuzzyHit[tuple[str, str, Any]]] | None = None
        for n in (3, 2, 1):
            if s + n > len(toks) or any(st.used[s:s + n]):
                continue
            window = toks[s:s + n]
            if not _letters_ok(window, 2 if ctx else 6, 1.0):
                continue
            key = compact(window)
            hits = self.reg.country_fuzzy.search(key, ratio, 1 if ctx else 0)
            if not ctx:
                hits = [h for h in hits if h.edits <= 1]  # no context: one edit at most
            if hits and (best is None or hits[0].normalized < best[3].normalized):
                best = (hits[0].normalized, n, key, hits[0])
        if best is None:
            return False
        _, n, key, hit = best
        _, code, historic = hit.payloads[0]
        if code != "US" and st.state_at is not None and s + n == st.state_at:
            return False  # '<place> <U.S. State>': a U.S. town
        rivals: dict[str, float] = {}
        for other in self.reg.country_fuzzy.search(key, ratio, 1 if ctx else 0):
            for _, c, _ in other.payloads:
                if c != code and other.distance <= hit.distance + FUZZY_TIE:
                    rivals.setdefault(c, other.distance)
        tied = [c for c, d in rivals.items() if d <= hit.distance]
        if tied and not ctx:
            return False  # no context and two countries as near: too weak
        conf = st.conf * (0.9 if ctx else 0.6) * max(0.1, 1 - 1.2 * hit.normalized)
        conf *= 0.5 if tied else 0.8 if rivals else 1.0
        flags = [_fuzzy_flag(key, hit, hit.payloads[0][0], **({"ambiguous_with": sorted(rivals)} if rivals else {}),
                             **({"context": "made_in"} if ctx else {}))]
        if ctx_flag:
            flags.append(ctx_flag)
        alts = [Alternative(value=c, confidence=round(conf * 0.8, 4)) for c in rivals]
        self._add_country(i, st, code, historic, conf, s - ctx, s + n, "country_name_fuzzy", flags,
                          2 if ctx else 0, alts, {"tied": tied})
        return True

    def _fuzzy_countries(self) -> None:
        """Approximate country names with no MADE IN context, when no country name was read at all."""
        if self.countries:
            return
        for i, st in enumerate(self.states):
            first = 0
            if st.imp_prefix or st.addr is not None:
                if st.state_at is None:
                    continue  # an import mark names its country after the importer's address
                first = st.state_at + 1
            for s in range(first, len(st.tokens)):
                if st.used[s] is None and self._fuzzy_country(i, st, s, 0, None, FUZZY_RATIO_COUNTRY):
                    return

    # -------------------------------------------------------------- years, proofs, types, serials
    def _misc_tokens(self, i: int, st: _LineState) -> None:
        toks = st.tokens
        now = datetime.now(UTC).year
        for k, tok in enumerate(toks):
            if st.used[k]:
                continue
            ym = _YEAR.match(tok)
            if ym and 1870 <= int(ym.group(1)) <= now:
                year = _Cand(int(ym.group(1)), st.conf * 0.7, i, tok, "four_digit_year")
                self.years.append(year)
                st.used[k] = "year"
                prev = toks[k - 1] if k > 0 else ""
                if tok.isdigit() and 1 <= len(prev) <= 3 and prev.isalpha() and prev not in _MODEL_WORDS:
                    self.prefixed_years.append((year, k - 1, k))
                continue
            read_as_year = _year_misread(tok, now)
            if read_as_year is not None:
                # 'I987', '198O': one letter the recognizer confuses with a digit, and a year once it is one
                self.years.append(_Cand(read_as_year, st.conf * 0.5, i, tok, "four_digit_year_confusable",
                                        flags=[{"kind": "confusable", "field_grammar": "year digits",
                                                "from": tok, "to": str(read_as_year)}]))
                st.used[k] = "year"
                continue
            if tok in ("Г", "G", "R") and k > 0 and st.used[k - 1] == "year":
                st.used[k] = "year"
                continue
            proof = self.reg.proof_mark(compact([tok]))
            glued = _NUMBERED_MARK.match(tok) if proof is None else None
            if glued is not None:  # 'PTB312': a numbered mark read without its space
                proof = self.reg.proof_mark(glued.group(1))
                if proof is None or not proof.numbered:
                    proof = None
            if proof is not None:
                marked, value = tok, proof.mark
                if glued is not None:
                    value = f"{proof.mark} {glued.group(2)}"
                elif (proof.numbered and k + 1 < len(toks) and not st.used[k + 1]
                      and _APPROVAL_NUMBER.match(toks[k + 1])):
                    # 'PTB 312': the approval number belongs to the mark (not a serial, not a year)
                    marked = value = f"{tok} {toks[k + 1]}"
                    st.used[k + 1] = "proof"
                self.proofs.append(_Cand(value, st.conf * 0.7, i, marked, "proof_mark_text",
                                         extra={"meaning": proof.meaning, "country": proof.country}))
                st.used[k] = "proof"
                continue
            for scheme in self.reg.year_codes:
                if tok in scheme.codes and (len(tok) == 2 or _ROMAN.match(tok)):
                    self.pending_years.append(_Cand(scheme.codes[tok], st.conf * 0.6, i, tok,
                                                    "year_code", extra={"scheme": scheme.id, "k": k},
                                                    flags=[{"kind": "year_code", "scheme": scheme.id,
                                                            "code": tok, "source": scheme.source}]))
            if tok in _TYPE_WORDS:
                self.types.append(_Cand(_TYPE_WORDS[tok], st.conf * 0.9, i, tok, "type_keyword"))
                st.used[k] = "type"
        # serial candidates: tokens with digits, optionally glued to a short letter prefix token
        k = 0
        while k < len(toks):
            tok = toks[k]
            if st.used[k] or not _HAS_DIGIT.search(tok) or "/" in tok:
                k += 1
                continue
            raw = tok
            start_k = k
            prev = toks[k - 1] if k > 0 and not st.used[k - 1] else ""
            if (1 <= len(prev) <= 3 and prev.isalpha() and tok[0].isdigit() and prev not in _MODEL_WORDS) or (
                # a hyphen beside a space the recognizer inserted: 'AB -12345', 'AB- 12345' are 'AB-12345'
                1 <= len(prev.strip("-")) <= 10 and prev.strip("-").isalnum()
                and (tok.startswith("-") != prev.endswith("-")) and not tok.endswith("-")
            ):
                raw = prev + " " + tok
                start_k = k - 1
            self._serial_candidate(i, st, raw, start_k, k)
            # spaced serials ('AB 27 1234', '14 040737'): the group of following digit tokens as one candidate
            end = k
            while (
                tok.isascii() and tok.isalnum() and end + 1 < len(toks) and end - start_k < 3
                and not st.used[end + 1] and toks[end + 1].isdigit()
            ):
                end += 1
                raw = raw + " " + toks[end]
                self._serial_candidate(i, st, raw, start_k, end)
            k += 1

    def _year_like_serials(self) -> None:
        """With no serial candidate at all, a letter prefix and a year ('HY 1915') is read as the serial.

        Every marking the ITI asks for has a serial and only some have a year, so such a line is the serial's
        likeliest reading. It is taken at lower confidence, flagged ``year_like_serial`` with the year it
        would otherwise have given, and that year is not filled in.
        """
        for year, prefix_k, year_k in self.prefixed_years:
            st = self.states[year.line]
            if st.used[prefix_k] is not None or st.used[year_k] != "year":
                continue
            before = len(self.serials)
            self._serial_candidate(year.line, st, f"{st.tokens[prefix_k]} {st.tokens[year_k]}", prefix_k, year_k)
            if len(self.serials) == before:
                continue
            cand = self.serials[-1]
            cand.conf *= 0.7
            cand.flags.append({"kind": "year_like_serial", "year": year.value,
                               "note": "read as the serial (no other line looks like one); it could also be a "
                                       "letter code and a year"})
            self.years.remove(year)
            st.used[year_k] = None

    def _serial_candidate(self, i: int, st: _LineState, raw: str, start_k: int, end_k: int) -> None:
        raw = raw.strip(_SERIAL_ORNAMENTS)  # stars and hashes set around a serial ('*0623128*') are not part of it
        value = raw.replace(" ", "")
        core = value.replace("-", "")
        if len(core) < 3 or not core.isalnum():
            return
        if not core.isdigit() and compact([core]) in self.reg.model_keys:
            return  # 'P226', 'AK-47', 'VZ 58': a model name the registry knows, not a serial
        digits = sum(ch.isdigit() for ch in core)
        ratio = digits / len(core)
        if ratio < 0.3 or (core.isdigit() and len(core) <= 2):
            return
        alone = all(u is not None for j, u in enumerate(st.used) if j < start_k or j > end_k)
        score = 0.5 * ratio + 0.25 * min(len(core), 10) / 10 + (0.15 if alone else 0.0)
        if len(core) < 4:
            score -= 0.3
        if re.match(r"^[^\W\d_]{1,3}\d{3,}$", core):
            score += 0.1
        if _CALIBRE_FRAGMENT.match(value):
            score -= 0.4  # '62X39', '9X19': a calibre whose leading digits or point were not read
        self.serials.append(_Cand(value, st.conf, i, raw, "serial_role_score",
                                  extra={"score": score, "tokens": (start_k, end_k), "raw": raw}))

    # -------------------------------------------------------------- models
    def _find_models(self, maker: MakerEntry, maker_lines: set[int]) -> None:
        index = self.reg.models_of(maker.id)
        for i, st in enumerate(self.states):
            toks = st.tokens
            for n in (4, 3, 2, 1):
                for s in range(0, len(toks) - n + 1):
                    # a listed model of several words may hold the maker's own mark or a year-like number
                    # (MAS 1950): those tokens were taken first, the model still names them
                    if any(u is not None and (n == 1 or u not in _MODEL_MAY_HOLD) for u in st.used[s:s + n]):
                        continue
                    key = compact(toks[s:s + n])
                    name = index.get(key)
                    if name is None:
                        continue
                    text = " ".join(toks[s:s + n])
                    numeric = key.isdigit()
                    short_line = sum(1 for u in st.used if u is None) <= 2
                    if numeric and i not in maker_lines and not short_line:
                        continue
                    conf = st.conf * (0.85 if not numeric else 0.65) * (1.0 if i in maker_lines else 0.9)
                    self.models.append(_Cand(name, conf, i, text, "registry_model",
                                             extra={"span": (s, n), "ntok": n}))
            # MODEL xx / MOD. xx / TYPE xx keyword (not in the lexicon)
            for s, tok in enumerate(toks[:-1]):
                if tok in _MODEL_WORDS and st.used[s + 1] is None:
                    self.models.append(_Cand(toks[s + 1], st.conf * 0.5, i, f"{tok} {toks[s + 1]}",
                                             "model_keyword"))

    # -------------------------------------------------------------- serial grammar
    def _resolve_serial(self, c: _Cand) -> _Cand:
        """Apply the serial grammar (letter prefix + digit body) to confusable characters."""
        line = self.lines[c.line]
        value = c.value
        chars = list(value)
        m = re.match(r"^([^\W\d_]{0,4})(.*)$", value)
        assert m is not None
        prefix, body = m.group(1), m.group(2)
        # a prefix that swallowed body letters (e.g. 'ABO12345'): keep letters before the first digit only
        body_core = body.replace("-", "")
        flags: list[dict[str, Any]] = []
        alt_pos = {ca.position: ca for ca in line.char_alternatives}
        pos_in_line = line.text.upper().find(c.extra.get("raw", c.text).split(" ")[-1]) if c.text else -1
        offset = len(prefix)
        # an FFL-prefixed serial ('98712345-A0451'): the maker's own serial after the prefix may open with a letter
        ffl = _FFL_SERIAL.fullmatch(value)
        maker_serial_start = ffl.start(2) if ffl else -1
        digits = sum(ch.isdigit() for ch in body_core)
        alt_values: list[str] = []
        if body_core and digits / max(1, len(body_core)) >= 0.5:
            for j, ch in enumerate(body):
                flanked = 0 < j < len(body) - 1 and body[j - 1].isdigit() and body[j + 1].isdigit()
                if ch.isalpha() and ch in CONFUSABLE_LETTER_TO_DIGIT and not flanked and j == len(body) - 1:
                    # a trailing letter may be a genuine suffix (e.g. Remington 'M'): keep it, offer the digit
                    alt_values.append(value[: offset + j] + CONFUSABLE_LETTER_TO_DIGIT[ch])
                    continue
                if ch.isalpha() and ch in CONFUSABLE_LETTER_TO_DIGIT and offset + j == maker_serial_start:
                    # the first letter of the maker's serial after an FFL prefix ('98712345-S5092'): keep it, offer
                    # the digit (after a shorter group, '24-O12345', the letter is the likelier misread)
                    c.alternatives.append(Alternative(
                        value=value[: offset + j] + CONFUSABLE_LETTER_TO_DIGIT[ch] + value[offset + j + 1 :],
                        confidence=round(c.conf * 0.4, 4)))
                    continue
                if ch.isalpha() and ch in CONFUSABLE_LETTER_TO_DIGIT:
                    target = CONFUSABLE_LETTER_TO_DIGIT[ch]
                    source = "confusion_table"
                    lp = pos_in_line + j + (offset if " " not in c.extra.get("raw", "") else 0)
                    ca = alt_pos.get(lp) if pos_in_line >= 0 else None
                    digit_cands = [a for a in ca.candidates if a.value.isdigit()] if ca is not None else []
                    letter_conf = (line.char_confidences[lp] if line.char_confidences
                                   and 0 <= lp < len(line.char_confidences) else 0.0)
                    if digit_cands:
                        target = digit_cands[0].value
                        source = "char_alternatives"
                    strong_digit = bool(digit_cands) and digit_cands[0].confidence >= DIGIT_ALTERNATIVE_MIN
                    if not strong_digit and (letter_conf >= SURE_CHARACTER or (digit_cands and letter_conf >= 0.5)):
                        # the recognizer is sure enough of the letter and gave the digit little weight:
                        # serials do mix letters into the body (6BG90547), so keep it and offer the digit
                        c.alternatives.append(Alternative(
                            value=value[: offset + j] + target + value[offset + j + 1 :],
                            confidence=round(c.conf * (1 - line.char_confidences[lp]), 4),
                        ))
                        continue
                    chars[offset + j] = target
                    flags.append({"kind": "confusable", "field_grammar": "serial digit body", "position": offset + j,
                                  "from": ch, "to": target, "source": source})
        new = "".join(chars)
        for av in alt_values:
            c.alternatives.append(Alternative(value=new[: len(av) - 1] + av[-1], confidence=round(c.conf * 0.4, 4)))
        if flags:
            c.alternatives = [Alternative(value=value, confidence=round(c.conf * 0.4, 4)), *c.alternatives]
            c.conf *= 0.9
            c.value = new
            c.flags = [*c.flags, *flags]
        if len(value) >= 3 and value[0] in CONFUSABLE_DIGIT_TO_LETTER and value[1].isalpha():
            # a leading digit before letters may be a misread letter of a letter prefix ('8HZ123' for 'BHZ123')
            lettered = CONFUSABLE_DIGIT_TO_LETTER[value[0]] + value[1:]
            if lettered != c.value and all(a.value != lettered for a in c.alternatives):
                c.alternatives.append(Alternative(value=lettered, confidence=round(c.conf * 0.4, 4)))
        return c

    # -------------------------------------------------------------- assemble
    def _assemble(self) -> dict[str, Any]:
        rec: dict[str, Any] = {name: None for name in FIELD_NAMES}
        rec["import_marks"] = []
        rec["proof_marks"] = []
        rec["other_markings"] = []
        lines, sha = self.lines, self.sha
        # with a long exact mark read, only a window that extends it to a near, longer mark is looked for
        self._fuzzy_makers(supersede_only=any(
            c.method != "isacs_template" and len(compact(c.text.split())) >= 5 and not c.extra.get("import_ctx")
            for c in self.makers))
        self._fuzzy_countries()
        # manufacturer
        maker: MakerEntry | None = None
        maker_lines: set[int] = set()
        if self.makers:
            best: dict[str, _Cand] = {}
            corroborated = self._corroborated_makers()
            for c in self.makers:
                specificity = min(1.0, 0.6 + 0.06 * len(compact(c.text.split())))
                score = c.conf * (1 + 0.05 * c.extra.get("ntokens", 1)) * specificity
                score *= 1.25 ** corroborated.get(c.value, 0)  # its model or its country read on the item
                if c.value not in best or score > best[c.value].extra.get("_score", 0):
                    c.extra["_score"] = score
                    best[c.value] = c
            ranked = sorted(best.values(), key=lambda x: -x.extra["_score"])
            top = ranked[0]
            maker = self.reg.maker(top.value)
            maker_lines = {c.line for c in self.makers if c.value == top.value}
            alts: dict[str, float] = {a.value: a.confidence for a in top.alternatives}  # equally near marks
            for r in ranked[1:]:
                alts.setdefault(self.reg.maker(r.value).name, round(r.conf, 4))
            alts.pop(maker.name, None)
            f = _Cand(maker.name, top.conf, top.line, top.text, top.method, flags=top.flags,
                      alternatives=[Alternative(value=k, confidence=v) for k, v in list(alts.items())[:4]])
            rec["manufacturer"] = _field(f, lines, sha)
            rec["manufacturer"].flags = [*f.flags, {"kind": "registry", "maker_id": maker.id}]
            self._imports_from_makers(top.value)
        # country: read from text (best priority), else maker fallback
        read = sorted(self.countries, key=lambda c: (-c.extra.get("prio", 1), -c.conf))
        if read:
            top = read[0]
            if maker is not None and maker.country in top.extra.get("tied", ()):
                # two country names as near to the misread: the maker's country decides
                top.alternatives = [a for a in top.alternatives if a.value != maker.country]
                top.alternatives.insert(0, Alternative(value=top.value, confidence=round(top.conf * 0.8, 4)))
                top.flags.append({"kind": "tie_resolved_by_maker", "from": top.value, "to": maker.country,
                                  "maker_id": maker.id})
                top.value = maker.country
            others: dict[str, float] = {}
            for c in read[1:]:
                if c.value != top.value:
                    others[c.value] = max(others.get(c.value, 0.0), c.conf)
            for a in top.alternatives:
                others.setdefault(a.value, a.confidence)
            if maker is not None and maker.country != top.value:
                others.setdefault(maker.country, round(rec["manufacturer"].confidence * 0.4, 4))
            top.alternatives = [Alternative(value=k, confidence=round(v, 4)) for k, v in others.items()]
            rec["country_of_manufacture"] = _field(top, lines, sha)
        elif maker is not None and rec["manufacturer"] is not None:
            mf = rec["manufacturer"]
            rec["country_of_manufacture"] = RecordField(
                value=maker.country, text_as_marked=None, confidence=round(mf.confidence * 0.6, 4),
                evidence=mf.evidence.model_copy(update={"method": "registry_fallback"}),
                flags=[{"kind": "registry_fallback", "note": "country of the maker's seat; not read on the item",
                        "maker_id": maker.id}])
        country_code = rec["country_of_manufacture"].value if rec["country_of_manufacture"] else None
        # pending year codes (documented schemes) apply only to their country
        italian = country_code == "IT" or (maker is not None and maker.country == "IT")
        for c in self.pending_years:
            scheme = c.extra.get("scheme", "")
            if (scheme.startswith("gardone") and italian) or (scheme == "bg-makarov" and (
                    country_code == "BG" or (maker is not None and maker.country == "BG"))):
                self.years.append(c)
                k = c.extra.get("k")
                if k is not None and self.states[c.line].used[k] is None:
                    self.states[c.line].used[k] = "year"
        # model (before the serial: a lexicon model token is not a serial)
        if maker is not None:
            self._find_models(maker, maker_lines)
        model_spans: set[tuple[int, int]] = set()
        if self.models:
            ranked_m = sorted(self.models, key=lambda c: -(c.conf * (1 + 0.1 * c.extra.get("ntok", 1))))
            top = ranked_m[0]
            top.alternatives = [Alternative(value=str(c.value), confidence=round(c.conf, 4))
                                for c in ranked_m[1:4] if c.value != top.value]
            rec["model"] = _field(top, lines, sha)
            span = top.extra.get("span")
            if span:
                st = self.states[top.line]
                for k in range(span[0], span[0] + span[1]):
                    model_spans.add((top.line, k))
                    if st.used[k] == "year":  # MAS 1950 is the model's name, not the year it was made
                        self.years = [y for y in self.years if not (y.line == top.line and y.text == st.tokens[k])]
                        st.used[k] = "model"
                    elif st.used[k] is None:
                        st.used[k] = "model"
                if span[0] > 0 and st.tokens[span[0] - 1] in _MODEL_WORDS and st.used[span[0] - 1] is None:
                    st.used[span[0] - 1] = "model"
            elif top.method == "model_keyword":
                st = self.states[top.line]
                for k, t in enumerate(st.tokens):
                    if st.used[k] is None and t in top.text.split():
                        st.used[k] = "model"
                        model_spans.add((top.line, k))
        self.serials = [c for c in self.serials if not c.extra.get("tokens") or not any(
            (c.line, k) in model_spans for k in range(c.extra["tokens"][0], c.extra["tokens"][1] + 1))]
        if not self.serials:
            self._year_like_serials()
        # serial
        serial: _Cand | None = None
        if self.serials:
            ranked_s = sorted(self.serials, key=lambda c: -(c.extra.get("score", 0.5) * (0.5 + 0.5 * c.conf)))
            serial = self._resolve_serial(ranked_s[0])
            seen = {serial.value}
            for c in ranked_s[1:4]:
                if c.value not in seen:
                    serial.alternatives.append(Alternative(value=c.value, confidence=round(
                        c.conf * min(1.0, c.extra.get("score", 0.5)) * 0.5, 4)))
                    seen.add(c.value)
            serial.conf *= min(1.0, 0.55 + 0.4 * serial.extra.get("score", 0.5))
            rec["serial_number"] = _field(serial, lines, sha)
            toks = serial.extra.get("tokens")
            if toks:
                st = self.states[serial.line]
                for k in range(toks[0], toks[1] + 1):
                    st.used[k] = "serial"
        # type, calibre, year
        for name, cands in (("type", self.types), ("calibre", self.calibres), ("year_of_manufacture", self.years)):
            if cands:
                ranked_c = sorted(cands, key=lambda c: -c.conf)
                top = ranked_c[0]
                seen_v = {top.value}
                for c in ranked_c[1:]:
                    if c.value not in seen_v:
                        top.alternatives.append(Alternative(value=str(c.value), confidence=round(c.conf, 4)))
                        seen_v.add(c.value)
                rec[name] = _field(top, lines, sha)
        # import marks
        for imp in self.imports:
            rec["import_marks"].append({k: (_field(v, lines, sha) if v is not None else None) for k, v in imp.items()})
            city = imp.get("city")
            if city is not None and city.extra.get("state"):
                rec["import_marks"][-1]["city"].flags.append({"kind": "us_state", "state": city.extra["state"]})
        for c in self.proofs:
            rf = _field(c, lines, sha)
            rf.flags.append({"kind": "proof_mark", "meaning": c.extra["meaning"],
                             "country_of_proof": c.extra["country"]})
            rec["proof_marks"].append(rf)
        # serial obliterated (suggestion only)
        rec["serial_obliterated"] = self._obliterated(serial)
        # other markings: what no field claimed
        for i, st in enumerate(self.states):
            rest = [t for t, u in zip(st.tokens, st.used, strict=True) if u is None]
            if serial is not None and serial.line == i and serial.extra.get("tokens") is None:
                rest = [t for t in rest if t not in serial.text]
            rest = [t for t in rest if len(t) > 1 or t.isdigit()]
            if rest:
                c = _Cand(" ".join(rest), st.conf, i, " ".join(rest), "unassigned")
                rec["other_markings"].append(_field(c, lines, sha))
        return rec

    def _corroborated_makers(self) -> dict[str, int]:
        """For each maker read, how many other readings of the item back it (0 to 2).

        One of its models (a one- or two-token window of any line), and its country read as a country name.
        Decides between makers that share a mark (``SIG SAUER``: the German and the U.S. company; a P365 is
        the U.S. one).
        """
        windows = {compact(st.tokens[s:s + n]) for st in self.states for n in (1, 2)
                   for s in range(len(st.tokens) - n + 1)}
        countries = {c.value for c in self.countries if c.method in ("country_name", "country_name_confusable")}
        out: dict[str, int] = {}
        for maker_id in {c.value for c in self.makers}:
            entry = self.reg.maker(maker_id)
            models = self.reg.models_of(maker_id)
            out[maker_id] = int(any(w in models for w in windows)) + int(entry.country in countries)
        return out

    def _imports_from_makers(self, chosen: str) -> None:
        """Makers read on import marks name the importer of their line.

        Those that lost to the manufacturer, and those after an import prefix (even when, no other maker
        being read, one is also the manufacturer).
        """
        with_importer = {c.line for imp in self.imports if (c := imp.get("importer")) is not None}
        chosen_spans = {(c.line, c.extra.get("span")) for c in self.makers if c.value == chosen}
        for c in sorted(self.makers, key=lambda x: -x.conf):
            ctx = c.extra.get("import_ctx")
            if not ctx or (c.value == chosen and ctx != "import_prefix") or c.line in with_importer:
                continue
            if c.value != chosen and (c.line, c.extra.get("span")) in chosen_spans:
                continue  # the same mark read as the chosen maker (a mark two makers share): not an importer
            st = self.states[c.line]
            start, n = c.extra["span"]
            with_importer.add(c.line)
            if self._fuzzy_importers(c.line, st, (None, "maker")):
                continue  # a misread importer's mark ('GLOCK ING' for GLOCK INC)
            self._add_import(c.line, st, start, n, [c.extra["match"]], "maker_on_import_mark", c.conf,
                             [*c.flags, {"kind": "maker_as_importer", "maker_id": c.value}])

    def _obliterated(self, serial: _Cand | None) -> RecordField | None:
        if serial is None:
            if not self.lines:
                return None
            ev = Evidence(method="no_serial_read")
            return RecordField(value=None, confidence=0.0, evidence=ev,
                               flags=[{"kind": "suggestion_only",
                                       "note": "no serial read; check the frame/receiver for obliteration"}])
        line = self.lines[serial.line]
        low_chars = [c for c in line.char_confidences if c < 0.5]
        recovered_view = line.view not in ("original", "")
        suspicious = recovered_view or (line.char_confidences and len(low_chars) / len(line.char_confidences) > 0.3)
        flags: list[dict[str, Any]] = [{"kind": "suggestion_only",
                                        "note": "low OCR confidence is not proof of obliteration"}]
        if recovered_view:
            flags.append({"kind": "read_on_derived_view", "view": line.view})
        return RecordField(value=bool(suspicious), confidence=0.5 if suspicious else 0.4,
                           evidence=_evidence(line, self.sha, "serial_line_quality"), flags=flags)


def parse_lines(lines: Sequence[Line], registry: Registry,
                sha256: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Fill the identification-record fields from recognised lines.

    Args:
        lines: the lines read on the item's views (any order).
        registry: the loaded registry (:func:`marktrace.inference.registry.load_registry`).
        sha256: file → SHA-256 of the item's images, copied into each field's evidence.

    Returns:
        A dict with every name of :data:`FIELD_NAMES`: single fields are a ``RecordField`` or ``None``;
        ``import_marks`` is a list of ``{"importer", "city", "country", "year"}`` dicts of
        ``RecordField | None``; ``proof_marks`` and ``other_markings`` are lists of ``RecordField``.
    """
    return _Parser(lines, registry, sha256 or {}).run()


def to_plain(value: Any) -> Any:
    """Recursively turn pydantic models (``RecordField``, records, ...) into plain JSON types.

    Models become ``model_dump(mode="json")`` dicts, mappings become dicts, lists and tuples become
    lists; anything else is returned as is. The one converter shared by :func:`record_to_json`,
    :mod:`marktrace.inference.assemble` and :mod:`marktrace.inference.records`.
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def record_to_json(record: Mapping[str, Any]) -> dict[str, Any]:
    """Render a :func:`parse_lines` result as plain JSON types (the batch ``record`` object)."""
    return {k: to_plain(v) for k, v in record.items()}


__all__ = ["FIELD_NAMES", "parse_lines", "record_to_json", "to_plain"]
