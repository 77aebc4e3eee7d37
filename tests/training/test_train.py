from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import yaml

from marktrace.models.pretrained import EASYOCR_CHARSET
from marktrace.training.config import TrainConfig, load_config
from marktrace.training.train import detector_loss, encode_texts, lr_factor

torch = pytest.importorskip("torch")


def test_run_folder_records_config_seed_commit_metrics_and_checkpoints(tiny_run: Path) -> None:
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["name"] == "tiny" and config["seed"] == 7
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["seed"] == 7 and info["commit"]
    assert info["det_steps"] == 6 and info["rec_steps"] == 6
    assert "eval_serial_exact" in info["final_metrics"] and "eval_maker_exact" in info["final_metrics"]
    events = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "train" for e in events) and any(e["event"] == "eval" for e in events)
    for name in ("detector-best.pt", "recognizer-best.pt", "detector-last.pt", "recognizer-last.pt"):
        assert (tiny_run / "checkpoints" / name).stat().st_size > 0


def test_overrides_and_unknown_keys() -> None:
    cfg = load_config("tiny", {"recognizer.steps": 3})
    assert cfg.recognizer.steps == 3
    with pytest.raises(ValueError, match="extra"):
        load_config("tiny", {"recognizer.nonsense": 1})
    with pytest.raises(FileNotFoundError, match="presets"):
        load_config("no-such-preset")


def test_lines_of_a_weighted_role_give_more_crops_each_cut_its_own_way() -> None:
    from marktrace.datasets.synth import render_marking
    from marktrace.training.data import make_photo_sample

    marking = render_marking(31, load_config("tiny").synth.model_copy(update={"n_lines": (3, 4)}))
    lines = [(ln.polygon, ln.text, ln.role) for ln in marking.lines]
    roles = [role for _, _, role in lines]
    assert "serial" in roles and len(roles) >= 3
    charset = "".join(sorted({c for _, text, _ in lines for c in text} | {" "}))
    plain = load_config("tiny")
    weighted = load_config("tiny", {"recognizer.crops_per_line": {"serial": 3, "*": 2}})
    one = make_photo_sample(marking.image, lines, plain, np.random.default_rng(0), charset)
    more = make_photo_sample(marking.image, lines, weighted, np.random.default_rng(0), charset)
    assert len(one.crops) == len(lines)
    serial_text = next(text for _, text, role in lines if role == "serial").strip()
    assert len(more.crops) == 3 + 2 * (len(lines) - 1)
    serial_crops = [crop for crop, text in more.crops if text == serial_text]
    assert len(serial_crops) == 3
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in itertools.pairwise(serial_crops))
    with pytest.raises(ValueError, match=r"unknown line role\(s\) \['makr'\]"):
        load_config("tiny", {"recognizer.crops_per_line": {"makr": 2}})
    with pytest.raises(ValueError, match="1 to 8"):
        load_config("tiny", {"recognizer.crops_per_line": {"maker": 0}})


def test_a_label_the_recognizer_cannot_spell_trains_the_detector_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Liège`` is not taught as ``Lige``: the line gives no recognizer crop, but its box stays a detector target."""
    from marktrace.datasets.synth import render_marking
    from marktrace.training import data

    marking = render_marking(31, load_config("tiny").synth.model_copy(update={"n_lines": (3, 4)}))
    lines = [(ln.polygon, ln.text, ln.role) for ln in marking.lines]
    charset = "".join(sorted({c for _, text, _ in lines for c in text} | {" "}))
    boxes: list[int] = []
    crop_for_detector = data._crop_for_detector

    def counting(image: np.ndarray, quads: list[np.ndarray], *args: object) -> object:
        boxes.append(len(quads))
        return crop_for_detector(image, quads, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(data, "_crop_for_detector", counting)
    cfg = load_config("tiny")
    foreign = [(lines[0][0], lines[0][1] + "è", lines[0][2]), *lines[1:]]
    sample = data.make_photo_sample(marking.image, foreign, cfg, np.random.default_rng(0), charset)
    texts = [text for _, text in sample.crops]
    assert len(texts) == len(lines) - 1
    assert not any("è" in t or t == lines[0][1].strip() for t in texts)  # neither spelt nor misspelt
    assert boxes == [len(lines)]  # the detector still learns every line's box


def test_lr_schedule_warms_up_and_decays_by_time() -> None:
    assert lr_factor(0, 1000, 0.0, None, warmup=10) == pytest.approx(0.1)
    assert lr_factor(10, 1000, 0.0, None, warmup=10) == pytest.approx(1.0)
    # half the time gone: cosine is at its midpoint even though few steps were done
    assert lr_factor(20, 1000, 50.0, 100.0, warmup=10) == pytest.approx(0.525)
    assert lr_factor(20, 1000, 500.0, 100.0, warmup=10) == pytest.approx(0.05)


def test_detector_loss_prefers_the_right_answer() -> None:
    target = torch.zeros(1, 3, 8, 8)
    target[:, 0, 2:4, 1:7] = 1
    target[:, 1, 2:4, 1:7] = 1  # reading right
    weight = torch.ones(1, 8, 8)
    good = torch.full((1, 3, 8, 8), -6.0)
    good[:, 0, 2:4, 1:7] = 6
    good[:, 1] = 1
    good[:, 2] = 0
    bad = good.clone()
    bad[:, 1] = -1  # reading left
    assert detector_loss(good, target, weight) < detector_loss(bad, target, weight)


def test_ctc_targets_are_one_based() -> None:
    flat, lengths = encode_texts(["AB", "1"], "1AB")
    assert flat.tolist() == [2, 3, 1] and lengths.tolist() == [2, 1]
    assert np.all(flat.numpy() >= 1)


def test_training_continues_from_exported_onnx_files(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A run started from exported ONNX files begins with exactly their weights (no run folder needed)."""
    import onnxruntime as ort

    from marktrace.models.networks.detector import DetectorForExport, build_detector
    from marktrace.training.train import train

    cfg = load_config(
        "tiny",
        {
            "detector.init_from": str(tiny_models["line_detection"]),
            "recognizer.init_from": str(tiny_models["line_recognition"]),
            "detector.steps": 0,
            "recognizer.steps": 0,
        },
    )
    run = train(cfg, tmp_path, progress=lambda _: None)
    info = json.loads((run / "run.json").read_text())
    assert info["detector_init"].endswith(".onnx") and info["recognizer_init"].endswith(".onnx")
    state = torch.load(run / "checkpoints" / "detector-last.pt", map_location="cpu", weights_only=False)
    net = build_detector(state["size"])
    net.load_state_dict(state["state_dict"])
    pixels = np.random.default_rng(3).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(tiny_models["line_detection"]), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"pixels": pixels})[0]
    with torch.no_grad():
        got = DetectorForExport(net).eval()(torch.from_numpy(pixels)).numpy()
    assert np.abs(got - expected).max() < 1e-3


def test_enhanced_fraction_feeds_photos_through_the_readers_chains() -> None:
    from marktrace.inference.enhance.chains import get_chain, run_chain
    from marktrace.training.data import PhotoStream, enhanced_copy

    cfg = load_config("tiny")
    plain = next(iter(PhotoStream(cfg, CHARSET)))
    assert not np.array_equal(plain.det_image[..., 0], plain.det_image[..., 1])  # a colour photo
    enhanced = next(iter(PhotoStream(cfg.model_copy(update={"enhanced_fraction": 1.0}),
                                     CHARSET)))
    assert np.array_equal(enhanced.det_image[..., 0], enhanced.det_image[..., 1])  # a chain's gray output
    photo = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    copy = enhanced_copy(photo, "flatten_clahe")
    assert copy.shape == photo.shape
    assert np.array_equal(copy[..., 2], run_chain(photo, get_chain("flatten_clahe")))
    with pytest.raises(ValueError):
        load_config("tiny", {"enhanced_fraction": 1.5})
    with pytest.raises(ValueError, match="unknown enhancement chains"):
        load_config("tiny", {"enhance_chains": ["no-such-chain"]})


def test_relief_fraction_trains_on_the_readers_photometric_views() -> None:
    from marktrace.datasets.synth import SynthConfig, render_stack
    from marktrace.inference.enhance.photometric import iter_relief_views, stack_from_arrays
    from marktrace.training.data import PhotoStream, relief_view_copies

    config = SynthConfig(fonts="train", wear=(0.7, 0.8), image_size=(160, 320))
    views, lines = relief_view_copies(11, config, 5, True, 2)
    stack = render_stack(11, config, 5, known_directions=True)
    assert len(views) == 2 and stack.lines == lines
    names = [f"shot_{i:02d}.png" for i in range(5)]
    first_view = next(iter(iter_relief_views(stack_from_arrays(
        list(stack.images), names, ["0" * 64] * 5, dict(zip(names, stack.lights, strict=True))))))[0]
    assert views[0].shape == stack.images[0].shape[:2] + (3,)
    assert np.array_equal(views[0][..., 1], first_view)  # the reader's relit_ratio view, unchanged
    blind, _ = relief_view_copies(11, config, 5, False, 1)
    assert not np.array_equal(blind[0], views[0])  # direction-free views differ

    cfg = load_config("tiny").model_copy(update={"relief_fraction": 1.0, "relief_views": 2, "samples_per_photo": 1})
    stream = iter(PhotoStream(cfg, CHARSET))
    samples = [next(stream) for _ in range(2)]

    def grey_share(sample: object) -> float:
        image = sample.det_image  # type: ignore[attr-defined]
        return float(((image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])).mean())

    plain = next(iter(PhotoStream(load_config("tiny"), CHARSET)))
    assert grey_share(plain) < 0.5 < min(grey_share(s) for s in samples)  # grey views, not colour photos
    assert any(s.crops for s in samples)
    with pytest.raises(ValueError, match="relief_lights"):
        load_config("tiny", {"relief_lights": [2, 8]})


CHARSET = EASYOCR_CHARSET  # the recognizer's: a line with a character outside it trains the detector only


def _detector_presets() -> list[str]:
    from marktrace.training.config import PRESETS_DIR

    return [p.stem for p in sorted(PRESETS_DIR.glob("*.yaml")) if not (yaml.safe_load(p.read_text()) or {}).get("task")]


def _worker_render_seeds(cfg: TrainConfig, count: int = 10_000) -> dict[int, list[int]]:
    """The first ``count`` renderer seeds of each rendering worker of a stream of ``cfg``."""
    from marktrace.training.data import PhotoStream, training_render_seed

    stream = PhotoStream(cfg, CHARSET)
    workers = max(cfg.workers, 1)
    return {
        w: [training_render_seed(stream.photo_seed(w + k * workers)) for k in range(count)] for w in range(workers)
    }


def _off_limits(seed: int) -> bool:
    from marktrace.training.data import EVAL_SEED_BASE, EVAL_SEED_BLOCK, TRAINING_SEED_LIMIT

    return not 0 <= seed < TRAINING_SEED_LIMIT or EVAL_SEED_BASE <= seed < EVAL_SEED_BASE + EVAL_SEED_BLOCK


def test_the_eval_block_constant_matches_the_training_loop() -> None:
    from marktrace.training import data, train

    assert data.EVAL_SEED_BASE == train.EVAL_SEED_BASE
    assert data.TRAINING_SEED_LIMIT == 1_300_000_000
    with pytest.raises(ValueError, match="eval_images"):  # evaluation photos stay inside the block
        load_config("tiny", {"eval_images": data.EVAL_SEED_BLOCK + 1})


def test_training_render_seeds_stay_below_the_limit_and_off_the_eval_block() -> None:
    from marktrace.training.data import EVAL_SEED_BASE, EVAL_SEED_BLOCK, TRAINING_SEED_LIMIT, training_render_seed

    assert training_render_seed(5678 * 1_000_003) == 1_383_049_738 - TRAINING_SEED_LIMIT  # gpu-continue, folded
    assert training_render_seed(EVAL_SEED_BASE + 5) == EVAL_SEED_BASE + EVAL_SEED_BLOCK + 5
    assert training_render_seed(2**31 + EVAL_SEED_BASE) == EVAL_SEED_BASE + EVAL_SEED_BLOCK
    assert training_render_seed(TRAINING_SEED_LIMIT - 1) == TRAINING_SEED_LIMIT - 1
    assert training_render_seed(12_345) == 12_345
    raw = np.random.default_rng(0).integers(-(2**62), 2**62, 20_000)
    edges = [EVAL_SEED_BASE - 1, EVAL_SEED_BASE, EVAL_SEED_BASE + EVAL_SEED_BLOCK - 1, TRAINING_SEED_LIMIT,
             2**31 - 1, 2**31, -1, 1_700_000_000, 1_400_000_000 + 2 * 2**31]
    for seed in [*raw.tolist(), *edges]:
        assert not _off_limits(training_render_seed(seed)), seed


@pytest.mark.parametrize("preset", _detector_presets())
def test_every_preset_stream_renders_training_seeds_only(preset: str) -> None:
    cfg = load_config(preset)
    for worker, seeds in _worker_render_seeds(cfg).items():
        bad = [s for s in seeds if _off_limits(s)]
        assert not bad, (preset, worker, bad[:5])


def test_a_seed_whose_raw_base_is_in_the_benchmark_range_is_folded() -> None:
    from marktrace.training.data import TRAINING_SEED_LIMIT, PhotoStream

    cfg = TrainConfig(seed=29617, workers=4)
    assert PhotoStream(cfg, CHARSET).photo_seed(0) % 2**31 == 1_699_801_427
    for seeds in _worker_render_seeds(cfg).values():
        assert max(seeds) < TRAINING_SEED_LIMIT and not any(_off_limits(s) for s in seeds)


@pytest.mark.parametrize("preset", ["gpu", "gpu-detector"])
def test_the_shipped_models_streams_render_the_same_seeds_as_before(preset: str) -> None:
    """The recipes of the shipped detector and recognizer stay reproducible: their seeds were never folded."""
    from marktrace.training.data import PhotoStream

    cfg = load_config(preset)
    stream = PhotoStream(cfg, CHARSET)
    workers = max(cfg.workers, 1)
    new = _worker_render_seeds(cfg)
    for worker, seeds in new.items():
        assert seeds == [stream.photo_seed(worker + k * workers) % 2**31 for k in range(len(seeds))]


class _Rendered(Exception):
    pass


def test_both_render_calls_use_the_folded_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The photo and the relief stack of a stream whose raw seed is past the limit are rendered from folded seeds."""
    import marktrace.training.data as data

    def record(seed: int, *args: object, **kwargs: object) -> NoReturn:
        raise _Rendered(seed)

    monkeypatch.setattr(data, "render_marking", record)
    monkeypatch.setattr(data, "relief_view_copies", record)
    gpu = load_config("gpu")
    with pytest.raises(_Rendered) as info:
        next(iter(data.PhotoStream(gpu, CHARSET)))
    assert info.value.args[0] == 1_234_003_702  # unchanged: 1234 * 1_000_003
    finetune = load_config("cpu-finetune")  # raw seed 2_024_006_072: the benchmark's range
    with pytest.raises(_Rendered) as info:
        next(iter(data.PhotoStream(finetune, CHARSET)))
    assert info.value.args[0] == 2_024_006_072 % data.TRAINING_SEED_LIMIT
    relief = finetune.model_copy(update={"relief_fraction": 1.0})
    with pytest.raises(_Rendered) as info:
        next(iter(data.PhotoStream(relief, CHARSET)))
    assert info.value.args[0] == 2_024_006_072 % data.TRAINING_SEED_LIMIT


def _real_folder(root: Path, lines_json: list[str]) -> tuple[Path, bytes]:
    """A dataset folder with these manifest lines (no images yet) and the PNG bytes of a small labelled photo."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.jsonl").write_text("".join(line + "\n" for line in lines_json))
    photo = np.full((120, 240, 3), 200, np.uint8)
    cv2.putText(photo, "AB12", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (30, 30, 30), 3)
    ok, png = cv2.imencode(".png", photo)
    assert ok
    return root, png.tobytes()


def _entry(image: str, polygon: bool = True) -> str:
    line: dict[str, object] = {"text": "AB12", "role": "serial"}
    if polygon:
        line["polygon"] = [[15, 40], [130, 40], [130, 90], [15, 90]]
    return json.dumps({"image": image, "lines": [line], "source": "real"})


def test_real_manifest_errors_name_the_file_and_line(tmp_path: Path) -> None:
    from marktrace.datasets.manifest import ManifestError
    from marktrace.training.data import load_real_entries

    root, png = _real_folder(tmp_path / "broken", [_entry("a.png"), "", "{not json"])
    (root / "a.png").write_bytes(png)
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:3"):
        load_real_entries([root])
    root, _ = _real_folder(tmp_path / "keyless", [json.dumps({"lines": []})])
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:1: image"):
        load_real_entries([root])
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_real_entries([tmp_path / "no-such-folder"])


def test_real_photos_with_missing_files_are_refused_at_load_time(tmp_path: Path) -> None:
    from marktrace.training.data import PhotoStream, load_real_entries

    root, png = _real_folder(tmp_path / "set", ["", _entry("a.png"), _entry("img/gone.png")])
    (root / "a.png").write_bytes(png)
    with pytest.raises(FileNotFoundError, match=r"manifest\.jsonl:3: .*img/gone\.png"):
        load_real_entries([root])
    with pytest.raises(FileNotFoundError, match="gone.png"):  # when the stream is built, before training starts
        PhotoStream(load_config("tiny", {"real_data": [str(root)]}), CHARSET)
    no_polygons, _ = _real_folder(tmp_path / "texts", [_entry("a.png", polygon=False)])
    (no_polygons / "a.png").write_bytes(png)
    with pytest.raises(ValueError, match="none of its 1 entries has a polygon on every line"):
        load_real_entries([no_polygons])
    fake, _ = _real_folder(tmp_path / "fake", [_entry("a.png")])
    (fake / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"manifest\.jsonl:1: .*a\.png"):  # refused at load, not hours in
        load_real_entries([fake])


def test_a_partly_boxed_real_photo_is_not_trained_on(tmp_path: Path) -> None:
    """A line without its box would teach the detector that its text is background."""
    from marktrace.training.data import load_real_entries

    partly = json.dumps({"image": "b.png", "source": "real", "lines": [
        json.loads(_entry("b.png"))["lines"][0], {"text": "MADE IN ITALY", "role": "country"}]})
    root, png = _real_folder(tmp_path / "set", [_entry("a.png"), partly])
    (root / "a.png").write_bytes(png)
    (root / "b.png").write_bytes(png)
    assert [p.name for p, _ in load_real_entries([root])] == ["a.png"]


def test_an_unreadable_real_photo_stops_the_stream_with_its_name(tmp_path: Path) -> None:
    from marktrace.training.data import PhotoStream, load_real_entries

    root, png = _real_folder(tmp_path / "set", [_entry("a.png"), _entry("b.png", polygon=False)])
    (root / "a.png").write_bytes(png)
    (root / "b.png").write_bytes(png)
    entries = load_real_entries([root])
    assert [(p.name, len(lines)) for p, lines in entries] == [("a.png", 1)]
    cfg = load_config("tiny", {"real_data": [str(root)], "real_fraction": 1.0})
    sample = next(iter(PhotoStream(cfg, CHARSET)))
    assert sample.crops and sample.crops[0][1] == "AB12"  # the real photo's line
    stream = PhotoStream(cfg, CHARSET)
    (root / "a.png").write_bytes(b"not an image")  # spoilt after the run started
    with pytest.raises(RuntimeError, match=r"a\.png: real_data image cannot be read"):
        next(iter(stream))
    with pytest.raises(ValueError, match="real_fraction"):
        load_config("tiny", {"real_fraction": 1.5})


def test_a_serial_ground_flat_is_not_taught_to_the_recognizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its box still goes to the detector; a maker line ground as flat is still taught (by default)."""
    import marktrace.training.data as data
    from marktrace.datasets.synth import SynthConfig, render_marking

    marking = render_marking(11, SynthConfig(fonts="train", wear=(0.9, 0.9), image_size=(160, 320)))
    flat = {ln.text for ln in marking.lines if ln.ground_flat()}
    serial = next(ln for ln in marking.lines if ln.role == "serial")
    assert serial.ground_flat() and "SAMCO GLOBAL MIAMI FL" in flat  # the rendering this test is about
    assert [t[1] for t in data.rendered_truths(marking.lines, ("serial",))] == [
        "" if ln is serial else ln.text for ln in marking.lines]
    monkeypatch.setattr(data, "render_marking", lambda seed, config: marking)
    cfg = load_config("tiny").model_copy(update={"samples_per_photo": 1, "clean_fraction": 0.0})
    taught = {text for _, text in next(iter(data.PhotoStream(cfg, CHARSET))).crops}
    assert serial.text not in taught and "SAMCO GLOBAL MIAMI FL" in taught
    everything = cfg.model_copy(update={"untaught_when_ground_flat": ()})
    assert serial.text in {text for _, text in next(iter(data.PhotoStream(everything, CHARSET))).crops}


def test_scene_crops_show_the_whole_marking_smaller_with_its_boxes_inside() -> None:
    from marktrace.datasets.synth import render_marking
    from marktrace.training.data import _crop_for_detector

    marking = render_marking(44, load_config("tiny").synth)
    quads = [np.asarray(ln.polygon, np.float32).reshape(4, 2) for ln in marking.lines]
    cfg = load_config("tiny", {"detector.scene_fraction": 1.0, "detector.scene_share": (0.3, 0.5)})
    for seed in range(4):
        canvas, moved = _crop_for_detector(marking.image, quads, cfg, np.random.default_rng(seed))
        assert canvas.shape == (cfg.detector.crop, cfg.detector.crop, 3)
        assert len(moved) == len(quads)
        assert all(q.min() >= -0.5 and q.max() <= cfg.detector.crop + 0.5 for q in moved)  # every line wholly in view
        spread = np.vstack(moved)
        # all lines together span at most the marking's share of the crop
        assert (spread.max(axis=0) - spread.min(axis=0)).max() <= 0.5 * cfg.detector.crop + 1
    plain = load_config("tiny")
    _, unmoved = _crop_for_detector(marking.image, quads, plain, np.random.default_rng(0))
    assert len(unmoved) == len(quads)
    with pytest.raises(ValueError):
        load_config("tiny", {"detector.scene_fraction": 1.5})
