"""Scoring: serial exact match and character error rate, and the summary of one engine on one set.

Definitions (the README's table uses them):

- both the truth and the prediction go through :func:`bench.sets.normalize_serial` (leading label such
  as ``S/N`` and all spaces removed, case kept);
- **exact**: the normalised strings are equal;
- **CER**: Levenshtein distance / length of the normalised truth (an empty prediction scores 1.0; a long
  wrong prediction can score above 1);
- peers are scored on their recognised line closest to the truth (minimum edit distance after
  normalisation, over every photo of the item); marktrace on its own ``serial_number`` field.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from bench.sets import normalize_serial
from marktrace.datasets.synth import FLAT_BELOW


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1)."""
    from marktrace.inference.assemble import edit_distance

    return edit_distance(a, b) if len(a) >= len(b) else edit_distance(b, a)


_LOOSE_LABEL = re.compile(r"^\s*(?:(?:SERIAL|SER\.?|S/N|SN|N[O°]\.?)\s*[:#]?\s*)+", re.IGNORECASE)
"""The truth's labels as a reading may run them into the serial (``SN1234567`` for ``SN 1234567``)."""


def normalize_prediction(prediction: str, truth: str) -> str:
    """A read serial as scored against ``truth``: :func:`normalize_serial`, and when the truth itself starts
    with a label, also with a label run into the digits removed (whichever is nearer the truth).

    The truth's label is removed whether or not a space follows it; a peer's line must get the same
    treatment (marktrace's serial field never carries the label). A serial such as ``SN123456`` whose truth
    has no label is still scored as read.
    """
    t = normalize_serial(truth)
    plain = normalize_serial(prediction)
    if len(t) == len(re.sub(r"\s+", "", truth)):  # no label on the truth
        return plain
    loose = re.sub(r"\s+", "", _LOOSE_LABEL.sub("", prediction))
    return min((plain, loose), key=lambda p: levenshtein(p, t))


def cer(prediction: str, truth: str) -> float:
    """Character error rate of normalised strings (see the module docstring)."""
    t = normalize_serial(truth)
    p = normalize_prediction(prediction, truth)
    if not t:
        raise ValueError("empty truth")
    return levenshtein(p, t) / len(t)


def closest_line(lines: Iterable[str], truth: str) -> str:
    """The line with the smallest edit distance to the truth after normalisation ('' when none)."""
    t = normalize_serial(truth)
    best, best_d = "", len(t)
    for line in lines:
        d = levenshtein(normalize_prediction(line, truth), t)
        if d < best_d:
            best, best_d = line, d
    return best


def score(prediction: str, truth: str) -> dict[str, Any]:
    """``{"exact": bool, "cer": float}`` of one prediction."""
    exact = normalize_prediction(prediction, truth) == normalize_serial(truth)
    return {"exact": exact, "cer": round(cer(prediction, truth), 4)}


def alteration_positions(flags: Sequence[dict[str, Any]], value: str) -> set[int]:
    """Positions (in the normalised serial) of a serial field's over-stamp / alteration flags.

    A flag counts when its ``kind`` mentions "stamp" or "alter", or when it has no ``kind`` but a
    ``position`` and a ``score`` (the shape :func:`marktrace.inference.enhance.alteration.flag_alterations`
    returns). ``position`` is read as an index into the field's value (spaces then dropped).
    """
    out: set[int] = set()
    for flag in flags:
        kind = str(flag.get("kind", ""))
        pos = flag.get("position")
        if not isinstance(pos, int):
            continue
        if ("stamp" in kind or "alter" in kind) or (not kind and "score" in flag):
            out.add(len(re.sub(r"\s+", "", value[:pos])) if 0 <= pos <= len(value) else pos)
    return out


def align_positions(prediction: str, truth: str) -> dict[int, int]:
    """Map positions of the space-stripped prediction to positions of the normalised truth.

    A minimum edit-distance alignment: matched and substituted characters map, inserted ones (and a
    label the prediction kept) do not. Without it, one dropped or extra character would shift every
    later flag off its character.
    """
    from marktrace.inference.assemble import align_characters

    return align_characters(re.sub(r"\s+", "", prediction), normalize_serial(truth))


VISIBLE_AT = 0.1
"""An over-stamp is visible when at least this share of its older strike's stroke shows outside the new marks
with relief left (the generator's ``overstamp_visible``); below it only the new character is there to see."""


def alteration_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Over-stamp flag recall and false-flag rate over rows whose truth marks over-stamped characters.

    Truth: ``truth_extra["serial_overstamped"]`` (positions in the normalised serial). Flags: the
    engine's ``fields["serial_flags"]``, mapped onto the truth by :func:`align_positions` (a flag on a
    character the truth does not have is a false flag). Recall: over-stamped characters flagged /
    over-stamped characters; false-flag rate: flags on other characters / clean characters of the
    truth. ``visible_flag_recall``: the recall over the over-stamps whose older strike shows (at least
    :data:`VISIBLE_AT` of its stroke; rows without that truth count as visible). ``by_method``: the recall per
    marking method (``truth_extra["method"]``, rendered sets), since how a marking was made decides how much of an
    older strike a photo can show. Returns None when no row carries
    truth positions, or no row of the engine carries flags at all (the engine does not flag alterations).
    """
    truthful = [r for r in rows if (r.get("truth_extra") or {}).get("serial_overstamped") is not None]
    if not truthful or not any("serial_flags" in (r.get("fields") or {}) for r in rows):
        return None
    hits = positives = false_flags = clean = 0
    visible_hits = visible_positives = 0
    by_method: dict[str, list[int]] = {}
    for r in truthful:
        truth_pos = set(r["truth_extra"]["serial_overstamped"])
        n_chars = len(normalize_serial(r["truth"]))
        prediction = str(r.get("prediction", ""))
        flagged = alteration_positions((r.get("fields") or {}).get("serial_flags", []), prediction)
        to_truth = align_positions(prediction, r["truth"])
        on_truth = {to_truth[p] for p in flagged if p in to_truth}
        positives += len(truth_pos)
        hits += len(truth_pos & on_truth)
        clean += n_chars - len(truth_pos)
        false_flags += len(on_truth - truth_pos) + sum(1 for p in flagged if p not in to_truth)
        if float(r["truth_extra"].get("overstamp_visible", 1.0)) >= VISIBLE_AT:
            visible_positives += len(truth_pos)
            visible_hits += len(truth_pos & on_truth)
        method = r["truth_extra"].get("method")
        if method and truth_pos:
            counts = by_method.setdefault(str(method), [0, 0])
            counts[0] += len(truth_pos & on_truth)
            counts[1] += len(truth_pos)
    return {
        "overstamped_chars": positives,
        "flag_recall": round(hits / positives, 4) if positives else None,
        "false_flag_rate": round(false_flags / clean, 4) if clean else None,
        "visible_overstamped_chars": visible_positives,
        "visible_flag_recall": round(visible_hits / visible_positives, 4) if visible_positives else None,
        "by_method": {
            m: {"overstamped_chars": n, "flag_recall": round(h / n, 4)} for m, (h, n) in sorted(by_method.items())
        },
    }


def _mean(xs: Sequence[float]) -> float | None:
    return round(statistics.fmean(xs), 4) if xs else None


def _median(xs: Sequence[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of one engine's per-item rows on one set.

    Rows have ``exact``, ``cer``, ``cpu_ms``, ``wall_ms``, ``n_images`` and ``error`` (None when ok).
    An item that errored counts as a miss with CER 1.0; times average over the items that ran.
    """
    n = len(rows)
    ok = [r for r in rows if r.get("error") is None]
    images = sum(int(r.get("n_images", 1)) for r in ok)
    cpu = [float(r["cpu_ms"]) for r in ok]
    wall = [float(r["wall_ms"]) for r in ok]
    out: dict[str, Any] = {
        "n": n,
        "n_errors": n - len(ok),
        "exact": round(sum(bool(r.get("exact")) for r in rows) / n, 4) if n else None,
        "cer": _mean([float(r["cer"]) if r.get("error") is None else 1.0 for r in rows]),
        "cpu_ms_per_item": _mean(cpu),
        "wall_ms_per_item": _mean(wall),
        "cpu_ms_median": _median(cpu),
        "wall_ms_median": _median(wall),
        "cpu_ms_per_image": round(sum(cpu) / images, 3) if images else None,
        "wall_ms_per_image": round(sum(wall) / images, 3) if images else None,
    }
    closest = [r for r in ok if "closest_exact" in r]
    if closest:
        out["closest_line_exact"] = round(sum(bool(r["closest_exact"]) for r in closest) / n, 4)
    parts = sorted({str(r.get("part", "")) for r in rows} - {""})
    if len(parts) > 1:
        out["by_part"] = {
            p: {
                "n": len(pr := [r for r in rows if r.get("part") == p]),
                "exact": round(sum(bool(r.get("exact")) for r in pr) / len(pr), 4),
            }
            for p in parts
        }
    methods = sorted({str(r["fields"]["method"]) for r in ok if r.get("fields", {}).get("method")})
    if methods:
        out["by_method"] = {}
        for m in methods:
            mr = [r for r in ok if r.get("fields", {}).get("method") == m]
            out["by_method"][m] = {
                "n": len(mr),
                "exact": round(sum(bool(r.get("exact")) for r in mr) / len(mr), 4),
                "cpu_ms_per_item": _mean([float(r["cpu_ms"]) for r in mr]),
                "wall_ms_per_item": _mean([float(r["wall_ms"]) for r in mr]),
            }
    alteration = alteration_scores(rows)
    if alteration is not None:
        out["alteration"] = alteration
    makers = maker_scores(rows)
    if makers is not None:
        out["makers"] = makers
    relief = relief_scores(rows)
    if relief is not None:
        out["relief"] = relief
    confidence = confidence_scores(rows)
    if confidence is not None:
        out["confidence"] = confidence
    return out


def relief_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Serial exact match over the markings whose every serial character keeps some relief.

    A rendered marking's truth carries ``truth_extra["serial_relief_min"]``: the smallest share of a serial
    character's stroke that grinding left any depth in. Below :data:`FLAT_BELOW` a character is gone from
    the metal, and no photo, light or method can read the serial: ``flat`` counts those markings, ``exact``
    is the share of the others read exactly. None when no row carries the truth (real photos, older sets).
    """
    known = [r for r in rows if (r.get("truth_extra") or {}).get("serial_relief_min") is not None]
    if not known:
        return None
    kept = [r for r in known if float(r["truth_extra"]["serial_relief_min"]) >= FLAT_BELOW]
    return {
        "n": len(known),
        "flat": len(known) - len(kept),
        "exact": round(sum(bool(r.get("exact")) for r in kept) / len(kept), 4) if kept else None,
    }


CONFIDENT_AT = 0.9
UNSURE_BELOW = 0.6
"""The serial confidences the calibration summary splits at (the reader's own bar for trying more is 0.6)."""


def confidence_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """How far an engine's serial confidence can be trusted, over rows whose fields carry ``serial_confidence``.

    ``confident`` / ``unsure``: how many reads were at or above :data:`CONFIDENT_AT` / below
    :data:`UNSURE_BELOW` and what share of them was right; ``auroc``: the chance that a right read has a higher
    confidence than a wrong one (ties count half; None when all reads are right or all wrong); ``brier``: the
    mean squared difference between confidence and rightness (0 is perfect); ``exact_or_alternative``: the share
    of all rows whose serial or one of its alternatives is right (None when no row lists alternatives);
    ``alternatives``: the same for the alternatives' own confidences, where rows carry them (``alternative_scores``,
    each ``[confidence, right]``): how many were listed, the share right, their mean confidence, their Brier score,
    and ``above_value``, the rows listing an alternative more confident than the value. An item that errored, or
    whose read found no serial, is a wrong read at confidence 0.
    """
    if not any("serial_confidence" in (r.get("fields") or {}) for r in rows):
        return None
    # every row counts: one whose engine found no serial (no confidence) is a wrong read at confidence 0,
    # as is one that errored
    pairs = [(bool(r.get("exact")), float((r.get("fields") or {}).get("serial_confidence") or 0.0)) for r in rows]

    def share(group: list[bool]) -> dict[str, Any]:
        return {"n": len(group), "right": round(sum(group) / len(group), 4) if group else None}

    right = [c for ok, c in pairs if ok]
    wrong = [c for ok, c in pairs if not ok]
    auroc = None
    if right and wrong:
        wins = sum((p > q) + 0.5 * (p == q) for p in right for q in wrong)
        auroc = round(wins / (len(right) * len(wrong)), 4)
    listed = [r for r in rows if "exact_or_alternative" in r]
    out: dict[str, Any] = {
        "n": len(pairs),
        "exact_or_alternative": round(sum(bool(r["exact_or_alternative"]) for r in listed) / len(rows), 4)
        if listed else None,
        "confident": {"at": CONFIDENT_AT, **share([ok for ok, c in pairs if c >= CONFIDENT_AT])},
        "unsure": {"below": UNSURE_BELOW, **share([ok for ok, c in pairs if c < UNSURE_BELOW])},
        "auroc": auroc,
        "brier": round(statistics.fmean((c - ok) ** 2 for ok, c in pairs), 4),
    }
    scored = [r for r in rows if isinstance(r.get("alternative_scores"), list)]
    alternatives = [(bool(ok), float(c)) for r in scored for c, ok in r["alternative_scores"]]
    if alternatives:
        out["alternatives"] = {
            "n": len(alternatives),
            "right": round(sum(ok for ok, _ in alternatives) / len(alternatives), 4),
            "mean_confidence": round(statistics.fmean(c for _, c in alternatives), 4),
            "brier": round(statistics.fmean((c - ok) ** 2 for ok, c in alternatives), 4),
            "above_value": sum(
                any(float(c) > float((r.get("fields") or {}).get("serial_confidence") or 0.0) + 1e-9
                    for c, _ in r["alternative_scores"]) for r in scored),
        }
    return out


def truth_maker_country(extra: dict[str, Any]) -> tuple[str | None, str | None]:
    """Canonical manufacturer and ISO country of a rendered marking's maker/country lines.

    The rendered texts are read by the record parser itself (text, not pixels), so the truth is the
    registry's canonical name for what was marked; a maker the registry lacks has no truth (None). The
    manufacturer comes from the maker, country and model lines only (an import mark names the importer); the
    country, when no country line was marked, also from the import mark, whose country is the country
    of manufacture.
    """
    from marktrace.inference.parse import parse_lines
    from marktrace.inference.registry import load_registry
    from marktrace.inference.schema import Line

    def parse(texts: list[str]) -> dict[str, Any]:
        lines = [Line(text=t, confidence=1.0, box=[(0, 0), (1, 0), (1, 1), (0, 1)], file="truth") for t in texts]
        return parse_lines(lines, load_registry())

    # the model line too: it decides between makers that share a mark (SIG SAUER with a P365 is SIG Sauer Inc.)
    texts = [t for t in (extra.get("maker"), extra.get("country"), extra.get("model")) if t]
    parsed = parse(texts)
    maker = parsed.get("manufacturer")
    country = parsed.get("country_of_manufacture")
    if not extra.get("country") and extra.get("import") and maker is not None:
        with_import = parse([*texts, extra["import"]]).get("country_of_manufacture")
        if with_import is not None and with_import.evidence.method != "registry_fallback":
            country = with_import
    return (maker.value if maker else None), (country.value if country else None)


def maker_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Manufacturer and country-of-manufacture accuracy over rows whose marking has a registry maker line.

    With ``by_part`` per part of the set (the ``makers`` set: ``clean`` and ``worn``, the two targets of
    issue 4) when the rows come from more than one.
    """
    scored: list[tuple[str, bool, bool]] = []
    for r in rows:
        extra = r.get("truth_extra") or {}
        if not extra.get("maker") or not r.get("fields"):
            continue  # no maker line, or an engine that fills no fields
        maker, country = truth_maker_country(extra)
        if maker is None:
            continue
        fields = r.get("fields") or {}
        country_ok = country is None or fields.get("country_of_manufacture") == country
        scored.append((str(r.get("part", "")), fields.get("manufacturer") == maker, country_ok))
    if not scored:
        return None

    def summary(group: Sequence[tuple[str, bool, bool]]) -> dict[str, Any]:
        return {
            "n": len(group),
            "manufacturer": round(sum(m for _, m, _ in group) / len(group), 4),
            "country": round(sum(c for _, _, c in group) / len(group), 4),
        }

    out = summary(scored)
    parts = sorted({p for p, _, _ in scored} - {""})
    if len(parts) > 1:
        out["by_part"] = {p: summary([s for s in scored if s[0] == p]) for p in parts}
    return out
