"""RecoveryResult statistics: the mean-of-Q mesh in the camera frame and the rotation mean behind it."""

from __future__ import annotations

import math

import torch

from megaviewer.geometry.rotations import mean_rotation, random_rotation, rotvec_to_matrix
from megaviewer.result import RecoveryResult


def _result(canonical: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> RecoveryResult:
    q = canonical.shape[0]
    camera = canonical @ rotation.transpose(-1, -2) + translation[:, None]
    return RecoveryResult(mode="stochastic", tokens=torch.zeros(q, 54, dtype=torch.long),
                          canonical_vertices=canonical, rotation=rotation, cam_weak=torch.zeros(q, 3),
                          camera_vertices=camera, translation=translation, focal=None,
                          joints=torch.zeros(q, 17, 3), faces=torch.zeros(1, 3, dtype=torch.long))


def _spread(points: torch.Tensor) -> float:
    return float((points - points.mean(0)).norm(dim=-1).mean())


def test_mean_rotation_is_a_rotation_and_the_centre_of_symmetric_spread() -> None:
    centre = random_rotation(1, torch.Generator().manual_seed(0))[0]
    offsets = rotvec_to_matrix(torch.tensor([[0.0, 0.4, 0.0], [0.0, -0.4, 0.0], [0.3, 0.0, 0.0], [-0.3, 0.0, 0.0]]))
    mean = mean_rotation(centre @ offsets)
    torch.testing.assert_close(mean, centre, atol=1e-5, rtol=0)
    torch.testing.assert_close(mean @ mean.T, torch.eye(3), atol=1e-5, rtol=0)
    assert math.isclose(float(torch.linalg.det(mean)), 1.0, abs_tol=1e-5)
    assert not torch.allclose((centre @ offsets).mean(0) @ (centre @ offsets).mean(0).T, torch.eye(3), atol=1e-2)


def test_mean_camera_equals_the_plain_mean_when_rotations_are_shared() -> None:
    g = torch.Generator().manual_seed(1)
    canonical = torch.randn(5, 40, 3, generator=g) * 0.3
    rotation = random_rotation(1, g).expand(5, 3, 3)
    result = _result(canonical, rotation, torch.randn(5, 3, generator=g) + torch.tensor([0.0, 0.0, 4.0]))
    torch.testing.assert_close(result.mean_camera, result.camera_vertices.mean(0), atol=1e-5, rtol=0)


def test_mean_camera_keeps_the_body_size_when_hypotheses_are_turned_differently() -> None:
    """Averaging meshes turned +-60 degrees apart shrinks the body; the mean-of-Q mesh must not."""
    g = torch.Generator().manual_seed(2)
    body = torch.randn(1, 200, 3, generator=g) * torch.tensor([0.25, 0.9, 0.15])
    canonical = body.expand(2, -1, -1)
    rotation = rotvec_to_matrix(torch.tensor([[0.0, 1.05, 0.0], [0.0, -1.05, 0.0]]))
    result = _result(canonical, rotation, torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.2]]))
    size = _spread(body[0])
    assert abs(_spread(result.mean_camera) - size) < 1e-4 * size
    assert _spread(result.camera_vertices.mean(0)) < 0.95 * size  # what the old definition drew
    torch.testing.assert_close(result.mean_camera.mean(0), torch.tensor([0.0, 0.0, 3.1]) + body[0].mean(0),
                               atol=1e-5, rtol=0)
