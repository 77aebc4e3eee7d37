import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from marktrace.inference.enhance.steps import STEPS, StepError, apply_step, validate_step
from marktrace.inference.schema import TrailStep


def _photo(seed: int = 3, color: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = 64, 96
    yy, xx = np.mgrid[0:h, 0:w]
    base = 90 + 60 * xx / w + rng.normal(0, 6, (h, w))
    base[20:44, 30:34] -= 40  # a dark stroke
    base[40:44, 30:70] -= 40
    img = np.clip(base, 0, 255).astype(np.uint8)
    if not color:
        return img
    return np.dstack([img, np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8), img // 2 + 20])


STEP_CASES = [
    TrailStep(name="gray"),
    TrailStep(name="invert"),
    TrailStep(name="flatten_background", params={"sigma": 10}),
    TrailStep(name="flatten_background",
              params={"background": "morph_close", "sigma": 6, "mode": "subtract"}),
    TrailStep(name="flatten_background", params={"sigma": 10, "downsample": 4}),
    TrailStep(name="clahe", params={"clip_limit": 3.0, "tile": 4}),
    TrailStep(name="tophat", params={"ksize": 9}),
    TrailStep(name="blackhat", params={"ksize": 9, "gain": 2.0}),
    TrailStep(name="ridge", params={"sigmas": [1.0, 2.0]}),
    TrailStep(name="ridge", params={"polarity": "both"}),
    TrailStep(name="denoise"),
    TrailStep(name="denoise", params={"method": "nlm", "h": 9}),
    TrailStep(name="unsharp", params={"sigma": 1.5, "amount": 2.0}),
    TrailStep(name="gamma", params={"gamma": 0.6}),
    TrailStep(name="normalize"),
    TrailStep(name="crop", params={"x0": 10, "y0": 5, "x1": 90, "y1": 60}),
    TrailStep(name="resize", params={"from_width": 96, "from_height": 64, "width": 40, "height": 27}),
]


def _digest(img: np.ndarray) -> str:
    return hashlib.sha256(img.tobytes() + str(img.shape).encode()).hexdigest()


def test_every_registered_step_is_covered() -> None:
    assert {s.name for s in STEP_CASES} == set(STEPS)


@pytest.mark.parametrize("step", STEP_CASES, ids=lambda s: f"{s.name}-{json.dumps(s.params)}")
@pytest.mark.parametrize("color", [False, True])
def test_step_deterministic_and_pure(step: TrailStep, color: bool) -> None:
    img = _photo(color=color)
    before = img.copy()
    a = apply_step(img, step)
    b = apply_step(img.copy(), step)
    assert np.array_equal(img, before), "input must not be modified"
    assert a.dtype == np.uint8 and (a.shape[:2] == img.shape[:2] or step.name in ("crop", "resize"))
    assert a.tobytes() == b.tobytes()
    assert a is not img


def test_steps_identical_across_fresh_process() -> None:
    here = {f"{s.name}{json.dumps(s.params)}": _digest(apply_step(_photo(), s)) for s in STEP_CASES}
    here_dir = str(__import__("pathlib").Path(__file__).parent)
    code = (
        f"import json,hashlib,sys;sys.path.insert(0, {here_dir!r});"
        "from test_steps import STEP_CASES,_photo,_digest;"
        "from marktrace.inference.enhance.steps import apply_step;"
        "print(json.dumps({f'{s.name}{json.dumps(s.params)}': _digest(apply_step(_photo(), s)) "
        "for s in STEP_CASES}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here


def test_steps_change_the_image_meaningfully() -> None:
    gray = _photo(color=False)
    flat = apply_step(gray, TrailStep(name="flatten_background", params={"sigma": 10}))
    # the left-to-right illumination ramp is removed: column means become nearly equal
    ramp_before = float(gray[:5].mean(axis=0)[-10:].mean() - gray[:5].mean(axis=0)[:10].mean())
    ramp_after = float(flat[:5].mean(axis=0)[-10:].mean() - flat[:5].mean(axis=0)[:10].mean())
    assert abs(ramp_after) < abs(ramp_before) / 3
    bh = apply_step(gray, TrailStep(name="blackhat", params={"ksize": 15}))
    assert bh[30, 31] > bh[5, 80] + 20  # the dark stroke stands out
    ridge = apply_step(gray, TrailStep(name="ridge", params={"sigmas": [1.5]}))
    assert ridge[30, 31] > ridge[10, 10]
    inv = apply_step(gray, TrailStep(name="invert"))
    assert np.array_equal(inv.astype(int), 255 - gray.astype(int))


def test_validate_fills_defaults_and_rejects_bad_params() -> None:
    full = validate_step(TrailStep(name="clahe"))
    assert full.params == {"clip_limit": 2.0, "tile": 8}
    with pytest.raises(StepError, match="clahe"):
        validate_step(TrailStep(name="clahe", params={"clip_limit": -1}))
    with pytest.raises(StepError, match="unknown"):
        validate_step(TrailStep(name="sharpen_magic"))
    with pytest.raises(StepError, match="unexpected|extra|Extra"):
        validate_step(TrailStep(name="gamma", params={"gama": 2}))
    with pytest.raises(StepError, match="uint8"):
        apply_step(np.zeros((4, 4), np.float32), TrailStep(name="invert"))
    with pytest.raises(StepError, match="odd"):  # used as 7 while recorded as 6, before
        validate_step(TrailStep(name="denoise", params={"method": "nlm", "template": 6}))


def test_crop_cuts_exactly_the_rectangle_and_refuses_one_outside_the_image() -> None:
    img = _photo()
    out = apply_step(img, TrailStep(name="crop", params={"x0": 10, "y0": 5, "x1": 90, "y1": 60}))
    assert out.shape == (55, 80, 3) and np.array_equal(out, img[5:60, 10:90])
    with pytest.raises(StepError, match="not inside the 96x64 image"):
        apply_step(img, TrailStep(name="crop", params={"x0": 10, "y0": 5, "x1": 97, "y1": 60}))
    with pytest.raises(StepError, match="not inside"):
        apply_step(img, TrailStep(name="crop", params={"x0": 50, "y0": 5, "x1": 50, "y1": 60}))


def test_resize_gives_the_recorded_size_and_refuses_an_image_of_another_size() -> None:
    import cv2

    img = _photo()
    step = TrailStep(name="resize", params={"from_width": 96, "from_height": 64, "width": 48, "height": 32})
    out = apply_step(img, step)
    assert out.shape == (32, 48, 3)
    assert np.array_equal(out, cv2.resize(img, (48, 32), interpolation=cv2.INTER_AREA))
    assert validate_step(step).params["interpolation"] == "area"  # the trail names the resampling
    with pytest.raises(StepError, match="image is 80x55, the step was recorded for 96x64"):
        apply_step(img[5:60, 10:90], step)


def test_a_gained_black_hat_is_the_same_band_by_band_on_a_tall_photo() -> None:
    """The gain runs in row bands (less memory on a large photo); the bytes are the whole-image formula's."""
    import cv2

    from marktrace.inference.enhance.steps import BAND_ROWS

    rng = np.random.default_rng(5)
    gray = np.clip(rng.normal(128, 40, (2 * BAND_ROWS + 37, 90)), 0, 255).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    closed = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel, borderType=cv2.BORDER_REFLECT)
    got = apply_step(gray, TrailStep(name="blackhat", params={"ksize": 11, "gain": 3.7}))
    assert np.array_equal(got, _u8(closed.astype(np.float32) * np.float32(3.7)))
    assert got.max() == 255 and 0 < np.count_nonzero(got == 255) < got.size  # the clip was reached, not everywhere


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def test_float_steps_equal_their_written_formulas() -> None:
    """The steps work in place on float32 copies; the result is the formula's, bit for bit (old trails replay)."""
    import cv2

    gray = _photo(11, color=False)
    src = gray.astype(np.float32)
    reflect = cv2.BORDER_REFLECT
    bg = cv2.GaussianBlur(src, (0, 0), sigmaX=9.0, sigmaY=9.0, borderType=reflect)
    blur = cv2.GaussianBlur(src, (0, 0), sigmaX=2.0, sigmaY=2.0, borderType=reflect)
    closed = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)),
                              borderType=reflect)
    lo, hi = np.percentile(gray, [1.0, 99.0])
    expected = {
        ("flatten_background", (("sigma", 9.0), ("mode", "divide"))):
            _u8(src * np.float32(128.0) / np.maximum(bg, np.float32(1.0))),
        ("flatten_background", (("sigma", 9.0), ("mode", "subtract"))): _u8(src - bg + np.float32(128.0)),
        ("unsharp", (("sigma", 2.0), ("amount", 1.5))): _u8(src + np.float32(1.5) * (src - blur)),
        ("blackhat", (("ksize", 15), ("shape", "ellipse"), ("gain", 2.5))):
            _u8(closed.astype(np.float32) * np.float32(2.5)),
        ("normalize", (("low_pct", 1.0), ("high_pct", 99.0))):
            _u8((src - np.float32(lo)) * np.float32(255.0 / (hi - lo))),
    }
    for (name, params), want in expected.items():
        got = apply_step(gray, validate_step(TrailStep(name=name, params=dict(params))))
        assert np.array_equal(got, want), name


def test_flatten_on_a_shrunk_copy_stays_within_a_grey_level_of_full_resolution() -> None:
    """``downsample`` estimates the (smooth) background on a smaller copy: the output moves by at most one level."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:240, 0:320]
    lit = 60 + 120 * np.exp(-((xx - 200) ** 2 + (yy - 90) ** 2) / 2.0e4)  # a broad highlight
    gray = np.clip(lit + rng.normal(0, 4, lit.shape), 0, 255).astype(np.uint8)
    gray[100:140, 60:66] = 30  # a dark stroke
    params = {"background": "gaussian", "sigma": 24.0}
    full = apply_step(gray, validate_step(TrailStep(name="flatten_background", params=params)))
    shrunk = apply_step(gray, validate_step(TrailStep(name="flatten_background", params={**params, "downsample": 4})))
    difference = np.abs(full.astype(int) - shrunk.astype(int))
    assert difference.max() <= 1
    assert difference.any()  # it is another computation, not the full-resolution one
    tiny = apply_step(gray[:3, :2], validate_step(TrailStep(name="flatten_background", params={"downsample": 16})))
    assert tiny.shape == (3, 2)


def test_a_trail_without_downsample_replays_the_full_resolution_background() -> None:
    """Trails recorded before ``downsample`` existed name no such parameter: they get 1, the old computation."""
    step = validate_step(TrailStep(name="flatten_background", params={"sigma": 9.0}))
    assert step.params["downsample"] == 1
    with pytest.raises(StepError):
        validate_step(TrailStep(name="flatten_background", params={"downsample": 0}))
    with pytest.raises(StepError, match="gaussian background only"):  # a closing follows the strokes' shapes
        validate_step(TrailStep(name="flatten_background", params={"background": "morph_close", "downsample": 2}))
