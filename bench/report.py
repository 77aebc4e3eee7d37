"""Result files and tables: per-set JSON, a markdown table for the README, a rich table for the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.metrics import VISIBLE_AT
from marktrace.datasets.synth import FLAT_BELOW, RELIEF_DEPTH

SPEED_TARGETS = {"rapidocr": 4.0, "easyocr": 8.0}
"""Issue 2: marktrace at least this many times faster (CPU time per image) than each peer."""
RSS_TARGET_MB = 500.0


def ratios(engines: dict[str, dict[str, Any]], reference: str = "marktrace") -> dict[str, dict[str, Any]]:
    """Per peer: its time per image / the reference's (how many times slower it is) and accuracy deltas."""
    ref = engines.get(reference)
    if not ref or ref.get("cpu_ms_per_image") in (None, 0):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, s in engines.items():
        if name == reference or s.get("cpu_ms_per_image") is None:
            continue
        entry: dict[str, Any] = {
            "cpu_time_ratio": round(s["cpu_ms_per_image"] / ref["cpu_ms_per_image"], 2),
            "wall_time_ratio": round(s["wall_ms_per_image"] / ref["wall_ms_per_image"], 2)
            if ref.get("wall_ms_per_image")
            else None,
            "exact": s.get("exact"),
            f"{reference}_exact": ref.get("exact"),
            "exact_delta": round((ref.get("exact") or 0.0) - (s.get("exact") or 0.0), 4),
        }
        if name in SPEED_TARGETS:
            entry["speed_target"] = SPEED_TARGETS[name]
            entry["speed_target_met"] = entry["cpu_time_ratio"] >= SPEED_TARGETS[name]
        out[name] = entry
    return out


def _fmt(v: Any, pct: bool = False, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


COLUMNS = (
    "engine",
    "serial exact",
    "CER",
    "CPU ms/img",
    "wall ms/img",
    "CPU × marktrace",
    "load s",
    "peak RSS MB",
    "errors",
)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """The rows of one set's table (strings, in :data:`COLUMNS` order)."""
    rows = []
    rat = result.get("ratios", {})
    for name, s in result["engines"].items():
        if s.get("unavailable"):
            rows.append([name, "skipped: " + str(s["unavailable"])] + [""] * (len(COLUMNS) - 2))
            continue
        ratio = "1.0" if name == "marktrace" else _fmt(rat.get(name, {}).get("cpu_time_ratio"), digits=1)
        exact = _fmt(s.get("exact"), pct=True)
        if name.startswith("marktrace") and s.get("closest_line_exact") is not None:
            exact += f" (line {_fmt(s['closest_line_exact'], pct=True)})"
        rss = s.get("peak_rss_mb")
        rss_total = rss + (s.get("child_peak_rss_mb") or 0.0) if rss is not None else None
        rows.append(
            [
                name,
                exact,
                _fmt(s.get("cer"), digits=3),
                _fmt(s.get("cpu_ms_per_image")),
                _fmt(s.get("wall_ms_per_image")),
                ratio,
                _fmt(s.get("load_wall_s"), digits=2),
                _fmt(rss_total, digits=0),
                f"{s.get('n_errors', 0)}/{s.get('n', 0)}",
            ]
        )
    return rows


def method_summary(result: dict[str, Any], engine: str = "marktrace") -> str:
    """One line: the engine's exact match and time per reading method (direct, chain:..., photometric:...)."""
    by_method = result.get("engines", {}).get(engine, {}).get("by_method") or {}
    parts = [
        f"{m}: n={v['n']}, exact {_fmt(v['exact'], pct=True)}, CPU {_fmt(v['cpu_ms_per_item'])} ms/item"
        for m, v in by_method.items()
    ]
    return f"{engine} by method — " + "; ".join(parts) if parts else ""


def alteration_summary(result: dict[str, Any], engine: str | None = None) -> str:
    """Over-stamp flag recall and false-flag rate (issue 3: >= 80% at < 5%), if measured: one line for
    ``engine``, or one line per engine that flags (``marktrace``, ``marktrace-flags``, ...) when None."""
    engines = result.get("engines", {})
    names = [engine] if engine is not None else list(engines)
    lines = []
    for name in names:
        alt = engines.get(name, {}).get("alteration")
        if alt:
            lines.append(
                f"{name} over-stamp flags — recall {_fmt(alt['flag_recall'], pct=True)} (target ≥ 80%), "
                f"false flags {_fmt(alt['false_flag_rate'], pct=True)} of clean characters (target < 5%), "
                f"{alt['overstamped_chars']} over-stamped characters"
                + (f"; recall {_fmt(alt['visible_flag_recall'], pct=True)} over the "
                   f"{alt['visible_overstamped_chars']} whose older strike shows (at least "
                   f"{100 * VISIBLE_AT:.0f}% of its stroke outside the new marks)"
                   if alt.get("visible_overstamped_chars") not in (None, alt["overstamped_chars"]) else "")
                + ("; by marking method: " + ", ".join(
                    f"{method} {_fmt(m['flag_recall'], pct=True)} of {m['overstamped_chars']}"
                    for method, m in alt["by_method"].items()) if alt.get("by_method") else "")
            )
    return "\n".join(lines)


def maker_summary(result: dict[str, Any], engine: str = "marktrace") -> str:
    """One line: manufacturer / country pre-fill accuracy (issue 4: >= 95% clean, >= 85% worn), if measured."""
    makers = result.get("engines", {}).get(engine, {}).get("makers")
    if not makers:
        return ""
    parts = "".join(
        f"; {part}: manufacturer {_fmt(m['manufacturer'], pct=True)}, "
        f"country {_fmt(m['country'], pct=True)} (n={m['n']})"
        for part, m in makers.get("by_part", {}).items()
    )
    return (
        f"{engine} makers — manufacturer {_fmt(makers['manufacturer'], pct=True)}, country "
        f"{_fmt(makers['country'], pct=True)} correct over {makers['n']} markings with a registry maker line{parts}"
    )


def relief_summary(result: dict[str, Any]) -> str:
    """One line: how many markings have a serial character ground flat, and each engine's exact match on the rest."""
    engines = {name: s["relief"] for name, s in result.get("engines", {}).items() if s.get("relief")}
    if not engines:
        return ""
    first = next(iter(engines.values()))
    if not first["flat"]:
        return ""
    reads = ", ".join(f"{name} {_fmt(r['exact'], pct=True)}" for name, r in engines.items())
    return (
        f"Ground flat — {first['flat']} of {first['n']} markings have a serial character with no relief left "
        f"(under {100 * FLAT_BELOW:.0f}% of its stroke keeps {100 * RELIEF_DEPTH:.0f}% of the mark's depth; no method "
        f"can read them); "
        f"serial exact on the other {first['n'] - first['flat']}: {reads}"
    )


def confidence_summary(result: dict[str, Any]) -> str:
    """A line per engine that reports serial confidences: how many reads were confident or unsure, how many right."""
    lines = []
    for engine, summary in result.get("engines", {}).items():
        conf = summary.get("confidence")
        if not conf:
            continue
        hi, lo = conf["confident"], conf["unsure"]
        lines.append(
            f"{engine} serial confidence — at ≥ {hi['at']}: {hi['n']} reads, {_fmt(hi['right'], pct=True)} right; "
            f"below {lo['below']}: {lo['n']} reads, {_fmt(lo['right'], pct=True)} right; "
            f"AUROC {_fmt(conf['auroc'], digits=3)}; Brier {_fmt(conf['brier'], digits=3)}"
            + (f"; right or among the alternatives {_fmt(conf['exact_or_alternative'], pct=True)}"
               if conf.get("exact_or_alternative") is not None else "")
            + (f"; alternatives: {alt['n']} listed, {_fmt(alt['right'], pct=True)} right at a mean confidence of "
               f"{_fmt(alt['mean_confidence'], digits=3)} (Brier {_fmt(alt['brier'], digits=3)}), "
               f"an alternative above the value in {alt['above_value']} items"
               if (alt := conf.get("alternatives")) else "")
        )
    return "\n".join(lines)


def rich_table(result: dict[str, Any]) -> Table:
    """A rich table of one set's result."""
    target = result.get("target_exact")
    title = f"{result['set']} (n={result['n']})" + (f" — target ≥ {100 * target:.0f}% exact" if target else "")
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "engine" else "right")
    for row in table_rows(result):
        table.add_row(*row)
    return table


def markdown(results: Sequence[dict[str, Any]], command: str, machine: dict[str, Any]) -> str:
    """The markdown file the README includes: one table per set, the command and the definitions."""
    out = [
        "<!-- generated by `python -m bench.recognition`; do not edit by hand -->",
        "## Benchmark: marktrace vs EasyOCR, RapidOCR, Tesseract",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('threads')} threads per engine, "
        f"python {machine.get('python')}, {machine.get('date')}",
        "",
    ]
    for result in results:
        target = result.get("target_exact")
        out.append(
            f"### {result['set']} — {result.get('description', '')} (n={result['n']}"
            + (f", target ≥ {100 * target:.0f}% exact" if target else "")
            + ")"
        )
        out.append("")
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("|" + "|".join("---" if c == "engine" else "---:" for c in COLUMNS) + "|")
        for row in table_rows(result):
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        out.append("")
        for text in (method_summary(result), alteration_summary(result), maker_summary(result),
                     relief_summary(result), confidence_summary(result)):
            for line in filter(None, text.split("\n")):
                out += [line, ""]
    out += [
        "Serial exact: truth and prediction with leading labels (`S/N`, `SN`, `SER.`, `No.`, stacked ones too; "
        "a read's label run into the digits too when the truth has one) and all spaces removed, "
        "case-sensitive. CER: edit distance / truth length. marktrace is scored on its `serial_number` field "
        "(in brackets: its recognised line closest to the truth); peers on their recognised line closest to the "
        "truth, over every photo of a multi-light item. Times: process CPU time (incl. child processes) and wall "
        "time per photo after one warm-up item, models loaded once (load time apart). Peak RSS: each engine in its "
        "own process (plus its largest child process, for Tesseract).",
        "",
    ]
    return "\n".join(out)


def write_json(path: Path, result: dict[str, Any]) -> Path:
    """Write one set's result as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return path
