"""Alembic migrations for the service database (applied at start by ``Store.migrate``)."""
