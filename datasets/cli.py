"""``marktrace data``: render synthetic datasets and validate dataset folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

app = typer.Typer(help="Synthetic marking datasets and dataset checks.", no_args_is_help=True)


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"{name} must be 'a,b' with numbers, got {text!r}") from exc
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise typer.BadParameter(f"{name} must be 'a,b', got {text!r}")
    return parts[0], parts[1]


@app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Argument(help="output folder (created; an interrupted run resumes)")],
    n: Annotated[int, typer.Option("--n", help="number of images")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="first seed")] = 0,
    fonts: Annotated[str, typer.Option("--fonts", help="font split: train | heldout | all")] = "train",
    wear: Annotated[str, typer.Option("--wear", help="wear range 'a,b' (0..0.98)")] = "0,0.3",
    workers: Annotated[int, typer.Option("--workers", help="parallel processes")] = 1,
    camera: Annotated[float, typer.Option("--camera", help="camera effects strength 0..1")] = 1.0,
    rotation: Annotated[str, typer.Option("--rotation", help="upright | small | any")] = "small",
    overstamp: Annotated[float, typer.Option("--overstamp", help="over-stamp probability")] = 0.0,
    etch: Annotated[float, typer.Option("--etch", help="etch-reveal probability")] = 0.0,
    glyph_variation: Annotated[
        float, typer.Option("--glyph-variation", help="share of lines slanted, bolder/lighter, narrower/wider")
    ] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Render a synthetic dataset (PNG images + manifest.jsonl).

    Into a folder that already holds a generation only with the same seed and settings (it resumes);
    otherwise exits 2 naming the folder and what differs, and changes nothing.
    """
    from pydantic import ValidationError

    from marktrace.datasets.manifest import GenerationConflict, generate_dataset
    from marktrace.datasets.synth import SynthConfig

    try:
        cfg = SynthConfig(
            fonts=fonts,  # type: ignore[arg-type]
            wear=_pair(wear, "--wear"),
            camera=camera,
            rotation=rotation,  # type: ignore[arg-type]
            overstamp_prob=overstamp,
            etch_reveal_prob=etch,
            glyph_variation=glyph_variation,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        path = generate_dataset(out, n, cfg, seed=seed, workers=workers, progress=not quiet)
    except (GenerationConflict, NotADirectoryError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    Console().print(f"wrote {n} entries to {escape(str(path))}")


@app.command("validate")
def validate_cmd(
    folder: Annotated[Path, typer.Argument(help="dataset folder with manifest.jsonl")],
    charset: Annotated[
        str | None, typer.Option("--charset", help="allowed characters (default: the recognizer's)")
    ] = None,
    min_size: Annotated[int, typer.Option("--min-size", help="smallest allowed image side")] = 16,
) -> None:
    """Check a dataset; exits 1 and prints a table when a problem is found (bad content never crashes it)."""
    from marktrace.datasets.manifest import validate_dataset

    rep = validate_dataset(folder, charset=charset, min_size=min_size)
    con = Console(width=140)
    summary = Table(title=f"{escape(str(folder))}: {rep.n_entries} images, {rep.n_lines} lines")
    summary.add_column("role / source")
    summary.add_column("count", justify="right")
    for k, v in {**rep.per_role, **{f"source:{s}": c for s, c in rep.per_source.items()}}.items():
        summary.add_row(k, str(v))
    con.print(summary)
    if rep.ok:
        con.print("[green]OK[/green]: no problem found")
        return
    table = Table(title=f"{len(rep.issues)} problem(s)")
    for col in ("kind", "line", "image", "detail"):
        table.add_column(col)
    for iss in rep.issues[:200]:
        # paths and details come from the dataset: shown as plain text, never read as rich markup
        table.add_row(iss.kind, "" if iss.line is None else str(iss.line), Text(iss.image or ""), Text(iss.detail))
    con.print(table)
    if len(rep.issues) > 200:
        con.print(f"... and {len(rep.issues) - 200} more")
    raise typer.Exit(code=1)
