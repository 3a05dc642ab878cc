"""SMPL / SMPL-H adapter, checked on synthetic model files (no licensed SMPL file is used or needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from megaviewer.body import create_body_model
from megaviewer.body.keypoints import COCO17_NAMES
from megaviewer.body.smpl_body import (
    SmplBody,
    SmplModelFileError,
    build_coco_regressor,
    resolve_model_file,
    smpl_joint_names,
)
from megaviewer.body.smpl_synthetic import synthetic_smpl_data, write_synthetic_smpl
from megaviewer.geometry.rotations import rotvec_to_matrix

# smplx gathers landmark joints by 6890-topology vertex ids; the synthetic meshes are smaller.
SMALL_VERTEX_IDS = dict.fromkeys(smplx.vertex_ids.vertex_ids["smplh"], 0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("smpl")
    return {
        "smpl": write_synthetic_smpl(root / "SMPL_NEUTRAL.npz", "smpl"),
        "smpl_pkl": write_synthetic_smpl(root / "SMPL_NEUTRAL.pkl", "smpl"),
        "smplh": write_synthetic_smpl(root / "SMPLH_NEUTRAL.npz", "smplh"),
    }


def random_params(body: SmplBody, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Pose, shape and root axis-angle, all in float64."""
    gen = torch.Generator().manual_seed(seed)
    pose = 0.3 * torch.randn(batch, len(body.pose_joint_names), 3, generator=gen, dtype=torch.float64)
    shape = torch.randn(batch, len(body.shape_names), generator=gen, dtype=torch.float64)
    root = 1.5 * torch.randn(batch, 3, generator=gen, dtype=torch.float64)
    return pose, shape, root


@pytest.mark.parametrize("model_type, num_pose", [("smpl", 23), ("smplh", 21)])
def test_loads_through_factory_with_expected_shapes(files: dict[str, Path], model_type: str,
                                                     num_pose: int) -> None:
    body = create_body_model(model_type, model_path=files[model_type])
    assert body.name == model_type
    assert len(body.pose_joint_names) == num_pose
    assert body.pose_joint_names[:3] == ("left_hip", "right_hip", "spine1")
    assert body.shape_names == tuple(f"beta{i}" for i in range(10))
    params = body.zero_params(3)
    vertices = body.vertices(params)
    assert vertices.shape == (3, body.num_vertices, 3)
    assert body.faces.dtype == torch.long and body.faces.shape[1] == 3
    assert int(body.faces.max()) < body.num_vertices
    assert body.coco_regressor.shape == (17, body.num_vertices)
    assert body.joints(vertices).shape == (3, 17, 3)


def test_joint_names_follow_smplx() -> None:
    assert smpl_joint_names("smplh") == tuple(smplx.joint_names.SMPLH_JOINT_NAMES[:52])
    assert smpl_joint_names("smpl")[-2:] == ("left_hand", "right_hand")
    assert len(smpl_joint_names("smpl")) == 24


@pytest.mark.parametrize("model_type", ["smpl", "smplh"])
def test_canonical_is_centred_and_global_is_rotated_canonical(files: dict[str, Path],
                                                               model_type: str) -> None:
    body = SmplBody(files[model_type], model_type=model_type, dtype=torch.float64)
    pose, shape, root = random_params(body, batch=4)
    canonical = body.canonical_vertices(pose, shape)
    assert canonical.mean(dim=1).abs().max() < 1e-12
    rotation = rotvec_to_matrix(root)
    params = body.zero_params(4)
    params.pose, params.shape, params.global_orient = pose, shape, rotation
    torch.testing.assert_close(body.vertices(params), canonical @ rotation.transpose(1, 2))


@pytest.mark.parametrize("model_type", ["smpl", "smplh"])
def test_matches_smplx_loading_the_same_file_itself(files: dict[str, Path], model_type: str) -> None:
    """The adapter's global mesh equals smplx's own output with global_orient = R, centroid removed."""
    body = SmplBody(files[model_type], model_type=model_type, dtype=torch.float64)
    pose, shape, root = random_params(body, batch=3, seed=1)
    params = body.zero_params(3)
    params.pose, params.shape, params.global_orient = pose, shape, rotvec_to_matrix(root)
    ours = body.vertices(params)

    if model_type == "smpl":  # smplx reads SMPL only as a pickle
        reference_model = smplx.SMPL(str(files["smpl_pkl"]), vertex_ids=SMALL_VERTEX_IDS, dtype=torch.float64)
        extra = {}
    else:
        reference_model = smplx.SMPLH(str(files["smplh"]), ext="npz", use_pca=False, flat_hand_mean=True,
                                      vertex_ids=SMALL_VERTEX_IDS, dtype=torch.float64)
        extra = {"left_hand_pose": torch.zeros(3, 45, dtype=torch.float64),
                 "right_hand_pose": torch.zeros(3, 45, dtype=torch.float64)}
    with torch.no_grad():
        reference = reference_model(betas=shape, body_pose=pose.reshape(3, -1), global_orient=root,
                                    transl=torch.full((3, 3), 0.7, dtype=torch.float64), **extra).vertices
    reference = reference - reference.mean(dim=1, keepdim=True)
    # smplx's Rodrigues adds 1e-8 to the rotation vector before taking its norm, hence the tolerance.
    torch.testing.assert_close(ours, reference, atol=1e-7, rtol=0)


def test_npz_and_pickle_files_give_the_same_body(files: dict[str, Path]) -> None:
    from_npz = SmplBody(files["smpl"])
    from_pkl = SmplBody(files["smpl_pkl"])
    pose, shape, _ = random_params(from_npz, batch=2)
    torch.testing.assert_close(from_npz.posed_vertices(pose, shape), from_pkl.posed_vertices(pose, shape))
    torch.testing.assert_close(from_npz.coco_regressor, from_pkl.coco_regressor)


@pytest.mark.parametrize("model_type", ["smpl", "smplh"])
def test_pose_bends_only_the_named_limb(files: dict[str, Path], model_type: str) -> None:
    body = SmplBody(files[model_type], model_type=model_type)
    zero = body.zero_params(1)
    rest = body.posed_vertices(zero.pose, zero.shape)[0]
    pose = zero.pose.clone()
    pose[0, body.pose_joint_names.index("left_elbow")] = torch.tensor([0.0, 1.2, 0.0])
    bent = body.posed_vertices(pose, zero.shape)[0]
    moved = (bent - rest).norm(dim=-1) > 1e-6
    assert moved.any()
    assert rest[moved, 0].min() > 0.3  # only the left forearm and hand (+x is the body's left) move


@pytest.mark.parametrize("model_type", ["smpl", "smplh"])
def test_betas_change_the_mesh(files: dict[str, Path], model_type: str) -> None:
    body = SmplBody(files[model_type], model_type=model_type)
    zero = body.zero_params(1)
    for i in range(len(body.shape_names)):
        shape = zero.shape.clone()
        shape[0, i] = 2.0
        change = body.canonical_vertices(zero.pose, shape) - body.canonical_vertices(zero.pose, zero.shape)
        assert change.abs().max() > 1e-3, f"beta{i} has no effect"


def test_smplh_hands_are_flat_whatever_the_file_mean(tmp_path: Path, files: dict[str, Path]) -> None:
    """flat_hand_mean: the file's mean hand pose must not reach the mesh; files without hands load too."""
    data = synthetic_smpl_data("smplh")
    data["hands_meanl"] = data["hands_meanl"] + 0.5
    np.savez(tmp_path / "other_mean.npz", **data)
    no_hands = {k: v for k, v in data.items() if not k.startswith("hands_")}
    np.savez(tmp_path / "no_hands.npz", **no_hands)
    reference = SmplBody(files["smplh"], model_type="smplh")
    pose, shape, _ = random_params(reference, batch=2)
    expected = reference.posed_vertices(pose, shape)
    for name in ("other_mean.npz", "no_hands.npz"):
        body = SmplBody(tmp_path / name, model_type="smplh")
        torch.testing.assert_close(body.posed_vertices(pose, shape), expected)


def test_coco_keypoints_are_on_the_right_sides(files: dict[str, Path]) -> None:
    body = SmplBody(files["smplh"], model_type="smplh")
    zero = body.zero_params(1)
    joints = body.joints(body.canonical_vertices(zero.pose, zero.shape))[0]
    assert torch.allclose(body.coco_regressor.sum(dim=1), torch.ones(17))
    for i, name in enumerate(COCO17_NAMES):
        if name.startswith("left_"):
            right = COCO17_NAMES.index(name.replace("left_", "right_"))
            if name == "left_eye":  # the coarse synthetic head may put both eyes on its front vertex
                assert joints[i, 0] >= joints[right, 0] - 1e-6
            else:
                assert joints[i, 0] > joints[right, 0] + 0.01, name
    assert joints[0, 1] > joints[COCO17_NAMES.index("left_shoulder"), 1]  # the nose is above the shoulders


def test_standard_topology_uses_smplx_face_landmarks() -> None:
    """On 6890 vertices the face points are smplx's landmark vertices, in COCO order and sides."""
    names = smpl_joint_names("smpl")
    v_template = torch.zeros(6890, 3, dtype=torch.float64)
    v_template[2800, 0], v_template[6260, 0] = 0.03, -0.03  # left eye on +x, as in SMPL
    j_regressor = torch.rand(24, 6890, dtype=torch.float64)
    regressor = build_coco_regressor(j_regressor, v_template, torch.zeros(6890, 24), names)
    assert regressor[:5].argmax(dim=1).tolist() == [332, 2800, 6260, 583, 4071]
    torch.testing.assert_close(regressor[5], j_regressor[names.index("left_shoulder")])
    torch.testing.assert_close(regressor[16], j_regressor[names.index("right_ankle")])


def test_licensed_arrays_stay_out_of_the_state_dict(files: dict[str, Path]) -> None:
    body = SmplBody(files["smplh"], model_type="smplh")
    assert body.state_dict() == {}
    assert list(body.parameters()) == []


def test_folder_layouts_are_resolved(tmp_path: Path) -> None:
    flat = write_synthetic_smpl(tmp_path / "flat" / "SMPLH_FEMALE.npz", "smplh")
    amass = write_synthetic_smpl(tmp_path / "amass" / "m" / "model.npz", "smplh")
    smplx_style = write_synthetic_smpl(tmp_path / "models" / "smpl" / "SMPL_NEUTRAL.pkl", "smpl")
    assert resolve_model_file(tmp_path / "flat", "smplh", "female") == flat
    assert resolve_model_file(tmp_path / "amass", "smplh", "male") == amass
    assert resolve_model_file(tmp_path / "models", "smpl") == smplx_style
    assert SmplBody(tmp_path / "amass", model_type="smplh", gender="male").model_file == amass


def test_missing_file_names_the_path_and_the_licence(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "SMPL_NEUTRAL.pkl"
    with pytest.raises(FileNotFoundError) as error:
        create_body_model("smpl", model_path=missing)
    assert str(missing) in str(error.value)
    assert "smpl.is.tue.mpg.de" in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        SmplBody(tmp_path, model_type="smplh")
    assert str(tmp_path) in str(error.value) and "SMPLH_NEUTRAL.npz" in str(error.value)


def test_malformed_files_give_clear_errors(tmp_path: Path, files: dict[str, Path]) -> None:
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    chumpy = tmp_path / "chumpy.pkl"
    chumpy.write_bytes(b"\x80\x02cchumpy.ch\nCh\nq\x00.")  # a pickle referring to chumpy.ch.Ch
    not_a_dict = tmp_path / "list.pkl"
    not_a_dict.write_bytes(pickle.dumps([1, 2, 3]))
    data = synthetic_smpl_data("smpl")
    np.savez(tmp_path / "no_weights.npz", **{k: v for k, v in data.items() if k != "weights"})
    np.savez(tmp_path / "bad_posedirs.npz", **{**data, "posedirs": data["posedirs"][..., :10]})
    np.savez(tmp_path / "objects.npz", **{**data, "f": np.array([None], dtype=object)})
    (tmp_path / "garbage.npz").write_bytes(b"PK but not really")
    cases = {
        garbage: "not a readable",
        chumpy: "chumpy",
        not_a_dict: "dictionary",
        tmp_path / "no_weights.npz": "weights",
        tmp_path / "bad_posedirs.npz": "posedirs",
        tmp_path / "objects.npz": "pickled objects",
        tmp_path / "garbage.npz": "not a readable",
    }
    for path, reason in cases.items():
        with pytest.raises(SmplModelFileError) as error:
            SmplBody(path)
        assert str(path) in str(error.value) and reason in str(error.value), str(error.value)
    with pytest.raises(SmplModelFileError, match="model_type='smplh'"):
        SmplBody(files["smplh"], model_type="smpl")


def test_bad_inputs_are_rejected(files: dict[str, Path]) -> None:
    body = SmplBody(files["smpl"])
    with pytest.raises(ValueError, match=r"\(B, 23, 3\)"):
        body.posed_vertices(torch.zeros(1, 21, 3), torch.zeros(1, 10))
    with pytest.raises(ValueError, match="gender"):
        SmplBody(files["smpl"], gender="other")
    with pytest.warns(UserWarning, match="only 10 shape components"):
        assert len(SmplBody(files["smpl"], num_betas=16).shape_names) == 10
