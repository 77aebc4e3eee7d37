"""The API through TestClient on both backends: create/read/list/review, evidence, limits, tenancy, audit."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from svc_helpers import auth, make_image

from marktrace.inference.enhance.chains import image_sha256
from marktrace.service.evidence import EvidenceStore


def post(client: TestClient, key: str, files: list[tuple[str, bytes]], **extra: object) -> object:
    headers = auth(key)
    if "idem" in extra:
        headers["Idempotency-Key"] = str(extra.pop("idem"))
    data = {k: str(v) for k, v in extra.items()}
    return client.post(
        "/v1/identifications",
        headers=headers,
        files=[("files", (name, body, "image/png")) for name, body in files],
        data=data,
    )


def test_create_read_and_evidence_roundtrip(client: TestClient, keys) -> None:
    img = make_image(80, 60, seed=1)
    r = post(client, keys.a, [("p1.png", img)], case_ref="CASE-1", notes="bench 3")
    assert r.status_code == 201, r.text
    body = r.json()
    sha = hashlib.sha256(img).hexdigest()
    assert body["sha256"] == {"p1.png": sha}
    assert body["originals"][0]["sha256"] == sha
    assert body["record"]["serial_number"]["value"] == f"FAKE{sha[:6].upper()}"
    assert body["case_ref"] == "CASE-1" and body["lab"] == "lab-a"
    assert r.headers["location"] == f"/v1/identifications/{body['id']}"

    got = client.get(f"/v1/identifications/{body['id']}", headers=auth(keys.a_viewer))
    assert got.status_code == 200 and got.json()["id"] == body["id"]

    orig = client.get(body["originals"][0]["url"], headers=auth(keys.a))
    assert orig.status_code == 200
    assert orig.content == img
    assert orig.headers["x-content-sha256"] == sha
    assert orig.headers["x-content-type-options"] == "nosniff"
    assert orig.headers["content-disposition"].startswith("attachment")

    derived = body["derived"][0]
    d = client.get(derived["url"], headers=auth(keys.a))
    assert d.status_code == 200 and hashlib.sha256(d.content).hexdigest() == derived["sha256"]
    # the view's trail hash is the pixel hash of the stored derived image
    assert body["views"][0]["trail"]["sha256"] == image_sha256(cv2.imdecode(np.frombuffer(d.content, np.uint8),
                                                                            cv2.IMREAD_UNCHANGED))


def test_multi_light_upload_with_lights(client: TestClient, keys) -> None:
    files = [(f"l{i}.png", make_image(40, 40, seed=10 + i)) for i in range(3)]
    lights = json.dumps({"l0.png": [0, 30], "l1.png": [120, 30], "l2.png": {"azimuth": 240, "elevation": 30}})
    r = post(client, keys.a, files, lights=lights, case_ref="ML")
    assert r.status_code == 201, r.text
    assert len(r.json()["originals"]) == 3
    bad = post(client, keys.a, files, lights=json.dumps({"nope.png": [0, 1]}))
    assert bad.status_code == 422 and "nope.png" in bad.json()["detail"]
    # the batch's rules for lights.json hold here too: finite numbers, elevation in (0, 90], all or none
    for lights, expected in (
        ('{"l0.png": [NaN, 30], "l1.png": [0, 30], "l2.png": [0, 30]}', "finite"),
        ('{"l0.png": [0, 0], "l1.png": [0, 30], "l2.png": [0, 30]}', "(0, 90]"),
        ('{"l0.png": [0, 95], "l1.png": [0, 30], "l2.png": [0, 30]}', "(0, 90]"),
        ('{"l0.png": [true, 30], "l1.png": [0, 30], "l2.png": [0, 30]}', "number"),
        ('{"l0.png": [0, 30], "l1.png": [120, 30]}', "none for l2.png"),
    ):
        refused = post(client, keys.a, files, lights=lights)
        assert refused.status_code == 422 and expected in refused.json()["detail"], (lights, refused.text)
    same = {"l0.png": {"azimuth_deg": 0, "elevation_deg": 30}, "l1.png": [120, 30], "l2.png": [240, 30]}
    assert post(client, keys.a, files, lights=json.dumps(same), case_ref="ML2").status_code == 201


def test_list_pagination_and_filters(client: TestClient, keys) -> None:
    for i in range(5):
        files = [(f"x{i}.png", make_image(20, 20, seed=100 + i))]
        assert post(client, keys.a, files, case_ref=f"C{i % 2}").status_code == 201
    post(client, keys.b, [("b.png", make_image(20, 20, seed=999))], case_ref="C0")
    page = client.get("/v1/identifications?limit=2", headers=auth(keys.a)).json()
    assert page["total"] == 5 and len(page["items"]) == 2 and page["next_offset"] == 2
    last = client.get("/v1/identifications?limit=2&offset=4", headers=auth(keys.a)).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    c0 = client.get("/v1/identifications?case_ref=C0", headers=auth(keys.a)).json()
    assert c0["total"] == 3 and all(i["lab"] == "lab-a" for i in c0["items"])


def test_review_history_and_viewer_forbidden(client: TestClient, keys) -> None:
    ident = post(client, keys.a, [("p.png", make_image(seed=2))]).json()["id"]
    url = f"/v1/identifications/{ident}"
    change = {"changes": [{"field": "serial_number", "action": "correct", "value": "AB1234", "note": "re-read"}]}
    assert client.patch(url, json=change, headers=auth(keys.a_viewer)).status_code == 403
    r = client.patch(url, json={**change, "version": 1}, headers=auth(keys.a))
    assert r.status_code == 200, r.text
    field = r.json()["record"]["serial_number"]
    assert field["value"] == "AB1234" and field["status"] == "corrected"
    assert field["history"][-1]["actor"] == f"key:{keys.a_id}@lab-a"
    assert field["history"][-1]["old_value"].startswith("FAKE")
    assert r.json()["version"] == 2
    stale = client.patch(url, json={**change, "version": 1}, headers=auth(keys.a))
    assert stale.status_code == 409
    confirm_body = {"changes": [{"field": "serial_number", "action": "confirm"}]}
    confirm = client.patch(url, json=confirm_body, headers=auth(keys.a))
    assert confirm.json()["record"]["serial_number"]["status"] == "confirmed"
    assert len(confirm.json()["record"]["serial_number"]["history"]) == 2
    missing = client.patch(url, json={"changes": [{"field": "nope", "action": "confirm"}]}, headers=auth(keys.a))
    assert missing.status_code == 422
    assert missing.headers["content-type"].startswith("application/problem+json")


def test_idempotent_retries(client: TestClient, keys) -> None:
    img = make_image(seed=3)
    first = post(client, keys.a, [("p.png", img)], idem="k-1")
    again = post(client, keys.a, [("p.png", img)], idem="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = post(client, keys.a, [("p.png", make_image(seed=4))], idem="k-1")
    assert other.status_code == 422
    # the same key in another lab is independent
    b = post(client, keys.b, [("p.png", img)], idem="k-1")
    assert b.status_code == 201 and b.json()["id"] != first.json()["id"]
    assert client.get("/v1/identifications", headers=auth(keys.a)).json()["total"] == 1


def test_auth_missing_unknown_revoked(client: TestClient, keys) -> None:
    assert client.get("/v1/identifications").status_code == 401
    r = client.get("/v1/identifications", headers=auth("mtk_nope_nope"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/identifications", headers=auth(keys.a)).status_code == 200
    assert keys.store.revoke_key(keys.a_id)
    assert client.get("/v1/identifications", headers=auth(keys.a)).status_code == 401
    events = [e["event"] for e in keys.store.audit_entries()]
    assert events.count("auth_failed") == 3


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("name", "payload", "status"),
    [
        ("zero.png", b"", 422),
        ("text.png", b"hello, this is not an image at all", 415),
        ("page.jpg", b"<html><script>alert(1)</script></html>" + make_image(fmt="JPEG"), 415),
        ("trunc.jpg", make_image(200, 200, fmt="JPEG")[:900], 422),
        ("trunc.png", make_image(200, 200)[:300], 422),
        ("bomb.png", _png_header_only(100_000, 100_000), 413),
        ("liar.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, 422),
    ],
)
def test_hostile_uploads(client: TestClient, keys, name: str, payload: bytes, status: int) -> None:
    r = post(client, keys.a, [(name, payload)])
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert name in r.json()["detail"]
    assert client.get("/v1/identifications", headers=auth(keys.a)).json()["total"] == 0
    rejected = [e for e in keys.store.audit_entries() if e["event"] == "create"]
    assert [e["outcome"] for e in rejected] == ["rejected"]
    # nothing of a rejected upload stays in the evidence folder
    ev: EvidenceStore = client.app.state.service.evidence
    assert not any(p.is_file() for p in ev.objects.rglob("*"))
    assert not any(ev.tmp_dir.iterdir())


def test_polyglot_jpeg_zip_is_stored_exact_and_served_as_attachment(client: TestClient, keys) -> None:
    buf = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evil.html", "<script>alert(1)</script>")
    poly = make_image(32, 32, fmt="JPEG") + buf.getvalue()
    r = post(client, keys.a, [("poly.jpg", poly)])
    assert r.status_code == 201
    o = client.get(r.json()["originals"][0]["url"], headers=auth(keys.a))
    assert o.content == poly
    assert o.headers["content-type"] == "application/octet-stream"
    assert o.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in o.headers["content-security-policy"]


def test_size_caps(client: TestClient, keys) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2_100_000  # over max_file_bytes, under max_request_bytes
    r = post(client, keys.a, [("big.png", big)])
    assert r.status_code == 413 and "big.png" in r.json()["detail"]
    two = post(client, keys.a, [("a.png", big[:1_600_000]), ("b.png", big[:1_600_000])])
    assert two.status_code == 413  # the request cap
    huge = client.post(
        "/v1/identifications", headers={**auth(keys.a), "Content-Type": "multipart/form-data; boundary=x"},
        content=b"x" * 3_100_000,
    )
    assert huge.status_code == 413
    not_multipart = client.post("/v1/identifications", headers=auth(keys.a), json={"files": []})
    assert not_multipart.status_code == 415


def test_tenancy_matrix_every_route(client: TestClient, keys) -> None:
    a = post(client, keys.a, [("a.png", make_image(seed=5))]).json()
    ident, sha, dsha = a["id"], a["originals"][0]["sha256"], a["derived"][0]["sha256"]
    schema = client.get("/openapi.json").json()
    public = {"/livez", "/readyz", "/metrics", "/v1/schemas", "/v1/schemas/{name}"}
    concrete = {
        "{ident}": ident,
    }
    human = {
        "requesting_authority": {"name": "NFP"},
        "case_reference": "C-1",
        "illicit_nature": {"criteria": ["illicit_under_national_law"]},
        "legal_justification": "ITI para 17",
        "intended_use": "investigation",
        "force": True,
    }
    checked = 0
    for path, ops in schema["paths"].items():
        if path in public:
            # public documents answer without a key
            for method in ops:
                url = path.replace("{name}", "tracing-request.v1")
                assert client.request(method, url).status_code == 200, (method, path)
            continue
        for method in ops:
            assert set(re.findall(r"{[^}]+}", path)) <= {"{ident}", "{sha256}"}, f"no filler for {path}"
            url = path.replace("{ident}", concrete["{ident}"])
            url = url.replace("/originals/{sha256}", f"/originals/{sha}")
            url = url.replace("/derived/{sha256}", f"/derived/{dsha}")
            kwargs: dict = {}
            if method == "patch":
                kwargs["json"] = {"changes": [{"field": "serial_number", "action": "confirm"}]}
            if method == "post" and path.endswith("/tracing-request"):
                kwargs["json"] = human
            elif method == "post":
                kwargs["files"] = [("files", ("b.png", make_image(seed=6), "image/png"))]
            # no key and a revoked-looking key: 401 everywhere
            assert client.request(method, url, **kwargs).status_code == 401, (method, path)
            r_b = client.request(method, url, headers=auth(keys.b), **kwargs)
            if "{ident}" in path:
                missing = client.request(method, url.replace(ident, "00000000-0000-0000-0000-000000000000"),
                                         headers=auth(keys.b), **kwargs)
                assert r_b.status_code == 404 == missing.status_code, (method, path)
                assert r_b.json()["title"] == missing.json()["title"]
                r_a = client.request(method, url, headers=auth(keys.a), **kwargs)
                assert r_a.status_code == 200, (method, path, r_a.text)
            elif method == "get":
                assert all(i["lab"] == "lab-b" for i in r_b.json()["items"])
            checked += 1
    assert checked >= 8
    # lab A's record was never changed by lab B
    assert client.get(f"/v1/identifications/{ident}", headers=auth(keys.a)).json()["version"] == 2


def test_audit_chain_and_tamper_detection(client: TestClient, keys) -> None:
    ident = post(client, keys.a, [("p.png", make_image(seed=7))]).json()["id"]
    client.get(f"/v1/identifications/{ident}", headers=auth(keys.a))
    store = keys.store
    report = store.verify_audit()
    assert report.ok and report.entries >= 5
    events = {(e["event"], e["outcome"]) for e in store.audit_entries()}
    assert {("create", "success"), ("read", "success"), ("key_create", "success")} <= events
    # UPDATE is refused by the database
    from sqlalchemy import text

    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET outcome='x' WHERE seq=2"))
    # an attacker who drops the guard and edits an entry is caught by the chain
    with store.engine.begin() as conn:
        if store.is_postgres:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET actor='someone-else' WHERE seq=2"))
    broken = store.verify_audit()
    assert not broken.ok and any("entry 2" in p and "altered" in p for p in broken.problems)


def test_health_and_metrics(client: TestClient, keys) -> None:
    assert client.get("/livez").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["checks"] == {"reader": True, "database": True, "evidence": True, "not_draining": True}
    post(client, keys.a, [("p.png", make_image(seed=8))])
    text_ = client.get("/metrics").text
    assert 'marktrace_http_requests_total{method="POST",route="/v1/identifications",status="201"} 1.0' in text_
    assert 'marktrace_inference_seconds_count{model="fake"} 1.0' in text_
    client.app.state.service.draining = True
    assert client.get("/readyz").status_code == 503
    r = post(client, keys.a, [("p.png", make_image(seed=9))])
    assert r.status_code == 503 and r.headers["retry-after"]


def test_queue_full_answers_503(client: TestClient, keys) -> None:
    pool = client.app.state.service.pool
    slots = [pool.acquire() for _ in range(pool.capacity)]
    try:
        r = post(client, keys.a, [("p.png", make_image(seed=11))])
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    finally:
        for s in slots:
            s.close()
    assert post(client, keys.a, [("p.png", make_image(seed=11))]).status_code == 201


def _multipart(name: str, photo: bytes) -> tuple[bytes, str]:
    boundary = "marktraceboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_arriving_upload_holds_no_inference_place(client: TestClient, keys) -> None:
    state = client.app.state.service
    body, ctype = _multipart("p.png", make_image(seed=12))
    seen: list[tuple[int, int]] = []

    def arriving():  # runs while the service reads the body
        seen.append((state.uploads.inside, state.pool.depth))
        yield body

    r = client.post("/v1/identifications", content=arriving(), headers={**auth(keys.a), "Content-Type": ctype})
    assert r.status_code == 201, r.text
    assert seen == [(1, 0)]  # an upload place, no worker: a slow link does not starve the pool
    assert (state.uploads.inside, state.pool.depth) == (0, 0)


def test_a_full_queue_refuses_before_the_body_is_read(client: TestClient, keys) -> None:
    pool = client.app.state.service.pool
    body, ctype = _multipart("p.png", make_image(seed=13))
    read: list[bool] = []

    def arriving():
        read.append(True)
        yield body

    slots = [pool.acquire() for _ in range(pool.capacity)]
    try:
        r = client.post("/v1/identifications", content=arriving(), headers={**auth(keys.a), "Content-Type": ctype})
    finally:
        for s in slots:
            s.close()
    assert r.status_code == 503 and r.json()["detail"] == "the inference queue is full"
    assert read == []


def test_too_many_arriving_uploads_answer_503(client: TestClient, keys) -> None:
    state = client.app.state.service
    with contextlib.ExitStack() as held:
        for _ in range(state.uploads.limit):
            held.enter_context(state.uploads.enter())
        r = post(client, keys.a, [("p.png", make_image(seed=14))])
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["detail"] == "too many uploads are arriving at once"
    assert 'marktrace_rejected_total{reason="uploads_full"} 1.0' in client.get("/metrics").text
    assert post(client, keys.a, [("p.png", make_image(seed=14))]).status_code == 201


def test_heic_upload_is_read(client: TestClient, keys) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.open(io.BytesIO(make_image(96, 64)))).save(buffer, quality=90)
    heic = buffer.getvalue()
    r = post(client, keys.a, [("IMG_0001.HEIC", heic)])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["sha256"]["IMG_0001.HEIC"] == hashlib.sha256(heic).hexdigest()
    assert client.get(body["originals"][0]["url"], headers=auth(keys.a)).content == heic  # kept exactly
    lying = post(client, keys.a, [("fake.heic", heic[:40] + b"\x00" * 400)])  # a HEIF header, no picture
    assert lying.status_code == 422 and "fake.heic" in lying.json()["detail"]


def test_a_chunked_body_over_the_cap_is_refused_before_any_key_check(client: TestClient, keys) -> None:
    def chunks():  # no Content-Length: the middleware counts what streams in
        for _ in range(4):
            yield b"x" * 1_000_000

    r = client.patch("/v1/identifications/0123", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert "over the limit of 3,000,000 bytes" in r.json()["detail"]


def test_lights_as_a_file_part_and_absurd_numbers(client: TestClient, keys) -> None:
    photos = [("files", (f"l{i}.png", make_image(40, 40, seed=30 + i), "image/png")) for i in range(3)]
    lights = {"l0.png": [0, 30], "l1.png": [120, 30], "l2.png": [240, 30]}

    def send(body: bytes) -> object:
        return client.post("/v1/identifications", headers=auth(keys.a),
                           files=[*photos, ("lights", ("lights.json", body, "application/json"))])

    assert send(json.dumps(lights).encode()).status_code == 201  # ``curl -F lights=@lights.json``
    refused = send(b"{not json")
    assert refused.status_code == 422 and "lights" in refused.json()["detail"]  # not silently dropped
    huge = send(json.dumps({**lights, "l0.png": [10**400, 30]}).encode())
    assert huge.status_code == 422 and "finite number" in huge.json()["detail"], huge.text
    assert len(huge.json()["detail"]) < 300


def test_a_phone_multi_picture_jpeg_is_accepted(client: TestClient, keys) -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    photo = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, format="MPO", save_all=True, append_images=[photo.resize((40, 30))])
    r = post(client, keys.a, [("phone.jpg", buffer.getvalue())])
    assert r.status_code == 201, r.text


def test_models_that_fail_to_load_are_named_in_the_log_not_to_clients(settings, caplog) -> None:
    from marktrace.service.app import create_app

    def broken() -> object:
        raise FileNotFoundError("/opt/secret/models/detector.onnx: model file not found")

    with caplog.at_level("ERROR", logger="marktrace.service"), TestClient(create_app(settings, broken)) as c:
        state = c.app.state.service  # type: ignore[attr-defined]
        assert state.ready_event.wait(10)
        _, key = state.store.create_key("lab-a", "examiner")
        r = post(c, key, [("p.png", make_image(20, 20, seed=1))])
    assert r.status_code == 503 and "/opt/secret" not in r.text and "retry-after" not in r.headers
    assert "failed to load" in r.json()["detail"]
    assert "/opt/secret/models/detector.onnx" in caplog.text


def test_a_chunked_upload_over_the_cap_is_a_413_and_leaves_no_temporary(client: TestClient, keys) -> None:
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()

    def chunks():
        yield head + b"\x89PNG\r\n\x1a\n"
        for _ in range(8):
            yield b"\0" * 500_000

    r = client.post("/v1/identifications", content=chunks(),
                    headers={**auth(keys.a), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    store = client.app.state.service.evidence  # type: ignore[attr-defined]
    assert not list(store.tmp_dir.glob("up-*.part"))  # the part written before the cap was removed


def test_an_original_with_a_non_ascii_name_downloads_under_its_name(client: TestClient, keys) -> None:
    from urllib.parse import unquote

    img = make_image(40, 30, seed=41)
    name = "Wäffe_序列号 🔫.png"
    r = post(client, keys.a, [(name, img)])
    assert r.status_code == 201, r.text
    got = client.get(r.json()["originals"][0]["url"], headers=auth(keys.a))
    assert got.status_code == 200 and got.content == img
    disposition = got.headers["content-disposition"]
    assert disposition.isascii() and 'filename="W_ffe______.png"' in disposition
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == name


def test_deeply_nested_lights_are_a_422_not_a_server_error(client: TestClient, keys) -> None:
    photos = [("files", (f"l{i}.png", make_image(40, 40, seed=50 + i), "image/png")) for i in range(3)]
    r = client.post("/v1/identifications", headers=auth(keys.a), files=photos, data={"lights": "[" * 20_000})
    assert r.status_code == 422 and "lights" in r.json()["detail"], r.text


def test_names_fields_and_ids_beyond_the_stores_columns_are_refused_clearly(client: TestClient, keys) -> None:
    img = make_image(30, 30, seed=60)
    long_name = post(client, keys.a, [("n" * 300 + ".png", img)])
    assert long_name.status_code == 422 and "at most 255" in long_name.json()["detail"]
    long_case = post(client, keys.a, [("a.png", img)], case_ref="C" * 201)
    assert long_case.status_code == 422 and "'case_ref' is 201 characters long" in long_case.json()["detail"]
    created = post(client, keys.a, [("a.png", img)], case_ref="C-9")
    assert created.status_code == 201
    long_id = client.get(f"/v1/identifications/{'x' * 5000}/originals/{'a' * 64}", headers=auth(keys.a))
    assert long_id.status_code == 422
    unauthenticated = client.get(f"/v1/identifications/{'y' * 5000}")
    assert unauthenticated.status_code == 401
    denied = [e for e in keys.store.audit_entries() if e["event"] == "auth_failed"][-1]
    assert denied["target"].startswith("GET /v1/identifications/yyy") and len(denied["target"]) == 500


def test_list_filters_take_iso_times_and_refuse_anything_else(client: TestClient, keys) -> None:
    assert post(client, keys.a, [("a.png", make_image(30, 30, seed=61))]).status_code == 201
    listed = client.get("/v1/identifications", params={"created_after": "2000-01-01"}, headers=auth(keys.a))
    assert listed.status_code == 200 and listed.json()["total"] == 1
    future = client.get("/v1/identifications", params={"created_after": "2999-01-01T00:00:00+02:00"},
                        headers=auth(keys.a))
    assert future.status_code == 200 and future.json()["total"] == 0
    bad = client.get("/v1/identifications", params={"created_before": "garbage"}, headers=auth(keys.a))
    assert bad.status_code == 422 and "created_before: 'garbage' is not an ISO-8601" in bad.json()["detail"]


def test_framework_errors_keep_their_headers_and_titles(client: TestClient, keys) -> None:
    r = client.put("/v1/identifications", headers=auth(keys.a))
    assert r.status_code == 405 and r.json()["title"] == "Method Not Allowed"
    assert r.headers["allow"]  # Starlette names the methods of the route that matched the path


def test_no_page_needs_a_cdn_and_the_schema_is_served(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    for page in ("/docs", "/redoc"):  # FastAPI's pages load Swagger UI / ReDoc from a CDN: not served offline
        assert client.get(page).status_code == 404
