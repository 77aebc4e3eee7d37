"""Bounded load benchmark for the lab API on loopback (httpx async).

Starts the service (``python -m marktrace.service serve``) on a fresh data dir unless ``--url`` is
given, then for each concurrency level (default 8 clients and 4x overload = 32) posts close-up
photos for ``--seconds`` and reports throughput of 201s, p50/p95 latency of accepted requests,
answer-code counts, server RSS (peak sampled), and checks that every 201 is present afterwards.

    python bench/load_service.py                       # real reader on 40 rendered close-ups
    python bench/load_service.py --fake                # service overhead only (fake reader)
    python bench/load_service.py --photos DIR          # your own close-ups
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

TESTS_SERVICE = Path(__file__).resolve().parents[1] / "tests" / "service"
"""Where ``live_server.py`` (the tests' subprocess runner of the service) lives; put on sys.path by main()."""


def synthetic_photos(n: int) -> list[tuple[str, bytes]]:
    """Rendered close-ups of markings (held-out fonts, clean to worn, mild camera effects) as JPEG bytes.

    Seeds from 1.76e9: outside training (< 1.3e9) and the recognition benchmark's blocks.
    """
    from marktrace.datasets.synth import SynthConfig, render_marking

    config = SynthConfig(fonts="heldout", wear=(0.0, 0.5), camera=0.5)
    out = []
    for i in range(n):
        rgb = render_marking(1_760_000_000 + i, config).image[:, :, ::-1]
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=90)
        out.append((f"close{i}.jpg", buf.getvalue()))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory (MB) of process ``pid`` from /proc, 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


async def run_level(
    url: str, key: str, photos: list[tuple[str, bytes]], clients: int, seconds: float, pid: int | None
) -> dict:
    """Post photos with ``clients`` concurrent clients for ``seconds``; answer codes, latencies and peak RSS."""
    codes: dict[str, int] = {}
    latencies: list[float] = []
    acked: list[str] = []
    peak_rss = 0.0
    deadline = time.monotonic() + seconds

    async def worker(idx: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            n = idx
            while time.monotonic() < deadline:
                name, data = photos[n % len(photos)]
                n += clients
                started = time.perf_counter()
                try:
                    r = await http.post(
                        f"{url}/v1/identifications",
                        headers={"Authorization": f"Bearer {key}"},
                        files=[("files", (name, data, "image/jpeg"))],
                    )
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                    r = None
                elapsed = time.perf_counter() - started
                codes[code] = codes.get(code, 0) + 1
                if r is not None and r.status_code == 201:
                    latencies.append(elapsed)
                    acked.append(r.json()["id"])
                elif r is not None and r.status_code == 503:
                    await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 0.2))

    async def sampler() -> None:
        nonlocal peak_rss
        while time.monotonic() < deadline and pid:
            peak_rss = max(peak_rss, rss_mb(pid))
            await asyncio.sleep(0.25)

    started = time.monotonic()
    await asyncio.gather(sampler(), *(worker(i) for i in range(clients)))
    wall = time.monotonic() - started
    lat = sorted(latencies)
    missing = 0
    async with httpx.AsyncClient(timeout=30) as http:
        for ident in acked:
            r = await http.get(f"{url}/v1/identifications/{ident}", headers={"Authorization": f"Bearer {key}"})
            missing += r.status_code != 200
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "throughput_per_s": round(len(latencies) / wall, 2),
        "p50_s": round(statistics.median(lat), 3) if lat else None,
        "p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
        "codes": codes,
        "server_peak_rss_mb": round(peak_rss, 1),
        "acknowledged": len(acked),
        "acknowledged_missing_after": missing,
    }


def main() -> None:
    """Run the load benchmark (see the module docstring) and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an already running service (then --key is required)")
    parser.add_argument("--key")
    parser.add_argument("--fake", action="store_true", help="use the fake reader (service overhead only)")
    parser.add_argument("--photos", type=Path, help="folder of close-up photos (default: 40 rendered markings)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--overload", type=int, default=4, help="overload factor over --clients")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, help="MARKTRACE_WORKERS for the started server (default: cores)")
    parser.add_argument(
        "--queue-size", type=int, help="MARKTRACE_QUEUE_SIZE for the started server (default: the service's)"
    )
    args = parser.parse_args()
    if args.photos:
        photos = [(p.name, p.read_bytes()) for p in sorted(args.photos.iterdir()) if p.is_file()][:64]
    else:
        photos = synthetic_photos(40)
    server = None
    pid = None
    url, key = args.url, args.key
    if url is None:
        from marktrace.service.store import Store

        data = Path(tempfile.mkdtemp(prefix="marktrace-bench-"))
        db_url = os.environ.get("MARKTRACE_DATABASE_URL") or f"sqlite:///{data / 'db.sqlite3'}"
        store = Store(db_url)
        store.migrate()
        _, key = store.create_key("bench-lab")
        store.close()
        cores = len(os.sched_getaffinity(0))
        env = {"MARKTRACE_WORKERS": str(args.workers or cores)}
        if args.queue_size is not None:
            env["MARKTRACE_QUEUE_SIZE"] = str(args.queue_size)
        if not args.fake:
            env["MARKTRACE_READER"] = os.environ.get(
                "MARKTRACE_READER", "marktrace.inference.pipeline:MarkingReader.from_settings"
            )
        if str(TESTS_SERVICE) not in sys.path:
            sys.path.insert(0, str(TESTS_SERVICE))
        from live_server import LiveServer

        server = LiveServer(data, db_url, env)
        server.start(timeout=300)
        url, pid = server.url, server.proc.pid if server.proc else None
    assert key, "--key is required with --url"
    try:
        report = []
        for clients in (args.clients, args.clients * args.overload):
            report.append(asyncio.run(run_level(url, key, photos, clients, args.seconds, pid)))
            print(json.dumps(report[-1]), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
