"""The uncertainty-map analysis (training.uncertainty_maps) on small synthetic bodies with a known answer."""

from __future__ import annotations

import torch

from megaviewer.camera import weak_perspective_project
from training.uncertainty_maps import (
    cross_fitted_joint_error,
    if_truth_were_a_hypothesis,
    joint_error_features,
    joint_modulated,
    joint_weights,
    map_report,
    observation_residuals,
    spearman_rows,
    spread_mm,
)


def test_spearman_rows_ranks_only():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    b = torch.tensor([[10.0, 20.0, 300.0, 4000.0], [1.0, 2.0, 3.0, 4.0]])
    assert torch.allclose(spearman_rows(a, b), torch.tensor([1.0, -1.0]))


def test_spread_is_the_rms_distance_to_the_mean():
    samples = torch.zeros(1, 2, 3, 3)
    samples[0, 0, :, 0] = 0.01
    samples[0, 1, :, 0] = -0.01  # every point 1 cm either side of its mean
    samples[0, :, 2] = 0.0  # except the last, which does not move
    assert torch.allclose(spread_mm(samples), torch.tensor([[10.0, 10.0, 0.0]]))


def test_joint_weights_sum_to_one_and_pick_the_nearest_joint():
    joints = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    vertices = torch.tensor([[[0.01, 0.0, 0.0], [0.98, 0.0, 0.0]]])
    w = joint_weights(vertices, joints, sigma=0.05)
    assert torch.allclose(w.sum(-1), torch.ones(1, 2))
    assert w[0, 0, 0] > 0.99 and w[0, 1, 1] > 0.99


def test_joint_modulation_scales_around_the_joint_that_is_worse_than_usual():
    shared = torch.ones(2)
    weights = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 2)  # vertex i belongs to joint i
    values = torch.tensor([[1.0, 3.0], [3.0, 1.0]])  # person 0 is worse at joint 1, person 1 at joint 0
    maps = joint_modulated(shared, values, weights, power=1.0)
    assert maps[0, 1] > maps[0, 0] and maps[1, 0] > maps[1, 1]


def _bodies(people: int = 24, vertices: int = 60, q: int = 8, seed: int = 0):
    """Bodies whose error is largest far from the centre for everyone (the shared part) and, for each person,
    around one joint of four (the personal part); the hypotheses spread where the person errs."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(people, vertices, 3, generator=g) * 0.3
    regressor = torch.zeros(4, vertices)
    for j in range(4):
        regressor[j, j * (vertices // 4):(j + 1) * (vertices // 4)] = 1.0 / (vertices // 4)
    group = torch.arange(vertices) // (vertices // 4)
    bad = torch.randint(0, 4, (people,), generator=g)
    scale = 0.01 * (1 + truth.norm(dim=-1)) * (1 + 4 * (group[None] == bad[:, None]).float())  # (B, V)
    direction = torch.nn.functional.normalize(torch.randn(people, vertices, 3, generator=g), dim=-1)
    deterministic = truth + direction * scale[..., None]
    noise = torch.randn(people, q, vertices, 3, generator=g) * scale[:, None, :, None]
    return deterministic, deterministic[:, None] + noise, truth, regressor


def test_report_sees_personal_spread_and_the_oracle_bounds_it():
    deterministic, samples, truth, regressor = _bodies()
    report = map_report(deterministic, samples, truth, regressor, q_values=(4, 8), sigma=0.5)
    assert set(report["per_person"]) == {"4", "8"}
    # The samples spread where this person errs, so the per-person map beats the shared one ...
    assert report["per_person"]["8"] > report["average_map"] + 0.05
    assert report["joint_level"]["spread_vs_true_error"] > report["joint_level"]["average_spread_vs_true_error"]
    # ... and knowing the true joint errors scales the shared map better than not knowing them.
    assert report["oracle_average_map_scaled_by_true_joint_error"] > report["average_map"]


def test_report_without_personal_information_gives_the_per_person_map_nothing():
    deterministic, samples, truth, regressor = _bodies()
    shuffled = samples[torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(1))]
    report = map_report(deterministic, shuffled, truth, regressor, q_values=(8,), sigma=0.5)
    # Hypotheses of somebody else: their spread knows only the shared shape, no better than the average map.
    assert report["per_person"]["8"] < report["average_map"] + 0.01


def _keypoints_of(joints: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """Crop keypoints [x, y, 1] of (B, J, 3) joints under a weak-perspective camera of ``scale``."""
    cam = torch.tensor([[scale, 0.0, 0.0]]).expand(joints.shape[0], 3)
    projected = weak_perspective_project(joints, cam)
    return torch.cat([projected, torch.ones_like(projected[..., :1])], dim=-1)


def test_observation_residuals_find_the_joint_that_misses_its_observation():
    g = torch.Generator().manual_seed(3)
    joints = torch.randn(1, 17, 3, generator=g) * 0.3
    keypoints = _keypoints_of(joints)
    keypoints[0, 5, 0] += 0.04  # 2 cm at the body under a scale of 2
    keypoints[0, 7, 2] = 0.0  # not detected
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # any frame: aligned by rotation
    landmarks = torch.cat([joints @ turn.T, torch.ones(1, 17, 1)], dim=-1)
    landmarks[0, 3, :3] += torch.tensor([0.0, 0.0, 0.05])
    landmarks[0, 9] = 0.0  # absent, all zeros: it must not pull the alignment
    off_2d, off_3d = observation_residuals(joints, keypoints, landmarks)
    assert torch.isnan(off_2d[0, 7]) and torch.isnan(off_3d[0, 9])
    assert int(off_2d[0].nan_to_num(-1).argmax()) == 5 and 12.0 < off_2d[0, 5] < 22.0
    assert int(off_3d[0].nan_to_num(-1).argmax()) == 3 and 30.0 < off_3d[0, 3] < 55.0
    others = [j for j in range(17) if j not in (3, 5, 7, 9)]
    assert off_2d[0, others].max() < 4.0 and off_3d[0, others].max() < 10.0


def test_cross_fitted_error_model_learns_what_predicts_the_error_without_seeing_it():
    g = torch.Generator().manual_seed(4)
    spread = torch.rand(200, 17, generator=g) * 50 + 1
    error = spread * (1 + 0.1 * torch.rand(200, 17, generator=g))  # the spread knows each joint's error
    nothing = torch.full((200, 17), float("nan"))
    predicted = cross_fitted_joint_error(joint_error_features(spread, nothing, nothing), error)
    assert spearman_rows(predicted, error).mean() > 0.9
    unrelated = torch.rand(200, 17, generator=g) * 50 + 1
    blind = cross_fitted_joint_error(joint_error_features(unrelated, nothing, nothing), error)
    assert spearman_rows(blind, error).mean().abs() < 0.15


def test_report_scores_the_fitted_map_when_given_the_observations():
    deterministic, samples, truth, regressor = _bodies(people=48)
    keypoints = _keypoints_of(regressor @ deterministic)
    report = map_report(deterministic, samples, truth, regressor, q_values=(8,), sigma=0.5, keypoints=keypoints)
    # the spread feature knows where each person errs, so the fitted joint errors scale the shared map usefully
    assert report["average_map_scaled_by_fitted_joint_error"] > report["average_map"] + 0.02
    assert report["joint_level"]["fitted_vs_true_error"] > report["joint_level"]["average_spread_vs_true_error"]
    shuffled = samples[torch.randperm(samples.shape[0], generator=torch.Generator().manual_seed(1))]
    blind = map_report(deterministic, shuffled, truth, regressor, q_values=(8,), sigma=0.5, keypoints=keypoints)
    assert blind["average_map_scaled_by_fitted_joint_error"] < blind["average_map"] + 0.01


def test_a_hypothesis_as_the_truth_shows_what_the_spread_could_know():
    deterministic, samples, truth, regressor = _bodies()
    personal = if_truth_were_a_hypothesis(deterministic, samples)
    assert personal["held_out"] == 5
    # the hypotheses spread where this person's do, so a truth drawn like them is found by the person's map
    assert personal["per_person"] > personal["average_map"] + 0.05
    # hypotheses spread alike for everyone: a calibrated truth gives the person's map nothing over the average
    same = deterministic[:, None] + torch.randn(samples.shape, generator=torch.Generator().manual_seed(2)) * 0.02
    alike = if_truth_were_a_hypothesis(deterministic, same)
    assert alike["per_person"] < alike["average_map"] + 0.01
