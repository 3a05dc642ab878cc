"""The dataset folder format, its reader (crop + augmentation) and the SPIN converter, on data made here."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from megaviewer.body.keypoints import COCO17_FLIP_PERMUTATION, COCO17_NAMES, COCO17_SKELETON
from megaviewer.model.conditioning import IMAGENET_MEAN, IMAGENET_STD
from training.data.convert_spin import SPIN24_NAMES, convert_spin, main, spin_to_coco17
from training.data.dataset import Augmentation, AugmentConfig, DatasetReader, ReaderConfig
from training.data.dataset_format import read_table, write_dataset

W, H, FOCAL, DEPTH = 160, 219, 300.0, 3.0
CENTER = np.array([W / 2, H / 2])  # the stick figure's keypoint box is centred on the principal point
# An asymmetric stick figure facing the camera (its left on the image's right), left arm raised.
KEYPOINTS_PX = np.array([
    [80, 40], [86, 34], [74, 34], [92, 38], [68, 38], [104, 70], [56, 70], [114, 100], [46, 100],
    [124, 60], [36, 130], [94, 130], [66, 130], [96, 160], [64, 160], [98, 185], [62, 185]], dtype=np.float64)
SIDE = 1.2 * max(124 - 36, 185 - 34)
K = {name: i for i, name in enumerate(COCO17_NAMES)}


def stick_image(background: int = 0) -> np.ndarray:
    image = np.full((H, W, 3), background, dtype=np.uint8)
    for a, b in COCO17_SKELETON:
        cv2.line(image, tuple(KEYPOINTS_PX[a].astype(int)), tuple(KEYPOINTS_PX[b].astype(int)), (255, 255, 255), 2)
    cv2.circle(image, tuple(KEYPOINTS_PX[K["left_wrist"]].astype(int)), 6, (0, 0, 255), -1)  # BGR red marker
    return image


def lifted_vertices(depth: float = DEPTH) -> np.ndarray:
    """Camera-frame 3D points whose perspective projections are exactly the keypoints (one per keypoint)."""
    z = depth + 0.01 * np.arange(17)
    return np.column_stack([(KEYPOINTS_PX - CENTER) * (z / FOCAL)[:, None], z])


def project_to_crop(vertices: np.ndarray, side: float) -> np.ndarray:
    px = FOCAL * vertices[:, :2] / vertices[:, 2:] + CENTER
    return (px - CENTER) * 2.0 / side


def keypoints_2d() -> list:
    return np.column_stack([KEYPOINTS_PX, np.ones(17)]).tolist()


def red_centroid(image: torch.Tensor) -> np.ndarray:
    """Crop pixel (x, y) of the red marker in a normalised (3, S, S) crop."""
    rgb = image.numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    red = np.clip(rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]), 0.0, None)
    red[red < 0.01] = 0.0  # float round-off of black pixels
    ys, xs = np.mgrid[: red.shape[0], : red.shape[1]]
    assert red.sum() > 0.5, "red marker not in the crop"
    return np.array([(red * xs).sum(), (red * ys).sum()]) / red.sum()


@pytest.fixture()
def stick_dataset(tmp_path):
    """Twelve stick-figure images; people carry vertices (even) or SMPL-like parameters (odd)."""
    rng = np.random.default_rng(0)
    images, records = {}, []
    for i in range(12):
        rel = f"images/person_{i:02d}.png"
        images[rel] = stick_image(background=10 * i)
        record = {"image": rel, "keypoints_2d": keypoints_2d(), "focal": FOCAL, "split": "train" if i < 9 else "val"}
        if i % 2 == 0:
            record["vertices"] = (lifted_vertices() if i == 0 else rng.normal(size=(17, 3))).tolist()
        else:
            record.update(body="smpl", pose=rng.normal(size=69).tolist(), shape=rng.normal(size=10).tolist(),
                          global_orient=[0.0, 0.0, 0.0], transl=[0.1, 0.2, 3.0])
        records.append(record)
    write_dataset(tmp_path, records, images)
    return tmp_path, records


def test_round_trip_jsonl_and_npz(stick_dataset, tmp_path_factory):
    folder, records = stick_dataset
    for table_folder in (folder, tmp_path_factory.mktemp("npz")):
        if table_folder != folder:
            images = {r["image"]: cv2.imread(str(folder / r["image"])) for r in records}
            write_dataset(table_folder, records, images, table="npz")
            assert (table_folder / "people.npz").is_file() and not (table_folder / "people.jsonl").exists()
        read = read_table(table_folder)
        assert len(read) == 12
        for rec, raw in zip(read, records, strict=True):
            assert rec.image == raw["image"] and rec.split == raw["split"] and rec.focal == FOCAL
            np.testing.assert_allclose(rec.keypoints_2d, raw["keypoints_2d"])
            if "vertices" in raw:
                np.testing.assert_allclose(rec.vertices, raw["vertices"], rtol=1e-6, atol=1e-6)
                assert rec.params is None
            else:
                assert rec.vertices is None and rec.params.body == "smpl"
                np.testing.assert_allclose(rec.params.pose, raw["pose"])
                np.testing.assert_allclose(rec.params.transl, raw["transl"])
    reader = DatasetReader(folder, ReaderConfig(split="val"))
    assert len(reader) == 3
    even = DatasetReader(folder)
    batch = torch.utils.data.default_collate([even[0], even[2]])
    assert batch["image"].shape == (2, 3, 224, 224) and batch["vertices"].shape == (2, 17, 3)


@pytest.mark.parametrize("crop_size", [224, 48])  # 48: the box is shrunk > 2x, through the anti-aliasing path
def test_crop_puts_keypoints_where_inference_does(stick_dataset, crop_size):
    folder, _ = stick_dataset
    sample = DatasetReader(folder, ReaderConfig(crop_size=crop_size))[0]
    np.testing.assert_allclose(sample["box_center"], CENTER, atol=1e-4)
    assert float(sample["box_side"]) == pytest.approx(SIDE, rel=1e-5)
    expected = (KEYPOINTS_PX - CENTER) * 2.0 / SIDE
    np.testing.assert_allclose(sample["keypoints"][:, :2], expected, atol=1e-5)
    np.testing.assert_allclose(sample["keypoints"][:, 2], 1.0)
    assert sample["image"].shape == (3, crop_size, crop_size) and sample["image"].dtype == torch.float32
    marker = (expected[K["left_wrist"]] + 1.0) * crop_size / 2.0
    np.testing.assert_allclose(red_centroid(sample["image"]), marker, atol=0.6)


def test_crop_is_subpixel_exact_when_shrinking(tmp_path):
    """A smooth blob lands where the crop maths says to within 0.05 px, also through the shrink-first path."""
    ys, xs = np.mgrid[:400, :400]
    blob = np.zeros((400, 400, 3), dtype=np.uint8)
    blob[..., 2] = np.round(255 * np.exp(-((xs - 210.0) ** 2 + (ys - 190.0) ** 2) / (2 * 12.0**2)))
    keypoints = np.zeros((17, 3))
    keypoints[:2] = [[100, 100, 1], [300, 300, 1]]
    write_dataset(tmp_path, [{"image": "images/a.png", "keypoints_2d": keypoints.tolist(), "vertices": [[0, 0, 1]]}],
                  {"images/a.png": blob})
    for size in (224, 40):
        sample = DatasetReader(tmp_path, ReaderConfig(crop_size=size)).load(0)
        expected = ((np.array([210.0, 190.0]) - 200.0) * 2.0 / 240.0 + 1.0) * size / 2.0
        np.testing.assert_allclose(red_centroid(sample["image"]), expected, atol=0.05)


def test_flip_swaps_left_right_and_mirrors_x(stick_dataset):
    folder, _ = stick_dataset
    plain = DatasetReader(folder).load(0)
    assert DatasetReader(folder).load(0, Augmentation(flip=True))["flipped"] is False  # no vertex_flip: no flip
    reader = DatasetReader(folder, vertex_flip=COCO17_FLIP_PERMUTATION)
    flipped = reader.load(0, Augmentation(flip=True))
    assert flipped["flipped"] is True
    lw, rw = K["left_wrist"], K["right_wrist"]
    kp, kp0 = flipped["keypoints"], plain["keypoints"]
    np.testing.assert_allclose(kp[lw, :2], [-kp0[rw, 0], kp0[rw, 1]], atol=1e-6)
    np.testing.assert_allclose(kp[rw, :2], [-kp0[lw, 0], kp0[lw, 1]], atol=1e-6)
    v, v0 = flipped["vertices"], plain["vertices"]
    np.testing.assert_allclose(v[lw], [-v0[rw, 0], v0[rw, 1], v0[rw, 2]], atol=1e-6)
    # The mirrored body projects onto the mirrored keypoints, and the image's left-wrist marker now sits
    # where the right wrist is (the mirrored person's left is on the other side).
    np.testing.assert_allclose(project_to_crop(v.double().numpy(), SIDE), kp[:, :2], atol=1e-4)
    np.testing.assert_allclose(red_centroid(flipped["image"]), (kp[rw, :2].numpy() + 1.0) * 112.0, atol=0.6)


def test_rotation_turns_keypoints_and_body_together(stick_dataset):
    folder, _ = stick_dataset
    reader = DatasetReader(folder)
    plain, turned = reader.load(0), reader.load(0, Augmentation(rotation_deg=90.0))
    np.testing.assert_allclose(turned["rotation_2d"], [[0.0, -1.0], [1.0, 0.0]], atol=1e-6)
    nose, nose0 = turned["keypoints"][K["nose"], :2], plain["keypoints"][K["nose"], :2]
    assert nose0[1] < -0.5 and abs(nose0[0]) < 1e-6  # above the centre ...
    np.testing.assert_allclose(nose, [-nose0[1], 0.0], atol=1e-6)  # ... turns to its right (clockwise on screen)
    v, v0 = turned["vertices"], plain["vertices"]
    np.testing.assert_allclose(v[K["nose"]], [-v0[K["nose"], 1], v0[K["nose"], 0], v0[K["nose"], 2]], atol=1e-6)
    np.testing.assert_allclose(project_to_crop(v.double().numpy(), SIDE), turned["keypoints"][:, :2], atol=1e-4)
    lw = turned["keypoints"][K["left_wrist"], :2].numpy()
    np.testing.assert_allclose(red_centroid(turned["image"]), (lw + 1.0) * 112.0, atol=0.6)


def test_parameters_are_turned_and_mirrored(stick_dataset):
    folder, records = stick_dataset
    posed = np.zeros((17, 3), dtype=np.float32)
    pose_flip = {"smpl": [j ^ 1 if j < 22 else j for j in range(23)]}  # swaps joints 0<->1, 2<->3, ...
    reader = DatasetReader(folder, pose_flip=pose_flip, pose_body=lambda params: posed,
                           vertex_flip=COCO17_FLIP_PERMUTATION)
    sample = reader.load(1, Augmentation(rotation_deg=90.0, flip=True))
    assert sample["flipped"] and sample["vertices"].shape == (17, 3)
    params = sample["params"]
    np.testing.assert_allclose(params["global_orient"], [0.0, 0.0, np.pi / 2], atol=1e-6)
    pose = np.asarray(records[1]["pose"]).reshape(23, 3)
    np.testing.assert_allclose(params["pose"].reshape(23, 3)[0], pose[1] * [1, -1, -1], atol=1e-6)
    np.testing.assert_allclose(params["transl"], [-0.2, -0.1, 3.0], atol=1e-6)  # mirrored x, then turned


def test_eval_is_deterministic_and_training_draws_per_epoch(stick_dataset):
    folder, _ = stick_dataset
    reader = DatasetReader(folder)
    a, b = reader[3], reader[3]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["keypoints"], b["keypoints"])
    assert a["rotation_deg"] == 0.0 and a["scale"] == 1.0 and not a["flipped"]
    train = DatasetReader(folder, ReaderConfig(augment=AugmentConfig(enabled=True, rotation_prob=1.0)))
    first = train[2]
    assert torch.equal(first["image"], train[2]["image"])  # reproducible within an epoch
    train.set_epoch(1)
    assert first["rotation_deg"] != train[2]["rotation_deg"]


def _write_raw(folder, lines, image=True):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if image:
        cv2.imwrite(str(folder / "images" / "a.png"), stick_image())
    (folder / "people.jsonl").write_text("".join(line + "\n" for line in lines))


GOOD = {"image": "images/a.png", "keypoints_2d": keypoints_2d(), "vertices": lifted_vertices().tolist()}


@pytest.mark.parametrize(("lines", "message"), [
    ([json.dumps(GOOD), "{not json"], "people.jsonl line 2: not valid JSON"),
    ([json.dumps({**GOOD, "image": "images/missing.png"})], "people.jsonl line 1: image images/missing.png not found"),
    ([json.dumps({**GOOD, "keypoints_2d": [[0, 0, 1]] * 16})], "line 1: keypoints_2d must be 17x3"),
    ([json.dumps({"image": "images/a.png", "keypoints_2d": keypoints_2d()})], "line 1: a person needs 'vertices'"),
    ([json.dumps({**GOOD, "body": "smpl"})], "line 1: body-model parameters lack pose, shape, global_orient"),
])
def test_bad_tables_give_one_line_errors(tmp_path, lines, message):
    _write_raw(tmp_path, lines)
    with pytest.raises(ValueError) as err:
        DatasetReader(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_table_and_unreadable_image(tmp_path):
    with pytest.raises(ValueError, match=r"dataset folder .*nope does not exist$"):
        DatasetReader(tmp_path / "nope")
    with pytest.raises(ValueError, match="has no person table"):
        DatasetReader(tmp_path)
    _write_raw(tmp_path, [json.dumps(GOOD)], image=False)
    (tmp_path / "images" / "a.png").write_bytes(b"not a png")
    reader = DatasetReader(tmp_path)
    with pytest.raises(ValueError, match=r"line 1: image images/a.png is missing or not an image"):
        reader[0]


def test_spin_converter(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "spin_images"
    (root / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        cv2.imwrite(str(root / name), stick_image())
    part = np.zeros((3, 24, 3))
    spin_index = {name: i for i, name in enumerate(SPIN24_NAMES)}
    for coco, name in enumerate(COCO17_NAMES):
        part[:, spin_index[name]] = [*KEYPOINTS_PX[coco], 1.0]
    pose, shape = rng.normal(size=(3, 72)), rng.normal(size=(3, 10))
    npz = tmp_path / "spin.npz"
    np.savez(npz, imgname=np.array(["a.png", "a.png", "sub/b.png"]), center=np.tile(CENTER, (3, 1)),
             scale=np.full(3, SIDE / 200.0), part=part, pose=pose, shape=shape, has_smpl=np.array([1, 0, 1]))
    out = tmp_path / "converted"
    assert main([str(npz), str(root), str(out), "--split", "val"]) == 0
    records = read_table(out)
    assert [r.image for r in records] == ["images/a.png", "images/sub/b.png"]  # the row without SMPL is skipped
    rec = records[1]
    np.testing.assert_allclose(rec.keypoints_2d[K["left_ankle"]], part[2, spin_index["left_ankle"]])
    np.testing.assert_allclose(rec.keypoints_2d[:, :2], KEYPOINTS_PX)
    np.testing.assert_allclose(rec.params.global_orient, pose[2, :3])
    np.testing.assert_allclose(rec.params.pose, pose[2, 3:])
    np.testing.assert_allclose(rec.box[2:], [SIDE / 1.2] * 2)
    assert rec.split == "val" and rec.params.body == "smpl"
    sample = DatasetReader(out)[1]
    np.testing.assert_allclose(sample["box_center"], CENTER, atol=1e-4)
    part_swapped = part[0].copy()
    part_swapped[spin_index["left_ankle"], 0] = 999.0
    assert spin_to_coco17(part_swapped)[K["left_ankle"], 0] == 999.0
    assert spin_to_coco17(part_swapped)[K["right_ankle"], 0] != 999.0
    with pytest.raises(ValueError, match="lacks part"):
        np.savez(tmp_path / "bad.npz", imgname=np.array(["a.png"]), center=np.zeros((1, 2)), scale=np.ones(1),
                 pose=np.zeros((1, 72)), shape=np.zeros((1, 10)))
        convert_spin(tmp_path / "bad.npz", root, tmp_path / "bad")
