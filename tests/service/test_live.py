"""The service started for real (uvicorn subprocess on loopback), on both backends; graceful shutdown."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import httpx
from live_server import LiveServer
from svc_helpers import auth, make_image

from marktrace.service.store import Store


def test_live_roundtrip_tenancy_and_graceful_shutdown(tmp_path: Path, db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    _, key_a = store.create_key("lab-a")
    b_id, key_b = store.create_key("lab-b")
    server = LiveServer(tmp_path / "data", db_url, {"MARKTRACE_FAKE_DELAY_S": "0.8"})
    server.start()
    try:
        img = make_image(50, 40, fmt="JPEG", seed=21)
        r = httpx.post(
            f"{server.url}/v1/identifications",
            headers={**auth(key_a), "Idempotency-Key": "live-1"},
            files=[("files", ("x.jpg", img, "image/jpeg"))],
            timeout=30,
        )
        assert r.status_code == 201, r.text
        ident = r.json()["id"]
        assert r.json()["originals"][0]["sha256"] == hashlib.sha256(img).hexdigest()
        assert httpx.get(f"{server.url}/v1/identifications/{ident}", headers=auth(key_b)).status_code == 404
        assert httpx.get(f"{server.url}/v1/identifications/{ident}").status_code == 401
        store.revoke_key(b_id)
        assert httpx.get(f"{server.url}/v1/identifications", headers=auth(key_b)).status_code == 401
        assert "marktrace_http_requests_total" in httpx.get(f"{server.url}/metrics").text

        # SIGTERM while two slow uploads are in flight: both finish with 201, then the process exits
        results: list[int] = []

        def upload(seed: int) -> None:
            resp = httpx.post(
                f"{server.url}/v1/identifications",
                headers=auth(key_a),
                files=[("files", (f"s{seed}.png", make_image(seed=seed), "image/png"))],
                timeout=30,
            )
            results.append(resp.status_code)

        threads = [threading.Thread(target=upload, args=(100 + i,)) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.4)
        code = server.stop(timeout=30)
        for t in threads:
            t.join(timeout=30)
        assert code in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
        assert results == [201, 201]
        assert store.list_identifications("lab-a", limit=10, offset=0)[1] == 3
        assert store.verify_audit().ok
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
        store.close()
