"""Service commands: ``serve``, ``keys create|revoke|list``, ``audit verify``.

The root CLI mounts these: ``root.command("serve")(serve_command)``, ``root.add_typer(keys_app,
name="keys")``, ``root.add_typer(audit_app, name="audit")``. ``app`` bundles all three for
``python -m marktrace.service``.
"""

from __future__ import annotations

from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from marktrace.service.settings import ServiceSettings, load_settings

if TYPE_CHECKING:
    from marktrace.service.store import Store

keys_app = typer.Typer(help="Manage lab API keys (only hashes are stored).", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit log.", no_args_is_help=True)
app = typer.Typer(help="marktrace forensic lab service.", no_args_is_help=True)

SettingsOpt = Annotated[
    Path | None, typer.Option("--settings", help="A .env-style settings file (MARKTRACE_* variables).")
]


def _settings(settings_file: Path | None) -> ServiceSettings:
    try:
        return load_settings(settings_file)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError or missing file: report and exit
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None


def _store(settings: ServiceSettings) -> Store:
    from marktrace.service.store import Store

    store = Store(settings.resolved_database_url)
    store.migrate()
    return store


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to bind (default loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    settings_file: SettingsOpt = None,
) -> None:
    """Start the HTTP API (FastAPI on uvicorn). SIGTERM drains: readiness goes false, in-flight finish."""
    import uvicorn

    from marktrace.service.app import create_app

    settings = _settings(settings_file)
    api = create_app(settings)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state = getattr(api.state, "service", None)
            if state is not None:
                state.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        access_log=False,
    )
    _Server(config).run()


@keys_app.command("create")
def keys_create(
    lab: Annotated[str, typer.Option("--lab", help="The lab this key belongs to.")],
    role: Annotated[str, typer.Option("--role", help="examiner (read and change) or viewer (read only).")] = (
        "examiner"
    ),
    label: Annotated[str | None, typer.Option(help="A note on who holds the key.")] = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Create an API key and print it once (it cannot be shown again)."""
    if role not in ("examiner", "viewer"):
        typer.echo(f"error: --role must be examiner or viewer, got {role!r}", err=True)
        raise typer.Exit(2)
    store = _store(_settings(settings_file))
    key_id, secret = store.create_key(lab, role, label)  # type: ignore[arg-type]
    typer.echo(f"key id: {key_id}  lab: {lab}  role: {role}", err=True)
    typer.echo(secret)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id printed by 'keys create' (or 'keys list').")],
    settings_file: SettingsOpt = None,
) -> None:
    """Revoke a key; requests with it answer 401 from now on."""
    store = _store(_settings(settings_file))
    if not store.revoke_key(key_id):
        typer.echo(f"error: no active key with id {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def keys_list(settings_file: SettingsOpt = None) -> None:
    """List keys (ids, labs, roles; never the keys themselves)."""
    store = _store(_settings(settings_file))
    for key in store.list_keys():
        state = "revoked" if key["revoked_at"] else "active"
        typer.echo(f"{key['key_id']}\t{key['lab']}\t{key['role']}\t{state}\t{key['label'] or ''}")


@audit_app.command("verify")
def audit_verify(settings_file: SettingsOpt = None) -> None:
    """Recompute the audit hash chain; exit 1 and list the problems if any entry was altered or removed."""
    store = _store(_settings(settings_file))
    report = store.verify_audit()
    if report.ok:
        typer.echo(f"audit chain ok: {report.entries} entries")
        return
    for problem in report.problems:
        typer.echo(f"TAMPERED: {problem}", err=True)
    typer.echo(f"audit chain BROKEN: {len(report.problems)} problem(s) in {report.entries} entries", err=True)
    raise typer.Exit(1)


app.command("serve")(serve_command)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
