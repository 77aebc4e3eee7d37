"""``marktrace export``: CSV, PDF reports, ITI tracing request and training set from a batch JSONL.

The typer app :data:`app` has one command (:func:`export_command`); the main CLI mounts it as
``marktrace export`` (``main_app.command("export")(export_command)``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from marktrace.inference.export import (
    ExportError,
    export_training_set,
    find_item,
    pdf_name,
    read_batch,
    record_of,
    render_pdf,
    resolve_image,
    write_csv,
    write_tracing_request,
)
from marktrace.inference.images import DEFAULT_MAX_PIXELS
from marktrace.inference.records import (
    ILLICIT_CRITERIA,
    TracingHumanFields,
    UnconfirmedFieldsError,
    build_tracing_request,
    tracing_request_problem,
)
from marktrace.inference.schema import ItemResult

app = typer.Typer(add_completion=False, help="Export a batch JSONL: CSV, PDF reports, ITI tracing request.")


def export_command(
    batch: Annotated[Path, typer.Argument(help="batch JSONL written by `marktrace batch`")],
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write the examiner CSV here")] = None,
    pdf_dir: Annotated[Path | None, typer.Option("--pdf-dir", help="write one PDF report per item here")] = None,
    images_root: Annotated[Path | None, typer.Option(
        "--images-root", help="folder the batch's file names are relative to (default: the batch's folder)")] = None,
    tracing_request: Annotated[str | None, typer.Option(
        "--tracing-request", help="item name to build an ITI tracing request for")] = None,
    authority: Annotated[str | None, typer.Option("--authority", help="requesting authority (name)")] = None,
    authority_country: Annotated[str | None, typer.Option("--authority-country", help="ISO alpha-2")] = None,
    case_ref: Annotated[str | None, typer.Option("--case-ref", help="case reference")] = None,
    illicit: Annotated[list[str] | None, typer.Option(
        "--illicit", help=f"ITI para 6 criterion, repeatable: {', '.join(ILLICIT_CRITERIA)}")] = None,
    legal_justification: Annotated[str | None, typer.Option("--legal-justification")] = None,
    intended_use: Annotated[str | None, typer.Option("--intended-use")] = None,
    request_date: Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default: today)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="tracing request JSON path")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="export even if serial/manufacturer/country are unconfirmed (stamped 'unconfirmed')")] = False,
    training_set: Annotated[Path | None, typer.Option(
        "--training-set", help="write confirmed/corrected lines as a datasets/ manifest here")] = None,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1, help="largest photo or view (width x height) decoded for the PDF reports")
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Export CSV, PDF reports, an ITI tracing request, or a training set from a batch JSONL."""
    try:
        items = read_batch(batch)
        for path in (csv_out, out):
            check_output_path(path, batch)
        human: TracingHumanFields | None = None
        trace_item: ItemResult | None = None
        if tracing_request is not None:  # checked before anything is written
            missing = [n for n, v in (("--authority", authority), ("--case-ref", case_ref), ("--illicit", illicit),
                                      ("--legal-justification", legal_justification),
                                      ("--intended-use", intended_use)) if not v]
            if missing:
                raise typer.BadParameter(f"a tracing request needs the human-only fields {', '.join(missing)}")
            try:
                human = TracingHumanFields.model_validate({
                    "requesting_authority": {"name": authority, "country": authority_country},
                    "case_reference": case_ref,
                    "illicit_nature": {"criteria": illicit},
                    "legal_justification": legal_justification,
                    "intended_use": intended_use,
                    "date": date.fromisoformat(request_date) if request_date else None,
                })
            except (ValidationError, ValueError) as exc:
                raise typer.BadParameter(f"invalid tracing-request fields: {exc}") from None
            trace_item = find_item(items, tracing_request)
            if trace_item.status != "ok":
                raise ExportError(f"{trace_item.item}: its photos could not be read ({trace_item.error}); "
                                  "no tracing request is built from it, forced or not")
        root = images_root if images_root is not None else batch.parent
        did = False
        if csv_out is not None:
            write_csv(items, csv_out)
            typer.echo(f"CSV: {csv_out} ({len(items)} items)")
            did = True
        failed: list[str] = []
        if pdf_dir is not None:
            from reportlab.platypus.doctemplate import LayoutError

            names = report_names(items)
            for it, name in zip(items, names, strict=True):  # one bad item never stops the others' reports
                try:
                    render_pdf(it, pdf_dir / name, images_root=root, max_pixels=max_pixels)
                except (ExportError, OSError, LayoutError) as exc:
                    failed.append(it.item)
                    typer.echo(f"error: {it.item}: no PDF report ({exc})", err=True)
            typer.echo(f"PDF: {len(items) - len(failed)} reports in {pdf_dir}"
                       + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
            if items and not any(resolve_image(f, root) for it in items for f in it.files):
                typer.echo(f"WARNING: none of the batch's photos was found under {root}: the reports show no "
                           "photo; pass --images-root, the folder given to `marktrace batch`", err=True)
            did = True
        if training_set is not None:
            summary = export_training_set(batch, training_set, images_root=root)
            typer.echo(f"training set: {summary['items']} images, {summary['lines']} lines in {training_set}"
                       + (f"; skipped {len(summary['skipped'])}" if summary["skipped"] else ""))
            did = True
        if human is not None and trace_item is not None:
            item = trace_item
            try:
                req = build_tracing_request(record_of(item), human, force=force)
            except UnconfirmedFieldsError as exc:
                typer.echo(f"refused: {exc}", err=True)
                raise typer.Exit(code=3) from None
            except ValidationError as exc:
                raise ExportError(f"{item.item}: {tracing_request_problem(exc)}") from None
            dest = out or Path(f"tracing-request-{pdf_name(item)[:-4]}.json")
            write_tracing_request(req, dest)
            if req.unconfirmed:
                typer.echo(f"WARNING: {req.stamp}", err=True)
            typer.echo(f"tracing request: {dest}")
            did = True
        if not did:
            typer.echo(json.dumps({"items": len(items)}))
        if failed:
            raise typer.Exit(code=2)
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as exc:  # an output path that cannot be written: a folder, a missing permission, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}cannot write ({exc.strerror or exc}); nothing else was changed", err=True)
        raise typer.Exit(code=2) from None


def check_output_path(path: Path | None, batch: Path) -> None:
    """Refuse an output path that is a folder or the batch itself (an export never replaces its input).

    Raises:
        ExportError: naming the path and the problem.
    """
    if path is None:
        return
    if path.is_dir():
        raise ExportError(f"{path}: a folder; give a file name")
    if path.exists() and path.resolve() == batch.resolve():
        raise ExportError(f"{path}: the batch being exported; give another file name")


def report_names(items: list[ItemResult]) -> list[str]:
    """Each item's PDF file name (:func:`pdf_name`), made unique: ``a_b.jpg.pdf``, then ``a_b.jpg-2.pdf``, ..."""
    names: list[str] = []
    used: set[str] = set()
    for it in items:
        name = base = pdf_name(it)
        n = 1
        while name in used:
            n += 1
            name = f"{base[:-4]}-{n}.pdf"
        used.add(name)
        names.append(name)
    return names


app.command(name="export")(export_command)
