"""Schemathesis over the published OpenAPI schema: no server error on any generated request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from svc_helpers import auth, make_image, wait_ready

from marktrace.service.app import create_app
from marktrace.service.settings import ServiceSettings

_state: dict[str, object] = {}


@pytest.fixture(scope="module")
def api_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    cfg = ServiceSettings(
        data_dir=root,
        database_url=f"sqlite:///{root / 'db.sqlite3'}",
        reader="marktrace.service.fake_reader:FakeReader",
        workers=1,
        queue_size=2,
    )
    with TestClient(create_app(cfg)) as client:
        wait_ready(client)
        store = client.app.state.service.store  # type: ignore[attr-defined]
        _, key = store.create_key("fuzz-lab")
        _state["key"] = key
        # a record to fuzz the per-identification routes against (made now: schemathesis' calls run the lifespan again)
        created = client.post(
            "/v1/identifications",
            headers=auth(key),
            files=[("files", ("p.png", make_image(seed=1), "image/png"))],
        )
        assert created.status_code == 201, created.text
        _state["ident"] = created.json()["id"]
        yield client


@pytest.fixture(scope="module")
def api_schema(api_client: TestClient) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", api_client.app)


def _assert_no_server_error(case: schemathesis.Case, response: Any) -> None:
    """No 5xx, and every error answer is application/problem+json."""
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        ctype = response.headers.get("content-type") or [""]
        assert (ctype if isinstance(ctype, str) else ctype[0]).startswith("application/problem+json")


def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    headers = {"Authorization": f"Bearer {_state['key']}"}
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            _assert_no_server_error(case, response)

        run()
        checked += 1
    assert checked >= 8


def test_no_server_errors_on_a_real_record(api_schema: schemathesis.BaseSchema) -> None:
    """The per-identification routes with generated bodies against a record that exists (not only 404s)."""
    headers = {"Authorization": f"Bearer {_state['key']}"}
    ident = str(_state["ident"])
    seen: set[tuple[str, str, int]] = set()
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if "{ident}" not in operation.path or "{sha256}" in operation.path:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            case.path_parameters = {**(case.path_parameters or {}), "ident": ident}
            response = case.call(headers=headers)
            seen.add((case.method, case.operation.path, response.status_code))
            _assert_no_server_error(case, response)

        run()
        checked += 1
    assert checked >= 4
    # generated bodies reached the handlers, not only the validation errors
    reached = {(m, p) for m, p, status in seen if status in (200, 409)}
    assert ("POST", "/v1/identifications/{ident}/tracing-request") in reached, sorted(seen)
    assert ("GET", "/v1/identifications/{ident}/report.pdf") in reached, sorted(seen)
