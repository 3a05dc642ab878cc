"""Property-based tests (hypothesis): keypoint and camera maths, keypoints-JSON parsing and the image loader on
arbitrary input. ``test_camera.py`` already checks the crop <-> pixel and crop <-> full-camera inverses and
weak-perspective recovery; the properties here are the others: boxes contain what they must, ignore what they
must, and move/scale with the keypoints; the fit is equivariant; full-image cameras do not depend on the
photo's resolution; projections never give NaN; and the two parsers of untrusted files never raise anything
but their documented error.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from megaviewer.camera import (
    crop_to_full,
    crop_to_pixels,
    fit_weak_perspective,
    perspective_project,
    square_box_from_keypoints,
    weak_perspective_project,
)
from megaviewer.vision.detector import PersonDetection, crop_keypoints
from megaviewer.vision.images import ImageLoadError, read_image
from megaviewer.vision.pipeline import KeypointsFile, KeypointsFileError

PROPS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
D = torch.float64

coords = st.floats(-5000.0, 5000.0, allow_nan=False)
keypoint_sets = st.integers(1, 24).flatmap(lambda k: st.tuples(
    hnp.arrays(np.float64, (k, 2), elements=coords),
    hnp.arrays(np.float64, (k,), elements=st.floats(0.0, 1.0)),
))


# ------------------------------------------------------------------------------------------- keypoint boxes
@PROPS
@given(keypoint_sets, st.floats(1.0, 3.0), st.floats(0.0, 0.9))
def test_square_box_contains_every_confident_keypoint(kp_conf, scale, threshold):
    kp, conf = kp_conf
    center, side = square_box_from_keypoints(torch.tensor(kp[None], dtype=D), torch.tensor(conf[None], dtype=D),
                                             scale=scale, threshold=threshold)
    confident = kp[conf > threshold]
    half = float(side[0]) / 2
    assert float(side[0]) >= 1.0
    if len(confident):
        lo, hi = np.asarray(center[0]) - half, np.asarray(center[0]) + half
        assert (confident >= lo - 1e-6).all() and (confident <= hi + 1e-6).all()
        spread = (confident.max(0) - confident.min(0)).max()
        assert float(side[0]) == pytest.approx(max(1.0, scale * spread), rel=1e-9, abs=1e-9)  # tight, not loose


@PROPS
@given(keypoint_sets, st.tuples(coords, coords), st.floats(0.1, 10.0), st.integers(0, 2**31 - 1))
def test_square_box_moves_and_scales_with_keypoints_and_ignores_the_unconfident(kp_conf, shift, factor, seed):
    kp, conf = kp_conf
    conf = np.where(conf > 0.5, conf, 0.0)
    assume((conf > 0).sum() >= 2)
    spread = np.ptp(kp[conf > 0], axis=0).max()
    assume(spread * min(factor, 1.0) * 1.2 > 2.0)  # both boxes away from the min_side clamp
    base_c, base_s = square_box_from_keypoints(torch.tensor(kp[None], dtype=D), torch.tensor(conf[None], dtype=D))
    moved = kp * factor + np.asarray(shift)
    # Unconfident keypoints may hold anything at all, NaN and inf included, without moving the box.
    junk = np.random.default_rng(seed).choice([np.nan, np.inf, -np.inf, 1e300, -7.0], size=kp.shape)
    moved = np.where((conf > 0)[:, None], moved, junk)
    c, s = square_box_from_keypoints(torch.tensor(moved[None], dtype=D), torch.tensor(conf[None], dtype=D))
    assert torch.allclose(c[0], base_c[0] * factor + torch.tensor(shift, dtype=D), rtol=1e-9, atol=1e-6)
    assert float(s[0]) == pytest.approx(float(base_s[0]) * factor, rel=1e-9)


@PROPS
@given(hnp.arrays(np.float64, (17, 3), elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
       st.tuples(st.integers(1, 4000), st.integers(1, 4000)),
       st.one_of(st.none(), st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4)))
def test_detection_from_any_keypoints_is_finite_and_crop_normalised(keypoints, size, bbox):
    """Whatever a keypoints file or detector holds: a finite box, missing keypoints exactly zero, usable ones
    inside the image and (when the box comes from them) inside the 1/1.2 square, and a pixel round trip."""
    det = PersonDetection.from_keypoints(keypoints, size, min_confidence=0.5, bbox=bbox)
    assert np.isfinite(det.box_center).all() and math.isfinite(det.box_side) and det.box_side > 0
    assert np.isfinite(det.keypoints).all()
    w, h = size
    usable = det.keypoints[det.valid]
    assert (usable[:, 0] >= 0).all() and (usable[:, 0] <= w - 1).all() and (usable[:, 2] >= 0.5).all()
    assert not det.valid[~np.isfinite(keypoints).all(axis=1)].any()  # NaN/inf anywhere -> missing
    crop = crop_keypoints(det)
    assert crop.shape == (17, 3) and np.isfinite(crop).all() and (crop[~det.valid] == 0).all()
    if det.num_valid >= 2 and det.box_side > 2.0:  # the box came from the keypoints (float32 maths)
        assert (np.abs(crop[det.valid, :2]) <= 1 / 1.2 + 1e-3).all()
    back = crop_to_pixels(torch.tensor(crop[None, :, :2], dtype=D), torch.tensor(det.box_center[None], dtype=D),
                          torch.tensor([det.box_side], dtype=D))[0].numpy()
    # Crop coordinates are float32 (the model's input): up to 2^-24 of |c| <= 1 each, i.e. ~3e-8 px per pixel of
    # box side after the round trip; a 100,000-px box on a 1-px image (a hypothesis find) needs that allowance.
    np.testing.assert_allclose(back[det.valid], usable[:, :2], rtol=1e-5, atol=1e-3 + 1e-7 * det.box_side)


# --------------------------------------------------------------------------------------------- cameras
def _points(seed: int, batch: int, count: int) -> torch.Tensor:
    return torch.randn(batch, count, 3, generator=torch.Generator().manual_seed(seed), dtype=D)


@PROPS
@given(st.integers(0, 10_000), st.integers(3, 20), st.floats(0.05, 20.0), st.tuples(coords, coords, coords))
def test_weak_perspective_fit_is_equivariant(seed, count, factor, offset):
    """Scaling the 2D targets scales s only; moving the 3D points moves (tx, ty) the other way; permuting the
    points or multiplying every weight by a constant changes nothing."""
    points = _points(seed, 3, count)
    g = torch.Generator().manual_seed(seed + 1)
    cam = torch.stack([0.5 + torch.rand(3, generator=g, dtype=D) * 2, torch.randn(3, generator=g, dtype=D),
                       torch.randn(3, generator=g, dtype=D)], -1)
    target = weak_perspective_project(points, cam) + 0.1 * torch.randn(3, count, 2, generator=g, dtype=D)
    weights = torch.rand(3, count, generator=g, dtype=D) + 0.05
    base = fit_weak_perspective(points, target, weights)
    assume(bool((base[:, 0] > 1e-3).all()))  # a well-posed fit (not clamped to min_scale)
    scaled = fit_weak_perspective(points, factor * target, weights)
    assert torch.allclose(scaled[:, 0], factor * base[:, 0], rtol=1e-8)
    assert torch.allclose(scaled[:, 1:], base[:, 1:], rtol=1e-8, atol=1e-8 * (1 + base[:, 1:].abs().max()))
    shift = torch.tensor(offset, dtype=D) / 1000
    moved = fit_weak_perspective(points + shift, target, weights)
    assert torch.allclose(moved[:, 0], base[:, 0], rtol=1e-8)
    assert torch.allclose(moved[:, 1:], base[:, 1:] - shift[:2], rtol=1e-7, atol=1e-7)
    perm = torch.randperm(count, generator=g)
    assert torch.allclose(fit_weak_perspective(points[:, perm], target[:, perm], weights[:, perm] * 7.5), base,
                          rtol=1e-8, atol=1e-9)


@PROPS
@given(st.integers(0, 10_000), st.floats(0.1, 8.0))
def test_full_image_camera_does_not_depend_on_the_photo_resolution(seed, k):
    """The same photo at k times the resolution (image, box centre and side all x k) with the default focal
    (a 55° diagonal field of view) gives the same 3D translation: meshes do not move when a photo is resized."""
    g = torch.Generator().manual_seed(seed)
    cam = torch.stack([0.3 + torch.rand(4, generator=g, dtype=D) * 2, torch.randn(4, generator=g, dtype=D) * 0.3,
                       torch.randn(4, generator=g, dtype=D) * 0.3], -1)
    wh = (torch.rand(4, 2, generator=g, dtype=D) * 1500 + 100).round()
    center = wh * torch.rand(4, 2, generator=g, dtype=D)
    side = 50 + torch.rand(4, generator=g, dtype=D) * 400
    t1, f1 = crop_to_full(cam, center, side, wh)
    tk, fk = crop_to_full(cam, center * k, side * k, wh * k)
    assert torch.allclose(tk, t1, rtol=1e-9, atol=1e-9) and torch.allclose(fk, f1 * k, rtol=1e-9)
    # And the centroid, projected with that camera, lands where the weak-perspective camera puts it.
    centroid_px = perspective_project(t1[:, None], f1, wh / 2)[:, 0]
    weak = weak_perspective_project(torch.zeros(4, 1, 3, dtype=D), cam)
    assert torch.allclose(centroid_px, crop_to_pixels(weak, center, side)[:, 0], rtol=1e-9, atol=1e-6)


@PROPS
@given(hnp.arrays(np.float64, (2, 9, 3), elements=st.floats(-1e6, 1e6)), st.floats(1.0, 1e5))
def test_perspective_projection_is_finite_for_any_finite_points(points, focal):
    """Points at, behind or extremely close to the camera give large finite pixels, never NaN or inf."""
    px = perspective_project(torch.tensor(points), focal, torch.tensor([[320.0, 240.0], [0.0, 0.0]], dtype=D))
    assert torch.isfinite(px).all()


# --------------------------------------------------------------------------------- keypoints JSON parsing
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                         st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=4)), max_leaves=12)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**400, 10**400), st.booleans(),
                    st.none())
keypoint_lists = st.one_of(st.lists(numbers, min_size=51, max_size=51),
                           st.lists(st.sampled_from([0, 1, 2]), min_size=51, max_size=51),
                           st.lists(numbers, max_size=60), json_values)
records = st.fixed_dictionaries({}, optional={
    "file_name": st.one_of(st.sampled_from(["a.png", "dir/b.jpg", "000000000042.jpg"]), json_values),
    "image_id": st.one_of(st.integers(-5, 50), json_values),
    "keypoints": keypoint_lists,
    "bbox": st.one_of(st.lists(numbers, min_size=4, max_size=5), json_values),
    "score": st.one_of(numbers, json_values),
})
keypoint_documents = st.one_of(
    json_values,
    st.lists(records, max_size=4),
    st.dictionaries(st.sampled_from(["a.png", "b.jpg", "c"]), st.one_of(records, st.lists(records, max_size=3)),
                    max_size=3),
    st.fixed_dictionaries({"annotations": st.one_of(st.lists(records, max_size=3), json_values)},
                          optional={"images": st.one_of(st.lists(st.fixed_dictionaries(
                              {}, optional={"id": st.one_of(st.integers(0, 50), json_values),
                                            "file_name": json_values})), json_values)}),
)


@PROPS
@given(keypoint_documents, st.tuples(st.integers(1, 3000), st.integers(1, 3000)), st.floats(0.01, 10.0))
def test_keypoints_json_raises_only_its_documented_error(tmp_path, document, size, scale):
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(document))  # NaN and Infinity are written as such: Python reads them back
    try:
        parsed = KeypointsFile(path)
    except KeypointsFileError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    for key, entries in parsed._by_key.items():
        for entry in entries:
            assert entry.keypoints.shape == (17, 3)
            assert ((entry.keypoints[:, 2] >= 0) & (entry.keypoints[:, 2] <= 1)).all()
        for det in parsed.detections(key, size, scale=scale, max_people=3):
            assert np.isfinite(det.box_center).all() and math.isfinite(det.box_side) and det.box_side > 0


# -------------------------------------------------------------------------------------------- image loader
MODES = {
    "L": (np.uint8, 1), "RGB": (np.uint8, 3), "RGBA": (np.uint8, 4), "LA": (np.uint8, 2), "1": (np.bool_, 1),
    "I;16": (np.uint16, 1), "I": (np.int32, 1), "F": (np.float32, 1), "P": (np.uint8, 1), "CMYK": (np.uint8, 4),
}
FORMATS = ["PNG", "TIFF", "BMP", "JPEG", "GIF", "WEBP", "PPM"]


@st.composite
def small_images(draw):
    mode = draw(st.sampled_from(sorted(MODES)))
    dtype, channels = MODES[mode]
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        elements = st.floats(width=32, allow_nan=True, allow_infinity=True)
    elif dtype == np.bool_:
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(max(info.min, -(2**31))), int(min(info.max, 2**31 - 1)))
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    return mode, array, draw(st.sampled_from(FORMATS)), draw(st.one_of(st.none(), st.floats(0.0, 0.99)))


@PROPS
@given(small_images())
def test_image_loader_returns_bgr_uint8_or_image_load_error(tmp_path, case):
    from PIL import Image

    mode, array, fmt, cut = case
    try:
        if mode in ("RGB", "RGBA", "LA", "CMYK"):
            img = Image.fromarray(array[..., :3] if mode == "CMYK" else array, mode if mode != "CMYK" else "RGB")
            img = img.convert("CMYK") if mode == "CMYK" else img
        elif mode == "P":
            img = Image.fromarray(array, "L").convert("P")
            img.putpalette(list(range(256)) * 3)
        else:
            img = Image.fromarray(array)
        buffer = io.BytesIO()
        img.save(buffer, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format; not the loader's business
    data = buffer.getvalue()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(data)
    try:
        image = read_image(path).image
    except ImageLoadError as exc:
        assert str(path) in str(exc)
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    if cut is None:
        assert image.shape[:2] == array.shape[:2]
