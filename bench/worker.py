"""One engine in its own process: load once, warm up, read every item, write scored rows (JSON lines).

Run by :mod:`bench.recognition` as ``python -m bench.worker --engine NAME --items IN --out OUT``; its
peak RSS is therefore that engine's alone. Progress goes to stdout as ``@@bench <json>`` lines.

Rows of ``OUT``: ``{"type": "item", ...}`` per item, then one ``{"type": "engine", ...}`` with load time,
warm-up time, memory and versions; or a single ``{"type": "unavailable", "reason": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

PROGRESS_PREFIX = "@@bench "


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Tesseract runs as a child process)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; 0.0 elsewhere)."""
    return _proc_status_mb("VmRSS") or 0.0


def peak_rss_mb() -> tuple[float, float]:
    """Peak RSS (MB) of this process and of its largest finished child.

    This process's peak is ``VmHWM``, the high-water mark of its own address space: ``ru_maxrss`` would
    also keep the RSS of the bench process this worker was forked from (Linux carries it across
    ``exec``), so a large parent would show as every engine's peak. A child's peak (Tesseract) can only
    come from ``ru_maxrss`` and is an upper bound for the same reason.
    """
    own = _proc_status_mb("VmHWM")
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(own, 1), round(child, 1)


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(PROGRESS_PREFIX + json.dumps(payload) + "\n")
    sys.stdout.flush()


def run(engine_name: str, items_file: Path, out_file: Path, options: Any) -> int:
    """Load ``engine_name``, read the items of ``items_file``, write rows to ``out_file``; return exit code."""
    from bench.engines import EngineError, EngineUnavailable, load_engine
    from bench.metrics import closest_line, score
    from bench.sets import BenchItem

    items = [BenchItem.from_json(json.loads(line)) for line in items_file.read_text().splitlines() if line.strip()]
    rss_start = rss_mb()
    with out_file.open("w", encoding="utf-8") as out:
        t0, c0 = time.perf_counter(), cpu_seconds()
        try:
            engine = load_engine(engine_name, options)
        except EngineUnavailable as exc:
            out.write(json.dumps({"type": "unavailable", "engine": engine_name, "reason": str(exc)}) + "\n")
            _emit({"unavailable": str(exc)})
            return 3
        load_wall, load_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rss_loaded = rss_mb()
        # children started while loading (torch's import runs ldconfig) inherit the worker's RSS in their
        # ru_maxrss; only a child of the reads (Tesseract) counts, and only above that
        _, child_at_load = peak_rss_mb()
        warm_wall = 0.0
        if items:
            first = items[0]
            data = [(Path(f).name, Path(f).read_bytes()) for f in first.files]
            t0 = time.perf_counter()
            with contextlib.suppress(Exception):  # a failing warm-up shows again on the first item
                engine.read(first, data)
            warm_wall = time.perf_counter() - t0
            del data
        for done, item in enumerate(items, start=1):
            data = [(Path(f).name, Path(f).read_bytes()) for f in item.files]
            row: dict[str, Any] = {
                "type": "item",
                "set": item.set,
                "id": item.id,
                "part": item.part,
                "truth": item.truth,
                "n_images": len(data),
            }
            t0, c0 = time.perf_counter(), cpu_seconds()
            try:
                reading = engine.read(item, data)
                error = None
            except EngineError as exc:
                reading, error = None, str(exc)
            except Exception as exc:  # an engine crash on one item must not end the run
                reading, error = None, f"{type(exc).__name__}: {exc}"
            row["wall_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            row["cpu_ms"] = round((cpu_seconds() - c0) * 1000, 2)
            row["error"] = error
            if reading is None:
                row.update(prediction="", exact=False, cer=1.0)
            else:
                nearest = closest_line(reading.lines, item.truth)
                prediction = reading.serial if reading.serial is not None else nearest
                row.update(prediction=prediction, **score(prediction, item.truth))
                row["lines"] = reading.lines[:12]
                if reading.serial is not None:
                    row["closest_line"] = nearest
                    row["closest_exact"] = score(nearest, item.truth)["exact"]
                if reading.fields:
                    row["fields"] = reading.fields
                    alternatives = reading.fields.get("serial_alternatives")
                    if isinstance(alternatives, list):  # the value or one of its alternatives is the serial
                        right = [bool(score(str(a), item.truth)["exact"]) for a in alternatives]
                        row["exact_or_alternative"] = bool(row["exact"]) or any(right)
                        confidences = reading.fields.get("serial_alternative_confidences")
                        if isinstance(confidences, list) and len(confidences) == len(right):
                            row["alternative_scores"] = [[float(c), ok]
                                                         for c, ok in zip(confidences, right, strict=True)]
            if item.extra:
                row["truth_extra"] = item.extra
            out.write(json.dumps(row) + "\n")
            out.flush()
            _emit({"done": done})
            # the photos' bytes go before the next item's are read: held across the loop, two large photos
            # (a 112 MB and a 144 MB PNG in the framed set) would sit in every engine's peak RSS together
            del data, reading
        own, child = peak_rss_mb()
        child = child if child > child_at_load else 0.0
        out.write(
            json.dumps(
                {
                    "type": "engine",
                    "engine": engine_name,
                    "info": engine.info(),
                    "load_wall_s": round(load_wall, 3),
                    "load_cpu_s": round(load_cpu, 3),
                    "warmup_wall_s": round(warm_wall, 3),
                    "rss_start_mb": rss_start,
                    "rss_loaded_mb": rss_loaded,
                    "peak_rss_mb": own,
                    "child_peak_rss_mb": child,
                    "threads": options.threads,
                }
            )
            + "\n"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry of the worker process."""
    from bench.engines import EngineOptions

    p = argparse.ArgumentParser(prog="python -m bench.worker")
    p.add_argument("--engine", required=True)
    p.add_argument("--items", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--detector", type=Path)
    p.add_argument("--recognizer", type=Path)
    p.add_argument("--restorer", type=Path)
    p.add_argument("--tesseract-psm", type=int, default=3)
    a = p.parse_args(argv)
    options = EngineOptions(
        threads=a.threads, detector=a.detector, recognizer=a.recognizer, restorer=a.restorer,
        tesseract_psm=a.tesseract_psm
    )
    return run(a.engine, a.items, a.out, options)


if __name__ == "__main__":
    sys.exit(main())
