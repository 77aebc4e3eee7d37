"""Random marking texts for the synthetic renderer: serials, maker/country lines, calibres, import marks.

Every generator takes a ``numpy.random.Generator`` so that a seed fixes the whole text. The strings are
synthetic (plausible formats, no real serial numbers); the lists of makers and places are public knowledge.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

Role = Literal["serial", "maker", "country", "calibre", "model", "import", "proof", "year", "other"]
ROLES: tuple[Role, ...] = (
    "serial",
    "maker",
    "country",
    "calibre",
    "model",
    "import",
    "proof",
    "year",
    "other",
)

UPPER = string.ascii_uppercase
DIGITS = string.digits
# Letters that makers commonly avoid in serials (I, O, Q) are still used sometimes: keep them, but rarer.
SERIAL_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"

# (maker line, country words typically marked with it, models)
MAKERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "FN HERSTAL",
        ("BELGIUM", "MADE IN BELGIUM", "HERSTAL BELGIQUE"),
        ("FNX-45", "FN 509", "FIVE-SEVEN", "SCAR 17S", "P90", "FAL"),
    ),
    ("FABRIQUE NATIONALE HERSTAL", ("BELGIQUE", "MADE IN BELGIUM"), ("FAL", "MAG", "MINIMI")),
    (
        "GLOCK",
        ("AUSTRIA", "MADE IN AUSTRIA", "GLOCK INC. SMYRNA GA"),
        ("G17", "G19", "G26", "G43X", "G45", "G21 GEN4"),
    ),
    (
        "BERETTA",
        ("GARDONE V.T.", "MADE IN ITALY", "P. BERETTA GARDONE V.T. ITALY"),
        ("92FS", "PX4 STORM", "APX", "M9A1", "ARX100"),
    ),
    (
        "ZASTAVA KRAGUJEVAC",
        ("SERBIA", "MADE IN SERBIA", "YUGOSLAVIA"),
        ("M70", "M92", "M57", "CZ99", "PAP M70"),
    ),
    ("CRVENA ZASTAVA", ("YUGOSLAVIA", "KRAGUJEVAC"), ("M70AB2", "M72", "M84")),
    (
        "HECKLER & KOCH GMBH",
        ("OBERNDORF/NECKAR", "MADE IN GERMANY"),
        ("MP5", "G36", "HK416", "USP", "P30", "VP9"),
    ),
    (
        "CESKA ZBROJOVKA",
        ("UHERSKY BROD", "MADE IN CZECH REPUBLIC", "CZECH REPUBLIC"),
        ("CZ 75 B", "P-10 C", "SCORPION EVO 3", "VZ. 58"),
    ),
    (
        "SMITH & WESSON",
        ("SPRINGFIELD, MA.", "MADE IN U.S.A.", "SPRINGFIELD MA USA"),
        ("M&P9", "M&P15", "MODEL 686", "SD9VE", "SHIELD"),
    ),
    (
        "STURM, RUGER & CO., INC.",
        ("SOUTHPORT, CONN. U.S.A.", "PRESCOTT, AZ U.S.A."),
        ("MINI-14", "P95", "SR9", "LCP II", "10/22"),
    ),
    (
        "TAURUS",
        ("MADE IN BRAZIL", "PORTO ALEGRE BRASIL", "IND. BRASILEIRA"),
        ("PT92", "G2C", "TX22", "MODEL 85", "G3"),
    ),
    (
        "WALTHER",
        ("ULM/DONAU", "MADE IN GERMANY", "CARL WALTHER ULM/DO."),
        ("P99", "PPQ M2", "PPK/S", "P22", "PDP"),
    ),
    ("STEYR MANNLICHER", ("MADE IN AUSTRIA", "STEYR AUSTRIA"), ("AUG A3", "M9-A1", "SSG 08")),
    (
        "SIG SAUER",
        ("NEWINGTON NH", "EXETER NH", "ECKERNFORDE GERMANY"),
        ("P226", "P320", "P365", "MPX", "SIG516"),
    ),
    ("SIG ARMS AG", ("NEUHAUSEN SWITZERLAND", "MADE IN SWITZERLAND"), ("SG 550", "P210", "SG 543")),
    (
        "COLT'S MFG. CO.",
        ("HARTFORD, CONN. U.S.A.", "MADE IN U.S.A."),
        ("M4 CARBINE", "M16A2", "GOVERNMENT MODEL", "PYTHON"),
    ),
    ("COLT'S PT. F.A. MFG. CO.", ("HARTFORD CT USA",), ("M1911A1", "COMMANDER", "AR-15")),
    ("IZHMASH", ("MADE IN RUSSIA", "IZHEVSK RUSSIA"), ("SAIGA", "AK-74M", "AK-103", "IZH-27")),
    ("KALASHNIKOV CONCERN", ("IZHEVSK", "MADE IN RUSSIA"), ("AK-12", "AK-15", "SAIGA-12")),
    ("TULA ARMS PLANT", ("TULA RUSSIA", "MADE IN RUSSIA"), ("TOZ-34", "KS-23")),
    ("NORINCO", ("MADE IN CHINA", "CHINA NORTH IND."), ("TYPE 56", "NP-34", "SKS", "JW-15", "TYPE 81")),
    ("ARSENAL AD", ("KAZANLAK BULGARIA", "MADE IN BULGARIA"), ("SLR-95", "AR-M1", "SAM7")),
    ("CUGIR", ("ROMANIA", "MADE IN ROMANIA"), ("WASR-10/63", "PM md. 63", "MD. 90")),
    ("FEG", ("BUDAPEST HUNGARY", "MADE IN HUNGARY"), ("PA-63", "AMD-65", "SA-85M")),
    ("RADOM", ("MADE IN POLAND", "FB RADOM"), ("MSBS GROT", "P-64", "WZ. 88")),
    ("FB RADOM", ("POLAND",), ("VIS 100", "BERYL")),
    ("MAS", ("ST-ETIENNE", "MADE IN FRANCE"), ("MAS 49/56", "FAMAS F1", "MAS 1950")),
    ("MANURHIN", ("MULHOUSE FRANCE",), ("MR 73", "PP")),
    (
        "ISRAEL WEAPON INDUSTRIES",
        ("MADE IN ISRAEL", "IWI ISRAEL"),
        ("TAVOR X95", "GALIL ACE", "JERICHO 941", "NEGEV"),
    ),
    ("IMI", ("MADE IN ISRAEL",), ("UZI", "GALIL ARM", "DESERT EAGLE")),
    ("HS PRODUKT", ("KARLOVAC CROATIA", "MADE IN CROATIA"), ("HS2000", "XD-9", "VHS-2")),
    ("CANIK", ("MADE IN TURKEY", "SAMSUN TURKIYE"), ("TP9SF", "METE SFX", "TP9 ELITE")),
    ("SARSILMAZ", ("DUZCE TURKIYE", "MADE IN TURKEY"), ("SAR9", "KILINC 2000")),
    ("MKEK", ("ANKARA TURKEY",), ("MPT-76", "G3A7")),
    (
        "BROWNING ARMS CO.",
        ("MORGAN UTAH", "MADE IN BELGIUM", "ASSEMBLED IN PORTUGAL"),
        ("HI-POWER", "BUCK MARK", "A5", "X-BOLT"),
    ),
    ("SPRINGFIELD ARMORY", ("GENESEO IL.", "MADE IN CROATIA"), ("XD-M", "HELLCAT", "M1A", "SAINT")),
    ("REMINGTON ARMS CO.", ("ILION, N.Y. U.S.A.", "MADE IN U.S.A."), ("MODEL 870", "700 SPS", "R51")),
    ("MOSSBERG", ("NORTH HAVEN CT", "O.F. MOSSBERG & SONS"), ("500A", "590A1", "MC1SC")),
    ("SAVAGE ARMS", ("WESTFIELD MASS USA",), ("AXIS II", "MODEL 110", "MARK II")),
    ("KEL-TEC CNC INC.", ("COCOA FL USA",), ("PF-9", "P-3AT", "KSG", "SUB-2000")),
    ("DANIEL DEFENSE", ("BLACK CREEK GA",), ("DDM4 V7", "MK18")),
    ("LMT", ("MILAN IL USA",), ("MARS-L", "CQB16")),
    ("BUSHMASTER", ("WINDHAM ME",), ("XM-15 E2S", "ACR")),
    ("ARMALITE", ("GENESEO IL",), ("AR-10", "M-15")),
    ("STAR BONIFACIO ECHEVERRIA", ("EIBAR ESPANA", "MADE IN SPAIN"), ("MODELO B", "FIRESTAR M43")),
    ("LLAMA GABILONDO Y CIA", ("VITORIA ESPANA",), ("MAX-I", "MODEL XV")),
    ("ASTRA UNCETA Y CIA", ("GUERNICA ESPANA",), ("A-100", "MODEL 600")),
    ("BERSA", ("INDUSTRIA ARGENTINA", "RAMOS MEJIA ARGENTINA"), ("THUNDER 380", "TPR9")),
    ("IMBEL", ("FABRICA ITAJUBA", "IND. BRASILEIRA"), ("MD97L", "GC .45")),
    ("TANFOGLIO", ("GARDONE V.T. ITALIA", "MADE IN ITALY"), ("WITNESS", "STOCK II")),
    ("FRANCHI", ("BRESCIA ITALY",), ("SPAS-12", "AFFINITY 3")),
    ("BENELLI ARMI", ("URBINO ITALIA", "MADE IN ITALY"), ("M4 SUPER 90", "M2", "NOVA")),
    ("PIETRO BERETTA", ("GARDONE V.T. ITALIA",), ("MOD. 81", "MOD. 84F", "AL391")),
    ("ORDNANCE FACTORY", ("KANPUR", "ISHAPORE INDIA"), ("INSAS", "1A1", "2A1")),
    ("DAEWOO PRECISION", ("MADE IN KOREA",), ("K2", "DP51", "K5")),
    ("POF", ("WAH CANTT PAKISTAN", "MADE IN PAKISTAN"), ("G3P4", "MP5A3")),
    ("ROSSI", ("SAO LEOPOLDO BRASIL",), ("R461", "RIO BRAVO")),
    ("MAUSER-WERKE", ("OBERNDORF A/N", "MADE IN W. GERMANY"), ("M98", "HSC", "M03")),
    ("SAKO LTD", ("RIIHIMAKI FINLAND", "MADE IN FINLAND"), ("TRG 22", "85 FINNLIGHT")),
    ("VALMET", ("JYVASKYLA FINLAND",), ("M76", "M78")),
    ("HUSQVARNA VAPENFABRIKS", ("MADE IN SWEDEN",), ("M/40", "M/96")),
    ("KRISS USA", ("VIRGINIA BEACH VA",), ("VECTOR SDP",)),
    ("CZ-USA", ("KANSAS CITY KS",), ("SHADOW 2", "BREN 2")),
)

COUNTRY_LINES: tuple[str, ...] = (
    "MADE IN GERMANY",
    "MADE IN ITALY",
    "MADE IN U.S.A.",
    "MADE IN USA",
    "MADE IN CHINA",
    "MADE IN RUSSIA",
    "MADE IN BELGIUM",
    "MADE IN AUSTRIA",
    "MADE IN CZECH REPUBLIC",
    "MADE IN BRAZIL",
    "MADE IN TURKEY",
    "MADE IN ISRAEL",
    "MADE IN SERBIA",
    "MADE IN ROMANIA",
    "MADE IN BULGARIA",
    "MADE IN SPAIN",
    "MADE IN ARGENTINA",
    "MADE IN CROATIA",
    "MADE IN PHILIPPINES",
    "MADE IN W. GERMANY",
    "Made in Italy",
    "Made in Germany",
    "USSR",
    "CCCP",
    "YUGOSLAVIA",
    "ROMANIA",
    "BULGARIA",
    "CHINA",
    "ESPANA",
    "ITALIA",
    "BELGIQUE",
    "DEUTSCHLAND",
    "TURKIYE",
    "BRASIL",
    "HUNGARY",
    "POLAND",
    "FRANCE",
    "JAPAN",
    "KOREA",
)

CALIBRES: tuple[str, ...] = (
    "CAL. 9mm",
    "CAL. 9 mm",
    "9x19",
    "9X19",
    "9mm LUGER",
    "9mm PARA",
    "9 mm P.A.K.",
    ".45 ACP",
    "CAL .45",
    "5.56 NATO",
    "5.56x45",
    "CAL. 5.56 MM",
    "7.62x39",
    "7.62X39",
    "7.62 NATO",
    "7.62x51",
    "7.62x54R",
    "12 GA",
    "12 GAUGE",
    "CAL. 12",
    "20 GA",
    ".308 WIN",
    ".223 REM",
    ".40 S&W",
    "CAL .40 S&W",
    ".380 ACP",
    "9mm KURZ",
    "7.65mm",
    "CAL. 7,65",
    ".22 LR",
    "CAL .22 L.R.",
    "5.45x39",
    "6.5 CREEDMOOR",
    ".357 MAG",
    ".38 SPL",
    ".44 MAGNUM",
    "10mm AUTO",
    "cal. 9x21",
    "cal. 9mm",
    "CAL 7.62X39MM",
    "12/76",
    "16/70",
)

IMPORTERS: tuple[tuple[str, str], ...] = (
    ("CENTURY ARMS", "ST. ALBANS VT"),
    ("CAI", "ST ALB VT"),
    ("CAI", "GEORGIA VT"),
    ("CENTURY INTL ARMS", "DELRAY BCH FL"),
    ("I.O. INC", "PALM BAY FL"),
    ("INTERORDNANCE", "MONROE NC"),
    ("CDNN", "ABILENE TX"),
    ("SAMCO GLOBAL", "MIAMI FL"),
    ("EAA CORP", "ROCKLEDGE FL"),
    ("TRISTAR ARMS", "N. KANSAS CITY MO"),
    ("ATI", "NEWPORT NEWS VA"),
    ("PW ARMS", "REDMOND WA"),
    ("K-VAR CORP", "LAS VEGAS NV"),
    ("RILEY DEFENSE", "BOONE NC"),
    ("SIG ARMS INC", "EXETER NH"),
    ("BERETTA USA", "ACCOKEEK MD"),
    ("GLOCK INC", "SMYRNA GA"),
    ("TAURUS INTL", "MIAMI FL"),
    ("IMPORTED BY CZ-USA", "KS"),
)

PROOF_MARKS: tuple[str, ...] = (
    "PROOFED",
    "P",
    "N",
    "U",
    "BP",
    "NP",
    "PSF",
    "NITRO",
    "PV",
    "PTB 312",
    "PTB 555",
    "AF",
    "BN",
    "BL",
    "CN",
    "CS",
    "XXV",
    "XXX",
    "EAGLE N",
    "V",
    "SF",
    "*",
    "TESTED",
    "CIP",
    "EXPORT",
)


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(DIGITS[int(i)] for i in rng.integers(0, 10, size=n))


def _letters(rng: np.random.Generator, n: int, alphabet: str = SERIAL_LETTERS) -> str:
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), size=n))


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(0, len(seq)))]


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (both inclusive)."""
    return int(rng.integers(lo, hi + 1))


def _serial_formats() -> list[Callable[[np.random.Generator], str]]:
    d, L, i = _digits, _letters, _int
    return [
        lambda r: d(r, i(r, 5, 10)),  # 1234567
        lambda r: L(r, 2) + d(r, i(r, 4, 7)),  # AB123456
        lambda r: L(r, 1) + d(r, i(r, 4, 6)),  # K12345
        lambda r: L(r, 3) + d(r, i(r, 5, 6)),  # BDA123456
        lambda r: "US" + d(r, 7),  # US1234567
        lambda r: d(r, i(r, 4, 6)) + L(r, i(r, 1, 2)),  # 12345AB
        lambda r: d(r, 3) + "-" + d(r, 5),  # 123-45678
        lambda r: L(r, 2) + "-" + d(r, i(r, 4, 6)),  # AB-12345
        lambda r: L(r, 3) + "-" + d(r, 4),  # ABC-1234
        lambda r: d(r, 8) + "-" + L(r, 1) + d(r, 4),  # FFL-prefixed serial 98712345-A0451
        lambda r: L(r, 2) + " " + d(r, 2) + " " + d(r, 4),  # Makarov-style AB 27 1234
        lambda r: L(r, 2) + " " + d(r, 4),  # AB 1234
        lambda r: d(r, 2) + L(r, 2) + d(r, i(r, 4, 5)),  # 17AB12345 (year-coded)
        lambda r: L(r, 1) + d(r, 4) + L(r, 1),  # A1234B
        lambda r: d(r, 1) + L(r, 2) + d(r, 5),  # 1AB23456
        lambda r: "No " + d(r, i(r, 4, 7)),  # No 123456
        lambda r: "N" + d(r, i(r, 5, 7)),  # N123456
        lambda r: L(r, 2) + d(r, 3) + L(r, 2),  # AB123CD
        lambda r: d(r, 2) + "-" + d(r, 6),  # 07-123456
        lambda r: "SN " + d(r, i(r, 6, 8)),  # SN 1234567
    ]


_SERIAL_FORMATS = _serial_formats()


def random_serial(rng: np.random.Generator) -> str:
    """A serial number in one of ~20 formats drawn uniformly (no bias to one format)."""
    return _SERIAL_FORMATS[int(rng.integers(0, len(_SERIAL_FORMATS)))](rng)


def random_year(rng: np.random.Generator) -> str:
    """A year or a year/proof code as marked."""
    y = _int(rng, 1940, 2024)
    k = int(rng.integers(0, 5))
    if k == 0:
        return str(y)
    if k == 1:
        return f"{y % 100:02d}"
    if k == 2:
        return f"MFD {y}"
    if k == 3:
        return f"{_int(rng, 1, 12):02d}/{y % 100:02d}"
    return f"{y}r."


def random_import_line(rng: np.random.Generator, country: str | None = None) -> str:
    """A US-style import mark (importer, city, state), sometimes with a year or the country of origin.

    Args:
        rng: the generator.
        country: the country of manufacture as marked (``"BELGIUM"``); an import mark that names a country
            names this one. ``None``: the mark names no country.
    """
    name, place = IMPORTERS[int(rng.integers(0, len(IMPORTERS)))]
    k = int(rng.integers(0, 5))
    if k == 0:
        return f"IMP BY {name} {place}"
    if k == 1:
        return f"IMPORTED BY {name} {place}"
    if k == 2 or (k == 4 and not country):
        return f"{name} {place}"
    if k == 3:
        return f"IMP {name} {place} {_int(rng, 1985, 2024)}"
    return f"{name} {place} {country}"


_MADE_IN = ("MADE IN ", "Made in ")


@functools.cache
def _country_names() -> frozenset[str]:
    """Compact forms of the registry's country names (current and former states)."""
    from marktrace.inference.registry import load_registry

    return frozenset(load_registry().index.country_names)


def marked_country(line: str) -> str | None:
    """The country name a country line marks (``"MADE IN BELGIUM"`` → ``"BELGIUM"``), or ``None``.

    The shortest tail of the line (after ``MADE IN``) that is a registry country name: ``"KARLOVAC CROATIA"``
    → ``"CROATIA"``, ``"MADE IN CZECH REPUBLIC"`` → ``"CZECH REPUBLIC"``; a town alone (``"GARDONE V.T."``)
    → ``None``.
    """
    from marktrace.inference.registry import compact, tokenize

    for prefix in _MADE_IN:
        if line.startswith(prefix):
            line = line[len(prefix):]
    words = line.split()
    names = _country_names()
    for k in range(len(words) - 1, -1, -1):
        tail = " ".join(words[k:])
        if compact(tokenize(tail)) in names:
            return tail.upper()
    return None


def marking_country(country_line: str, maker_countries: Sequence[str]) -> str | None:
    """The country of a marking: the one its country line names, else the first its maker's lines name."""
    for line in (country_line, *maker_countries):
        found = marked_country(line)
        if found:
            return found
    return None


def _maybe_lower(rng: np.random.Generator, s: str) -> str:
    """Occasionally title-case a line (some makers use mixed case)."""
    if rng.random() < 0.08:
        return s.title()
    return s


SERIAL_PREFIXES: tuple[str, ...] = ("SER. ", "S/N ", "SERIAL ", "No. ", "SN ")
"""Words sometimes marked before a serial number; they are not part of the serial."""


def strip_serial_prefix(text: str) -> str:
    """The serial number proper of a serial line (without a leading ``S/N``-style word)."""
    for prefix in SERIAL_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def random_marking_lines(rng: np.random.Generator, n_lines: tuple[int, int] = (1, 4)) -> list[tuple[str, Role]]:
    """Texts of one marking panel: between n_lines[0] and n_lines[1] lines, always one serial.

    Returns (text, role) pairs in top-to-bottom order.
    """
    lo, hi = max(1, n_lines[0]), max(1, n_lines[1])
    n = _int(rng, lo, max(lo, hi))
    maker, countries, models = MAKERS[int(rng.integers(0, len(MAKERS)))]
    serial_text = random_serial(rng)
    if rng.random() < 0.15:
        serial_text = _pick(rng, SERIAL_PREFIXES) + serial_text
    maker_text = _maybe_lower(rng, maker)
    country_text = _pick(rng, countries) if rng.random() < 0.7 else _pick(rng, COUNTRY_LINES)
    calibre_text = _pick(rng, CALIBRES)
    model_text = _pick(rng, models)
    # an import mark's country is the country of manufacture: the one this marking names
    import_text = random_import_line(rng, marking_country(country_text, countries))
    pool: list[tuple[str, Role]] = [
        (maker_text, "maker"),
        (country_text, "country"),
        (calibre_text, "calibre"),
        (model_text, "model"),
        (import_text, "import"),
        (random_year(rng), "year"),
        (" ".join(_pick(rng, PROOF_MARKS) for _ in range(_int(rng, 1, 3))), "proof"),
    ]
    # Combined lines are common: "MODEL CAL" or "MAKER COUNTRY".
    if rng.random() < 0.25:
        pool[0] = (f"{pool[0][0]} {pool[1][0]}", "maker")
    if rng.random() < 0.2:
        pool[3] = (f"{pool[3][0]} {pool[2][0]}", "model")
    # Weighted choice without replacement of the other lines.
    weights = np.array([0.9, 0.7, 0.7, 0.6, 0.35, 0.3, 0.25])
    k = min(n - 1, len(pool))
    chosen = sorted(rng.choice(len(pool), size=k, replace=False, p=weights / weights.sum()).tolist()) if k else []
    lines: list[tuple[str, Role]] = [pool[c] for c in chosen]
    pos = int(rng.integers(0, len(lines) + 1))
    lines.insert(pos, (serial_text, "serial"))
    return lines


def charset() -> str:
    """The printable-ASCII charset the generators draw from (space included)."""
    return "".join(chr(c) for c in range(32, 127))
