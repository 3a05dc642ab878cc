"""Any MEGA checkpoint, headless: the image crop an image-conditioned model reads, and image-only, image+keypoints
and keypoints+landmarks checkpoints through the engine, the photo pipeline and ``megaviewer infer --model DIR``.

The checkpoints are tiny random-weight ``test_tiny`` models (image: a random resnet18 at 64x64) saved in a temporary
folder for the shipped tokenizer, so what is checked is the plumbing: which inputs reach the model, which errors
a user gets, and what the command prints. The app's File > Open model… is in ``test_gui_open_model.py``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from megaviewer.engine import CropBox, Engine
from megaviewer.model.conditioning import IMAGENET_MEAN, IMAGENET_STD
from megaviewer.paths import tokenizer_dir
from megaviewer.vision.crops import person_crop
from tests._engines import save_tiny_checkpoint
from tests._gui_helpers import StubDetector

KINDS = [("image",), ("image", "keypoints"), ("keypoints", "landmarks")]
PAD = (-np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32)  # a black pixel, normalised


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("checkpoints")
    return {kinds: save_tiny_checkpoint(root / "_".join(kinds), kinds, seed=i) for i, kinds in enumerate(KINDS)}


@pytest.fixture(scope="module")
def engines(checkpoints) -> dict:
    return {kinds: Engine.from_pretrained(folder, device="cpu") for kinds, folder in checkpoints.items()}


@pytest.fixture(scope="module")
def body() -> str:
    return json.loads((tokenizer_dir() / "config.json").read_text())["body"]


def gradient_photo(height: int = 120, width: int = 160) -> np.ndarray:
    """BGR uint8 where every pixel says where it is: blue = x, green = 2y, red = 77."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx % 256, (2 * yy) % 256, np.full_like(xx, 77)], -1).astype(np.uint8)


def normalised(bgr: np.ndarray) -> np.ndarray:
    """What the model expects for these photo pixels: (3, H, W) RGB with ImageNet statistics."""
    rgb = bgr[..., ::-1].astype(np.float32) / 255.0
    return ((rgb - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)).transpose(2, 0, 1)


def box(center: tuple[float, float], side: float, size: tuple[int, int] = (160, 120)) -> CropBox:
    return CropBox(center=center, side=side, image_size=size)


# --------------------------------------------------------------------------------------------------- crops
def test_crop_lands_the_box_pixels_in_the_tensor():
    photo = gradient_photo()
    crop = person_crop(photo, box((80.0, 60.0), 64.0), (64, 64))
    assert crop.dtype == torch.float32 and crop.shape == (3, 64, 64)
    # side = crop size: crop pixel q sees photo pixel q + centre - 32, channels in RGB order
    np.testing.assert_allclose(crop.numpy(), normalised(photo[28:92, 48:112]), atol=1e-5)
    assert crop[0, 0, 0] == pytest.approx((77 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], abs=1e-5)  # red
    assert crop[2, 0, 5] == pytest.approx((53 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2], abs=1e-5)  # blue = x


def test_crop_pads_with_black_where_the_box_leaves_the_photo():
    photo = gradient_photo()
    crop = person_crop(photo, box((20.0, 60.0), 64.0), (64, 64)).numpy()
    # photo x = q - 12: the first 12 columns lie left of the photo
    np.testing.assert_allclose(crop[:, :, :12], np.broadcast_to(PAD[:, None, None], (3, 64, 12)), atol=1e-5)
    np.testing.assert_allclose(crop[:, :, 12:], normalised(photo[28:92, 0:52]), atol=1e-5)
    nowhere = person_crop(photo, box((1000.0, 1000.0), 50.0), (64, 64)).numpy()
    np.testing.assert_allclose(nowhere, np.broadcast_to(PAD[:, None, None], (3, 64, 64)), atol=1e-5)


def test_crop_fills_a_non_square_input_with_the_square_box():
    photo = gradient_photo()
    crop = person_crop(photo, box((80.0, 60.0), 64.0), (32, 64)).numpy()  # (H, W): y squeezed by 2
    assert crop.shape == (3, 32, 64)
    np.testing.assert_allclose(crop, normalised(photo[28:92:2, 48:112]), atol=1e-5)


@pytest.mark.parametrize(("center", "side"), [((80.0, 60.0), 64.0), ((20.0, 60.0), 64.0), ((80.0, 60.0), 128.0),
                                              ((75.3, 41.7), 300.0), ((150.0, 110.0), 90.5)])
def test_crop_is_the_training_crop(center, side):
    """Inference crops exactly as ``training/data/dataset.py`` did for the model (no augmentation), zoom-out too."""
    from training.data.dataset import DatasetReader

    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    reader = SimpleNamespace(config=SimpleNamespace(crop_size=64))
    trained = DatasetReader._crop_image(reader, photo, np.asarray(center), side, np.eye(2), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(person_crop(photo, box(center, side), 64).numpy(), trained.numpy(), atol=1e-5)


def test_crop_rejects_what_it_cannot_cut():
    with pytest.raises(ValueError, match="BGR uint8"):
        person_crop(np.zeros((10, 10), np.uint8), box((5.0, 5.0), 4.0))
    with pytest.raises(ValueError, match="positive side"):
        person_crop(gradient_photo(), box((5.0, 5.0), 0.0))


# ------------------------------------------------------------------------------------------ engine/pipeline
def spy_calls(monkeypatch, engine: Engine) -> list[dict]:
    """The keyword arguments of every ``engine.recover`` call."""
    calls: list[dict] = []
    real = engine.recover

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "recover", spy)
    return calls


@pytest.mark.parametrize("kinds", KINDS, ids="+".join)
def test_pipeline_feeds_each_model_what_it_reads(engines, kinds, body, monkeypatch):
    from megaviewer.app.pipeline import recover_people

    engine = engines[kinds]
    if "image" not in kinds:  # keypoint models never cut a crop
        monkeypatch.setattr("megaviewer.vision.crops.person_crop", lambda *a, **k: pytest.fail("crop cut"))
    calls = spy_calls(monkeypatch, engine)
    photo = gradient_photo(240, 320)
    people = recover_people(engine, StubDetector(2), photo, mode="stochastic", num_samples=2)
    assert people.message == "recovered 2 people" and len(calls) == 2
    for person, kwargs in zip(people, calls, strict=True):
        result = person.result
        assert result.num_samples == 2 and result.focal is not None
        assert result.model == engine.label() == f"{'_'.join(kinds)} ({'+'.join(kinds)}, {body})"
        assert result.camera_fit is not None  # the detector's keypoints place even an image-only model
        if "image" in kinds:
            expected = person_crop(photo, kwargs["crop"], (64, 64))
            assert torch.equal(kwargs["image"], expected)
            assert not np.allclose(expected.numpy(), PAD[:, None, None])  # the person, not padding
        else:
            assert "image" not in kwargs
    if "image" in kinds:  # two people, two crops
        assert not torch.equal(calls[0]["image"], calls[1]["image"])


def test_image_models_need_the_photo_and_say_so(engines):
    from megaviewer.app.pipeline import Person, recover_person

    engine = engines[("image",)]
    person = Person(StubDetector(1).detect(gradient_photo(240, 320))[0])
    with pytest.raises(ValueError, match="needs the photo") as info:
        recover_person(engine, person)
    assert "\n" not in str(info.value) and "image" in str(info.value)
    with pytest.raises(ValueError, match="conditioned on an image crop"):
        engine.recover(person.crop()[0])
    with pytest.raises(ValueError, match=r"\(3, 64, 64\)"):
        engine.recover(image=torch.zeros(3, 32, 32))
    alone = engine.recover(image=torch.zeros(3, 64, 64))  # no keypoints: the network's own camera
    assert alone.camera_fit is None and alone.num_samples == 1
    with_reference = recover_person(engine, person, image=gradient_photo(240, 320), with_reference=True,
                                    settings=engine_settings("stochastic"))
    assert with_reference.reference is not None and with_reference.reference.mode == "deterministic"


def engine_settings(mode: str):
    from megaviewer.settings import DEFAULTS

    return DEFAULTS.with_(mode=mode, num_samples=2, steps=2)


def test_keypoint_model_results_do_not_change(monkeypatch):
    """The shipped kind of model gets exactly the call it got before: keypoints, box, landmarks, no image."""
    from megaviewer.app.pipeline import Person, recover_person
    from tests._engines import build_tiny_engine

    engine = build_tiny_engine(seed=4)
    calls = spy_calls(monkeypatch, engine)
    person = Person(StubDetector(1).detect(gradient_photo(240, 320))[0])
    with_photo = recover_person(engine, person, image=gradient_photo(240, 320)).result
    without = recover_person(engine, person).result
    assert all("image" not in kwargs for kwargs in calls)
    assert torch.equal(with_photo.tokens, without.tokens)
    assert torch.allclose(with_photo.camera_vertices, without.camera_vertices)


# ------------------------------------------------------------------------------------------------- the CLI
@pytest.fixture
def stub_detector(monkeypatch):
    """``megaviewer infer`` with one person at a fixed place instead of MediaPipe."""
    monkeypatch.setattr("megaviewer.app.pipeline.load_detector", lambda *a, **k: StubDetector(1))


@pytest.mark.parametrize("kinds", KINDS, ids="+".join)
def test_infer_runs_any_checkpoint_and_names_model_and_body(checkpoints, kinds, body, tmp_path, capsys,
                                                            stub_detector, monkeypatch):
    from megaviewer.cli import main

    seen: list[dict] = []
    real = Engine.recover
    monkeypatch.setattr(Engine, "recover", lambda self, *a, **k: seen.append(k) or real(self, *a, **k))
    photo = tmp_path / "people.png"
    cv2.imwrite(str(photo), gradient_photo(240, 320))
    folder = checkpoints[kinds]
    code = main(["infer", str(photo), "--out", str(tmp_path / "out"), "--model", str(folder), "--formats", "npz",
                 "--device", "cpu", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert (tmp_path / "out" / "people_person0.npz").is_file()
    assert f"{photo}: recovered 1 person" in out.out
    line = f"model: {folder.name} ({'+'.join(kinds)}, {body})"
    assert line in out.out.splitlines()
    assert out.out.index(line) < out.out.index("Summary: 1 inputs: 1 processed (1 person)")
    assert seen and all(("image" in k) == ("image" in kinds) for k in seen)
    if "image" in kinds:
        assert seen[0]["image"].shape == (3, 64, 64)


def test_infer_refuses_a_checkpoint_of_another_tokenizer(tmp_path, capsys, stub_detector):
    from megaviewer.cli import main

    other = save_tiny_checkpoint(tmp_path / "other_codes", ("keypoints",), vocab=37)
    photo = tmp_path / "people.png"
    cv2.imwrite(str(photo), gradient_photo(240, 320))
    code = main(["infer", str(photo), "--out", str(tmp_path / "out"), "--model", str(other), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot load" in err and "37 codes" in err
