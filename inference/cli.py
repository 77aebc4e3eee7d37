"""CLI commands that read photos: ``marktrace read`` and ``marktrace batch`` (torch-free)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from marktrace.inference.images import DEFAULT_MAX_PIXELS
from marktrace.inference.pipeline import ReaderSettings

if TYPE_CHECKING:
    from marktrace.inference.batch import BatchSummary
    from marktrace.inference.schema import ItemResult

console = Console(stderr=True)

DetectorOpt = Annotated[Path | None, typer.Option(help="ONNX detector (default: the shipped model)")]
RecognizerOpt = Annotated[Path | None, typer.Option(help="ONNX recognizer (default: the shipped model)")]
MaxPixelsOpt = Annotated[int, typer.Option(help="Refuse images with more pixels than this")]


SaveEnhancedOpt = Annotated[
    Path | None, typer.Option(help="Keep every derived (enhanced or photometric) image here, with its trail JSON")
]
EnhanceOpt = Annotated[bool, typer.Option(help="Try enhanced and photometric views when the direct read is unsure")]
RestorationOpt = Annotated[
    bool,
    typer.Option(help="Learned restoration of unsure single photos (a suggestion, method 'restoration')"),
]

OverstampOpt = Annotated[
    bool,
    typer.Option(
        "--overstamp-flags",
        help="Flag serial characters that may be over-stamped (evidence for an examiner; measured recall is low, "
        "about 51% at 3% false flags, so it is off by default)",
    ),
]


class Variant(StrEnum):
    """Which shipped model variant to load."""

    auto = "auto"
    fp32 = "fp32"
    int8 = "int8"


VariantOpt = Annotated[Variant, typer.Option(help="Shipped model variant: auto (INT8 on the CPU), fp32 or int8")]

RegistryOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--registry",
        help="A lab's own registry file (YAML in the format of inference/registry/makers.yaml: makers, importers, "
        "their marks and models), read with the bundled one; repeatable",
    ),
]

LexiconOpt = Annotated[
    bool,
    typer.Option(
        help="When no maker is read, match the registry's manufacturer marks against the recognizer's character "
        "probabilities (a flagged suggestion, evidence method 'lexicon')",
    ),
]


def field_how(field: dict[str, Any]) -> str:
    """How a record field was read, for the ``read`` table.

    The reading method when not the photo itself (a chain or view), the parser's method, the text as
    read when the value was matched to a registry mark from it (a lexicon match), for a multi-light
    item's serial how many of its reads gave the value (its ``consensus`` flag), and for a photo's serial
    whether another cut of its line gave it (``recut``), whether its box was grown along the line (``box grown``,
    the first read's text), how many cuts agreed when not all did, and whether a mark read after it was left off
    (``mark left off``, the full read).
    """
    evidence = field.get("evidence") or {}
    parts = [str(field["method"])] if field.get("method") not in (None, "direct") else []
    if evidence.get("method"):
        parts.append(str(evidence["method"]))
        if evidence["method"] == "lexicon" and evidence.get("line_text"):
            parts[-1] += f" (read {evidence['line_text']!r})"
    flags = {f.get("kind"): f for f in field.get("flags") or [] if isinstance(f, dict)}
    if (vote := flags.get("consensus")) is not None:  # a multi-light item's serial: how many of its reads gave it
        parts.append(f"vote {vote.get('reads')} of {vote.get('of')} reads")
    if "read_recut" in flags:  # read from another cut of its line than the first
        parts.append("recut")
    if (grown := flags.get("read_extended")) is not None:  # the detected box ended inside the marking
        parts.append(f"box grown (first read {grown.get('first_read')!r})")
    if (cuts := flags.get("cut_disagreement")) is not None:  # cuts gave other serials: confidence scaled down
        parts.append(f"{cuts.get('agree')} of {cuts.get('of')} cuts agree")
    if (mark := flags.get("detached_end_dropped")) is not None:  # a stamp beside the serial read as a character
        parts.append(f"mark left off (read {mark.get('read')!r})")
    return " / ".join(parts)


def result_table(result: ItemResult) -> Table:
    """The ``read`` table of one answered item: each record field (value, confidence, alternatives, how)."""
    table = Table(title=escape(result.item), show_lines=False)
    table.add_column("field")
    table.add_column("value")
    table.add_column("confidence", justify="right")
    table.add_column("alternatives")
    table.add_column("how")
    for name, value in result.record.items():
        if isinstance(value, dict) and "value" in value:
            alts = ", ".join(f"{a['value']} ({a['confidence']:.2f})" for a in value.get("alternatives", [])[:3])
            table.add_row(name, escape(str(value["value"])), f"{value['confidence']:.2f}", escape(alts),
                          escape(field_how(value)))
    for line in result.lines:
        table.add_row("line", escape(line.text), f"{line.confidence:.2f}", "", "")
    return table


def _settings(
    detector: Path | None,
    recognizer: Path | None,
    max_pixels: int,
    threads: int | None,
    save_enhanced: Path | None = None,
    enhance: bool = True,
    variant: Variant = Variant.auto,
    restoration: bool = False,
    overstamp_flags: bool = False,
    lexicon: bool = True,
    registry: list[Path] | None = None,
) -> ReaderSettings:
    return ReaderSettings(
        detector=detector,
        recognizer=recognizer,
        max_pixels=max_pixels,
        threads=threads,
        save_enhanced=save_enhanced,
        enhance=enhance,
        variant=variant.value,
        restoration=restoration,
        flag_alterations=overstamp_flags,
        lexicon_makers=lexicon,
        registry_files=tuple(registry or ()),
    )


def read(
    # readable=False: an unreadable file is that item's error line, not a usage error that stops the others
    files: Annotated[list[Path], typer.Argument(help="Photos (or multi-light folders) to read", readable=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per item")] = False,
    detector: DetectorOpt = None,
    recognizer: RecognizerOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    save_enhanced: SaveEnhancedOpt = None,
    enhance: EnhanceOpt = True,
    variant: VariantOpt = Variant.auto,
    restoration: RestorationOpt = False,
    overstamp_flags: OverstampOpt = False,
    lexicon: LexiconOpt = True,
    registry: RegistryOpt = None,
) -> None:
    """Read the markings of a few photos and print the serial number and lines of each.

    Every item gets an answer: a table (or, with ``--json``, a JSON object), or an error naming the file
    and the problem; one bad file never stops the others. The exit code is 1 when any file failed.
    """
    from marktrace.inference.batch import ModelLoadError, json_line, load_reader, read_item_safely
    from marktrace.inference.items import describe_other_files, discover_items

    settings = _settings(
        detector, recognizer, max_pixels, None, save_enhanced, enhance, variant, restoration, overstamp_flags, lexicon,
        registry,
    )
    try:
        reader = load_reader(settings)
    except ModelLoadError as exc:
        _fail(str(exc))
    failed = False
    for path in files:
        others: dict[str, int] = {}
        try:
            items = discover_items(path, others)
        except FileNotFoundError as exc:
            console.print(f"[red]error[/red] {escape(str(exc))}")
            failed = True
            continue
        if not items:
            passed_over = describe_other_files(others)
            console.print(f"[red]error[/red] {escape(str(path))}: no images found"
                          + (f" ({escape(passed_over)})" if passed_over else ""))
            failed = True
            continue
        base = path if path.is_dir() else path.parent
        for item in items:
            result = read_item_safely(reader, item, base)
            if result.status == "error":
                failed = True
            if as_json:
                typer.echo(json_line(result.to_json_dict()))
                continue
            if result.status == "error":
                console.print(f"[red]error[/red] {escape(str(result.error))}")
                continue
            try:
                table = result_table(result)
            except Exception as exc:  # noqa: BLE001 - one item's odd result must not stop the others
                console.print(f"[red]error[/red] {escape(item.name)}: cannot show the result "
                              f"({type(exc).__name__}: {escape(str(exc))})")
                failed = True
                continue
            Console().print(table)
            if result.record.get("serial_number") is None:
                console.print("[yellow]no serial number found[/yellow]")
            if result.error:  # read, with something the examiner should know (a multi-page TIFF, no light file)
                console.print(f"[yellow]note[/yellow] {escape(result.error)}")
    if failed:
        raise typer.Exit(1)


def _fail(message: str) -> NoReturn:
    """Print ``error <message>`` (not read as markup) and exit with code 2."""
    console.print(f"[red]error[/red] {escape(message)}")
    raise typer.Exit(2)


def _run_batch_with_progress(
    folder: Path, out: Path, settings: ReaderSettings, workers: int, retry_errors: bool = False
) -> BatchSummary:
    """:func:`run_batch` under a progress bar that names the last item and prints each error as it comes."""
    from marktrace.inference.batch import run_batch

    with Progress(
        TextColumn("[bold]reading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}", markup=False),  # a file name, not markup
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("read", total=None, last="")

        def on_start(todo: int, skipped: int) -> None:
            progress.update(task, total=todo)
            if skipped:
                progress.console.print(f"resuming: {skipped} item(s) already in {escape(str(out))}")

        def on_result(result: dict[str, object]) -> None:
            label = str(result["item"])
            if result["status"] != "ok":
                progress.console.print(f"[red]error[/red] {escape(str(result['error']))}")
            progress.update(task, advance=1, last=label[-40:])

        return run_batch(folder, out, settings, workers=workers, on_start=on_start, on_result=on_result,
                         retry_errors=retry_errors)


def batch(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder tree of photos (sub-folders with lights.json or .lp are multi-light items)",
            readable=False,  # a folder that cannot be listed becomes an error line naming it
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="JSONL output; existing items are skipped (resume)")
    ],
    workers: Annotated[int, typer.Option(help="Worker processes (0: one per core)")] = 0,
    detector: DetectorOpt = None,
    recognizer: RecognizerOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    save_enhanced: SaveEnhancedOpt = None,
    enhance: EnhanceOpt = True,
    variant: VariantOpt = Variant.auto,
    restoration: RestorationOpt = False,
    overstamp_flags: OverstampOpt = False,
    lexicon: LexiconOpt = True,
    registry: RegistryOpt = None,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Read again the items whose answer in OUT is an error line")
    ] = False,
    fail_on_errors: Annotated[
        bool, typer.Option("--fail-on-errors", help="Exit 1 when any item of this run became an error line")
    ] = False,
) -> None:
    """Read every photo under FOLDER into OUT.jsonl, one JSON object per item.

    Exit code 0 when the batch ran to its end (a bad file is an error line, never a failed batch; the summary
    counts them), 1 with ``--fail-on-errors`` when some item of this run became an error line, 2 when nothing
    could start (a bad output file, model or registry).
    """
    from marktrace.inference.batch import ModelLoadError, OutputFileError, check_output

    if not folder.exists():
        _fail(f"{folder}: no such folder")
    try:
        check_output(out)
    except OutputFileError as exc:
        _fail(str(exc))
    if save_enhanced is not None and folder.is_dir() and save_enhanced.resolve().is_relative_to(folder.resolve()):
        _fail(f"--save-enhanced {save_enhanced} lies inside {folder}: its views would be read as photos by the next "
              "run; choose a folder outside it")
    settings = _settings(
        detector, recognizer, max_pixels, None, save_enhanced, enhance, variant, restoration, overstamp_flags, lexicon,
        registry,
    )
    try:
        summary = _run_batch_with_progress(folder, out, settings, workers, retry_errors)
    except (OutputFileError, ModelLoadError) as exc:
        _fail(str(exc))
    from marktrace.inference.items import describe_other_files

    others = describe_other_files(summary.other_files)
    if summary.total == 0:
        passed_over = f"; {others}" if others else ""
        console.print(f"[yellow]no images found under {escape(str(folder) + passed_over)}; nothing to do[/yellow]")
        return
    done = summary.ok + summary.errors
    per_item = f", {summary.seconds / done * 1000:.0f} ms per item" if done else ""
    console.print(
        f"[bold]{summary.total}[/bold] items: [green]{summary.ok} ok[/green], "
        f"[red]{summary.errors} errors[/red], {summary.skipped} already done; "
        f"{summary.seconds:.1f} s{per_item} -> {escape(str(out))}"
    )
    if others:
        console.print(f"[yellow]{others}[/yellow]")
    if fail_on_errors and summary.errors:
        raise typer.Exit(1)


def verify_view(
    trails: Annotated[list[Path], typer.Argument(help="Trail files (<view>.trail.json, as --save-enhanced writes)")],
    original: Annotated[
        list[Path],
        typer.Option("--original", "-o", help="An original photo, or the folder of a multi-light item (repeatable); "
                     "sources are found by SHA-256"),
    ],
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per trail on stdout")] = False,
) -> None:
    """Replay derived images from their trails on the originals and check they are bit-identical.

    Exit code 0 when every trail verified, 1 when any is a mismatch, could not be replayed or failed.
    """
    import dataclasses
    import json

    from marktrace.inference.enhance.verify import ViewCheck, check_view, load_view

    results: list[ViewCheck] = []
    for path in trails:
        try:
            view = load_view(path)
        except ValueError as exc:
            results.append(ViewCheck(path.name, "error", str(exc), ""))
            continue
        results.append(check_view(view, original, trail_file=path, max_pixels=max_pixels))
    if as_json:
        for path, check in zip(trails, results, strict=True):
            typer.echo(json.dumps({"trail": str(path), **dataclasses.asdict(check)}))
    else:
        table = Table("trail", "view", "status", "detail")
        colours = {"verified": "green", "mismatch": "red", "error": "red", "not_replayable": "yellow"}
        for path, check in zip(trails, results, strict=True):
            table.add_row(escape(str(path)), escape(check.view), f"[{colours[check.status]}]{check.status}[/]",
                          escape(check.detail))
        Console().print(table)
    if any(c.status != "verified" for c in results):
        raise typer.Exit(1)
