"""Over-stamp flags from the recognizer's per-step probabilities (issue 3).

Unit tests on hand-made probability matrices (a rival digit under one character), the model file's checksum
and format, and a small end-to-end check on rendered markings read by the shipped reader (training fonts,
seeds outside the flagger's training block; the held-out benchmark figures are in the README).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from marktrace.inference.ctc import greedy_decode
from marktrace.inference.enhance.alteration import (
    FEATURE_NAMES,
    OVERSTAMP_MODEL_FILE,
    OVERSTAMP_MODEL_SHA256,
    PATCH_FEATURES,
    OverstampModel,
    OverstampModelError,
    character_patches,
    ctc_character_features,
    flag_overstamps,
    patch_features,
    shipped_overstamp_model,
)
from marktrace.models.registry import SHIPPED_DIR, default_model

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ "


def _probs(text: str, rival: dict[int, tuple[str, float]] | None = None, p_char: float = 0.97) -> np.ndarray:
    """A (T, C) matrix: each character peaks at step 4k+2 (blank elsewhere); ``rival`` puts a second class
    of the given probability at a character's step and its right neighbour."""
    rival = rival or {}
    c = len(CHARSET) + 1
    t = 4 * len(text) + 4
    probs = np.full((t, c), 0.002, np.float32)
    probs[:, 0] = 1.0
    for k, ch in enumerate(text):
        s = 4 * k + 2
        cls = CHARSET.index(ch) + 1
        probs[s, 0] = 0.01
        probs[s, cls] = p_char
        if k in rival:
            other, p = rival[k]
            probs[s, cls] = p_char - p
            probs[s, CHARSET.index(other) + 1] = p
            probs[s + 1, CHARSET.index(other) + 1] = 0.8 * p
            probs[s + 1, 0] -= 0.8 * p
    return probs / probs.sum(axis=1, keepdims=True)


def _flags(text: str, probs: np.ndarray, **kw: Any) -> list[dict[str, Any]]:
    decoded = greedy_decode(probs, CHARSET)
    assert decoded.text == text
    gray = np.full((64, 4 * probs.shape[0]), 180, np.uint8)
    return flag_overstamps(gray, decoded.text, decoded.char_steps, probs, CHARSET, **kw)


def test_a_rival_digit_under_one_character_raises_its_score_and_clean_lines_are_not_flagged() -> None:
    text = "AK40912"
    model = shipped_overstamp_model()
    assert _flags(text, _probs(text)) == []
    clean = {e["position"]: e["score"] for e in _flags(text, _probs(text), return_all=True)}
    for strength in (0.1, 0.25, 0.4):
        every = _flags(text, _probs(text, {3: ("8", strength)}), return_all=True)
        assert every[0]["position"] == 3
        assert every[0]["score"] > 1.15 * clean[3]  # the same character, clearly more suspect with a rival digit
        assert every[0]["evidence"]["ctc"]["digit_rival_max"] == pytest.approx(strength, abs=0.02)
    # the flag itself: above the threshold (here lowered between the over-stamped character's score and the
    # next one, since the hand-made matrix is milder than real strikes)
    scores = {e["position"]: e["score"] for e in _flags(text, _probs(text, {3: ("8", 0.25)}), return_all=True)}
    runner_up = max(v for k, v in scores.items() if k != 3)
    assert scores[3] > runner_up + 0.005
    threshold = round((scores[3] + runner_up) / 2, 3)  # evidence records the threshold to 3 decimals
    flags = _flags(text, _probs(text, {3: ("8", 0.25)}), threshold=threshold)
    assert [f["position"] for f in flags] == [3]
    top = flags[0]
    assert set(top) == {"position", "score", "evidence"}
    assert top["evidence"]["character"] == "0" and top["evidence"]["model"] == model.label
    assert top["evidence"]["threshold"] == threshold
    assert top["evidence"]["columns"][0] < 4 * 14 < top["evidence"]["columns"][1]  # character 3 peaks at step 14


def test_scores_rank_the_overstamped_character_first_and_are_deterministic() -> None:
    text = "US 4528762"
    probs = _probs(text, {6: ("3", 0.3)})
    every = _flags(text, probs, return_all=True)
    assert len(every) == 9  # the space is not scored
    assert every[0]["position"] == 6
    assert all(e["flagged"] == (e["score"] > shipped_overstamp_model().threshold) for e in every)
    assert every == _flags(text, probs, return_all=True)


def test_short_lines_and_bad_input() -> None:
    assert _flags("A12", _probs("A12", {1: ("7", 0.3)}), threshold=0.0) == []
    with pytest.raises(ValueError, match="steps"):
        ctc_character_features(np.zeros((10, 5), np.float32), "AB12", [1, 2], CHARSET)
    index, feats = ctc_character_features(_probs("AB 1234"), "AB 1234", [2, 6, 10, 14, 18, 22, 26], CHARSET)
    assert index == [0, 1, 3, 4, 5, 6] and feats.shape == (6, len(FEATURE_NAMES))


def test_shipped_model_file_matches_its_pinned_checksum() -> None:
    assert hashlib.sha256(OVERSTAMP_MODEL_FILE.read_bytes()).hexdigest() == OVERSTAMP_MODEL_SHA256
    model = shipped_overstamp_model()
    data = json.loads(OVERSTAMP_MODEL_FILE.read_text())
    assert data["features"] == list(FEATURE_NAMES + PATCH_FEATURES)
    assert model.patch_scorer is not None and model.patch_scorer.meta.task == "overstamp_scoring"
    registered = default_model("overstamp_scoring")
    assert model.patch_model is not None and registered.sha256 == model.patch_model.sha256
    assert 0.0 < model.threshold < 1.0
    seeds = data["training"]["seeds"]
    assert seeds[1] < 1_300_000_000 and data["training"]["synth"]["fonts"] == "train"
    assert data["training"]["commit"]


def test_an_altered_or_malformed_model_file_is_refused(tmp_path: Path) -> None:
    data = json.loads(OVERSTAMP_MODEL_FILE.read_text())
    data["threshold"] = 0.0001
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(data))
    with pytest.raises(OverstampModelError, match="SHA-256"):
        OverstampModel.load(altered, sha256=OVERSTAMP_MODEL_SHA256)
    data["features"] = data["features"][:-1]
    altered.write_text(json.dumps(data))
    with pytest.raises(OverstampModelError, match="features"):
        OverstampModel.load(altered)
    with pytest.raises(OverstampModelError, match="not readable"):
        OverstampModel.load(tmp_path / "missing.json")


def test_character_patches_are_centred_scaled_and_edge_filled() -> None:
    crop = np.tile(np.arange(200, dtype=np.uint8), (64, 1))
    patches = character_patches(crop, [100, 0, 199], 64)
    assert patches.shape == (3, 1, 64, 64) and patches.dtype == np.uint8
    assert patches[0, 0, 0, 32] == 100 and patches[0, 0, 0, 0] == 68
    assert (patches[1, 0, :, :32] == 0).all() and patches[1, 0, 0, 33] == 1  # left of the crop: its edge
    assert (patches[2, 0, :, 32:] == 199).all()
    tall = cv2.resize(crop, (400, 128), interpolation=cv2.INTER_NEAREST)  # twice the size: columns scale too
    assert abs(int(character_patches(tall, [200], 64)[0, 0, 10, 32]) - 100) <= 1
    with pytest.raises(ValueError, match="uint8"):
        character_patches(crop.astype(np.float32), [1], 64)


def _copy_model(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    data = json.loads(OVERSTAMP_MODEL_FILE.read_text())
    (tmp_path / data["patch_model"]["file"]).write_bytes((SHIPPED_DIR / data["patch_model"]["file"]).read_bytes())
    return tmp_path / "model.json", data


def test_the_patch_scorer_is_verified_before_it_is_loaded(tmp_path: Path) -> None:
    path, data = _copy_model(tmp_path)
    path.write_text(json.dumps(data))
    assert OverstampModel.load(path).patch_scorer is not None  # found next to the model file
    scorer = tmp_path / data["patch_model"]["file"]
    scorer.write_bytes(scorer.read_bytes() + b"\0")
    with pytest.raises(OverstampModelError, match="SHA-256"):
        OverstampModel.load(path)
    recognizer = default_model("line_recognition", variant="int8")
    scorer.write_bytes(recognizer.path().read_bytes())
    path.write_text(json.dumps({**data, "patch_model": {**data["patch_model"], "sha256": recognizer.sha256}}))
    with pytest.raises(OverstampModelError, match="expected overstamp_scoring"):
        OverstampModel.load(path)
    path.write_text(json.dumps({**data, "patch_model": {**data["patch_model"], "file": "absent.onnx"}}))
    with pytest.raises(OverstampModelError, match="neither next to it nor shipped"):
        OverstampModel.load(path)
    path.write_text(json.dumps({**data, "patch_model": {**data["patch_model"], "file": "../x.onnx"}}))
    with pytest.raises(OverstampModelError, match="bare file name"):
        OverstampModel.load(path)


def test_patch_evidence_comes_with_every_scored_character() -> None:
    probs = _probs("AB1234", {3: ("8", 0.4)})
    flags = _flags("AB1234", probs, return_all=True)
    assert flags and all(set(f["evidence"]["patch"]) == set(PATCH_FEATURES) for f in flags)


# -- end to end on rendered markings ----------------------------------------------------------------------

SEEDS = 1_200_095_000
"""Outside the flagger's training block (1_200_000_000 + 3000) and below the 1_300_000_000 training limit."""


@pytest.fixture(scope="module")
def reads() -> list[tuple[Any, Any, Any]]:
    """(marking, result with flags, result without flags) for a few over-stamped markings and clean ones."""
    from marktrace.datasets.synth import SynthConfig, render_marking
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings

    with_flags = MarkingReader.from_settings(ReaderSettings(threads=1, flag_alterations=True))
    without = MarkingReader.from_settings(ReaderSettings(threads=1, flag_alterations=False))
    out = []
    for k in range(8):
        cfg = SynthConfig(fonts="train", wear=(0.0, 0.2), camera=0.5, overstamp_prob=1.0 if k % 4 else 0.0)
        marking = render_marking(SEEDS + k, cfg)
        data = cv2.imencode(".png", marking.image)[1].tobytes()
        out.append((marking, with_flags.read_uploaded("a", [("a.png", data)]),
                    without.read_uploaded("a", [("a.png", data)])))
    return out


def test_flags_never_change_what_is_read(reads: list[tuple[Any, Any, Any]]) -> None:
    n_flags = 0
    for _marking, flagged, plain in reads:
        assert [ln.text for ln in flagged.lines] == [ln.text for ln in plain.lines]
        serial, plain_serial = flagged.record.get("serial_number") or {}, plain.record.get("serial_number") or {}
        assert serial.get("value") == plain_serial.get("value")
        assert not any(f.get("kind") == "overstamp_suspected" for f in plain_serial.get("flags", []))
        for flag in serial.get("flags", []):
            if flag.get("kind") == "overstamp_suspected":
                n_flags += 1
                assert serial["value"][flag["position"]] == flag["character"]
                assert {"model", "threshold", "ctc", "columns"} <= set(flag["evidence"])
                assert "calibration_warning" not in flag["evidence"]  # read with the recognizer it was fitted on
                assert flag["score"] > flag["evidence"]["threshold"]
    assert n_flags >= 1


def test_overstamped_characters_score_above_clean_ones_on_rendered_markings() -> None:
    from marktrace.training.overstamp import OverstampTrainConfig, collect

    cfg = OverstampTrainConfig(seed_start=SEEDS + 100, n_markings=30)
    examples = [e for e in collect(cfg) if e.final]
    model = shipped_overstamp_model()
    assert model.patch_scorer is not None
    scores = np.concatenate([model.probability(np.hstack([e.features, patch_features(model.patch_scorer,
                                                                                      e.patches)[e.scored]]))
                             for e in examples])
    labels = np.concatenate([e.labels for e in examples])
    pos, neg = scores[labels == 1], scores[labels == 0]
    assert len(pos) >= 15 and len(neg) >= 150
    auc = float(np.mean(pos[:, None] > neg[None, :]))
    assert auc >= 0.62, auc  # 0.5: no better than chance
    assert float(np.mean(neg > model.threshold)) <= 0.08
    assert float(np.mean(pos > model.threshold)) >= 0.1


def test_the_shipped_flagger_was_trained_on_the_shipped_recognizer() -> None:
    # its features are the recognizer's probabilities: a new recognizer needs `marktrace train-overstamp ... --install`
    from marktrace.training.overstamp import _recognizer_label

    assert shipped_overstamp_model().training["recognizer"] == _recognizer_label()


def test_flags_read_with_another_recognizer_than_the_calibration_one_say_so() -> None:
    from marktrace.inference.pipeline import MarkingReader, ReaderSettings, flagger_mismatch

    model = shipped_overstamp_model()
    int8 = MarkingReader.from_settings(ReaderSettings(threads=1, variant="int8"))
    assert flagger_mismatch(model.training, int8.model_label, int8.recognizer) is None
    fp32 = MarkingReader.from_settings(ReaderSettings(threads=1, variant="fp32", flag_alterations=True))
    warning = flagger_mismatch(model.training, fp32.model_label, fp32.recognizer)
    calibrated_on = model.training["recognizer"].split(" ")[0]  # name@version-int8
    assert warning is not None and calibrated_on in warning and fp32.model_label in warning
    assert fp32._flag_warning == warning
