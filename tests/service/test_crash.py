"""Crash test: SIGKILL the service mid-uploads 20 times; every acknowledged upload survives intact."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer
from svc_helpers import auth, make_image

from marktrace.service.evidence import EvidenceStore
from marktrace.service.store import Store

KILLS = 20


@pytest.mark.slow
def test_sigkill_mid_upload_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "data" / "db.sqlite3"
    url = f"sqlite:///{db}"
    store = Store(url)
    store.migrate()
    _, key = store.create_key("lab-a")
    store.close()
    acked: dict[str, str] = {}  # id -> sha256 of the original
    lock = threading.Lock()
    rng = random.Random(5)
    server = LiveServer(tmp_path / "data", url)
    seed = 0
    for _ in range(KILLS):
        server.start()
        stop = threading.Event()

        def client(first_seed: int, stop: threading.Event = stop) -> None:
            n = first_seed
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    n += 1
                    img = make_image(160, 120, seed=n)
                    try:
                        r = http.post(
                            f"{server.url}/v1/identifications",
                            headers=auth(key),
                            files=[("files", (f"{n}.png", img, "image/png"))],
                        )
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 201:
                        with lock:
                            acked[r.json()["id"]] = hashlib.sha256(img).hexdigest()

        threads = [threading.Thread(target=client, args=(seed + 10_000 * i,)) for i in range(4)]
        seed += 1000
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.0))
        server.kill()
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert len(acked) >= KILLS, "too few uploads were acknowledged to make the test meaningful"

    server.start()  # starts cleanly after 20 crashes
    try:
        with httpx.Client(timeout=10) as http:
            for ident, sha in acked.items():
                r = http.get(f"{server.url}/v1/identifications/{ident}", headers=auth(key))
                assert r.status_code == 200, (ident, r.status_code)
                orig = http.get(f"{server.url}/v1/identifications/{ident}/originals/{sha}", headers=auth(key))
                assert orig.status_code == 200 and hashlib.sha256(orig.content).hexdigest() == sha
    finally:
        server.stop()
    store = Store(url)
    evidence = EvidenceStore(tmp_path / "data" / "evidence")
    for _ident, _kind, sha in store.all_file_rows():
        assert hashlib.sha256(evidence.path_for(sha).read_bytes()).hexdigest() == sha
    assert store.verify_audit().ok
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
