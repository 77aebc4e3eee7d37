"""Assemble a record from recognised lines: parse them into fields, stamp the evidence, merge attempts.

Every field stays a suggestion (``status: suggested``) with its confidence, alternatives and evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from marktrace.inference.schema import Line

if TYPE_CHECKING:
    from marktrace.inference.registry import Registry


class _Attempt(Protocol):
    record: dict[str, Any]
    method: str


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


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
    from marktrace.inference.parse import parse_lines

    record = _jsonable(parse_lines(list(lines), registry))
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
    """Put over-stamp flags of the serial's line on the serial field, at positions within its value."""
    serial = record.get("serial_number")
    if not isinstance(serial, dict) or not serial.get("value"):
        return
    line_text = (serial.get("evidence") or {}).get("line_text")
    line = next((ln for ln in lines if ln.text == line_text or (line_text and line_text in ln.text)), None)
    if line is None or not line.alterations:
        return
    marked = str(serial.get("text_as_marked") or serial["value"])
    start = line.text.find(marked)
    if start < 0:
        return
    for flag in line.alterations:
        position = int(flag["position"]) - start
        if 0 <= position < len(marked):
            serial.setdefault("flags", []).append({
                "kind": "overstamp_suspected",
                "position": position,
                "character": marked[position],
                "score": flag["score"],
                "evidence": flag.get("evidence", {}),
            })


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
