"""The ``marktrace`` command: one entry point, sub-commands from each stage.

Sub-command modules import their heavy dependencies (torch, fastapi) only when a command runs, so
``marktrace read`` and ``marktrace batch`` work on the torch-free serving install.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="marktrace",
    help="Read, recover and record the markings on small arms and light weapons from photographs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from marktrace.inference import cli as inference_cli

    app.command("read")(inference_cli.read)
    app.command("batch")(inference_cli.batch)
    app.command("verify-view")(inference_cli.verify_view)
    # Optional groups: (module, attribute, name, kind); a missing module (feature not installed) is skipped.
    optional = [
        ("marktrace.datasets.cli", "app", "data", "group"),
        ("marktrace.training.cli", "train", "train", "command"),
        ("marktrace.training.cli", "export", "export-models", "command"),
        ("marktrace.training.overstamp", "train_command", "train-overstamp", "command"),
        ("marktrace.models.cli", "app", "models", "group"),
        ("marktrace.inference.export_cli", "export_command", "export", "command"),
        ("marktrace.service.cli", "serve_command", "serve", "command"),
        ("marktrace.service.cli", "keys_app", "keys", "group"),
        ("marktrace.service.cli", "audit_app", "audit", "group"),
    ]
    for module_name, attribute, name, kind in optional:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue  # an optional extra (torch, fastapi, ...) is not installed
        target = getattr(module, attribute, None)
        if target is None:
            continue
        if kind == "group":
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()


if __name__ == "__main__":
    main()
