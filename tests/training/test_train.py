import json

import numpy as np
import pytest
import yaml

from marktrace.training.config import load_config
from marktrace.training.train import detector_loss, encode_texts, lr_factor

torch = pytest.importorskip("torch")


def test_run_folder_records_config_seed_commit_metrics_and_checkpoints(tiny_run):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert config["name"] == "tiny" and config["seed"] == 7
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["seed"] == 7 and info["commit"]
    assert info["det_steps"] == 6 and info["rec_steps"] == 6
    assert "eval_serial_exact" in info["final_metrics"]
    events = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "train" for e in events) and any(e["event"] == "eval" for e in events)
    for name in ("detector-best.pt", "recognizer-best.pt", "detector-last.pt", "recognizer-last.pt"):
        assert (tiny_run / "checkpoints" / name).stat().st_size > 0


def test_overrides_and_unknown_keys():
    cfg = load_config("tiny", {"recognizer.steps": 3})
    assert cfg.recognizer.steps == 3
    with pytest.raises(ValueError, match="extra"):
        load_config("tiny", {"recognizer.nonsense": 1})
    with pytest.raises(FileNotFoundError, match="presets"):
        load_config("no-such-preset")


def test_lr_schedule_warms_up_and_decays_by_time():
    assert lr_factor(0, 1000, 0.0, None, warmup=10) == pytest.approx(0.1)
    assert lr_factor(10, 1000, 0.0, None, warmup=10) == pytest.approx(1.0)
    # half the time gone: cosine is at its midpoint even though few steps were done
    assert lr_factor(20, 1000, 50.0, 100.0, warmup=10) == pytest.approx(0.525)
    assert lr_factor(20, 1000, 500.0, 100.0, warmup=10) == pytest.approx(0.05)


def test_detector_loss_prefers_the_right_answer():
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


def test_ctc_targets_are_one_based():
    flat, lengths = encode_texts(["AB", "1"], "1AB")
    assert flat.tolist() == [2, 3, 1] and lengths.tolist() == [2, 1]
    assert np.all(flat.numpy() >= 1)


def test_training_continues_from_exported_onnx_files(tiny_models, tmp_path):
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


def test_enhanced_fraction_feeds_photos_through_the_readers_chains():
    from marktrace.inference.enhance.chains import get_chain, run_chain
    from marktrace.training.data import PhotoStream, enhanced_copy

    cfg = load_config("tiny")
    plain = next(iter(PhotoStream(cfg, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")))
    assert not np.array_equal(plain.det_image[..., 0], plain.det_image[..., 1])  # a colour photo
    enhanced = next(iter(PhotoStream(cfg.model_copy(update={"enhanced_fraction": 1.0}),
                                     "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")))
    assert np.array_equal(enhanced.det_image[..., 0], enhanced.det_image[..., 1])  # a chain's gray output
    photo = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    copy = enhanced_copy(photo, "flatten_clahe")
    assert copy.shape == photo.shape
    assert np.array_equal(copy[..., 2], run_chain(photo, get_chain("flatten_clahe")))
    with pytest.raises(ValueError):
        load_config("tiny", {"enhanced_fraction": 1.5})
    with pytest.raises(ValueError, match="unknown enhancement chains"):
        load_config("tiny", {"enhance_chains": ["no-such-chain"]})


def test_relief_fraction_trains_on_the_readers_photometric_views():
    from marktrace.datasets.synth import SynthConfig, render_stack
    from marktrace.inference.enhance.photometric import iter_relief_views, stack_from_arrays
    from marktrace.training.data import PhotoStream, relief_view_copies

    config = SynthConfig(fonts="train", wear=(0.7, 0.8), image_size=(160, 320))
    views, lines = relief_view_copies(11, config, 5, True, 2)
    stack = render_stack(11, config, 5, known_directions=True)
    assert len(views) == 2 and [(ln.polygon, ln.text) for ln in stack.lines] == lines
    names = [f"shot_{i:02d}.png" for i in range(5)]
    first_view = next(iter(iter_relief_views(stack_from_arrays(
        list(stack.images), names, ["0" * 64] * 5, dict(zip(names, stack.lights, strict=True))))))[0]
    assert views[0].shape == stack.images[0].shape[:2] + (3,)
    assert np.array_equal(views[0][..., 1], first_view)  # the reader's relit_ratio view, unchanged
    blind, _ = relief_view_copies(11, config, 5, False, 1)
    assert not np.array_equal(blind[0], views[0])  # direction-free views differ

    cfg = load_config("tiny").model_copy(update={"relief_fraction": 1.0, "relief_views": 2, "samples_per_photo": 1})
    stream = iter(PhotoStream(cfg, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    samples = [next(stream) for _ in range(2)]

    def grey_share(sample: object) -> float:
        image = sample.det_image  # type: ignore[attr-defined]
        return float(((image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])).mean())

    plain = next(iter(PhotoStream(load_config("tiny"), "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")))
    assert grey_share(plain) < 0.5 < min(grey_share(s) for s in samples)  # grey views, not colour photos
    assert any(s.crops for s in samples)
    with pytest.raises(ValueError, match="relief_lights"):
        load_config("tiny", {"relief_lights": [2, 8]})
