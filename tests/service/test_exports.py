"""Exports through the API on both backends: ITI tracing request, PDF report, published JSON Schemas."""

from __future__ import annotations

import hashlib
import io
import json

import jsonschema
import pypdf
from fastapi.testclient import TestClient
from svc_helpers import auth, make_image

from marktrace.inference.records import SCHEMA_DIR, load_schema

HUMAN = {
    "requesting_authority": {"name": "National Focal Point", "country": "FR", "contact": "nfp@example.invalid"},
    "case_reference": "CASE-77",
    "illicit_nature": {"criteria": ["illicit_under_national_law"], "description": "seized at border"},
    "legal_justification": "ITI para 17; national law art. 12",
    "intended_use": "criminal investigation",
    "date": "2025-01-15",
}
MISSING_ID = "00000000-0000-0000-0000-000000000000"


def _create(client: TestClient, key: str, name: str = "p1.png", seed: int = 1) -> dict:
    r = client.post(
        "/v1/identifications",
        headers=auth(key),
        files=[("files", (name, make_image(80, 60, seed=seed), "image/png"))],
    )
    assert r.status_code == 201, r.text
    body: dict = r.json()
    return body


def _confirm_required(client: TestClient, key: str, ident: str, country: str = "DE") -> None:
    changes = [
        {"field": "serial_number", "action": "confirm"},
        {"field": "manufacturer", "action": "correct", "value": "Heckler & Koch"},
        {"field": "country_of_manufacture", "action": "correct", "value": country},
    ]
    r = client.patch(f"/v1/identifications/{ident}", json={"changes": changes}, headers=auth(key))
    assert r.status_code == 200, r.text


def _audit(keys, target_suffix: str) -> list[tuple[str, str]]:
    return [
        (e["event"], e["outcome"])
        for e in keys.store.audit_entries()
        if (e["target"] or "").endswith(target_suffix)
    ]


def test_tracing_request_refused_forced_then_confirmed(client: TestClient, keys) -> None:
    ident = _create(client, keys.a)["id"]
    url = f"/v1/identifications/{ident}/tracing-request"
    schema = load_schema("tracing-request.v1.json")

    refused = client.post(url, json=HUMAN, headers=auth(keys.a))
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    detail = refused.json()["detail"]
    assert "not yet confirmed" in detail and '"force": true' in detail and "'unconfirmed'" in detail
    # the serial was read (suggested); manufacturer and country were not read at all: all three named
    assert detail.startswith("tracing request refused: serial_number, manufacturer, country_of_manufacture not")

    forced = client.post(url, json={**HUMAN, "force": True}, headers=auth(keys.a))
    assert forced.status_code == 200, forced.text
    fbody = forced.json()
    jsonschema.validate(fbody, schema)
    assert fbody["unconfirmed"] is True
    assert set(fbody["unconfirmed_fields"]) >= {"serial_number", "manufacturer", "country_of_manufacture"}
    assert fbody["stamp"].startswith("UNCONFIRMED")
    assert fbody["weapon"]["serial_number"].startswith("FAKE")  # forced: the suggestion is copied, stamped

    _confirm_required(client, keys.a, ident)
    ok = client.post(url, json=HUMAN, headers=auth(keys.a))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    jsonschema.Draft202012Validator(schema).validate(body)
    assert body["schema_version"] == "tracing-request.v1"
    assert body["unconfirmed"] is False and body["stamp"] is None and body["unconfirmed_fields"] == []
    assert body["weapon"]["manufacturer"] == "Heckler & Koch"
    assert body["weapon"]["field_status"]["serial_number"] == "confirmed"
    assert body["requested_states"] == [{"state": "DE", "basis": "country_of_manufacture"}]
    assert body["case_reference"] == "CASE-77" and body["date"] == "2025-01-15"
    assert body["images"][0]["sha256"] == hashlib.sha256(make_image(80, 60, seed=1)).hexdigest()
    assert ok.headers["x-content-sha256"] == hashlib.sha256(ok.content).hexdigest()

    entries = [e for e in keys.store.audit_entries() if e["target"] == f"identification:{ident}/tracing-request"]
    assert [(e["event"], e["outcome"]) for e in entries] == [
        ("export", "refused"),
        ("export", "success"),
        ("export", "success"),
    ]
    assert entries[0]["detail"]["unconfirmed"][:1] == ["serial_number"]
    assert entries[1]["detail"]["forced"] is True and entries[2]["detail"]["forced"] is False
    assert entries[2]["detail"]["sha256"] == ok.headers["x-content-sha256"]
    assert keys.store.verify_audit().ok


def test_tracing_request_roles_tenancy_and_bad_input(client: TestClient, keys) -> None:
    ident = _create(client, keys.a)["id"]
    url = f"/v1/identifications/{ident}/tracing-request"
    forced = {**HUMAN, "force": True}
    viewer = client.post(url, json=forced, headers=auth(keys.a_viewer))
    assert viewer.status_code == 403 and "viewer" in viewer.json()["detail"]
    assert ("export", "forbidden") in _audit(keys, "/tracing-request")
    assert client.post(url, json=forced).status_code == 401
    other = client.post(url, json=forced, headers=auth(keys.b))
    missing = client.post(url.replace(ident, MISSING_ID), json=forced, headers=auth(keys.a))
    assert other.status_code == missing.status_code == 404
    assert other.json()["title"] == missing.json()["title"]
    # the human-only fields are required and checked
    for bad in ({**HUMAN, "case_reference": ""}, {k: v for k, v in HUMAN.items() if k != "intended_use"},
                {**HUMAN, "illicit_nature": {"criteria": ["because"]}}, {**HUMAN, "extra": 1}):
        r = client.post(url, json=bad, headers=auth(keys.a))
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    # a country the examiner writes as a name, not an ISO code, or a value of another type: the review refuses it
    # with a clear 422 and the record stays as it was (the export's own check of a stored value: test_records)
    before = client.get(f"/v1/identifications/{ident}", headers=auth(keys.a)).json()
    for field, value, message in (("country_of_manufacture", "Germany", "alpha-2 code such as 'BE', got 'Germany'"),
                                  ("serial_number", {"x": 1}, "must be non-empty text, got dict"),
                                  ("serial_number", "A" * 100_000, "100000 characters long; at most 200")):
        r = client.patch(f"/v1/identifications/{ident}", headers=auth(keys.a),
                         json={"changes": [{"field": field, "action": "correct", "value": value}]})
        assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert client.get(f"/v1/identifications/{ident}", headers=auth(keys.a)).json() == before


def test_pdf_report(client: TestClient, keys) -> None:
    created = _create(client, keys.a, name="photo 1 (Ω).png", seed=3)
    ident = created["id"]
    url = f"/v1/identifications/{ident}/report.pdf"
    r = client.get(url, headers=auth(keys.a_viewer))  # viewers may read reports
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="marktrace-{ident}.pdf"'
    assert r.content.startswith(b"%PDF")
    assert r.headers["x-content-sha256"] == hashlib.sha256(r.content).hexdigest()
    pdf = pypdf.PdfReader(io.BytesIO(r.content))
    assert len(pdf.pages) >= 1
    text = "".join(page.extract_text() or "" for page in pdf.pages)
    serial = created["record"]["serial_number"]["value"]
    assert serial in text and "verified" in text  # the photo came from the evidence store, hash-checked
    assert "not available" not in text
    assert sum(len(page.images) for page in pdf.pages) >= 2  # the photo with boxes and the derived view
    entries = [e for e in keys.store.audit_entries() if e["target"] == f"identification:{ident}/report.pdf"]
    assert [(e["event"], e["outcome"]) for e in entries] == [("export", "success")]
    assert entries[0]["detail"]["sha256"] == r.headers["x-content-sha256"]

    assert client.get(url).status_code == 401
    other = client.get(url, headers=auth(keys.b))
    missing = client.get(url.replace(ident, MISSING_ID), headers=auth(keys.b))
    assert other.status_code == missing.status_code == 404
    assert other.json()["title"] == missing.json()["title"]


def test_pdf_report_refuses_altered_evidence(client: TestClient, keys) -> None:
    created = _create(client, keys.a, seed=4)
    evidence = client.app.state.service.evidence  # type: ignore[attr-defined]
    path = evidence.path_for(created["originals"][0]["sha256"])
    path.chmod(0o644)
    path.write_bytes(make_image(80, 60, seed=5))
    r = client.get(f"/v1/identifications/{created['id']}/report.pdf", headers=auth(keys.a))
    assert r.status_code == 500 and r.json()["title"] == "Evidence Integrity Failure"
    assert ("export", "integrity_failure") in _audit(keys, "/report.pdf")


def test_schemas_are_served_byte_for_byte(client: TestClient) -> None:
    listing = client.get("/v1/schemas")  # public documents: no key needed
    assert listing.status_code == 200
    items = listing.json()["items"]
    assert {i["name"] for i in items} == {"identification-record.v1", "tracing-request.v1"}
    for item in items:
        r = client.get(item["url"])
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/schema+json")
        on_disk = (SCHEMA_DIR / f"{item['name']}.json").read_bytes()
        assert r.content == on_disk and r.json() == json.loads(on_disk)
        assert item["id"] == r.json()["$id"] and item["title"] == r.json()["title"]
        assert client.get(f"{item['url']}.json").content == on_disk
    unknown = client.get("/v1/schemas/nope.v1")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")
