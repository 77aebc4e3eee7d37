"""Batch reading of a folder tree into a JSONL file: resumable, crash-safe, failures isolated, all cores used."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from marktrace.inference.atomic import atomic_write_bytes
from marktrace.inference.items import Item, discover_items
from marktrace.inference.pipeline import MarkingReader, ReaderSettings
from marktrace.inference.schema import ItemResult


@dataclass
class BatchSummary:
    """What a batch run did."""

    total: int = 0
    skipped: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_items: list[str] = field(default_factory=list)
    other_files: dict[str, int] = field(default_factory=dict)
    """Files under the root that are not photos, by suffix (see :func:`discover_items`)."""


class OutputFileError(ValueError):
    """The output path cannot take a batch's answers (a folder, or a file that is not a batch JSONL)."""


class ModelLoadError(RuntimeError):
    """The reader cannot start.

    A model file is missing, unreadable or fails its checksum or metadata, or a lab registry file does not validate.
    """


MODEL_LOAD_ERRORS = (ValueError, OSError, LookupError)
"""What loading the models raises for a bad model file or setting (see :meth:`MarkingReader.from_settings`)."""


def load_reader(settings: ReaderSettings) -> MarkingReader:
    """The reader for ``settings``, its models loaded once.

    Raises:
        ModelLoadError: naming the model file and the problem.
    """
    try:
        return MarkingReader.from_settings(settings)
    except MODEL_LOAD_ERRORS as exc:
        raise ModelLoadError(f"cannot start the reader: {exc}") from exc


def check_output(out: Path) -> None:
    """Refuse an output path that cannot take a batch's answers; nothing is changed.

    Raises:
        OutputFileError: ``out`` is a folder, or a non-empty file whose first line is not a batch answer (a
            photo or a notes file given as ``--out`` by mistake).
    """
    if out.is_dir():
        raise OutputFileError(f"{out}: is a folder; give a file name for the JSONL output")
    if not out.exists():
        return
    with open(out, "rb") as handle:
        first = handle.readline(1 << 20)
    if first and not _is_answer(first):
        raise OutputFileError(f"{out}: exists and is not a marktrace batch JSONL (its first line is not an item's "
                              "answer); it was left as it is: give another --out")


def finished_items(out: Path, retry_errors: bool = False) -> set[str]:
    """Items already answered in an existing output file; a torn last line (crash) is cut off.

    With ``retry_errors`` an item whose answer is an error line is not finished: the file is rewritten
    without its error lines (atomically: a complete copy replaces it, so a crash leaves the old file or the
    new one), and the batch reads those items again.

    Raises:
        OutputFileError: see :func:`check_output` (the file is then left exactly as it is).
    """
    check_output(out)
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(out, "r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    done: set[str] = set()
    kept: list[bytes] = []
    for raw in data.splitlines(keepends=True):
        try:
            row = json.loads(raw)
            item = row["item"]
        except (ValueError, KeyError, TypeError):
            kept.append(raw)
            continue
        if retry_errors and row.get("status") == "error":
            continue
        done.add(item)
        kept.append(raw)
    if len(kept) != len(data.splitlines()):
        atomic_write_bytes(out, b"".join(kept))
    return done


def _is_answer(raw: bytes) -> bool:
    try:
        row = json.loads(raw)
    except ValueError:
        return False
    return isinstance(row, dict) and "item" in row and "status" in row


def json_line(result: dict[str, object]) -> str:
    """One result as a line of JSON (no newline), UTF-8 text as is.

    A file name that is not valid UTF-8 (its undecodable bytes arrive as lone surrogates) cannot be written
    as UTF-8; such a line is written with ASCII escapes instead, which read back to the same name (so a
    resumed batch still skips it) rather than failing the batch.
    """
    line = json.dumps(result, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(result, ensure_ascii=True)
    return line


_WORKER_READER: MarkingReader | None = None
_WORKER_ROOT: Path | None = None


def _init_worker(settings: ReaderSettings, root: Path) -> None:
    global _WORKER_READER, _WORKER_ROOT
    _WORKER_READER = MarkingReader.from_settings(settings)
    _WORKER_ROOT = root


def _read_in_worker(item: Item) -> dict[str, object]:
    assert _WORKER_READER is not None and _WORKER_ROOT is not None
    return _safe_read(_WORKER_READER, item, _WORKER_ROOT)


def _label(item: Item, path: Path, root: Path) -> str:
    """``path``'s name relative to ``root`` for an error line; never raises (falls back to the path as given)."""
    try:
        return item.file_label(path, root)
    except Exception:  # noqa: BLE001 - an error line must be written whatever the path looks like
        return str(path)


def error_result(item: Item, root: Path, problem: str) -> ItemResult:
    """An error answer for ``item`` naming it and ``problem``; never raises, whatever the item's paths."""
    return ItemResult(
        item=item.name,
        files=[_label(item, f, root) for f in item.files],
        sha256={},
        status="error",
        error=f"{item.name}: {problem}",
    )


def _error_row(item: Item, root: Path, problem: str) -> dict[str, object]:
    return error_result(item, root, problem).to_json_dict()


def read_item_safely(reader: MarkingReader, item: Item, root: Path) -> ItemResult:
    """``reader.read_item`` with any unexpected exception turned into an error answer naming the item.

    Bad images already give an error answer; this also catches the reader's own failures, so one item
    can never stop a batch (or ``marktrace read``) from going on to the next.
    """
    try:
        return reader.read_item(item, root)
    except Exception as exc:  # noqa: BLE001 - one bad item must never abort the batch
        return error_result(item, root, f"internal error while reading ({type(exc).__name__}: {exc})")


def _safe_read(reader: MarkingReader, item: Item, root: Path) -> dict[str, object]:
    try:
        return read_item_safely(reader, item, root).to_json_dict()
    except Exception as exc:  # noqa: BLE001 - a result that cannot be rendered is an error line too
        return _error_row(item, root, f"internal error while writing the result ({type(exc).__name__}: {exc})")


def run_batch(
    root: Path,
    out: Path,
    settings: ReaderSettings,
    workers: int = 0,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[dict[str, object]], None] | None = None,
    retry_errors: bool = False,
) -> BatchSummary:
    """Read every item under ``root`` not yet in ``out`` and append one JSON line per item.

    Args:
        workers: processes; 0 picks the number of cores (each runs its models on one thread).
        retry_errors: read again the items whose answer in ``out`` is an error (:func:`finished_items`).
        on_start: called with (items to do, items skipped) once discovery is done.
        on_result: called with each result as it is written.

    Raises:
        OutputFileError: ``out`` is a folder or not a batch JSONL (nothing is written).
        ModelLoadError: a model file is missing, unreadable or fails its checksum (nothing is written).
    """
    started = time.perf_counter()
    given = Path(root)
    # a folder is walked from its real path; a single photo keeps the name it was given (a link is not resolved,
    # as ``marktrace read`` names it)
    root = given.resolve() if given.is_dir() else given.absolute()
    others: dict[str, int] = {}
    items = discover_items(root, others)
    base = root if root.is_dir() else root.parent
    done = finished_items(out, retry_errors)
    todo = [item for item in items if item.name not in done]
    summary = BatchSummary(total=len(items), skipped=len(items) - len(todo), other_files=others)
    if on_start:
        on_start(len(todo), summary.skipped)
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(todo))) if todo else 1
    # The models are loaded here once before anything is written, so a wrong model file or checksum is
    # refused at the start instead of becoming an error line for every item (in each worker).
    reader = load_reader(settings) if todo else None
    if workers > 1:
        reader = None  # each worker loads its own; none is carried into the fork
    if not todo:
        summary.seconds = time.perf_counter() - started
        return summary  # nothing to write: no empty output file either
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as handle:
        for result in _results(todo, base, settings, workers, reader):
            handle.write(json_line(result) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            if result["status"] == "ok":
                summary.ok += 1
            else:
                summary.errors += 1
                summary.error_items.append(str(result["item"]))
            if on_result:
                on_result(result)
    summary.seconds = time.perf_counter() - started
    return summary


def _results(
    todo: list[Item], root: Path, settings: ReaderSettings, workers: int, reader: MarkingReader | None = None
) -> Iterator[dict[str, object]]:
    if not todo:
        return
    if workers == 1:
        reader = reader or MarkingReader.from_settings(settings)
        for item in todo:
            yield _safe_read(reader, item, root)
        return
    per_worker = ReaderSettings(**{**settings.__dict__, "threads": 1})
    queue = iter(todo)
    retry: list[Item] = []
    failures: dict[str, int] = {}
    exhausted = False
    while True:
        # A worker that dies (out of memory, a crash in native code) breaks the pool. The items in flight
        # are retried one at a time in a fresh pool, so only an item that breaks it again gets an error line.
        broken = False
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(per_worker, root)) as pool:
            pending: dict[Future[dict[str, object]], Item] = {}
            while True:
                while not broken and len(pending) < workers * 4:
                    if retry:
                        if pending:
                            break  # retried items run alone
                        item = retry.pop(0)
                    else:
                        item_or_none = None if exhausted else next(queue, None)
                        if item_or_none is None:
                            exhausted = True
                            break
                        item = item_or_none
                    try:
                        pending[pool.submit(_read_in_worker, item)] = item
                    except BrokenProcessPool:
                        # a worker died while this process was writing: not this item's fault
                        broken = True
                        retry.insert(0, item)
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    done_item = pending.pop(future)
                    try:
                        yield future.result()
                    except Exception as exc:  # noqa: BLE001 - the worker process failed, not the reader
                        broken = True
                        failures[done_item.name] = failures.get(done_item.name, 0) + 1
                        if failures[done_item.name] >= 2:
                            yield _error_row(done_item, root, f"worker process failed ({type(exc).__name__}: {exc})")
                        else:
                            retry.append(done_item)
        if not broken and not retry and exhausted:
            return
