"""The service CLI: keys create/revoke/list and audit verify (incl. a tampered chain)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from marktrace.service.cli import app
from marktrace.service.store import Store, hash_key


def test_keys_and_audit_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKTRACE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--lab", "lab-x", "--role", "viewer"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    store = Store(f"sqlite:///{tmp_path / 'marktrace.sqlite3'}")
    principal = store.authenticate(secret)
    assert principal is not None and principal.lab == "lab-x" and principal.role == "viewer"
    listed = runner.invoke(app, ["keys", "list"])
    assert principal.key_id in listed.stdout and secret not in listed.stdout
    with store.engine.connect() as conn:  # only the hash is stored
        assert conn.execute(text("SELECT key_hash FROM api_keys")).scalar_one() == hash_key(secret)
    assert runner.invoke(app, ["keys", "revoke", principal.key_id]).exit_code == 0
    assert store.authenticate(secret) is None
    assert runner.invoke(app, ["keys", "revoke", "nosuchkey"]).exit_code == 1
    assert runner.invoke(app, ["keys", "create", "--lab", "x", "--role", "admin"]).exit_code == 2

    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "2 entries" in ok.stdout
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(text("DELETE FROM audit_log WHERE seq = 1"))
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1 and "BROKEN" in bad.output
    store.close()


def test_bad_settings_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKTRACE_DATABASE_URL", "mysql://nope")
    result = CliRunner().invoke(app, ["keys", "list"])
    assert result.exit_code == 2 and "MARKTRACE_DATABASE_URL" in result.output
