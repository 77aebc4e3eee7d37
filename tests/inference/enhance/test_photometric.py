import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from enhance_surfaces import EIGHT_LIGHTS, groove_surface, hemisphere, normals_from_height, render, to_u8

from marktrace.inference.enhance import photometric
from marktrace.inference.enhance.chains import image_sha256
from marktrace.inference.enhance.photometric import (
    LightFileError,
    ReliefParams,
    direction_vector,
    iter_relief_views,
    least_squares_normals,
    load_light_directions,
    load_stack,
    parse_lights_json,
    parse_lp,
    photometric_stereo,
    ratio_relight,
    register_stack,
    render_relief_views,
    replay_relief_view,
    shaded_relief,
    stack_from_arrays,
    uncalibrated_normals,
)


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def _L(lights: list[tuple[float, float]]) -> np.ndarray:
    return np.stack([direction_vector(a, e) for a, e in lights])


def test_direction_convention() -> None:
    assert np.allclose(direction_vector(0, 90), [0, 0, 1])
    assert np.allclose(direction_vector(90, 0), [0, 1, 0])  # azimuth 90 points down the image (+y)
    assert np.allclose(direction_vector(180, 45), [-math.sqrt(0.5), 0, math.sqrt(0.5)])


@pytest.mark.parametrize("robust", [False, True])
def test_photometric_stereo_noiseless_hemisphere(robust: bool) -> None:
    normals, inside = hemisphere()
    imgs = render(normals, EIGHT_LIGHTS).astype(np.float32)
    est, albedo = photometric_stereo(imgs, _L(EIGHT_LIGHTS), robust=robust)
    core = np.zeros_like(inside)
    yy, xx = np.mgrid[0:128, 0:128]
    core = (xx - 63.5) ** 2 + (yy - 63.5) ** 2 < (0.85 * 50) ** 2
    err = _angles(est, normals)
    assert err[core].mean() < 3.0
    assert err[~inside].mean() < 0.5  # the flat plate
    assert abs(float(np.median(albedo[core])) - 0.8) < 0.02


def test_photometric_stereo_with_noise_and_robust_shadow_handling() -> None:
    normals, inside = hemisphere()
    imgs = render(normals, EIGHT_LIGHTS, noise=0.01, seed=5).astype(np.float32)
    est, _ = photometric_stereo(imgs, _L(EIGHT_LIGHTS))  # N = 8 -> robust by default
    err = _angles(est, normals)
    assert err[inside].mean() < 8.0
    plain, _ = photometric_stereo(imgs, _L(EIGHT_LIGHTS), robust=False)
    # attached shadows bias plain least squares near the rim; the robust fit is better there
    rim = inside & (np.hypot(*np.mgrid[0:128, 0:128] - 63.5) > 40)
    assert err[rim].mean() < _angles(plain, normals)[rim].mean()


def test_the_robust_fit_drops_a_highlight_but_keeps_the_plain_fit_where_samples_agree() -> None:
    """Faint relief, textured dark metal, ambient light and one specular highlight: the robust fit drops the
    highlight and is as quiet as the plain fit elsewhere; trimming every pixel's extremes (the fit before 0.5.0,
    ``outlier_sigma=0``) picks lights by noise and makes the flat plate's normals noisier."""
    height, groove = groove_surface(depth=0.6)
    normals = normals_from_height(height)
    rng = np.random.default_rng(2)
    albedo = 0.3 * (1 + 0.2 * cv2.GaussianBlur(rng.normal(0, 1, height.shape), (0, 0), 1.0))
    linear = render(normals, EIGHT_LIGHTS, albedo=albedo, noise=0.005, seed=7) + 0.2 * albedo[None]
    linear[2, 30:50, 70:90] += 0.6  # a highlight in one photo
    imgs = to_u8(linear)
    spot = np.zeros_like(groove)
    spot[30:50, 70:90] = True
    plate = ~groove & ~spot
    errors = {}
    for name, kwargs in {"plain": {"robust": False}, "robust": {}, "trim_all": {"outlier_sigma": 0.0}}.items():
        est, _ = photometric_stereo(imgs, _L(EIGHT_LIGHTS), **kwargs)
        err = _angles(est, normals)
        errors[name] = (float(err[plate].mean()), float(err[spot].mean()))
    assert errors["plain"][1] > 15 and errors["robust"][1] < 2  # the highlight is dropped
    assert errors["robust"][0] < 1.05 * errors["plain"][0]  # and nothing else is
    assert errors["trim_all"][0] > 1.5 * errors["plain"][0]


def test_photometric_stereo_rejects_coplanar_lights() -> None:
    with pytest.raises(ValueError, match="coplanar"):
        photometric_stereo(np.zeros((3, 4, 4), np.float32), np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0.0]]))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_lights_json_saved_by_windows_tools_is_read(tmp_path: Path, encoding: str) -> None:
    lj = tmp_path / "lights.json"
    lj.write_text('{"a.png": {"azimuth_deg": 10, "elevation_deg": 30}}', encoding=encoding)
    assert parse_lights_json(lj) == {"a.png": (10.0, 30.0)}


def test_lights_json_that_is_not_text_names_the_file(tmp_path: Path) -> None:
    lj = tmp_path / "lights.json"
    lj.write_bytes(b'{"a.png": "' + bytes([0xFF, 0xFE, 0xFA]) + b'"}')
    with pytest.raises(LightFileError, match="lights.json: not UTF-8"):
        parse_lights_json(lj)


def test_lights_json_and_lp_parsing(tmp_path: Path) -> None:
    lj = tmp_path / "lights.json"
    lj.write_text(json.dumps({"a.png": {"azimuth_deg": 370, "elevation_deg": 30}, "b.png": {
        "azimuth_deg": 90, "elevation_deg": 60}}))
    assert parse_lights_json(lj) == {"a.png": (10.0, 30.0), "b.png": (90.0, 60.0)}
    assert load_light_directions(tmp_path) == parse_lights_json(lj)
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "lights.json").write_text(json.dumps({"a.png": None, "b.png": None}))
    assert load_light_directions(tmp_path / "none") is None
    lj.write_text(json.dumps({"a.png": {"azimuth_deg": 0}}))
    with pytest.raises(LightFileError, match=r"lights\.json.*a\.png"):
        parse_lights_json(lj)
    lj.write_text("{oops")
    with pytest.raises(LightFileError, match="not valid JSON"):
        parse_lights_json(lj)

    lp = tmp_path / "set.lp"
    s = math.sqrt(0.5)
    lp.write_text(f"3\nC:\\rti\\img1.jpg {s} 0 {s}\n/x/img2.jpg 0 {s} {s}\nimg3.jpg 0 0 1\n")
    lights = parse_lp(lp)
    assert set(lights) == {"img1.jpg", "img2.jpg", "img3.jpg"}
    assert lights["img1.jpg"] == pytest.approx((0.0, 45.0))
    assert lights["img2.jpg"] == pytest.approx((270.0, 45.0))  # .lp y up -> our azimuth 270 (up)
    assert parse_lp(lp, y_up=False)["img2.jpg"] == pytest.approx((90.0, 45.0))
    assert lights["img3.jpg"][1] == pytest.approx(90.0)
    lp.write_text("4\nimg1.jpg 0 0 1\n")
    with pytest.raises(LightFileError, match=r"set\.lp: header says 4"):
        parse_lp(lp)
    lp.write_text("1\nimg1.jpg 0 0 x\n")
    with pytest.raises(LightFileError, match="line 2"):
        parse_lp(lp)


def _groove_stack(noise: float = 0.0, texture: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    height, groove = groove_surface()
    rng = np.random.default_rng(2)
    albedo = 0.7 + texture * cv2.GaussianBlur(rng.normal(0, 1, height.shape), (0, 0), 1.5)
    imgs = to_u8(render(normals_from_height(height), EIGHT_LIGHTS, albedo=albedo, noise=noise, seed=3))
    return imgs, groove


def _write_folder(folder: Path, imgs: np.ndarray, lights: bool) -> list[str]:
    folder.mkdir()
    names = [f"img{i:02d}.png" for i in range(len(imgs))]
    for n, im in zip(names, imgs, strict=True):
        cv2.imwrite(str(folder / n), im)
    entries = {n: ({"azimuth_deg": a, "elevation_deg": e} if lights else None)
               for n, (a, e) in zip(names, EIGHT_LIGHTS, strict=True)}
    (folder / "lights.json").write_text(json.dumps(entries))
    return names


def _groove_contrast(view: np.ndarray, groove: np.ndarray) -> tuple[float, float]:
    v = view.astype(np.float64)
    bg_level = float(np.median(v[~groove]))
    band = cv2.dilate(groove.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    far = ~(cv2.dilate(groove.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0)
    far[:8], far[-8:], far[:, :8], far[:, -8:] = False, False, False, False
    return float(np.abs(v[band] - bg_level).mean()), float(np.abs(v[far] - bg_level).mean())


def test_folder_with_directions_gives_relief_views_with_trails(tmp_path: Path) -> None:
    imgs, groove = _groove_stack(noise=0.005)
    folder = tmp_path / "item"
    names = _write_folder(folder, imgs, lights=True)
    stack = load_stack(folder)
    assert stack.names == names and stack.lights is not None and len(stack.sha256) == 8
    views = render_relief_views(stack)
    by_name = {v.name: (img, v) for img, v in views}
    assert {"photometric:raking_az000", "photometric:curvature", "photometric:normal_unsharp",
            "photometric:specular", "photometric:albedo"} <= set(by_name)
    for name in ("photometric:raking_az000", "photometric:curvature", "photometric:normal_unsharp"):
        img, view = by_name[name]
        assert view.trail is not None and view.trail.sha256 == image_sha256(img)
        assert view.trail.source_sha256 == stack.sha256
        inside, outside = _groove_contrast(img, groove)
        assert inside > 3 * outside + 1, name
    # replay from a fresh load is bit-identical; a changed parameter is not
    img, view = by_name["photometric:curvature"]
    assert view.trail is not None
    again = replay_relief_view(view.trail, load_stack(folder))
    assert again.tobytes() == img.tobytes()
    changed = render_relief_views(stack, ReliefParams(curvature_sigma=2.5))
    assert {v.name: i for i, v in changed}["photometric:curvature"].tobytes() != img.tobytes()


def test_folder_without_directions_shows_the_groove(tmp_path: Path) -> None:
    imgs, groove = _groove_stack(noise=0.005)
    folder = tmp_path / "item"
    _write_folder(folder, imgs, lights=False)
    stack = load_stack(folder)
    assert stack.lights is None
    views = render_relief_views(stack)
    names = {v.name for _, v in views}
    assert {"photometric:stack_std", "photometric:stack_range", "photometric:pca2",
            "photometric:pseudo_curvature"} <= names
    shown = 0
    for img, view in views:
        assert view.trail is not None and view.trail.sha256 == image_sha256(img)
        inside, outside = _groove_contrast(img, groove)
        shown += inside > 2 * outside + 1
    assert shown >= len(views) // 2
    by_name = {v.name: i for i, v in views}
    inside, outside = _groove_contrast(by_name["photometric:pseudo_curvature"], groove)
    assert inside > 2 * outside + 1


def test_uncalibrated_components_span_the_normals() -> None:
    normals, inside = hemisphere(96, 40)
    imgs = render(normals, EIGHT_LIGHTS).astype(np.float32)
    _pn, comps, sv = uncalibrated_normals(imgs, robust=False)
    assert sv[2] > 1e-3 * sv[0]
    # on the lit region the true normals are (nearly) a linear map of the three components
    lit = (render(normals, EIGHT_LIGHTS) > 0).all(axis=0)
    A = comps.reshape(3, -1)[:, lit.ravel()].T
    B = normals.reshape(-1, 3)[lit.ravel()]
    coef, *_ = np.linalg.lstsq(A, B, rcond=None)
    assert np.abs(A @ coef - B).mean() < 0.02


def test_registration_recovers_a_known_shift() -> None:
    imgs, _ = _groove_stack(texture=0.3)  # machined metal: visible surface texture
    moved = imgs.copy()
    shifts = {2: (3.0, -2.0), 7: (-1.5, 2.5)}
    for i, (dx, dy) in shifts.items():
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved[i] = cv2.warpAffine(imgs[i], m, imgs.shape[:0:-1], borderMode=cv2.BORDER_REPLICATE)
    aligned, report = register_stack(moved)
    for i, (dx, dy) in shifts.items():
        assert report[i]["applied"]
        assert report[i]["dx"] == pytest.approx(dx, abs=0.35)
        assert report[i]["dy"] == pytest.approx(dy, abs=0.35)
    assert not report[1]["applied"]  # already aligned: left untouched
    assert np.array_equal(aligned[1], moved[1])
    inner = (slice(8, -8), slice(8, -8))
    before = np.abs(moved[2].astype(int) - imgs[2].astype(int))[inner].mean()
    after = np.abs(aligned[2].astype(int) - imgs[2].astype(int))[inner].mean()
    assert after < before / 2


def test_stack_errors_name_the_photo(tmp_path: Path) -> None:
    a = np.zeros((10, 10), np.uint8)
    with pytest.raises(LightFileError, match="at least 3"):
        stack_from_arrays([a, a], ["a", "b"], ["x", "y"])
    with pytest.raises(LightFileError, match="c.png: size"):
        stack_from_arrays([a, a, np.zeros((5, 10), np.uint8)], ["a.png", "b.png", "c.png"], ["1", "2", "3"])
    with pytest.raises(LightFileError, match="b.png"):
        stack_from_arrays([a, a, a], ["a.png", "b.png", "c.png"], ["1", "2", "3"],
                          {"a.png": (0, 45), "c.png": (90, 45)})
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "lights.json").write_text(json.dumps({n: {"azimuth_deg": 0, "elevation_deg": 45}
                                                   for n in ("p1.png", "p2.png", "p3.png")}))
    with pytest.raises(LightFileError, match="p1.png"):
        load_stack(folder)


def test_working_resolution_is_capped() -> None:
    imgs = np.full((4, 400, 500), 100, np.uint8)
    stack = stack_from_arrays(list(imgs), list("abcd"), list("1234"), max_pixels=20_000)
    assert stack.images.shape[1] * stack.images.shape[2] <= 20_000 * 1.02
    assert stack.scale < 1.0 and stack.steps[0].params["resize"] == "INTER_AREA"


# --------------------------------------------------------------------------- readable views (issue 3)


def _step_albedo(shape: tuple[int, int]) -> np.ndarray:
    """Dark left half, bright right half: a sharp albedo edge (a worn patch, a paint chip)."""
    albedo = np.full(shape, 0.9)
    albedo[:, : shape[1] // 2 + 7] = 0.35
    return albedo


def test_least_squares_normals_match_plain_photometric_stereo() -> None:
    normals, _inside = hemisphere()
    imgs = render(normals, EIGHT_LIGHTS, noise=0.01, seed=4).astype(np.float32)
    ours, albedo = least_squares_normals(imgs, _L(EIGHT_LIGHTS))
    ref, ref_albedo = photometric_stereo(imgs, _L(EIGHT_LIGHTS), robust=False)
    assert np.abs(ours - ref).max() < 1e-4 and np.abs(albedo - ref_albedo).max() < 1e-4


def test_ratio_relight_reproduces_a_real_light_whatever_the_albedo() -> None:
    normals, inside = hemisphere()
    light = 3  # relight with the direction of photo 3: a Lambertian surface gives I_3 / mean(I)
    plain = render(normals, EIGHT_LIGHTS, albedo=1.0)
    lit = (plain > 0.02).all(axis=0)  # no attached shadow in any photo: the linear model holds exactly
    assert lit[inside].mean() > 0.3
    views = []
    for albedo in (1.0, _step_albedo(normals.shape[:2])):
        imgs = render(normals, EIGHT_LIGHTS, albedo=albedo).astype(np.float32)
        views.append(ratio_relight(imgs, _L(EIGHT_LIGHTS), *EIGHT_LIGHTS[light], sigma=0.0, eps=1e-9))
    expected = plain[light] / plain.mean(axis=0)
    assert np.abs(views[0] - expected)[lit].max() < 1e-3
    assert np.abs(views[1] - views[0])[lit].max() < 1e-3  # the albedo edge cancels out


def test_shaded_relief_shows_the_groove_not_the_albedo_edge_under_ambient_light() -> None:
    height, groove = groove_surface()
    albedo = _step_albedo(height.shape)
    # Lambertian shading plus ambient light (0.15 x albedo in every photo): the case in which the robust
    # fit's per-pixel choice of lights turns albedo into false relief
    imgs = to_u8(render(normals_from_height(height), EIGHT_LIGHTS, albedo=albedo) + 0.15 * albedo[None])
    normals, _ = least_squares_normals(imgs, _L(EIGHT_LIGHTS))
    view = shaded_relief(normals)
    inside, outside = _groove_contrast(view, groove)
    assert inside > 3 * outside + 1
    edge = height.shape[1] // 2 + 7
    rows = slice(4, 16)  # above the groove: flat plate across the albedo edge
    jump = abs(float(view[rows, edge + 2:edge + 8].mean()) - float(view[rows, edge - 8:edge - 2].mean()))
    photo_jump = abs(float(imgs[0][rows, edge + 2:edge + 8].mean()) - float(imgs[0][rows, edge - 8:edge - 2].mean()))
    assert photo_jump > 40 and jump < 3


def test_readable_views_come_first_with_trails_and_replay(tmp_path: Path) -> None:
    imgs, groove = _groove_stack(noise=0.005, texture=0.2)
    folder = tmp_path / "item"
    _write_folder(folder, imgs, lights=True)
    stack = load_stack(folder)
    views = render_relief_views(stack)
    assert [v.name for _, v in views[:2]] == ["photometric:relit_ratio", "photometric:shaded_relief"]
    fits = {"photometric:relit_ratio": ("ratio_relight", None),
            "photometric:shaded_relief": ("photometric_stereo", False)}
    again = render_relief_views(load_stack(folder))
    for (img, view), (img2, view2) in zip(views[:2], again[:2], strict=True):
        assert view.trail is not None and view.trail.sha256 == image_sha256(img)
        assert view.trail.source_sha256 == stack.sha256
        step, robust = fits[view.name]
        names = [s.name for s in view.trail.steps]
        assert names == ["load_stack", "register", step, "relief_params", "render"]
        if robust is not None:
            assert view.trail.steps[2].params["robust"] is robust
        assert view.trail.steps[-1].params["view"] == view.name.split(":", 1)[1]
        assert img2.tobytes() == img.tobytes() and view2.trail == view.trail  # deterministic
        assert replay_relief_view(view.trail, load_stack(folder)).tobytes() == img.tobytes()
        inside, outside = _groove_contrast(img, groove)
        assert inside > 3 * outside + 1, view.name
    changed = {v.name: i for i, v in render_relief_views(stack, ReliefParams(relit_azimuth=135.0, relief_slope=0.3))}
    for img, view in views[:2]:
        assert changed[view.name].tobytes() != img.tobytes()


def test_first_views_do_not_run_the_robust_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    imgs, _ = _groove_stack()
    stack = stack_from_arrays(list(imgs), [f"i{k}" for k in range(8)], [str(k) for k in range(8)],
                              {f"i{k}": lt for k, lt in enumerate(EIGHT_LIGHTS)})

    def robust_fit(*_a: object, **_k: object) -> None:
        raise AssertionError("robust fit computed")

    monkeypatch.setattr(photometric, "photometric_stereo", robust_fit)
    it = iter_relief_views(stack)
    assert [next(it)[1].name, next(it)[1].name] == ["photometric:relit_ratio", "photometric:shaded_relief"]
    with pytest.raises(AssertionError, match="robust fit"):
        next(it)


def test_integrate_normals_recovers_a_known_height_map() -> None:
    from marktrace.inference.enhance.photometric import integrate_normals

    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    # a punched dimple and a raised bump on a flat plate (x right, y down, z toward the camera)
    height = -6.0 * np.exp(-((xx - 40) ** 2 + (yy - 48) ** 2) / 60.0) + 4.0 * np.exp(
        -((xx - 90) ** 2 + (yy - 40) ** 2) / 90.0
    )
    gy, gx = np.gradient(height)
    normals = np.dstack([-gx, -gy, np.ones_like(height)])
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    got = integrate_normals(normals.astype(np.float32))
    assert got.dtype == np.float32 and got.shape == height.shape
    assert abs(float(got.mean())) < 1e-3
    corr = np.corrcoef(got.ravel(), (height - height.mean()).ravel())[0, 1]
    assert corr > 0.98, corr
    assert got[48, 40] < -3.0 and got[40, 90] > 2.0  # the dimple is a dimple, the bump a bump


_VIEW_HASHES = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from enhance_surfaces import EIGHT_LIGHTS, groove_surface, normals_from_height, render, to_u8
from marktrace.inference.enhance.photometric import render_relief_views, stack_from_arrays
h, _ = groove_surface(96, 160)
imgs = to_u8(render(normals_from_height(h), EIGHT_LIGHTS, noise=0.01, seed=1))
names = [f"p{i}.png" for i in range(8)]
for lights in (dict(zip(names, EIGHT_LIGHTS)), None):
    for img, view in render_relief_views(stack_from_arrays(list(imgs), names, ["ab" * 32] * 8, lights)):
        print(view.name, hashlib.sha256(img.tobytes()).hexdigest())
"""


def test_photometric_views_have_the_same_bits_whichever_blas_kernel_runs() -> None:
    """A trail replayed at another lab must give the same bits: no view may depend on BLAS's summation order.

    OpenBLAS picks its kernels by CPU; ``OPENBLAS_CORETYPE`` makes this machine use another CPU's kernels
    (before, the raking, curvature, unsharp, specular and albedo views changed with it).
    """
    import os
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    outputs = []
    for core in ("", "Prescott", "Sandybridge"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core} if core else dict(os.environ)
        run = subprocess.run([sys.executable, "-c", _VIEW_HASHES, here], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        outputs.append(run.stdout)
    assert outputs[0].count("\n") >= 20
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]
