"""CLI commands for training and export: ``marktrace train`` and ``marktrace export-models``.

torch is imported only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    import yaml

    overrides: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"{pair!r}: expected key=value (e.g. recognizer.steps=100)")
        key, value = pair.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return overrides


def train(
    config: Annotated[
        str, typer.Option(help="Preset (tiny, cpu, gpu; tiny-restorer, cpu-restorer, gpu-restorer) or a YAML file")
    ] = "cpu",
    out: Annotated[Path, typer.Option(help="Folder that receives the run folder")] = Path("runs"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set recognizer.steps=100")] = None,
) -> None:
    """Train the line detector and recognizer, or the learned restorer (presets ``*-restorer``).

    Writes a run folder with config, seed, commit, metrics, checkpoints.
    """
    from marktrace.training.config import RestorerTrainConfig, load_any_config

    cfg = load_any_config(config, _parse_overrides(set_ or []))
    if isinstance(cfg, RestorerTrainConfig):
        from marktrace.training.restorer import train_restorer

        run = train_restorer(cfg, out, progress=lambda msg: console.print(msg, highlight=False))
    else:
        from marktrace.training.train import train as run_training

        run = run_training(cfg, out, progress=lambda msg: console.print(msg, highlight=False))
    console.print(f"[green]run folder[/green] {run}")
    typer.echo(str(run))


def export(
    run: Annotated[Path, typer.Argument(help="Training run folder")],
    out: Annotated[Path, typer.Option(help="Folder for the ONNX files")] = Path("models/shipped"),
    version: Annotated[str, typer.Option(help="Semantic version of the exported models")] = "1.0.0",
    checkpoint: Annotated[str, typer.Option(help="Checkpoint tag (best or last)")] = "best",
    register: Annotated[bool, typer.Option(help="Record the files in OUT/registry.json")] = True,
    recognizer_run: Annotated[Path | None, typer.Option(help="Take the recognizer from this run instead")] = None,
    calibrate_images: Annotated[
        int, typer.Option(help="Synthetic markings to calibrate the detector's line geometry on (0: skip)")
    ] = 200,
    overwrite: Annotated[
        bool, typer.Option(help="Replace ONNX files of the same name and version that already exist in OUT")
    ] = False,
) -> None:
    """Export a run's checkpoints to self-describing ONNX files; fails if onnxruntime and torch disagree.

    A restorer run (``task: restoration`` in its config) exports the restorer alone. An existing file of the
    same name and version (a shipped model) is never replaced unless ``--overwrite`` is given; a failed export
    leaves OUT as it was.
    """
    from marktrace.models.export import ExportTargetExistsError
    from marktrace.models.publish import export_run

    try:
        results = export_run(run, out, version, checkpoint, register, recognizer_run, calibrate_images, overwrite)
    except ExportTargetExistsError as exc:
        console.print(f"[red]refused[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(results, indent=2))
