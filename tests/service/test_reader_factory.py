"""The service's reader factory hands the service settings on to the reader it builds."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from marktrace.service.app import resolve_reader_factory
from marktrace.service.settings import ServiceSettings


def test_reader_settings_follow_the_service_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_reader_module")
    module.make = lambda settings: settings  # type: ignore[attr-defined]
    module.plain = lambda: "no settings"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_reader_module", module)
    monkeypatch.setenv("MARKTRACE_LEXICON_MAKERS", "false")
    settings = ServiceSettings(data_dir=tmp_path, threads_per_worker=3, model_variant="fp32", max_pixels=1_000_000)
    assert settings.lexicon_makers is False
    made: Any = resolve_reader_factory("fake_reader_module:make", settings)()
    assert (made.threads, made.variant, made.max_pixels, made.lexicon_makers) == (3, "fp32", 1_000_000, False)
    assert resolve_reader_factory("fake_reader_module:plain", settings)() == "no settings"
    assert ServiceSettings(data_dir=tmp_path, lexicon_makers=True).lexicon_makers is True
