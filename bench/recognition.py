"""Serial-reading benchmark: marktrace against EasyOCR, RapidOCR and Tesseract on held-out sets.

Example (from the repository root)::

    python -m bench.recognition --sets clean,worn --engines marktrace,easyocr,rapidocr,tesseract --n 200

Sets are rendered once into ``.cache/bench/`` (see :mod:`bench.sets`); ``--real DIR`` adds a lab's
labelled photos (``datasets/`` format, the serial is the line with role ``serial``). Each engine runs in
its own subprocess (:mod:`bench.worker`), one after the other, with the same thread count. Results go to
``bench/results/<date>-<set>.json`` and ``bench/results/latest.md``; the table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from bench.engines import ENGINE_NAMES
from bench.metrics import summarize
from bench.report import (
    alteration_summary,
    confidence_summary,
    maker_summary,
    markdown,
    method_summary,
    ratios,
    relief_summary,
    rich_table,
    write_json,
)
from bench.sets import DEFAULT_CACHE, SETS, BenchItem, get_set, load_items, materialize
from bench.worker import PROGRESS_PREFIX

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_engine(
    engine: str,
    items: list[BenchItem],
    workdir: Path,
    args: argparse.Namespace,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one engine on all items in a subprocess; return its item rows and its engine record."""
    items_file = workdir / f"items-{engine}.jsonl"
    items_file.write_text("".join(json.dumps(i.to_json()) + "\n" for i in items), encoding="utf-8")
    out_file = workdir / f"rows-{engine}.jsonl"
    log_file = workdir / f"{engine}.log"
    cmd = [
        sys.executable,
        "-m",
        "bench.worker",
        "--engine",
        engine,
        "--items",
        str(items_file),
        "--out",
        str(out_file),
        "--threads",
        str(args.threads),
        "--tesseract-psm",
        str(args.tesseract_psm),
    ]
    if args.detector:
        cmd += ["--detector", str(Path(args.detector).resolve())]
    if args.recognizer:
        cmd += ["--recognizer", str(Path(args.recognizer).resolve())]
    if args.restorer:
        cmd += ["--restorer", str(Path(args.restorer).resolve())]
    task = progress.add_task(engine, total=len(items)) if progress else None
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=_worker_env(args.threads), stdout=subprocess.PIPE, stderr=log, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(PROGRESS_PREFIX) and progress is not None and task is not None:
                msg = json.loads(line[len(PROGRESS_PREFIX) :])
                if "done" in msg:
                    progress.update(task, completed=msg["done"])
        code = proc.wait()
    rows: list[dict[str, Any]] = []
    record: dict[str, Any] = {}
    if out_file.is_file():
        for raw in out_file.read_text(encoding="utf-8").splitlines():
            data = json.loads(raw)
            if data["type"] == "item":
                rows.append(data)
            else:
                record = data
    if not record:
        tail = log_file.read_text(errors="replace")[-1500:]
        record = {"type": "unavailable", "reason": f"worker exited with {code}: {tail.strip()}"}
    return rows, record


def build_results(
    sets: dict[str, list[BenchItem]],
    per_engine: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]],
    meta: dict[str, Any],
) -> list[dict[str, Any]]:
    """One result dict per set: engine summaries, ratios vs marktrace and per-item rows."""
    results = []
    for set_name, items in sets.items():
        engines: dict[str, dict[str, Any]] = {}
        rows_out: dict[str, list[dict[str, Any]]] = {}
        for engine, (rows, record) in per_engine.items():
            if record.get("type") == "unavailable":
                engines[engine] = {"unavailable": record.get("reason", "?")}
                continue
            mine = [r for r in rows if r["set"] == set_name]
            summary = summarize(mine)
            summary.update({k: v for k, v in record.items() if k not in ("type", "engine")})
            engines[engine] = summary
            rows_out[engine] = [{k: v for k, v in r.items() if k not in ("type", "set", "lines")} for r in mine]
        bench_set = SETS.get(set_name)
        results.append(
            {
                "set": set_name,
                "description": bench_set.description if bench_set else meta.get("real_dirs", {}).get(set_name, ""),
                "settings": bench_set.settings() if bench_set else None,
                "target_exact": bench_set.target_exact if bench_set else None,
                "n": len(items),
                **meta,
                "engines": engines,
                "ratios": ratios(engines),
                "items": rows_out,
            }
        )
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.recognition", description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="clean,worn", help=f"comma-separated, of: {', '.join(SETS)}; '' for none")
    p.add_argument("--engines", default=",".join(ENGINE_NAMES), help="comma-separated engines")
    p.add_argument("--n", type=int, default=200, help="items per synthetic set")
    p.add_argument("--real", action="append", default=[], help="a labelled real set (datasets/ format); repeatable")
    p.add_argument("--detector", help="marktrace detector ONNX (default: the shipped one)")
    p.add_argument("--recognizer", help="marktrace recognizer ONNX (default: the shipped one)")
    p.add_argument("--restorer", help="marktrace restorer ONNX for marktrace-restore (default: the shipped one)")
    p.add_argument("--threads", type=int, default=2, help="threads per engine (default 2)")
    p.add_argument("--tesseract-psm", type=int, default=3)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder for <date>-<set>.json and latest.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code (2 on bad arguments)."""
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # logs and pipes: keep the table readable
    try:
        set_names = [s for s in args.sets.split(",") if s.strip()]
        chosen = [get_set(s.strip()) for s in set_names]
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        unknown = [e for e in engines if e not in ENGINE_NAMES]
        if unknown:
            raise ValueError(f"unknown engine(s) {unknown}; known: {', '.join(ENGINE_NAMES)}")
        if not engines:
            raise ValueError("no engine given")
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    sets: dict[str, list[BenchItem]] = {}
    real_dirs: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        for bench_set in chosen:
            task = progress.add_task(f"render {bench_set.name}", total=args.n)

            def advance(done: int, task: TaskID = task) -> None:
                progress.update(task, completed=done)

            folder = materialize(bench_set, args.n, args.cache, on_item=advance)
            sets[bench_set.name] = load_items(folder, bench_set.name)
    for real in args.real:
        folder = Path(real)
        name = f"real-{folder.resolve().name}"
        try:
            sets[name] = load_items(folder, name)
        except (OSError, ValueError) as exc:
            console.print(f"[red]error:[/red] --real {real}: {exc}")
            return 2
        real_dirs[name] = f"labelled photos from {folder}"
    if not sets:
        console.print("[red]error:[/red] no set to run (--sets or --real)")
        return 2
    all_items = [item for items in sets.values() for item in items]
    per_engine: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="marktrace-bench-") as tmp, Progress(*columns, console=console) as progress:
        for engine in engines:
            per_engine[engine] = run_engine(engine, all_items, Path(tmp), args, progress)
            record = per_engine[engine][1]
            if record.get("type") == "unavailable":
                progress.console.print(f"[yellow]{engine} skipped:[/yellow] {record.get('reason')}")
    today = dt.date.today().isoformat()
    command = "python -m bench.recognition " + shlex.join(argv if argv is not None else sys.argv[1:])
    machine: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": today,
    }
    meta: dict[str, Any] = {
        "date": today,
        "command": command,
        "machine": machine,
        "real_dirs": real_dirs,
    }
    results = build_results(sets, per_engine, meta)
    args.results.mkdir(parents=True, exist_ok=True)
    for result in results:
        console.print(rich_table(result))
        for line in (method_summary(result), alteration_summary(result), maker_summary(result),
                     relief_summary(result), confidence_summary(result)):
            if line:
                console.print(line)
        path = write_json(args.results / f"{today}-{result['set']}.json", result)
        console.print(f"wrote {path}")
    md = args.results / "latest.md"
    md.write_text(markdown(results, command, machine), encoding="utf-8")
    console.print(f"wrote {md}")
    ran = [e for e, (_, record) in per_engine.items() if record.get("type") != "unavailable"]
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
