"""The service with the shipped reader keeps the derived views it read, each matching its trail."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from fastapi.testclient import TestClient
from svc_helpers import auth, wait_ready

from marktrace.service.app import create_app
from marktrace.service.settings import ServiceSettings


def test_the_shipped_reader_stores_every_derived_view_with_a_matching_trail(tmp_path: Path) -> None:
    from marktrace.inference.enhance.chains import image_sha256

    # bare metal (noise, no marking): no serial is read directly, so the reader tries its enhancement chains
    image = np.random.default_rng(5).integers(90, 140, (240, 320, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    settings = ServiceSettings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                               workers=1, threads_per_worker=1)
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout=60.0)
        _, key = client.app.state.service.store.create_key("lab-a", "examiner")  # type: ignore[attr-defined]
        r = client.post("/v1/identifications", headers=auth(key),
                        files=[("files", ("worn.png", bytes(buf), "image/png"))])
        assert r.status_code == 201, r.text
        body = r.json()
        views = {v["name"]: v for v in body["views"]}
        assert views and any(name.startswith("chain:") for name in views)
        assert sorted(d["name"] for d in body["derived"]) == sorted(views)
        for derived in body["derived"]:
            got = client.get(derived["url"], headers=auth(key))
            assert got.status_code == 200
            pixels = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_UNCHANGED)
            trail = views[derived["name"]]["trail"]
            assert trail["sha256"] == image_sha256(pixels)
            assert trail["source_sha256"] == [body["originals"][0]["sha256"]]
