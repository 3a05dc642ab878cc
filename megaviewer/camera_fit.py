"""Fit each hypothesis's global rotation and weak-perspective camera to the 2D keypoints it was conditioned on.

Why: MEGA predicts the body's camera-frame rotation (6D) and a weak-perspective camera ``[s, tx, ty]``
from one small head. The shipped model trained that head briefly on a CPU, and its meshes land 15-20 % of
the box side away from the detected keypoints. The body *shape and pose* (the tokens) are the model's job;
where the body sits in the image is not something a network has to guess when the 2D keypoints are
known. So, as HMR tools do (SPIN/SMPLify's camera step, 4DHumans' keypoint refinement), we keep the
canonical mesh and fit its placement to the keypoints:

1. scale and translation in closed form by confidence-weighted least squares (for a given rotation the
   weak-perspective projection is linear in ``a = s, b = s·tx, c = s·ty``);
2. a few damped Gauss-Newton (Levenberg-Marquardt) iterations over a rotation correction
   ``R = exp(ω) · R_net`` jointly with ``(a, b, c)``, with iteratively re-weighted robust weights
   (confidence × Geman-McClure, after a Huber warm-up) so a misplaced keypoint cannot drag the body,
   and a quadratic prior ``λ |ω|²`` towards the network's rotation: 2D keypoints leave the depth
   direction of a near-frontal body almost undetermined, and with few visible keypoints the prior keeps
   the network's orientation instead of flipping the body;
3. scale and translation re-solved in closed form with the final rotation and weights.

A fit is kept only when it lowers the robust objective it minimises compared with the network's own
rotation and camera (so it can never make the placement worse by its own measure); hypotheses with fewer
than ``min_keypoints`` usable keypoints (confidence > 0, finite) keep the network's camera untouched.

Everything is vectorised over the Q hypotheses (one batched 6×6 solve per iteration) and runs in float64
NumPy on the CPU: a few milliseconds for Q = 1 to 16 (``camera_fit`` in ``resources/bench/cpu_routes.json``;
it runs in the live loop, and for arrays this small NumPy's per-call cost is a fraction of torch's). It is
deterministic and needs no gradients. Coordinates are the normalised crop coordinates of
:mod:`megaviewer.camera` (the box spans [-1, 1], x right, y down): the projection of a camera-frame,
centroid-centred point P is ``s · (P_xy + t)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CameraFit", "fit_camera"]

_EYE3 = np.eye(3)
_EYE6 = np.eye(6)


@dataclass
class CameraFit:
    """The fitted placement per hypothesis and what it changed (all on the CPU, float32).

    ``rotation`` (Q, 3, 3) and ``cam`` (Q, 3) are the fitted values for rows with ``fitted`` True and the
    network's values elsewhere. Errors are mean 2D distances between the projected joints and the usable
    keypoints, in normalised crop units (the box side is 2, so 0.2 = 10 % of the box).
    ``rotation_change_deg`` is the angle between the fitted and the network rotation.
    """

    rotation: torch.Tensor  # (Q, 3, 3)
    cam: torch.Tensor  # (Q, 3) [s, tx, ty]
    fitted: torch.Tensor  # (Q,) bool
    num_keypoints: torch.Tensor  # (Q,) int: usable keypoints per hypothesis
    error_before: torch.Tensor  # (Q,) with the network's rotation and camera
    error_after: torch.Tensor  # (Q,) with the returned rotation and camera
    rotation_change_deg: torch.Tensor  # (Q,)

    def summary(self) -> dict[str, float | int]:
        """Plain numbers for logs and exports: how many rows were fitted, mean errors before/after (crop units)."""
        return {"fitted": int(self.fitted.sum()), "hypotheses": int(self.fitted.numel()),
                "error_before": float(self.error_before.mean()), "error_after": float(self.error_after.mean()),
                "rotation_change_deg": float(self.rotation_change_deg.mean())}


def fit_camera(joints: torch.Tensor, keypoints: torch.Tensor, rotation: torch.Tensor, cam: torch.Tensor, *,
               min_keypoints: int = 4, iterations: int = 8, rotation_prior: float = 0.5, roll_prior: float = 0.1,
               robust_scale: float = 0.2, fit_rotation: bool = True, max_step_rad: float = 0.3) -> CameraFit:
    """Fit rotation and weak-perspective camera of Q hypotheses to their keypoints (module docstring).

    Args:
        joints: (Q, J, 3) joints of the canonical (un-rotated, centroid-centred) meshes, metres.
        keypoints: (J, 3) shared by all hypotheses or (Q, J, 3): x, y in normalised crop coordinates and a
            confidence; confidence <= 0 (or a non-finite value) marks a missing keypoint.
        rotation: (Q, 3, 3) the network's camera-frame rotations (camera points = R · canonical).
        cam: (Q, 3) the network's weak-perspective cameras ``[s, tx, ty]``.
        min_keypoints: fewer usable keypoints keep the network's rotation and camera.
        iterations: Gauss-Newton iterations (the first third use Huber weights, the rest Geman-McClure).
        rotation_prior: λ of the prior ``λ |ω|²`` on the out-of-plane part of the rotation correction ω (about
            the camera's x and y axes; rad), in squared crop units per rad²; larger keeps the network's
            orientation more. Keypoints barely constrain these (depth) directions.
        roll_prior: the same for the in-plane part (about the viewing axis), which keypoints do constrain.
        robust_scale: residual scale of the robust weights in crop units (0.2 = 10 % of the box side).
        fit_rotation: False fits only scale and translation (closed form) with the network's rotation.
        max_step_rad: largest rotation update per iteration.
    """
    q, n_joints = joints.shape[:2]
    if keypoints.ndim == 2:
        keypoints = keypoints.expand(q, *keypoints.shape)
    if keypoints.shape != (q, n_joints, 3) or rotation.shape != (q, 3, 3) or cam.shape != (q, 3):
        raise ValueError(f"for joints {tuple(joints.shape)} expected keypoints ({n_joints}, 3) or "
                         f"({q}, {n_joints}, 3), rotation ({q}, 3, 3) and cam ({q}, 3); got {tuple(keypoints.shape)}, "
                         f"{tuple(rotation.shape)} and {tuple(cam.shape)}")
    lam = np.array([rotation_prior, rotation_prior, roll_prior], dtype=np.float64)
    out = _fit(_np(joints), _np(keypoints), _np(rotation), _np(cam), min_keypoints, iterations if fit_rotation else 0,
               lam, float(robust_scale), float(max_step_rad))
    rot, cam_fit, keep, count, err_before, err_after, angle = out
    return CameraFit(rotation=torch.from_numpy(rot).float(), cam=torch.from_numpy(cam_fit).float(),
                     fitted=torch.from_numpy(keep), num_keypoints=torch.from_numpy(count),
                     error_before=torch.from_numpy(err_before).float(), error_after=torch.from_numpy(err_after).float(),
                     rotation_change_deg=torch.from_numpy(angle).float())


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _fit(joints: np.ndarray, keypoints: np.ndarray, rot_net: np.ndarray, cam_net: np.ndarray, min_keypoints: int,
         iterations: int, lam: np.ndarray, sigma: float, max_step: float) -> tuple[np.ndarray, ...]:
    finite = np.isfinite(keypoints).all(axis=-1)
    conf = np.where(finite, np.clip(np.nan_to_num(keypoints[..., 2]), 0.0, 1.0), 0.0)
    target = np.where(finite[..., None], keypoints[..., :2], 0.0)
    count = (conf > 0).sum(axis=-1)
    usable = count >= min_keypoints
    q, n = joints.shape[:2]
    joints_t = joints.swapaxes(-1, -2)  # (Q, 3, J): camera points = (R @ J^T)^T

    # The network's placement, measured with the same robust cost the fit minimises.
    p_net = (rot_net @ joints_t).swapaxes(-1, -2)
    abc_net = np.concatenate([cam_net[:, :1], cam_net[:, :1] * cam_net[:, 1:3]], axis=-1)
    r_net = _residuals(p_net, abc_net, target)
    cost_net = _cost(r_net, conf, sigma)

    omega = np.zeros((q, 3))
    rot, p = rot_net, p_net
    abc = _solve_abc(p, target, conf, abc_net)
    if iterations > 0:
        prior = np.zeros((6, 6))
        prior[:3, :3] = np.diag(lam)
        jac = np.zeros((q, n, 2, 6))
        jac[:, :, 0, 4] = 1.0
        jac[:, :, 1, 5] = 1.0
        damping = 1e-3
        for it in range(iterations):
            r = _residuals(p, abc, target)
            w = conf * (_huber_weight(r, sigma) if 3 * it < iterations else _gm_weight(r, sigma))
            # d residual / d (ω, a, b, c) for a left rotation update exp(ω) P ≈ P + ω × P
            a = abc[:, :1]
            jac[:, :, 0, 1] = a * p[..., 2]
            jac[:, :, 0, 2] = -a * p[..., 1]
            jac[:, :, 1, 0] = -a * p[..., 2]
            jac[:, :, 1, 2] = a * p[..., 0]
            jac[:, :, :, 3] = p[..., :2]
            jf = jac.reshape(q, 2 * n, 6)
            jw = jf * np.repeat(w, 2, axis=1)[..., None]
            jw_t = jw.swapaxes(-1, -2)
            h = jw_t @ jf + prior
            g = (jw_t @ r.reshape(q, 2 * n, 1))[..., 0]
            g[:, :3] += lam * omega
            h += damping * (h * _EYE6 + _EYE6)
            step = -np.linalg.solve(h, g[..., None])[..., 0]
            d_rot = step[:, :3]
            d_rot *= max_step / np.maximum(np.linalg.norm(d_rot, axis=-1, keepdims=True), max_step)
            omega = omega + d_rot
            abc = abc + step[:, 3:]
            abc[:, 0] = np.maximum(abc[:, 0], 1e-3)
            rot = _rodrigues(omega) @ rot_net
            p = (rot @ joints_t).swapaxes(-1, -2)
        r = _residuals(p, abc, target)
        abc = _solve_abc(p, target, conf * _gm_weight(r, sigma), abc)

    r_fit = _residuals(p, abc, target)
    cost_fit = _cost(r_fit, conf, sigma) + (lam * omega * omega).sum(axis=-1)
    with np.errstate(invalid="ignore"):
        keep = usable & np.isfinite(cost_fit) & (cost_fit < cost_net) & (abc[:, 0] > 0)
    cam_fit = np.concatenate([abc[:, :1], abc[:, 1:] / abc[:, :1]], axis=-1)
    rot_out = np.where(keep[:, None, None], rot, rot_net)
    cam_out = np.where(keep[:, None], cam_fit, cam_net)
    err_before = _mean_error(r_net, conf)
    err_after = np.where(keep, _mean_error(r_fit, conf), err_before)
    # angle between two rotations from their Frobenius distance (exact near 0, unlike arccos of the trace)
    chord = np.linalg.norm((rot_out - rot_net).reshape(q, 9), axis=-1) / (2.0 * np.sqrt(2.0))
    angle = np.degrees(2.0 * np.arcsin(np.clip(chord, 0.0, 1.0)))
    return rot_out, cam_out, keep, count, err_before, err_after, angle


def _residuals(points: np.ndarray, abc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Projected minus detected, (Q, J, 2): ``a · P_xy + (b, c) − k``."""
    return abc[:, None, :1] * points[..., :2] + abc[:, None, 1:] - target


def _solve_abc(points: np.ndarray, target: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Weighted least-squares ``a, b, c`` for fixed camera points (Q, J, 3); ``fallback`` rows where degenerate."""
    w = weights[..., None]
    total = np.maximum(w.sum(axis=1), 1e-12)
    mean3 = (w * points[..., :2]).sum(axis=1) / total
    mean2 = (w * target).sum(axis=1) / total
    d3, d2 = points[..., :2] - mean3[:, None], target - mean2[:, None]
    num = (w * d3 * d2).sum(axis=(1, 2))
    den = (w * d3 * d3).sum(axis=(1, 2))
    a = num / np.maximum(den, 1e-12)
    ok = (den > 1e-9) & (a > 1e-3) & (weights.sum(axis=1) > 0)
    solved = np.concatenate([a[:, None], mean2 - a[:, None] * mean3], axis=-1)
    return np.where(ok[:, None], solved, fallback)


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (Q, 3) -> rotation matrices (Q, 3, 3)."""
    angle = np.linalg.norm(rotvec, axis=-1)[:, None, None]
    x, y, z = rotvec.T
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(-1, 3, 3)
    small = angle < 1e-8
    safe = np.where(small, 1.0, angle)
    sin_term = np.where(small, 1.0, np.sin(safe) / safe)
    cos_term = np.where(small, 0.5, (1.0 - np.cos(safe)) / (safe * safe))
    return _EYE3 + sin_term * k + cos_term * (k @ k)


def _huber_weight(r: np.ndarray, sigma: float) -> np.ndarray:
    norm = np.sqrt((r * r).sum(axis=-1))
    return sigma / np.maximum(norm, sigma)


def _gm_weight(r: np.ndarray, sigma: float) -> np.ndarray:
    s2 = sigma * sigma
    return (s2 / (s2 + (r * r).sum(axis=-1))) ** 2


def _cost(r: np.ndarray, conf: np.ndarray, sigma: float) -> np.ndarray:
    """Confidence-weighted Geman-McClure cost (Q,), scaled so small residuals cost |r|² like least squares."""
    sq = (r * r).sum(axis=-1)
    return (conf * sigma * sigma * sq / (sigma * sigma + sq)).sum(axis=-1)


def _mean_error(r: np.ndarray, conf: np.ndarray) -> np.ndarray:
    valid = conf > 0
    return (np.sqrt((r * r).sum(axis=-1)) * valid).sum(axis=-1) / np.maximum(valid.sum(axis=-1), 1)
