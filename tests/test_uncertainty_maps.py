"""The uncertainty-map analysis (training.uncertainty_maps) on small synthetic bodies with a known answer."""

from __future__ import annotations

import torch

from training.uncertainty_maps import joint_modulated, joint_weights, map_report, spearman_rows, spread_mm


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
