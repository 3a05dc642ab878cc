"""Anny adapter, canonicalisation and the shipped body assets."""

from __future__ import annotations

import torch

from megaviewer.body.anny_body import ANNY_TO_SHARED
from megaviewer.body.base import BodyParams, apply_global_orient, canonicalize
from megaviewer.geometry.rotations import random_rotation, rotvec_to_matrix


def test_canonical_mesh_is_centred_upright_and_facing_plus_z(anny_body):
    params = anny_body.zero_params(2)
    canonical = anny_body.canonical_vertices(params.pose, params.shape)
    assert canonical.shape == (2, anny_body.num_vertices, 3)
    assert torch.allclose(canonical.mean(1), torch.zeros(2, 3), atol=1e-5)
    joints = anny_body.joints(canonical)[0]
    nose, l_hip, r_hip, l_ankle = joints[0], joints[11], joints[12], joints[15]
    assert nose[1] > l_hip[1] > l_ankle[1]  # y up
    assert nose[2] > 0.5 * (l_hip[2] + r_hip[2])  # nose in front: facing +z
    assert l_hip[0] > r_hip[0]  # body's left on +x (as SMPL)


def test_global_equals_rotation_times_canonical(anny_body):
    gen = torch.Generator().manual_seed(0)
    pose = torch.randn(3, len(anny_body.pose_joint_names), 3, generator=gen) * 0.1
    rot = random_rotation(3, gen)
    params = BodyParams(pose, anny_body.default_shape(3), rot)
    glob = anny_body.vertices(params)
    canonical = anny_body.canonical_vertices(pose, params.shape)
    assert torch.allclose(glob, apply_global_orient(canonical, rot), atol=1e-5)


def test_canonicalisation_matches_anny_own_root_rotation(anny_body):
    """Rotating Anny's root bone (in Anny's axes) and centring gives exactly R · canonical."""
    gen = torch.Generator().manual_seed(1)
    pose = torch.randn(2, len(anny_body.pose_joint_names), 3, generator=gen) * 0.1
    shape = anny_body.default_shape(2)
    root_anny = rotvec_to_matrix(torch.randn(2, 3, generator=gen))
    transforms = torch.eye(4).repeat(2, len(anny_body.bone_names), 1, 1)
    transforms[:, 0, :3, :3] = root_anny
    transforms[:, 1:, :3, :3] = rotvec_to_matrix(pose)
    phen = {n: shape[:, i] for i, n in enumerate(anny_body.shape_names)}
    out = anny_body.anny(pose_parameters=transforms, phenotype_kwargs=phen)["vertices"]
    rotated = canonicalize(out @ ANNY_TO_SHARED.T)
    rot_shared = ANNY_TO_SHARED @ root_anny @ ANNY_TO_SHARED.T
    expected = apply_global_orient(anny_body.canonical_vertices(pose, shape), rot_shared)
    assert torch.allclose(rotated, expected, atol=1e-5)


def test_pose_and_shape_change_the_mesh(anny_body):
    params = anny_body.zero_params(1)
    base = anny_body.canonical_vertices(params.pose, params.shape)
    bent = params.pose.clone()
    bent[0, anny_body.bone_index("lowerleg01.L")] = torch.tensor([1.2, 0.0, 0.0])
    assert (anny_body.canonical_vertices(bent, params.shape) - base).norm(dim=-1).max() > 0.2
    tall = params.shape.clone()
    tall[0, anny_body.shape_names.index("height")] = 1.0
    assert (anny_body.canonical_vertices(params.pose, tall) - base).norm(dim=-1).max() > 0.05


def test_body_assets_upsample_to_smooth_display_mesh(anny_body, body_assets):
    assert body_assets.num_vertices == anny_body.num_vertices
    assert torch.equal(body_assets.faces, anny_body.faces)
    assert body_assets.num_display_vertices >= 5000
    assert torch.allclose(body_assets.display_weights.sum(-1), torch.ones(body_assets.num_display_vertices),
                          atol=1e-4)
    assert torch.allclose(body_assets.coco_regressor.sum(-1), torch.ones(17), atol=1e-4)
    params = anny_body.zero_params(1)
    verts = anny_body.canonical_vertices(params.pose, params.shape)
    display = body_assets.upsample(verts)
    assert display.shape == (1, body_assets.num_display_vertices, 3)
    # The display mesh covers the same body: same extent to within a couple of centimetres.
    assert (display.amax(1) - verts.amax(1)).abs().max() < 0.03
    assert int(body_assets.display_faces.max()) == body_assets.num_display_vertices - 1
