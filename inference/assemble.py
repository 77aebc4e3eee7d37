"""Assemble a record from recognised lines: parse them into fields, stamp the evidence, merge attempts.

Every field stays a suggestion (``status: suggested``) with its confidence, alternatives and evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from marktrace.inference.ctc import DecodedText
from marktrace.inference.geometry import clip_box
from marktrace.inference.schema import Line

if TYPE_CHECKING:
    from marktrace.inference.registry import Registry


class _Attempt(Protocol):
    record: dict[str, Any]
    method: str


def _stamp(field: dict[str, Any], hashes: Mapping[str, str], method: str, view: str) -> None:
    field["method"] = method
    evidence = field.setdefault("evidence", {})
    if evidence.get("method") in (None, "direct"):
        evidence["method"] = method
    if evidence.get("view") in (None, "original"):
        evidence["view"] = view
    file = evidence.get("file")
    if file and not evidence.get("sha256"):
        evidence["sha256"] = hashes.get(file)


def build_record(
    lines: Sequence[Line], hashes: Mapping[str, str], registry: Registry, method: str = "direct", view: str = "original"
) -> dict[str, Any]:
    """Parse lines into the record's fields (JSON-ready), each with evidence naming the file, hash, method and view."""
    from marktrace.inference.parse import parse_lines, record_to_json

    record = record_to_json(parse_lines(list(lines), registry))
    _attach_alterations(record, lines)
    for value in record.values():
        fields = value if isinstance(value, list) else [value]
        for field in fields:
            if isinstance(field, dict) and "evidence" in field:
                _stamp(field, hashes, method, view)
            elif isinstance(field, dict):
                for sub in field.values():
                    if isinstance(sub, dict) and "evidence" in sub:
                        _stamp(sub, hashes, method, view)
    return record


def _attach_alterations(record: dict[str, Any], lines: Sequence[Line]) -> None:
    """Put over-stamp flags of the serial's line on the serial field, at positions within its value.

    A flag's ``position`` indexes the field's ``value`` (what is scored and exported); ``line_position``
    keeps the index in the recognised line's text. Flags on characters outside the value (a ``S/N``
    label, spaces) are dropped. The flag never changes the value.
    """
    serial = record.get("serial_number")
    if not isinstance(serial, dict) or not serial.get("value"):
        return
    line_text = (serial.get("evidence") or {}).get("line_text")
    line = next((ln for ln in lines if ln.text == line_text or (line_text and line_text in ln.text)), None)
    if line is None or not line.alterations:
        return
    value = str(serial["value"])
    marked = str(serial.get("text_as_marked") or value)
    to_value = value_positions(line.text, marked, value)
    for flag in line.alterations:
        position = to_value.get(int(flag["position"]))
        if position is None:
            continue
        serial.setdefault("flags", []).append({
            "kind": "overstamp_suspected",
            "position": position,
            "character": value[position],
            "line_position": int(flag["position"]),
            "score": flag["score"],
            "evidence": flag.get("evidence", {}),
        })


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def align_characters(a: str, b: str) -> dict[int, int]:
    """Index pairs (i in ``a`` -> j in ``b``) of a minimum edit-distance alignment (matches and substitutions)."""
    n, m = len(a), len(b)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    pairs: dict[int, int] = {}
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i][j] == cost[i - 1][j - 1] + (a[i - 1] != b[j - 1]):
            pairs[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return pairs


def value_positions(line_text: str, marked: str, value: str) -> dict[int, int]:
    """Map indices of a recognised line's text to indices of a field value read from it.

    The value is found in the field's text as marked (located in the line, case-insensitively), with
    spaces squeezed out; usually it is the tail (``S/N AB 1234`` -> ``AB1234``). Where the parser
    changed characters, an edit-distance alignment maps the rest. Unmapped indices (labels, spaces)
    are absent.
    """
    start = line_text.find(marked)
    if start < 0:
        start = line_text.upper().find(marked.upper())
    if start < 0:
        return {}
    chars = [(start + k, ch) for k, ch in enumerate(marked) if not ch.isspace()]
    squeezed = "".join(ch for _, ch in chars).upper()
    target = value.upper()
    offset = squeezed.rfind(target)
    if offset >= 0:
        return {chars[offset + k][0]: k for k in range(len(target))}
    return {chars[i][0]: j for i, j in align_characters(squeezed, target).items()}


CONSENSUS_MIN_READS = 3
"""Fewest reads that must give one serial value for the reads of a multi-light item to count as agreeing."""


@dataclass(frozen=True)
class SerialConsensus:
    """The serial value most of an item's reads agree on (a confidence-weighted vote)."""

    attempt: int
    """Index of the most confident read of the winning value as it is most often written: its record is the item's."""
    reads: int
    """How many attempts read the winning value."""
    of: int
    """How many attempts were made (those that read no serial included)."""
    share: float
    """The winning value's share of the summed serial confidence of all attempts (0-1)."""

    def flag(self) -> dict[str, Any]:
        """The serial field's ``consensus`` flag: how the value was chosen, for the examiner."""
        return {
            "kind": "consensus",
            "reads": self.reads,
            "of": self.of,
            "share": round(self.share, 4),
            "note": (f"chosen by a confidence-weighted vote over the item's {self.of} reads (photos read directly "
                     f"and relief views): {self.reads} gave this value, {self.share:.0%} of the summed confidence; "
                     "the confidence is that of its most confident read"),
        }


class _SerialRead(NamedTuple):
    position: int
    """Where the attempt is in the list."""
    written: str
    """Its serial value without spaces."""
    key: str
    """Its letters and digits only: what the vote compares."""
    confidence: float


def _serial_reads(attempts: Sequence[_Attempt]) -> list[_SerialRead]:
    reads = []
    for position, attempt in enumerate(attempts):
        serial = attempt.record.get("serial_number")
        if isinstance(serial, dict) and serial.get("value"):
            written = "".join(str(serial["value"]).split())
            key = "".join(ch for ch in written if ch.isalnum())
            reads.append(_SerialRead(position, written, key, float(serial.get("confidence") or 0.0)))
    return reads


def serial_consensus(attempts: Sequence[_Attempt]) -> SerialConsensus | None:
    """Vote over the serial values of several reads of one marking; None when no attempt read a serial.

    Each attempt's serial value scores its confidence for its letters and digits (``FUN-5124`` and
    ``FUN 5124`` vote together); the value with the highest sum wins, written as most of its confidence
    wrote it, and the most confident read of that writing is returned (ties: the single most confident
    read). The photos of a multi-light stack and the relief views made from them are several looks at one
    marking: a value several of them read outweighs one confident misreading.
    """
    reads = _serial_reads(attempts)
    if not reads:
        return None
    by_key: dict[str, float] = {}
    by_writing: dict[str, float] = {}
    for read in reads:
        by_key[read.key] = by_key.get(read.key, 0.0) + read.confidence
        by_writing[read.written] = by_writing.get(read.written, 0.0) + read.confidence
    key = max(reads, key=lambda r: (by_key[r.key], r.confidence)).key
    members = [r for r in reads if r.key == key]
    chosen = max(members, key=lambda r: (by_writing[r.written], r.confidence))
    grand = sum(by_key.values())
    return SerialConsensus(
        attempt=chosen.position, reads=len(members), of=len(attempts), share=by_key[key] / grand if grand > 0 else 0.0
    )


def reads_agree(attempts: Sequence[_Attempt], share: float) -> bool:
    """Whether the reads already agree on a serial.

    They do when a value read by at least :data:`CONSENSUS_MIN_READS` of them holds at least ``share`` of
    their summed serial confidence.
    """
    vote = serial_consensus(attempts)
    return vote is not None and vote.reads >= CONSENSUS_MIN_READS and vote.share >= share


def merge_alternatives(best: _Attempt, attempts: Sequence[_Attempt]) -> dict[str, Any]:
    """The best attempt's record, its serial carrying the other methods' readings as alternatives."""
    record = dict(best.record)
    serial = record.get("serial_number")
    if not isinstance(serial, dict):
        return record
    serial = dict(serial)
    seen = {serial.get("value")}
    alternatives = list(serial.get("alternatives", []))
    seen.update(a.get("value") for a in alternatives)
    for attempt in attempts:
        other = attempt.record.get("serial_number")
        if attempt is best or not isinstance(other, dict) or other.get("value") in seen:
            continue
        seen.add(other.get("value"))
        alternatives.append({"value": other["value"], "confidence": other["confidence"], "method": attempt.method})
    alternatives.sort(key=lambda a: -float(a["confidence"]))
    serial["alternatives"] = alternatives
    record["serial_number"] = serial
    return record


def scale_alternatives(alternatives: Sequence[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """Copies of ``alternatives`` with each confidence multiplied by ``factor`` (rounded to 4 places), in order.

    When the reader discounts a serial after choosing it (its line's cuts disagree, it was read through an
    enhancement chain), the readings it was chosen over share the doubt: left at the confidence they were read
    with, they would be listed above the value, and on development photos they were right far less often than
    that (README, "Reading photos").
    """
    return [{**alternative, "confidence": round(float(alternative["confidence"]) * factor, 4)}
            for alternative in alternatives]


DETACHED_MAX_CONFIDENCE = 0.4
"""A serial line's last character read below this confidence may be a mark beside the serial (see
:func:`drop_detached_end`)."""
DETACHED_OTHERS_MIN = 0.8
"""... when every other character of the line was read at this confidence or more,"""
DETACHED_GAP_RATIO = 1.5
"""... and it stands this many times the line's median character pitch (CTC steps) after the one before it."""
DETACHED_MIN_CHARACTERS = 5
"""Lines of fewer characters (spaces aside) have too few pitches to measure a gap against."""


def detached_end(decoded: DecodedText) -> dict[str, Any] | None:
    """The last character of a read line when it looks like a mark set beside the text rather than part of it.

    Proof, inspection and acceptance stamps (a circle, a dot in a ring, a star) are struck next to serials; the
    recognizer has no class for them and reads one as the nearest character (``6``, ``9``, ``0``, ``7``), unsurely
    and a step apart from the rest. Returns ``{"character", "confidence", "gap_ratio", "others_min"}`` when the last
    non-space character was read below :data:`DETACHED_MAX_CONFIDENCE`, every other at
    :data:`DETACHED_OTHERS_MIN` or more, and its distance from the character before it (in CTC time steps) is at
    least :data:`DETACHED_GAP_RATIO` times the median of the line's other pitches; else None.
    """
    positions = [i for i, ch in enumerate(decoded.text) if not ch.isspace()]
    if len(positions) < DETACHED_MIN_CHARACTERS or len(decoded.char_steps) != len(decoded.text):
        return None
    confidences = [decoded.char_confidences[i] for i in positions]
    steps = [decoded.char_steps[i] for i in positions]
    pitches = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    usual = float(np.median(pitches[:-1]))
    if usual <= 0:
        return None
    last, others = confidences[-1], min(confidences[:-1])
    ratio = pitches[-1] / usual
    if last >= DETACHED_MAX_CONFIDENCE or others < DETACHED_OTHERS_MIN or ratio < DETACHED_GAP_RATIO:
        return None
    return {"character": decoded.text[positions[-1]], "confidence": round(float(last), 4),
            "gap_ratio": round(float(ratio), 2), "others_min": round(float(others), 4)}


def drop_detached_end(serial: dict[str, Any], decoded: DecodedText) -> bool:
    """Take a detached last character (:func:`detached_end`) of the serial's line off the serial's value.

    Only when the value ends with it and keeps at least three characters. The full value becomes an alternative (at
    the value's confidence times that character's), ``text_as_marked`` loses the character too, and a
    ``detached_end_dropped`` flag gives the character, its confidence, the gap and the full read. The line itself
    keeps what was read. Changes ``serial`` in place; returns whether it did.
    """
    found = detached_end(decoded)
    value = str(serial.get("value") or "")
    if found is None or not value.upper().endswith(found["character"].upper()):
        return False
    kept = value[:-1].rstrip(" -")
    if len(kept.replace("-", "").replace(" ", "")) < 3:
        return False
    marked = serial.get("text_as_marked")
    if isinstance(marked, str) and marked.rstrip().upper().endswith(found["character"].upper()):
        serial["text_as_marked"] = marked.rstrip()[:-1].rstrip(" -")
    confidence = float(serial.get("confidence") or 0.0)
    others = [a for a in serial.get("alternatives") or [] if a.get("value") not in (kept, value)]
    full = {"value": value, "confidence": round(confidence * found["confidence"], 4), "method": "detached_end"}
    serial["value"] = kept
    serial["alternatives"] = sorted([*others, full], key=lambda a: -float(a["confidence"]))
    # flags placed on the dropped character (over-stamp suspicion) go with it
    kept_flags = [f for f in serial.get("flags") or []
                  if not (isinstance(f.get("position"), int) and f.get("kind") == "overstamp_suspected"
                          and f["position"] >= len(kept))]
    serial["flags"] = [*kept_flags, {
        "kind": "detached_end_dropped", **found, "read": value,
        "note": "the line's last character was read unsurely and stands apart from the others: likely a mark struck "
                "beside the serial (a proof or inspection stamp, a star), not part of it; the full read is an "
                "alternative - compare with the photo",
    }]
    return True


CHARACTER_ALTERNATIVE_BELOW = 0.9
"""A serial character read below this confidence offers the recognizer's runner-up there as an alternative serial."""
CHARACTER_ALTERNATIVE_MIN = 0.05
"""... when that runner-up has at least this probability at the character's step."""
CHARACTER_ALTERNATIVE_WEIGHT = 0.35
"""Such an alternative's confidence: the value's, times the runner-up's probability over the character's, times this
(on development photos these alternatives were right 3-4% of the time at a mean of about 0.1 before the weight)."""


def add_character_alternatives(serial: dict[str, Any], line: Line, limit: int = 2) -> int:
    """Offer the serial with one unsure character replaced by the recognizer's runner-up there, up to ``limit`` times.

    Characters of the value read below :data:`CHARACTER_ALTERNATIVE_BELOW` on ``line`` (the line the value was parsed
    from) whose runner-up is a letter or digit of at least :data:`CHARACTER_ALTERNATIVE_MIN` give one alternative each,
    the likeliest (runner-up over read) first, skipping values already listed; each has ``method: "character"``, and a
    ``character_alternatives`` flag gives each one's position in the value and the characters swapped. Returns how
    many were added. Changes ``serial`` in place.
    """
    value = str(serial.get("value") or "")
    marked = str(serial.get("text_as_marked") or value)
    if limit <= 0 or not value or not line.char_confidences:
        return 0
    runner_up = {ca.position: ca.candidates[1:] for ca in line.char_alternatives}
    options: list[tuple[float, int, str]] = []
    for line_position, k in value_positions(line.text, marked, value).items():
        if line_position >= len(line.char_confidences) or k >= len(value):
            continue
        read = line.char_confidences[line_position]
        if read >= CHARACTER_ALTERNATIVE_BELOW:
            continue
        for candidate in runner_up.get(line_position, []):
            character = candidate.value.upper()
            likely = candidate.confidence >= CHARACTER_ALTERNATIVE_MIN
            if likely and character.isalnum() and character != value[k].upper():
                options.append((candidate.confidence / max(read, 1e-6), k, character))
    listed = {value.replace(" ", ""), *(str(a.get("value")).replace(" ", "") for a in serial.get("alternatives") or [])}
    confidence = float(serial.get("confidence") or 0.0)
    added: list[dict[str, Any]] = []
    swaps: list[dict[str, Any]] = []
    for ratio, k, character in sorted(options, key=lambda o: -o[0]):
        other = value[:k] + character + value[k + 1 :]
        if other.replace(" ", "") in listed:
            continue
        listed.add(other.replace(" ", ""))
        share = min(1.0, ratio) * CHARACTER_ALTERNATIVE_WEIGHT
        added.append({"value": other, "confidence": round(confidence * share, 4), "method": "character"})
        swaps.append({"value": other, "position": k, "read": value[k], "runner_up": character})
        if len(added) >= limit:
            break
    if added:
        serial["alternatives"] = sorted([*(serial.get("alternatives") or []), *added],
                                        key=lambda a: -float(a["confidence"]))
        serial["flags"] = [*(serial.get("flags") or []), {
            "kind": "character_alternatives", "swaps": swaps,
            "note": "characters of the value read unsurely, and the recognizer's runner-up at each: the alternatives "
                    "with method 'character' swap one of them; compare with the photo at that position",
        }]
    return len(added)


def clip_line_box(line: Line, sizes: Mapping[str, tuple[int, int]]) -> Line:
    """``line`` with its box inside its photo (``sizes``: file -> shown width, height); unchanged if unknown."""
    size = sizes.get(line.file)
    if size is None:
        return line
    return line.model_copy(update={"box": clip_box(line.box, *size)})


def clip_record_boxes(record: dict[str, Any], sizes: Mapping[str, tuple[int, int]]) -> None:
    """Move every evidence box of ``record`` (fields, import marks, proof marks, other markings) inside its photo.

    The detector grows each box beyond the text it found; at a photo's edge that can leave a corner a few
    pixels outside. In place.
    """

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        evidence = node.get("evidence")
        if isinstance(evidence, dict) and evidence.get("box") and evidence.get("file") in sizes:
            evidence["box"] = clip_box(evidence["box"], *sizes[evidence["file"]])
        for key, value in node.items():
            if key != "evidence":
                visit(value)

    visit(record)
