"""Alembic environment: runs on the connection handed over by ``Store.migrate`` (or the configured URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from marktrace.service.store import metadata

config = context.config


def run_migrations_online() -> None:
    """Run migrations on the given connection, or open one from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        context.run_migrations()


run_migrations_online()
