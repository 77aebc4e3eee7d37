"""End-to-end smoke run of the benchmark harness: 3 items of one set, marktrace engine only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import recognition
from bench.sets import SETS

SHIPPED_REGISTRY = Path(__file__).resolve().parents[2] / "models" / "shipped" / "registry.json"


@pytest.mark.slow
def test_harness_runs_marktrace_on_three_items(tmp_path: Path) -> None:
    if not SHIPPED_REGISTRY.is_file():
        pytest.skip(f"no shipped models yet ({SHIPPED_REGISTRY} missing)")
    results = tmp_path / "results"
    code = recognition.main(
        [
            "--sets",
            "clean",
            "--engines",
            "marktrace",
            "--n",
            "3",
            "--cache",
            str(tmp_path / "cache"),
            "--results",
            str(results),
        ]
    )
    assert code == 0
    (path,) = sorted(results.glob("*-clean.json"))
    data = json.loads(path.read_text())
    assert {"set", "n", "settings", "engines", "ratios", "items", "machine", "command"} <= set(data)
    assert data["set"] == "clean" and data["n"] == 3
    assert data["settings"]["parts"][0]["config"]["fonts"] == "heldout"
    assert data["settings"]["seed_base"] == SETS["clean"].seed_base
    summary = data["engines"]["marktrace"]
    assert "unavailable" not in summary, summary
    assert summary["n"] == 3 and 0 <= summary["n_errors"] <= 3
    assert 0.0 <= summary["exact"] <= 1.0 and summary["cer"] >= 0.0
    assert summary["cpu_ms_per_image"] > 0 and summary["wall_ms_per_image"] > 0
    assert 0 < summary["load_wall_s"] < 120
    assert 50 < summary["peak_rss_mb"] < 4000
    rows = data["items"]["marktrace"]
    assert len(rows) == 3
    for row in rows:
        assert row["truth"] and row["n_images"] == 1 and isinstance(row["prediction"], str)
        assert isinstance(row["exact"], bool) and row["cer"] >= 0.0 and row["cpu_ms"] >= 0.0
        if row["error"] is None and "serial_confidence" in row.get("fields", {}):
            assert row["exact_or_alternative"] >= row["exact"]  # a right value is right among its alternatives
    assert summary["confidence"]["n"] == 3
    assert "marktrace serial confidence" in (results / "latest.md").read_text()
    exact_rate = sum(r["exact"] for r in rows) / 3
    assert summary["exact"] == pytest.approx(exact_rate, abs=1e-3)
    md = (results / "latest.md").read_text()
    assert "| marktrace |" in md


def test_every_named_engine_has_a_factory_and_reader_overrides_are_settings() -> None:
    from dataclasses import fields

    from bench.engines import ENGINE_NAMES, FACTORIES, MarktraceEngine
    from marktrace.inference.pipeline import ReaderSettings

    assert set(ENGINE_NAMES) == set(FACTORIES)
    known = {f.name for f in fields(ReaderSettings)}
    for name, factory in FACTORIES.items():
        if isinstance(factory, type) and issubclass(factory, MarktraceEngine):
            assert set(factory.overrides) <= known, name
