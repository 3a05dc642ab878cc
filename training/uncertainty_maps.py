"""What a per-vertex uncertainty map says about one person's error, and the most a map could say at joint level.

Why: the evaluation reports the Spearman correlation between each person's SD map (the spread of the Q
hypotheses) and the deterministic mesh's per-vertex error, beside the same correlation for one map shared by
everyone (the average of the SD maps). Most of the ranking of a body's vertices by error is the same for
everybody: hands and feet, far from the centroid and at the ends of the kinematic chains, err most in any pose.
A per-person map beats the shared one only by knowing where *this* person's body is wrong. Two reference maps
make that measurable:

* the shared map scaled, around each joint, by how large the spread of the person's hypotheses' joints is
  against everybody's spread there (what the samples know about this person, at joint level);
* the same with each joint's **true** error instead (an oracle: what a perfect estimate of each joint's error
  reaches this way; the room a per-person map has);
* the same with each joint's error as a small model predicts it from everything the engine knows about the person
  at that joint: the hypotheses' spread, how far the deterministic body's joint lies from its keypoint and from
  its 3D landmark, whether the keypoint was detected (:func:`joint_error_features`), fitted by least squares on
  half of the people and scored on the other half (:func:`cross_fitted_joint_error`): how much of the oracle's
  room the observable signals reach together.

And one reference for the hypotheses themselves (:func:`if_truth_were_a_hypothesis`): the same comparison with one
of the person's hypotheses standing in for the truth and the others making the maps. A perfectly calibrated model's
truth is just one more draw from its hypotheses' distribution, so this is what the per-person SD map would gain over
the average map if the model's uncertainty were exactly right: a ceiling set by how differently the hypotheses
spread for different people, whatever the true error does.

Values at the 17 joints reach the vertices through soft weights from the vertex-joint distances
(:func:`joint_weights`).
"""

from __future__ import annotations

import torch

from megaviewer.geometry.metrics import MM


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation of (B, V) tensors -> (B,)."""
    ra = a.argsort(-1).argsort(-1).float()
    rb = b.argsort(-1).argsort(-1).float()
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-12)


def spread_mm(samples: torch.Tensor) -> torch.Tensor:
    """(B, Q, P, 3) hypotheses in metres -> (B, P) RMS distance to their mean, mm (the SD map of the evaluation,
    for vertices or joints)."""
    return (samples - samples.mean(1, keepdim=True)).pow(2).sum(-1).mean(1).sqrt() * MM


def joint_weights(vertices: torch.Tensor, joints: torch.Tensor, sigma: float = 0.05) -> torch.Tensor:
    """(B, V, 3) vertices and (B, J, 3) joints (metres) -> (B, V, J) weights summing to 1 over the joints: a
    Gaussian of the distance, ``sigma`` metres wide, so a vertex takes the values of the joints near it."""
    return torch.softmax(-torch.cdist(vertices, joints).pow(2) / (2 * sigma ** 2), dim=-1)


def joint_modulated(shared_map: torch.Tensor, joint_values: torch.Tensor, weights: torch.Tensor,
                    power: float = 0.5) -> torch.Tensor:
    """The shared (V,) map scaled per person: each joint's value against the mean over the people at that joint,
    spread to the vertices by ``weights`` (B, V, J), to the ``power``. (B, J) values -> (B, V) maps."""
    relative = joint_values / joint_values.mean(0, keepdim=True).clamp_min(1e-9)
    return shared_map * (weights @ relative[..., None])[..., 0].clamp_min(1e-9).pow(power)


def observation_residuals(joints: torch.Tensor, keypoints: torch.Tensor,
                          landmarks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """How far each joint of the deterministic bodies lies from what was observed of it, in mm, NaN where nothing
    was: (B, J, 3) oriented joints, (B, J, 3) crop keypoints [x, y, confidence], (B, J, 4) 3D landmarks
    [x, y, z, visibility] -> (B, J) the 2D distance to the keypoint under the weak-perspective camera
    that best fits the detected keypoints (in metres at the body: divided by the camera's scale), and (B, J) the
    3D distance to the landmark after the rotation that best aligns the joints with the landmarks, both centred
    on the landmarks that are there."""
    from megaviewer.camera import fit_weak_perspective, weak_perspective_project
    from megaviewer.geometry.metrics import procrustes_rotation

    detected = keypoints[..., 2] > 0
    cam = fit_weak_perspective(joints, keypoints[..., :2], keypoints[..., 2])
    off_2d = (weak_perspective_project(joints, cam) - keypoints[..., :2]).norm(dim=-1) / cam[:, :1] * MM
    off_2d = off_2d.masked_fill(~detected, float("nan"))
    off_3d = torch.full_like(off_2d, float("nan"))
    if landmarks is not None:
        seen = landmarks[..., 3] > 0
        weight = seen[..., None].to(joints.dtype)

        def around_seen(points: torch.Tensor) -> torch.Tensor:
            # centred on the landmarks that are there and zero elsewhere, so absent ones weigh nothing below
            middle = (points * weight).sum(-2, keepdim=True) / weight.sum(-2, keepdim=True).clamp_min(1)
            return (points - middle) * weight

        source, target = around_seen(joints), around_seen(landmarks[..., :3].to(joints.dtype))
        aligned = source @ procrustes_rotation(source, target).transpose(-1, -2)
        off_3d = (aligned - target).norm(dim=-1).mul(MM).masked_fill(~seen, float("nan"))
    return off_2d, off_3d


def joint_error_features(joint_spread: torch.Tensor, off_2d: torch.Tensor, off_3d: torch.Tensor) -> torch.Tensor:
    """(B, J) joint spread and observation residuals (mm, NaN: not observed) -> (B, J, J + 5) features of a
    log-error model: the joint's identity (one-hot: the shared part of the error), log(1 + spread), log(1 +
    residual) and a flag for a missing observation, for each residual."""
    people, count = joint_spread.shape
    columns = [torch.eye(count, dtype=joint_spread.dtype).expand(people, count, count),
               joint_spread.log1p()[..., None]]
    for residual in (off_2d, off_3d):
        missing = torch.isnan(residual)
        columns += [residual.nan_to_num(0.0).clamp_min(0).log1p()[..., None], missing.to(joint_spread.dtype)[..., None]]
    return torch.cat(columns, dim=-1)


def cross_fitted_joint_error(features: torch.Tensor, joint_error: torch.Tensor) -> torch.Tensor:
    """(B, J, F) features, (B, J) true joint errors (mm) -> (B, J) predicted errors: log(1 + error) fitted by least
    squares on the features of one half of the people and predicted for the other half, both ways, so no person's
    prediction has seen their own error."""
    half = features.shape[0] // 2
    parts = (slice(0, half), slice(half, None))
    predicted = torch.empty_like(joint_error)
    for fit_rows, test_rows in (parts, parts[::-1]):
        x = features[fit_rows].reshape(-1, features.shape[-1]).double()
        y = joint_error[fit_rows].reshape(-1, 1).double().log1p()
        coef = torch.linalg.lstsq(x, y, driver="gelsd").solution
        predicted[test_rows] = (features[test_rows].double() @ coef)[..., 0].expm1().clamp_min(0).to(predicted.dtype)
    return predicted


def if_truth_were_a_hypothesis(deterministic: torch.Tensor, samples: torch.Tensor, held_out: int = 5) -> dict:
    """Mean Spearman correlations of the per-person and the average SD map with the deterministic mesh's distance
    to one hypothesis, the maps made from the other hypotheses; each of the first ``held_out`` hypotheses in turn.
    (B, V, 3) and (B, Q, V, 3) centred meshes -> {"per_person", "average_map", "held_out"}."""
    from megaviewer.geometry.metrics import per_vertex_error

    per, shared = [], []
    rounds = min(held_out, samples.shape[1])
    for k in range(rounds):
        rest = torch.cat([samples[:, :k], samples[:, k + 1:]], dim=1)
        error = per_vertex_error(deterministic, samples[:, k])
        maps = spread_mm(rest)
        per.append(spearman_rows(maps, error).mean())
        shared.append(spearman_rows(maps.mean(0).expand_as(error), error).mean())
    return {"per_person": float(torch.stack(per).mean()), "average_map": float(torch.stack(shared).mean()),
            "held_out": rounds}


def map_report(deterministic: torch.Tensor, samples: torch.Tensor, truth: torch.Tensor, regressor: torch.Tensor,
               q_values: tuple[int, ...] = (5, 10, 25), sigma: float = 0.05, power: float = 0.5,
               keypoints: torch.Tensor | None = None, landmarks: torch.Tensor | None = None) -> dict:
    """Mean Spearman correlations with the deterministic mesh's per-vertex error.

    Args:
        deterministic: (B, V, 3) the deterministic meshes, oriented, metres.
        samples: (B, Q, V, 3) the stochastic hypotheses, oriented like them.
        truth: (B, V, 3) the true meshes.
        regressor: (J, V) joint regressor.
        keypoints: (B, J, 3) the observed keypoints; with them (and ``landmarks`` (B, J, 4) where the people have
            them) the report adds the map scaled by the cross-fitted joint-error model.
    """
    from megaviewer.geometry.metrics import center, per_vertex_error

    deterministic, truth = center(deterministic), center(truth)
    samples = center(samples)
    error = per_vertex_error(deterministic, truth)
    q_max = samples.shape[1]
    per_person = spread_mm(samples)
    shared = per_person.mean(0)
    mean = lambda x: float(x.mean())  # noqa: E731
    report = {
        "people": int(error.shape[0]), "q": q_max, "sigma_m": sigma, "power": power,
        "per_person": {str(q): mean(spearman_rows(spread_mm(samples[:, :q]), error))
                       for q in q_values if q <= q_max},
        "average_map": mean(spearman_rows(shared.expand_as(error), error)),
        "average_error_map": mean(spearman_rows(error.mean(0).expand_as(error), error)),
        "per_person_vs_average_map": mean(spearman_rows(per_person, shared.expand_as(per_person))),
    }
    if q_max >= 3:
        report["if_truth_were_a_hypothesis"] = if_truth_were_a_hypothesis(deterministic, samples)
    half = q_max // 2
    if half >= 2:
        report["split_half"] = mean(spearman_rows(spread_mm(samples[:, :half]), spread_mm(samples[:, half:2 * half])))
    joints_det, joints_true = regressor @ deterministic, regressor @ truth
    weights = joint_weights(deterministic, joints_det, sigma)
    joint_spread = spread_mm(regressor @ samples)
    joint_error = (joints_det - joints_true).norm(dim=-1) * MM
    report["average_map_scaled_by_joint_spread"] = mean(spearman_rows(
        joint_modulated(shared, joint_spread, weights, power), error))
    report["oracle_average_map_scaled_by_true_joint_error"] = mean(spearman_rows(
        joint_modulated(shared, joint_error, weights, power), error))
    report["joint_level"] = {
        "spread_vs_true_error": mean(spearman_rows(joint_spread, joint_error)),
        "average_spread_vs_true_error": mean(spearman_rows(joint_spread.mean(0).expand_as(joint_error), joint_error)),
    }
    if keypoints is not None:
        off_2d, off_3d = observation_residuals(joints_det, keypoints, landmarks)
        fitted = cross_fitted_joint_error(joint_error_features(joint_spread, off_2d, off_3d), joint_error)
        report["average_map_scaled_by_fitted_joint_error"] = mean(spearman_rows(
            joint_modulated(shared, fitted, weights, power), error))
        report["joint_level"]["fitted_vs_true_error"] = mean(spearman_rows(fitted, joint_error))
    return report
