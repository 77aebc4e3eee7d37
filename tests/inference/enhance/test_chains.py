import json
from pathlib import Path

import numpy as np
import pytest

from marktrace.inference.enhance.chains import (
    default_chains,
    get_chain,
    image_sha256,
    load_chains,
    make_view,
    replay,
    run_chain,
    software_version,
    verify_replay,
)
from marktrace.inference.enhance.steps import StepError
from marktrace.inference.schema import Trail, TrailStep


def _photo() -> np.ndarray:
    rng = np.random.default_rng(11)
    img = np.clip(120 + rng.normal(0, 12, (48, 80, 3)), 0, 255).astype(np.uint8)
    img[10:38, 20:24] -= 50
    return img


def test_default_registry_has_the_named_chains() -> None:
    chains = default_chains()
    assert {"clahe", "flatten_clahe", "ridge", "blackhat_clahe", "denoise_unsharp"} <= set(chains)
    for steps in chains.values():
        out = run_chain(_photo(), steps)
        assert out.dtype == np.uint8 and out.ndim == 2
    # registry is a fresh copy each time
    chains["clahe"][1].params["clip_limit"] = 99.0
    assert get_chain("clahe")[1].params["clip_limit"] == 2.0
    with pytest.raises(KeyError, match="known"):
        get_chain("nope")


def test_chains_from_yaml_and_json(tmp_path: Path) -> None:
    yml = tmp_path / "lab.yaml"
    yml.write_text("mine:\n  - {name: gray}\n  - {name: gamma, params: {gamma: 0.5}}\n")
    js = tmp_path / "lab.json"
    js.write_text(json.dumps({"mine": [{"name": "gray"}, {"name": "gamma", "params": {"gamma": 0.5}}]}))
    a, b = load_chains(yml)["mine"], load_chains(js)["mine"]
    assert a == b
    assert a[1].params == {"gamma": 0.5}
    img = _photo()
    out = run_chain(img, a)
    gray_mean = float(run_chain(img, [TrailStep(name="gray")]).mean())
    assert out.mean() > gray_mean  # gamma 0.5 brightens


def test_bad_chain_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("x:\n  - {name: gray}\n  - {name: clahe, params: {tile: 0}}\n")
    with pytest.raises(StepError, match=r"bad\.yaml.*step 1"):
        load_chains(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(StepError, match=r"broken\.json: not valid JSON"):
        load_chains(broken)
    with pytest.raises(StepError, match="cannot read"):
        load_chains(tmp_path / "missing.yaml")


def test_make_view_trail_and_bit_identical_replay() -> None:
    img = _photo()
    src = "ab" * 32
    out, view = make_view(src, img, "flatten_clahe")
    assert view.name == "chain:flatten_clahe"
    trail = view.trail
    assert trail is not None
    assert trail.source_sha256 == [src]
    assert trail.sha256 == image_sha256(out)
    assert trail.software == software_version() and "opencv" in trail.software
    # every parameter, defaults included, is recorded
    assert trail.steps[1].params == {"background": "gaussian", "sigma": 25.0, "mode": "divide", "downsample": 4}
    # the trail survives a JSON round trip and replays to the same bytes
    restored = Trail.model_validate_json(trail.model_dump_json())
    again = replay(restored, img.copy())
    assert again.tobytes() == out.tobytes()
    assert verify_replay(restored, img, src)
    assert not verify_replay(restored, img, "cd" * 32)  # another original


def test_changed_parameter_or_input_fails_verification() -> None:
    img = _photo()
    _out, view = make_view("00" * 32, img, "clahe")
    assert view.trail is not None
    tampered = view.trail.model_copy(deep=True)
    tampered.steps[1].params["tile"] = 4
    assert not verify_replay(tampered, img)
    other = img.copy()
    other[0, 0, 0] ^= 1
    other[20, 40, :] ^= 7
    assert not verify_replay(view.trail, other)


def test_image_hash_depends_on_shape_and_dtype() -> None:
    a = np.arange(12, dtype=np.uint8)
    assert image_sha256(a.reshape(3, 4)) != image_sha256(a.reshape(4, 3))
    assert image_sha256(a.reshape(3, 4)) != image_sha256(a.reshape(3, 4).astype(np.uint16))
    assert image_sha256(a.reshape(3, 4)) == image_sha256(np.asfortranarray(a.reshape(3, 4)))


def test_source_to_view_follows_the_crops_and_resizes_of_a_chain_to_the_pixels() -> None:
    import cv2

    from marktrace.inference.enhance.chains import source_to_view, view_to_source

    image = np.zeros((80, 120), np.uint8)
    image[30:32, 50:52] = 255  # a bright dot centred on (50.5, 30.5)
    steps = [
        TrailStep(name="crop", params={"x0": 10, "y0": 4, "x1": 110, "y1": 70}),
        TrailStep(name="invert"),
        TrailStep(name="resize", params={"from_width": 100, "from_height": 66, "width": 50, "height": 33}),
        TrailStep(name="crop", params={"x0": 5, "y0": 6, "x1": 40, "y1": 30}),
    ]
    out = run_chain(image, steps)
    shrunk = cv2.resize(image[4:70, 10:110], (50, 33), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, 255 - shrunk[6:30, 5:40])
    to_view = source_to_view(steps)
    dot = to_view @ np.array([50.5, 30.5, 1.0])
    ys, xs = np.nonzero(out < 255)
    assert np.allclose(dot, (xs.mean(), ys.mean()), atol=0.01)  # the darkened pixel is where the matrix says
    back = view_to_source(steps) @ np.array([*dot, 1.0])
    assert np.allclose(back, (50.5, 30.5))
    assert np.allclose(source_to_view([TrailStep(name="invert")]), np.eye(3)[:2])
    crops_only = [steps[0], steps[1], steps[3]]  # without the resize: a pure shift by the summed corners
    assert np.allclose(source_to_view(crops_only), [[1, 0, -15], [0, 1, -10]])
