"""Fixtures for the service tests: both database backends, a live app, lab keys and generated images."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from svc_helpers import wait_ready

from marktrace.service.app import create_app
from marktrace.service.settings import ServiceSettings
from marktrace.service.store import Store

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
FAKE_READER = "marktrace.service.fake_reader:FakeReader"


@dataclass
class PgSchema:
    url: str
    schema: str


def pg_schema_create() -> PgSchema:
    """A fresh schema in the CI database `test`; fails loudly if PostgreSQL is down."""
    import psycopg

    schema = f"mt_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 (database 'test', user postgres) is not reachable: {exc}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    return PgSchema(url=url, schema=schema)


def pg_schema_drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"
        return
    pg = pg_schema_create()
    try:
        yield pg.url
    finally:
        pg_schema_drop(pg.schema)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> ServiceSettings:
    return ServiceSettings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        reader=FAKE_READER,
        workers=2,
        queue_size=2,
        max_file_bytes=2_000_000,
        max_request_bytes=3_000_000,
        max_pixels=4_000_000,
        request_timeout_s=20,
    )


@pytest.fixture
def client(settings: ServiceSettings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


@dataclass
class Keys:
    a: str
    a_viewer: str
    b: str
    a_id: str
    store: Store


@pytest.fixture
def keys(client: TestClient) -> Keys:
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    a_id, a = store.create_key("lab-a", "examiner")
    _, av = store.create_key("lab-a", "viewer")
    _, b = store.create_key("lab-b", "examiner")
    return Keys(a=a, a_viewer=av, b=b, a_id=a_id, store=store)
