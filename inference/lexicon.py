"""Lexicon spotting: find a registry phrase inside a recognised line from the recognizer's CTC probabilities.

A maker line that is worn or set in an unusual font often decodes to near-nonsense (``IZMMAGH``,
``MMLMET``) although the recognizer's per-step probabilities still favour the marked letters
(``IZHMASH``, ``VALMET``) over most others. Edit distance on the decoded text throws that away; this
module keeps it. For every phrase of a lexicon it finds the best CTC alignment of the phrase to some
span of the line (Viterbi, free start and end, so the rest of the line is ignored) and scores it
against the unconstrained best path over the same span:

``score = sum over the span of log p(aligned class) - log max_c p(c)``, always ``<= 0``,

divided by the phrase's number of letters and digits. ``exp(score)`` is the geometric mean, per
character, of how much less likely the phrase is than what was decoded: 1.0 when the decoding already
reads it. Letters match either case; spaces and punctuation of a phrase may be skipped (up to three in
a row), since they are often lost on worn metal.

All phrases are aligned together in one flat state array (one numpy pass per time step); a
cheap upper bound (each letter at its best step of the line) skips phrases that cannot reach
the score asked for. Use :class:`LexiconSpotter` once per lexicon and charset, :meth:`LexiconSpotter.spot`
per line; :func:`fill_manufacturer` is the reader's use of it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from marktrace.inference.registry import Registry, normalize_text

if TYPE_CHECKING:
    from marktrace.inference.ctc import DecodedText
    from marktrace.inference.schema import Line

MAX_SKIPPED = 3
"""Most consecutive spaces or punctuation marks of a phrase an alignment may skip."""
MIN_ALNUM = 4
"""Phrases with fewer letters and digits are not spotted (short codes match anything)."""


def ascii_upper(text: str) -> str:
    """``text`` as the registry normalises it (upper case, no accents: ``Česká`` -> ``CESKA``), spaces collapsed."""
    return " ".join(normalize_text(text).split())


@dataclass(frozen=True)
class Spot:
    """The best alignment of one phrase to a line."""

    phrase: str
    """The phrase as the lexicon gives it (normalised: upper case, no accents)."""
    score: float
    """Mean log-ratio per letter or digit against the best path over the same span (``<= 0``)."""
    start: int
    """First time step of the span."""
    end: int
    """Last time step of the span (inclusive)."""
    alnum: int
    """Letters and digits in the phrase."""

    @property
    def ratio(self) -> float:
        """``exp(score)``: 1.0 when the decoded text already reads the phrase."""
        return float(np.exp(self.score))


class _Group:
    """Phrases aligned together: one flat CTC state array for all of them."""

    def __init__(self, phrases: Sequence[str], index: dict[str, int], blank: int) -> None:
        self.phrases = tuple(phrases)
        pairs: dict[tuple[int, int], int] = {(blank, blank): 0}
        labels: list[int] = []
        preds: list[list[int]] = []
        starts: list[int] = []
        ends: list[int] = []
        alnum: list[int] = []
        letter_pairs: list[list[int]] = []
        space = index.get(" ", blank)
        for phrase in self.phrases:
            base = len(labels)
            chars = list(phrase)
            optional = [not ch.isalnum() for ch in chars]
            char_state: list[int] = []
            for j, ch in enumerate(chars):
                if j > 0:  # the blank between chars j-1 and j
                    labels.append(0)
                    preds.append([len(labels) - 1, len(labels) - 2])
                upper = index[ch] if ch != " " else space
                other = index.get(ch.lower(), upper) if ch.isalpha() else upper
                pair = pairs.setdefault((upper, other), len(pairs))
                state = len(labels)
                labels.append(pair)
                incoming = [state]
                if j > 0:
                    incoming.append(state - 1)
                    if chars[j - 1] != ch:
                        incoming.append(state - 2)
                    # Skip up to MAX_SKIPPED optional characters just before this one.
                    k = 1
                    while k <= MAX_SKIPPED and j - k > 0 and optional[j - k]:
                        kept = char_state[j - k - 1]
                        incoming.append(kept + 1)  # the blank after the last kept character
                        if chars[j - k - 1] != ch:
                            incoming.append(kept)
                        k += 1
                preds.append(incoming)
                char_state.append(state)
            starts.append(base)
            ends.append(char_state[-1])
            alnum.append(sum(not o for o in optional))
            letter_pairs.append([labels[st] for st, o in zip(char_state, optional, strict=True) if not o])
        n_states = len(labels)
        width = max(len(p) for p in preds)
        self.preds = np.full((width, n_states), n_states, dtype=np.int64)  # n_states: the -inf sentinel
        for s, incoming in enumerate(preds):
            self.preds[: len(incoming), s] = incoming
        self.labels = np.asarray(labels, dtype=np.int64)
        self.is_start = np.zeros(n_states, dtype=bool)
        self.is_start[np.asarray(starts, dtype=np.int64)] = True
        self.ends = np.asarray(ends, dtype=np.int64)
        self.alnum = np.asarray(alnum, dtype=np.float64)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.sizes = np.diff(np.append(self.starts, n_states))
        # (phrases, pairs) counts of each letter/digit class pair: the bound of :meth:`spot` is counts @ best ratio
        self.pair_counts = np.zeros((len(self.phrases), len(pairs)), dtype=np.float64)
        for i, lp in enumerate(letter_pairs):
            np.add.at(self.pair_counts[i], np.asarray(lp, dtype=np.int64), 1.0)
        ordered = sorted(pairs.items(), key=lambda kv: kv[1])
        self.pair_a = np.asarray([a for (a, _), _ in ordered], dtype=np.int64)
        self.pair_b = np.asarray([b for (_, b), _ in ordered], dtype=np.int64)

    def spot(self, probs: np.ndarray, log_max: np.ndarray, floor: float, low: int, high: int) -> list[Spot]:
        merged = probs[:, self.pair_a] + np.where(self.pair_b != self.pair_a, probs[:, self.pair_b], 0.0)
        ratios = np.minimum(np.log(merged) - log_max[:, None], 0.0)  # (T, pairs); both cases together may pass 0
        # Every letter or digit of a phrase takes at least one step, at no better than its best ratio on the
        # line, and no step adds more than 0: phrases whose bound is under ``floor`` cannot reach it.
        bound = (self.pair_counts @ ratios.max(axis=0)) / self.alnum
        keep = np.flatnonzero((bound >= floor) & (self.alnum >= low) & (self.alnum <= high))
        if keep.size == 0:
            return []
        # Scores of every phrase left, then the spans (where each alignment starts) of those that reach the
        # floor only: tracking where a path began costs as much again per step, and few phrases get there.
        best, _, _ = self._viterbi(ratios, keep, track=False)
        passed = keep[np.isfinite(best) & (best / self.alnum[keep] >= floor)]
        if passed.size == 0:
            return []
        best, best_start, best_end = self._viterbi(ratios, passed, track=True)
        per_char = best / self.alnum[passed]
        return [
            Spot(self.phrases[i], float(per_char[j]), int(best_start[j]), int(best_end[j]), int(self.alnum[i]))
            for j, i in enumerate(passed)
        ]

    def _viterbi(
        self, ratios: np.ndarray, keep: np.ndarray, track: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best alignment score of each phrase in ``keep`` (free start and end).

        With ``track``, also the first and last step of each best alignment (else zeros).
        """
        sel = np.concatenate([np.arange(self.starts[i], self.starts[i] + self.sizes[i]) for i in keep])
        n_states = sel.size
        remap = np.full(len(self.labels) + 1, n_states, dtype=np.int64)
        remap[sel] = np.arange(n_states)
        preds = np.ascontiguousarray(remap[self.preds[:, sel]])  # C order: the per-step max runs along rows
        labels = self.labels[sel]
        is_start = self.is_start[sel]
        ends = remap[self.ends[keep]]
        score = np.full(n_states + 1, -np.inf)
        begun = np.zeros(n_states + 1, dtype=np.int64)
        best = np.full(keep.size, -np.inf)
        best_start = np.zeros(keep.size, dtype=np.int64)
        best_end = np.zeros(keep.size, dtype=np.int64)
        if not track:
            self._scores_only(ratios, preds, labels, is_start, ends, score, best)
            return best, best_start, best_end
        cols = np.arange(n_states)
        for t in range(ratios.shape[0]):
            candidates = score[preds]  # (width, states)
            if track:
                arg = candidates.argmax(axis=0)
                prev = candidates[arg, cols]
                origin = begun[preds[arg, cols]]
            else:
                prev = candidates.max(axis=0)
            fresh = is_start & (prev < 0.0)  # the line before the span costs nothing
            score[:n_states] = np.where(fresh, 0.0, prev) + ratios[t, labels]
            at_end = score[ends]
            if track:
                begun[:n_states] = np.where(fresh, t, origin)
                better = at_end > best
                best_start = np.where(better, begun[ends], best_start)
                best_end = np.where(better, t, best_end)
            best = np.maximum(best, at_end)
        return best, best_start, best_end

    @staticmethod
    def _scores_only(ratios: np.ndarray, preds: np.ndarray, labels: np.ndarray, is_start: np.ndarray,
                     ends: np.ndarray, score: np.ndarray, best: np.ndarray) -> None:
        """:meth:`_viterbi` without tracking spans, into ``score`` and ``best``: the same maxima, fewer gathers.

        A state's first predecessor is itself, and only the states after a phrase's skippable characters have more
        than three; so the step takes the state itself as a slice, its next two predecessors by gathering, and the
        rest for those few states only. A phrase's start state may begin fresh at any step (``max(prev, 0)``: the
        line before the span costs nothing, and no path scores above 0).
        """
        n_states = labels.size
        none = np.full(n_states, n_states, dtype=np.int64)  # the -inf sentinel: no such predecessor
        first, second = (np.ascontiguousarray(preds[k]) if preds.shape[0] > k else none for k in (1, 2))
        more = np.flatnonzero((preds[3:] != n_states).any(axis=0)) if preds.shape[0] > 3 else np.zeros(0, np.int64)
        more_preds = np.ascontiguousarray(preds[3:, more])
        starts = np.flatnonzero(is_start)
        for t in range(ratios.shape[0]):
            prev = np.maximum(score[:n_states], score[first])
            np.maximum(prev, score[second], out=prev)
            if more.size:
                prev[more] = np.maximum(prev[more], score[more_preds].max(axis=0))
            prev[starts] = np.maximum(prev[starts], 0.0)
            prev += ratios[t, labels]
            score[:n_states] = prev
            np.maximum(best, score[ends], out=best)


class LexiconSpotter:
    """CTC alignment of many phrases at once against one line's per-step probabilities.

    All phrases share one flat state array; per line, only the phrases whose length fits and whose upper
    bound can reach the floor asked for are aligned, in a single pass over the time steps (see :meth:`spot`).
    """

    def __init__(self, phrases: Iterable[str], charset: str, blank: int = 0) -> None:
        """Index ``phrases`` for the recognizer's ``charset``.

        Phrases are normalised with :func:`ascii_upper`; duplicates, too-short phrases and phrases with
        characters outside ``charset`` are dropped.
        """
        index = {ch: i + 1 for i, ch in enumerate(charset) if i + 1 != blank}
        kept: list[str] = []
        seen: set[str] = set()
        for raw in phrases:
            phrase = ascii_upper(raw).strip(" .,;:-/'&")
            if phrase in seen or sum(ch.isalnum() for ch in phrase) < MIN_ALNUM:
                continue
            if any(ch not in index and ch != " " for ch in phrase):
                continue
            seen.add(phrase)
            kept.append(phrase)
        self.phrases: tuple[str, ...] = tuple(kept)
        self._group = _Group(kept, index, blank) if kept else None

    def __len__(self) -> int:
        return len(self.phrases)

    def spot(
        self, probs: np.ndarray, min_alnum: int = MIN_ALNUM, max_alnum: int | None = None, floor: float = -np.inf
    ) -> list[Spot]:
        """The best alignment of each phrase to the (T, C) probabilities of one line, best first.

        Only phrases with ``min_alnum`` to ``max_alnum`` letters and digits are aligned, and only those
        that can score ``floor`` or better (a cheap upper bound skips the others); phrases that cannot
        fit the line or score under ``floor`` are left out.
        """
        if probs.ndim != 2 or probs.shape[0] == 0 or self._group is None:
            return []
        top = max_alnum if max_alnum is not None else 10**9
        p = np.clip(probs.astype(np.float64), 1e-12, None)
        log_max = np.log(p.max(axis=1))
        spots = self._group.spot(p, log_max, floor, min_alnum, top)
        spots.sort(key=lambda s: -s.score)
        return spots


def replace_span(text: str, char_steps: Sequence[int], spot: Spot) -> str:
    """``text`` with the characters decoded inside ``spot``'s span replaced by its phrase.

    ``char_steps`` gives the time step of each character of ``text`` (from the CTC decoding). Spaces
    the decoding put just outside the span are kept; the phrase is separated from its neighbours by a
    space when the decoding had letters or digits right against it.
    """
    inside = [i for i, step in enumerate(char_steps) if spot.start <= step <= spot.end]
    if inside:
        first, last = inside[0], inside[-1] + 1
    else:
        first = last = sum(step < spot.start for step in char_steps)
    before, after = text[:first], text[last:]
    if before and before[-1].isalnum():
        before += " "
    if after and after[0].isalnum():
        after = " " + after
    return before + spot.phrase + after


MIN_SCORE = -1.4
"""A maker phrase is taken only when its mean log-ratio per character is at least this (``exp`` = 0.25: a worn
maker line decodes to near-nonsense, and the margin and cover bars below, not this one, keep noise out; the
match's confidence, ``exp(score) * CONFIDENCE_WEIGHT``, says how weak it is),"""
MIN_PHRASE_ALNUM = 5
"""... has at least this many letters and digits (shorter marks match noise too often),"""
MIN_MARGIN = 0.15
"""... beats the best phrase of any other maker by this much per character,"""
SHORT_PHRASE_ALNUM = 6
MIN_MARGIN_SHORT = 0.8
"""... or by this much when it has at most ``SHORT_PHRASE_ALNUM`` letters and digits (a garbled short line
fits several five- or six-letter marks about equally well; a short mark is taken only when it clearly wins),"""
MIN_COVER = 0.5
"""... and accounts for at least this share of the line's decoded letters and digits."""
OPENING_MIN_ALNUM = 7
"""A phrase that opens the line (see :meth:`MakerLexicon.best`) needs at least this many letters and digits,"""
OPENING_MIN_SCORE = -0.35
"""... and at least this score (``exp`` = 0.70), to be taken without covering half the line's letters."""
MAX_RIVALS = 2
"""Other makers' phrases listed as a lexicon match's alternatives, at most."""
CONFIDENCE_WEIGHT = 0.6
"""A lexicon match's confidence is ``exp(score) * CONFIDENCE_WEIGHT``: never as sure as a plain reading."""
_IMPORT_LINE = re.compile(r"\bIMP", re.IGNORECASE)


class MakerLexicon:
    """The registry's manufacturer marks, ready to be spotted in lines whose text names no maker."""

    def __init__(self, registry: Registry, charset: str) -> None:
        """Index the marks of every ``manufacturer`` entry of ``registry`` for the recognizer's ``charset``."""
        self.owners: dict[str, set[str]] = {}
        for maker in registry.makers:
            if maker.kind != "manufacturer":
                continue
            for mark in maker.marks:
                self.owners.setdefault(ascii_upper(mark).strip(" .,;:-/'&"), set()).add(maker.id)
        self.spotter = LexiconSpotter(self.owners, charset)

    def best(self, text: DecodedText, other_letters: int = 0) -> Spot | None:
        """The maker phrase this line most likely shows, if it passes every bar above; else None.

        ``other_letters`` of the line's letters and digits are already accounted for by another field (a
        country read on the same line, ``MADE IN ITALY``) and do not count toward :data:`MIN_COVER`.
        """
        return self.best_and_rivals(text, other_letters)[0]

    def best_and_rivals(self, text: DecodedText, other_letters: int = 0) -> tuple[Spot | None, list[Spot]]:
        """:meth:`best`, and the rival phrases an examiner should see beside it.

        The rivals are the best phrase of each of up to :data:`MAX_RIVALS` other makers among those the decision
        weighed that also reach :data:`MIN_SCORE` (a mark opening the line was weighed against phrases down to
        its own bar only), best first; empty when nothing is taken.
        """
        found = self._best_among(text, other_letters)
        if found is None:
            return None, []
        top, spots = found
        rivals: list[Spot] = []
        taken = set(self.owners.get(top.phrase, set()))
        for spot in spots:
            if len(rivals) >= MAX_RIVALS or spot.score < MIN_SCORE:
                break
            ids = self.owners.get(spot.phrase, set())
            if ids and not ids & taken:
                rivals.append(spot)
                taken |= ids
        return top, rivals

    def _best_among(self, text: DecodedText, other_letters: int) -> tuple[Spot, list[Spot]] | None:
        """The taken phrase and the spots it was chosen from (best first), or None."""
        if text.probs is None:
            return None
        letters = sum(ch.isalnum() for ch in text.text)
        low = max(MIN_PHRASE_ALNUM, math.ceil(MIN_COVER * max(letters - other_letters, 0)))
        # Rivals are needed down to the margin below the best phrase's score: a long mark's margin first (few
        # phrases reach it), a short mark's wider one only when the best is a short mark that needs it.
        floor = MIN_SCORE - MIN_MARGIN
        spots = self.spotter.spot(text.probs, low, 2 * letters + 4, floor=floor)
        top = spots[0] if spots else None
        if top is not None and top.score >= MIN_SCORE and top.alnum <= SHORT_PHRASE_ALNUM and (
            top.score - MIN_MARGIN_SHORT < floor
        ):
            spots = self.spotter.spot(text.probs, low, 2 * letters + 4, floor=top.score - MIN_MARGIN_SHORT)
        found = self._clear_winner(spots, MIN_SCORE)
        if found is not None:
            return found, spots
        if low <= OPENING_MIN_ALNUM:
            return None
        # A long maker name that opens the line, read almost as decoded, followed by what wear garbled (its
        # town: ZASTAVA in XASTAVAARIGULA 1C): taken without covering half the line, against every rival.
        spots = self.spotter.spot(text.probs, MIN_PHRASE_ALNUM, 2 * letters + 4, floor=OPENING_MIN_SCORE - MIN_MARGIN)
        opening = next((s for s in spots if s.alnum >= OPENING_MIN_ALNUM and s.score >= OPENING_MIN_SCORE
                        and _opens(text, s)), None)
        if opening is None:
            return None
        ranked = [opening, *(s for s in spots if s is not opening)]
        found = self._clear_winner(ranked, OPENING_MIN_SCORE)
        return None if found is None else (found, ranked)

    def _clear_winner(self, spots: Sequence[Spot], min_score: float) -> Spot | None:
        """``spots[0]`` if it scores ``min_score`` and beats every other maker's phrase in ``spots`` by the margin."""
        if not spots or spots[0].score < min_score:
            return None
        top = spots[0]
        margin = MIN_MARGIN_SHORT if top.alnum <= SHORT_PHRASE_ALNUM else MIN_MARGIN
        ids = self.owners.get(top.phrase, set())
        rival = next((s for s in spots[1:] if not self.owners.get(s.phrase, set()) & ids), None)
        if rival is not None and top.score - rival.score < margin:
            return None
        return top


def _opens(text: DecodedText, spot: Spot) -> bool:
    """Whether ``spot``'s span starts the line: no letter or digit was decoded before it."""
    return not any(ch.isalnum() and step < spot.start for ch, step in zip(text.text, text.char_steps, strict=False))


@dataclass(frozen=True)
class Reading:
    """One attempt's lines as the lexicon sees them.

    The lines, their decodings, the record parsed from them, and the method and view that produced them.
    """

    lines: Sequence[Line]
    decoded: Sequence[DecodedText]
    record: dict[str, Any]
    method: str
    view: str


UNCLAIMING_FIELDS = frozenset({"other_markings", "serial_obliterated", "country_of_manufacture", "manufacturer"})
"""Fields whose evidence does not take a line from the lexicon: left-over text, the serial's quality judgement,
a country read on the line (``KALASHNIKOV CONCERN MADE IN RUSSIA``), and, in another attempt's record, a
maker read there."""


def _claimed_lines(record: dict[str, Any]) -> set[str]:
    """Line texts some field rests on (a line only in ``other_markings`` is still free)."""
    claimed: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, list):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            evidence = value.get("evidence")
            if isinstance(evidence, dict) and evidence.get("line_text"):
                claimed.add(str(evidence["line_text"]))
            for v in value.values():
                if isinstance(v, dict | list):
                    visit(v)

    visit({k: v for k, v in record.items() if k not in UNCLAIMING_FIELDS})
    return claimed


def _country_letters(record: dict[str, Any], line_text: str) -> int:
    """Letters and digits of the country as marked, when ``record`` read its country on this line."""
    country = record.get("country_of_manufacture")
    if not isinstance(country, dict) or (country.get("evidence") or {}).get("line_text") != line_text:
        return 0
    return sum(ch.isalnum() for ch in str(country.get("text_as_marked") or ""))


def _first_fitting(
    found: Sequence[tuple[Spot, list[Spot], int, Reading]], hashes: dict[str, str], registry: Registry
) -> tuple[Spot, list[Spot], int, Reading, str, list[Line], dict[str, Any]] | None:
    """The best-scoring spot whose phrase, put in place of its span, parses as that line's maker.

    With the replaced text, the changed lines and the record parsed from them. None when the best spot's line does
    not parse as a maker; a spot that would take the place of a country read on its line (``IZHEVSK RUSSIA`` read as
    ``IZHEVSK ROSSI``) is passed over for the next one.
    """
    from marktrace.inference.assemble import build_record

    for spot, rivals, index, reading in sorted(found, key=lambda f: -f[0].score):
        text = reading.decoded[index]
        replaced = replace_span(text.text, text.char_steps, spot)
        changed = [*reading.lines[:index], reading.lines[index].model_copy(update={"text": replaced}),
                   *reading.lines[index + 1 :]]
        reparsed = build_record(changed, hashes, registry, method=reading.method, view=reading.view)
        maker = reparsed.get("manufacturer")
        if not isinstance(maker, dict) or (maker.get("evidence") or {}).get("line_text") != replaced:
            return None
        if _country_kept(reading.record, reading.lines[index].text, reparsed, replaced):
            return spot, rivals, index, reading, replaced, changed, reparsed
    return None


def _country_kept(before: dict[str, Any], line_text: str, after: dict[str, Any], replaced: str) -> bool:
    """Whether a country ``before`` read on the line ``line_text`` is still read, the same, on it as ``replaced``."""
    country = before.get("country_of_manufacture")
    if not isinstance(country, dict) or (country.get("evidence") or {}).get("line_text") != line_text:
        return True  # no country on the line to keep
    kept = after.get("country_of_manufacture")
    return (isinstance(kept, dict) and (kept.get("evidence") or {}).get("line_text") == replaced
            and kept.get("value") == country.get("value"))


def _rival_makers(
    value: dict[str, Any], rivals: Sequence[Spot], lexicon: MakerLexicon, registry: Registry
) -> list[dict[str, Any]]:
    """The field's alternatives followed by the makers of the rival phrases, at their lexicon confidence."""
    out = [a for a in value.get("alternatives") or [] if isinstance(a, dict)]
    names = {value.get("value"), *(a.get("value") for a in out)}
    for rival in rivals:
        for maker_id in sorted(lexicon.owners.get(rival.phrase, set())):
            name = registry.maker(maker_id).name
            if name not in names:
                names.add(name)
                out.append({"value": name, "confidence": round(rival.ratio * CONFIDENCE_WEIGHT, 4),
                            "method": "lexicon"})
    return out


def fill_manufacturer(
    record: dict[str, Any],
    readings: Sequence[Reading],
    lexicon: MakerLexicon,
    registry: Registry,
    hashes: dict[str, str],
) -> bool:
    """Fill a missing ``manufacturer`` (and a missing country) from a registry mark spotted in a line.

    ``readings`` are the attempts made on the item (direct, other scales, enhancement chains), the one the
    record came from first; a maker line the chosen attempt misread is often read better by another. Lines
    a field other than the maker or the country rests on (in ``record`` or in their own attempt's record)
    and import marks are skipped. The line whose best maker phrase passes the bars, at the best score over
    all readings (a phrase that would take the place of the country read on its line passed over for the next), is
    re-parsed with the phrase in place of the decoded span; the manufacturer it yields is
    recorded with ``evidence.method = "lexicon"``, the attempt's view, the text as read in
    ``evidence.line_text``, the phrase as ``text_as_marked`` and a ``lexicon_match`` flag, at a confidence
    below a plain reading; other makers whose marks also passed the score bar on that line follow its
    alternatives (``method: "lexicon"``, each at its own confidence). The record is changed in place; returns
    whether a manufacturer was filled.
    """
    from marktrace.inference.assemble import build_record

    if record.get("manufacturer") is not None:
        return False
    claimed = _claimed_lines(record)
    found: list[tuple[Spot, list[Spot], int, Reading]] = []
    seen: set[str] = set()
    for reading in readings:
        taken = claimed | _claimed_lines(reading.record)
        for i, (line, text) in enumerate(zip(reading.lines, reading.decoded, strict=True)):
            if line.text in taken or line.text in seen or _IMPORT_LINE.search(line.text):
                continue
            seen.add(line.text)  # the same text from another attempt adds nothing but time
            spot, rivals = lexicon.best_and_rivals(text, _country_letters(reading.record, line.text))
            if spot is not None:
                found.append((spot, rivals, i, reading))
    fitting = _first_fitting(found, hashes, registry)
    if fitting is None:
        return False
    spot, rivals, index, reading, replaced, changed, reparsed = fitting
    lines = reading.lines
    weight = spot.ratio * CONFIDENCE_WEIGHT
    flag = {
        "kind": "lexicon_match", "read": lines[index].text, "phrase": spot.phrase, "score": round(spot.score, 3),
        "note": "the read text was matched to a registry mark from the recognizer's character probabilities; "
        "check the photo",
    }
    country = reparsed.get("country_of_manufacture")
    on_line = isinstance(country, dict) and (country.get("evidence") or {}).get("line_text") == replaced
    if record.get("country_of_manufacture") is None and not on_line:
        # Read on another line of that attempt: not taken; the maker's line alone gives its country (as
        # read there, or the maker's registry country, labelled as such).
        alone = build_record([changed[index]], hashes, registry, method=reading.method, view=reading.view)
        reparsed = {**reparsed, "country_of_manufacture": alone.get("country_of_manufacture")}
    for key in ("manufacturer", "country_of_manufacture"):
        value = reparsed.get(key)
        if record.get(key) is not None or not isinstance(value, dict):
            continue
        evidence = value.setdefault("evidence", {})
        if evidence.get("line_text") != replaced:
            continue
        evidence["line_text"] = lines[index].text
        if key == "manufacturer":
            evidence["method"] = "lexicon"
            value["text_as_marked"] = spot.phrase
            value["alternatives"] = _rival_makers(value, rivals, lexicon, registry)
        value["confidence"] = round(min(float(value["confidence"]), weight), 4)
        value["flags"] = [*value.get("flags", []), flag]
        record[key] = value
    others = record.get("other_markings")
    if isinstance(others, list):  # the line is now the maker's evidence, no longer left over
        read = lines[index].text
        record["other_markings"] = [
            o for o in others if not (isinstance(o, dict) and (o.get("evidence") or {}).get("line_text") == read)
        ]
    return True
