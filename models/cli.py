"""``marktrace models``: list the shipped models and verify their checksums and metadata (torch-free)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from marktrace.models.registry import (
    REGISTRY_FILE,
    SHIPPED_DIR,
    ModelChecksumError,
    RegisteredModel,
    load_registry,
    verify_file,
)

app = typer.Typer(help="The shipped ONNX models: list, verify, regenerate, calibrate.", no_args_is_help=True)
console = Console()

FolderOpt = Annotated[Path, typer.Option(help="Model folder holding registry.json")]


@app.command("list")
def list_models(folder: FolderOpt = SHIPPED_DIR) -> None:
    """List the registered models with task, version, variant and SHA-256."""
    table = Table(title=f"models in {folder}")
    for column in ("name", "version", "task", "variant", "default", "file", "sha256"):
        table.add_column(column)
    for model in load_registry(folder):
        table.add_row(
            model.name,
            model.version,
            model.task,
            model.variant,
            "yes" if model.default else "",
            model.file,
            model.sha256[:16] + "…",
        )
    console.print(table)


@app.command("verify")
def verify_models(folder: FolderOpt = SHIPPED_DIR) -> None:
    """Check every registered model: file present, SHA-256 as recorded, metadata readable and of the right task."""
    from marktrace.inference.onnx_models import ModelMetadataError, load_model

    failures = 0
    for model in load_registry(folder):
        try:
            path = verify_file(model, folder)
            loaded = load_model(path, model.task, threads=1)
            if loaded.meta.version != model.version or loaded.meta.name != model.name:
                raise ModelMetadataError(
                    f"{path}: metadata says {loaded.meta.name} {loaded.meta.version}, registry says "
                    f"{model.name} {model.version}"
                )
        except (ModelChecksumError, ModelMetadataError, FileNotFoundError) as exc:
            failures += 1
            console.print(f"[red]FAIL[/red] {escape(str(exc))}", soft_wrap=True)  # one line: greppable in CI logs
            continue
        console.print(f"[green]ok[/green]   {model.file}  sha256 {model.sha256[:16]}…  {model.task} v{model.version}")
    if failures:
        raise typer.Exit(1)


@app.command("regenerate")
def regenerate_models(
    folder: FolderOpt = SHIPPED_DIR,
    variants: Annotated[bool, typer.Option(help="Rebuild the INT8 variants (else keep the existing files)")] = True,
) -> None:
    """Rebuild what depends on the model bytes: INT8 variants, test vectors, card checksums (needs ``onnx``).

    Run it after every ``marktrace export-models``; same as ``python -m marktrace.models.vectors``.
    """
    from marktrace.models.vectors import regenerate

    summary = regenerate(folder, variants=variants)
    console.print(f"variants: {', '.join(summary['variants']) or '(kept)'}")
    console.print(f"vectors:  {', '.join(summary['vectors'])}")
    console.print(f"cards:    {', '.join(Path(c).name for c in summary['cards'])}")


@app.command("calibrate")
def calibrate_models(
    files: Annotated[list[Path], typer.Argument(help="Line-detector ONNX files")],
    images: Annotated[int, typer.Option(help="Synthetic markings to measure")] = 200,
    write: Annotated[bool, typer.Option(help="Store the fit in each file's metadata (else only print it)")] = True,
) -> None:
    """Fit a detector's core-to-line geometry on synthetic markings and store it in its ONNX metadata.

    Writing changes the file's SHA-256: a file listed in its folder's ``registry.json`` is re-registered
    with the new checksum; then run ``marktrace models regenerate`` (INT8 variant, test vectors, cards).
    Every registered file is first checked against its registry entry (all files before any is touched), so
    a corrupted file is refused instead of being re-registered under a new checksum.
    """
    from marktrace.inference.images import sha256_file
    from marktrace.models.calibrate import calibrate
    from marktrace.models.publish import update_registry

    entries: dict[Path, RegisteredModel | None] = {}
    for path in files:
        if not path.is_file():
            console.print(f"[red]FAIL[/red] {escape(str(path))}: no such file", soft_wrap=True)
            raise typer.Exit(1)
        entry = _registry_entry(path)
        if entry is not None:
            try:
                verify_file(entry, path.parent)
            except ModelChecksumError as exc:
                console.print(
                    f"[red]FAIL[/red] {escape(str(exc))} ({escape(str(path.parent / REGISTRY_FILE))}); "
                    "not calibrated: restore the file before calibrating it",
                    soft_wrap=True,
                )
                raise typer.Exit(1) from None
        entries[path] = entry
    for path in files:
        try:
            summary = calibrate(path, images, write=write)
        except ValueError as exc:
            console.print(f"[red]FAIL[/red] {escape(str(path))}: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        console.print(
            f"{escape(str(path))}: {summary['lines']} lines; estimated / true height (quartiles) "
            f"{summary['uncalibrated']['height_ratio']} -> {summary['calibrated']['height_ratio']}, length "
            f"{summary['uncalibrated']['length_ratio']} -> {summary['calibrated']['length_ratio']}"
        )
        console.print(f"  line_geometry {summary['geometry'].to_json()}" + ("  (written)" if write else ""))
        entry = entries[path]
        if write and entry is not None:
            update_registry(path.parent, [{**asdict(entry), "sha256": sha256_file(path)}])
            console.print(f"  re-registered in {escape(str(path.parent / REGISTRY_FILE))}")


def _registry_entry(path: Path) -> RegisteredModel | None:
    """The entry of ``path`` in the ``registry.json`` of its folder, or None when it is not registered there."""
    if not (path.parent / REGISTRY_FILE).is_file():
        return None
    return next((m for m in load_registry(path.parent) if m.file == path.name), None)
