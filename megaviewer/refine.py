"""Refine each hypothesis's body so its joints land on the detected 2D keypoints (SPIN/SMPLify-style fit).

Why: the camera fit (:mod:`megaviewer.camera_fit`) only moves and turns the network's body; when an arm or
a leg of the generated body points the wrong way in the image, no placement fixes it. Here the body itself
is fitted, starting from the network's answer, in the space the network speaks: the continuous latents
(N = 54 vectors of dimension 9) that the frozen Mesh-VQ-VAE decoder turns into a mesh. The objective per
hypothesis is

    confidence-weighted robust (Geman-McClure) 2D reprojection error of the COCO-17 joints
    + ``latent_prior`` · mean over tokens of |z − z0|²      (stay near the network's body)
    + ``bone_prior`` · mean squared change of the limb and torso lengths (fit by turning limbs, not by
      stretching them: a 2D error says little about a bone's length, which foreshortening hides),

where z0 are the latents the hypothesis was decoded from (its tokens' codes, or the expected codes of
:mod:`megaviewer.generate`). Each hypothesis is pulled towards the keypoints but
anchored to where it started, so stochastic hypotheses converge where the keypoints pin the body down (in
the image plane, at confident keypoints) and stay distinct where the photo says nothing (depth, missing
keypoints). The placement is not a free parameter of the optimisation: the rotation stays the one given
(the camera fit's), and at every step the weak-perspective scale and translation are the closed-form
weighted least-squares solution for the current joints (weights: confidence × the previous step's robust
weights), so the latents never spend effort on moving or scaling the body. After the fit the camera fit
runs once more on the refined joints (rotation and camera of the new body, a few milliseconds).

All Q hypotheses are optimised at once (one batched pass through the decoder's cached route per step,
gradients for the latents only: :meth:`MeshVQVAE.decode_latents_frozen`) with Adam for 15 steps (on the
tuning split, 30 smaller steps end at the same accuracy, and optimising a rotation correction jointly
changed nothing); the decoder's weights are never changed. As in the camera fit, a hypothesis keeps its
refined body only when the refinement lowered the objective and it had at least ``min_keypoints`` usable
keypoints; otherwise it keeps the network's body, rotation and camera untouched. Coordinates are the
normalised crop coordinates of :mod:`megaviewer.camera` (the box spans [-1, 1]).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from megaviewer.camera_fit import fit_camera
from megaviewer.tokenizer.model import MeshVQVAE

__all__ = ["RefineConfig", "Refinement", "refine_hypotheses"]

# COCO-17 segments whose lengths the bone prior keeps: upper and lower arms and legs, shoulders, hips, flanks.
_BONES = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12), (5, 11),
          (6, 12))


@dataclass
class RefineConfig:
    """Settings of the keypoint refinement. The defaults were chosen on a tuning split that is not the
    benchmark (``python scripts/bench_refine.py --tune``, ``resources/bench/refine_tuning.json``)."""

    steps: int = 15
    lr: float = 0.1  # Adam step in latent units (the codebook's nearest-neighbour distance is about 0.6)
    latent_prior: float = 1e-2  # weight of mean |z − z0|² against the 2D error (crop units²)
    bone_prior: float = 3.0  # weight of the mean squared change of the bone lengths (m²)
    robust_scale: float = 0.3  # Geman-McClure scale in crop units (0.3 = 15 % of the box side)
    min_keypoints: int = 6  # fewer usable keypoints leave the hypothesis as it is
    refit_camera: bool = True  # run the camera fit again on the refined joints
    # Weight of the five face keypoints (nose, eyes, ears) against the limbs': they sit a few centimetres apart
    # on the coarse head of the token mesh, and pulling the body onto them crumples the face instead of turning
    # the head (seen on the README photos), so the body is fitted to the 12 limb and torso keypoints.
    face_weight: float = 0.0
    # Weight of the detector's 3D landmarks, when given: 1 − cos of the angle between each limb of the body (as
    # the camera sees it, with the given rotation) and the same limb between the landmarks, weighted by their
    # visibility. Directions, not positions: the landmarks' size and hip point are not the body's. They say
    # where a limb points in depth, which the 2D keypoints leave open. Chosen on the detector-in-the-loop tuning
    # split (``python scripts/bench_detector_loop.py --tune ...``, resources/bench/detector_loop_tuning.json).
    landmark_weight: float = 0.03


@dataclass
class Refinement:
    """The refined hypotheses (CPU, float32) and what the refinement changed.

    Rows with ``refined`` False hold the inputs unchanged (the decoded tokens, the given rotation and
    camera). Errors are mean 2D distances between the projected joints and the usable keypoints (those the fit
    weighs: the limbs and torso by default, ``RefineConfig.face_weight``) in
    normalised crop units, with the given rotation and the camera solved in closed form for each body, so
    ``error_before`` measures the network's body, not its placement. ``latent_shift`` is the RMS over
    tokens of |z − z0|.
    """

    canonical_vertices: torch.Tensor  # (Q, V, 3) centroid-centred
    latents: torch.Tensor  # (Q, N, D)
    rotation: torch.Tensor  # (Q, 3, 3)
    cam: torch.Tensor  # (Q, 3) [s, tx, ty]
    refined: torch.Tensor  # (Q,) bool
    error_before: torch.Tensor  # (Q,)
    error_after: torch.Tensor  # (Q,)
    latent_shift: torch.Tensor  # (Q,)
    elapsed_ms: float

    def summary(self) -> dict[str, float | int]:
        """Plain numbers for logs and exports."""
        return {"refined": int(self.refined.sum()), "hypotheses": int(self.refined.numel()),
                "error_before": float(self.error_before.mean()), "error_after": float(self.error_after.mean()),
                "latent_shift": float(self.latent_shift.mean()), "ms": self.elapsed_ms}

    @classmethod
    def concatenate(cls, parts: list[Refinement]) -> Refinement:
        """The refinements of consecutive row chunks as one (rows in order, times added)."""
        fields = ("canonical_vertices", "latents", "rotation", "cam", "refined", "error_before", "error_after",
                  "latent_shift")
        return cls(**{f: torch.cat([getattr(p, f) for p in parts]) for f in fields},
                   elapsed_ms=sum(p.elapsed_ms for p in parts))


def refine_hypotheses(tokenizer: MeshVQVAE, regressor: torch.Tensor, tokens: torch.Tensor, rotation: torch.Tensor,
                      cam: torch.Tensor, keypoints: torch.Tensor, config: RefineConfig | None = None,
                      landmarks: torch.Tensor | None = None, latents: torch.Tensor | None = None) -> Refinement:
    """Fit the bodies of Q hypotheses to their 2D keypoints (module docstring).

    Args:
        tokenizer: the Mesh-VQ-VAE whose decoder turns latents into canonical meshes (left unchanged).
        regressor: (17, V) COCO-17 joint regressor of the working mesh.
        tokens: (Q, N) token ids of the hypotheses.
        rotation: (Q, 3, 3) camera-frame rotations (the camera fit's, or the network's).
        cam: (Q, 3) weak-perspective cameras ``[s, tx, ty]`` that go with them.
        keypoints: (17, 3) shared by all hypotheses or (Q, 17, 3): x, y in normalised crop coordinates and a
            confidence; confidence <= 0 or a non-finite value marks a missing keypoint.
        config: settings (default :class:`RefineConfig`).
        landmarks: the detector's 3D landmarks at the COCO-17 points (17, 4): x, y, z (camera axes, metres
            around the hips) and visibility; used with ``config.landmark_weight`` > 0.
    """
    cfg = config or RefineConfig()
    start = time.perf_counter()
    q = tokens.shape[0]
    if keypoints.ndim == 2:
        keypoints = keypoints.expand(q, *keypoints.shape)
    if keypoints.shape != (q, regressor.shape[0], 3) or rotation.shape != (q, 3, 3) or cam.shape != (q, 3):
        raise ValueError(f"for {q} hypotheses expected keypoints ({regressor.shape[0]}, 3) or "
                         f"({q}, {regressor.shape[0]}, 3), rotation ({q}, 3, 3) and cam ({q}, 3); got "
                         f"{tuple(keypoints.shape)}, {tuple(rotation.shape)} and {tuple(cam.shape)}")
    device = tokenizer.quantizer.codebook.device
    # The engine runs under inference mode (and fp16 autocast with ``half``); the fit needs autograd on plain
    # tensors, in float32: a few dozen gradient steps are not worth fp16 round-off.
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        plain = lambda t: t.detach().to(device, torch.float32).clone()  # noqa: E731
        fit = _Fit(tokenizer, plain(regressor), plain(keypoints), plain(rotation), cfg,
                   plain(landmarks) if landmarks is not None and cfg.landmark_weight > 0 else None)
        z0 = (plain(latents) if latents is not None
              else tokenizer.quantizer.codebook.detach().float()[tokens.to(device)])
        out = fit.run(z0)
        rot, cam_out = plain(rotation), plain(cam)
        if cfg.refit_camera and bool(out.refined.any()):
            joints = torch.einsum("jv,qvc->qjc", fit.regressor, out.vertices)
            placed = fit_camera(joints, keypoints, rot, cam_out)
            rot = torch.where(out.refined[:, None, None], placed.rotation.to(device), rot)
            cam_out = torch.where(out.refined[:, None], placed.cam.to(device), cam_out)
        shift = (out.latents - z0).pow(2).sum(-1).mean(-1).sqrt()
    elapsed = (time.perf_counter() - start) * 1000
    return Refinement(canonical_vertices=out.vertices.cpu(), latents=out.latents.cpu(), rotation=rot.cpu(),
                      cam=cam_out.cpu(), refined=out.refined.cpu(), error_before=out.error_before.cpu(),
                      error_after=out.error_after.cpu(), latent_shift=shift.cpu(), elapsed_ms=elapsed)


@dataclass
class _FitOutput:
    vertices: torch.Tensor
    latents: torch.Tensor
    refined: torch.Tensor
    error_before: torch.Tensor
    error_after: torch.Tensor


class _Fit:
    """The batched objective of one call and its minimisation (module docstring)."""

    def __init__(self, tokenizer: MeshVQVAE, regressor: torch.Tensor, keypoints: torch.Tensor,
                 rotation: torch.Tensor, cfg: RefineConfig, landmarks: torch.Tensor | None = None):
        self.tokenizer, self.regressor, self.cfg = tokenizer, regressor, cfg
        finite = torch.isfinite(keypoints).all(dim=-1)
        self.conf = torch.where(finite, torch.nan_to_num(keypoints[..., 2]).clamp(0.0, 1.0), 0.0)
        self.conf = self.conf * torch.tensor([cfg.face_weight] * 5 + [1.0] * (self.conf.shape[-1] - 5),
                                             dtype=self.conf.dtype, device=self.conf.device)
        self.target = torch.where(finite[..., None], keypoints[..., :2], 0.0)
        self.usable = (self.conf > 0).sum(dim=-1) >= cfg.min_keypoints
        self.conf_total = self.conf.sum(dim=-1).clamp_min(1e-6)
        self.rot_xy = rotation[:, :2]  # only the image-plane rows of R matter to the projection
        self.bones = torch.tensor(_BONES, device=keypoints.device)
        self.rotation = rotation
        self.limb_target = self.limb_weight = None
        if landmarks is not None:  # unit limb directions between the landmarks, and how much each is trusted
            landmarks = landmarks.reshape(-1, *landmarks.shape[-2:])
            a, b = landmarks[:, self.bones[:, 0]], landmarks[:, self.bones[:, 1]]
            self.limb_target = torch.nn.functional.normalize(b[..., :3] - a[..., :3], dim=-1).expand(
                keypoints.shape[0], -1, -1)
            self.limb_weight = (a[..., 3] * b[..., 3]).clamp(0.0, 1.0).expand(keypoints.shape[0], -1)

    def body(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        verts = self.tokenizer.decode_latents_frozen(z)
        return verts, self.regressor @ verts

    def residuals(self, joints: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Projected minus detected (Q, J, 2), with the closed-form camera for ``weights``."""
        xy = joints @ self.rot_xy.transpose(-1, -2)
        return _affine_fit(xy, self.target, weights) - self.target

    def robust_weights(self, r: torch.Tensor) -> torch.Tensor:
        s2 = self.cfg.robust_scale ** 2
        return self.conf * (s2 / (s2 + r.detach().pow(2).sum(-1))).pow(2)

    def objective(self, z: torch.Tensor, z0: torch.Tensor, joints: torch.Tensor, bones0: torch.Tensor,
                  r: torch.Tensor) -> torch.Tensor:
        """(Q,) robust 2D term + latent anchor + bone-length term."""
        cfg = self.cfg
        sq = r.pow(2).sum(-1)
        s2 = cfg.robust_scale ** 2
        data = (self.conf * s2 * sq / (s2 + sq)).sum(-1) / self.conf_total
        anchor = (z - z0).pow(2).sum(-1).mean(-1)
        bones = (self.bone_lengths(joints) - bones0).pow(2).mean(-1)
        total = data + cfg.latent_prior * anchor + cfg.bone_prior * bones
        if self.limb_target is not None:
            seen = joints @ self.rotation.transpose(-1, -2)
            limbs = torch.nn.functional.normalize(seen[:, self.bones[:, 1]] - seen[:, self.bones[:, 0]], dim=-1)
            disagree = 1.0 - (limbs * self.limb_target).sum(-1)
            total = total + cfg.landmark_weight * (self.limb_weight * disagree).sum(-1) / \
                self.limb_weight.sum(-1).clamp_min(1e-6)
        return total

    def bone_lengths(self, joints: torch.Tensor) -> torch.Tensor:
        return (joints[:, self.bones[:, 0]] - joints[:, self.bones[:, 1]]).norm(dim=-1)

    def run(self, z0: torch.Tensor) -> _FitOutput:
        cfg = self.cfg
        with torch.no_grad():
            verts0, joints0 = self.body(z0)
            bones0 = self.bone_lengths(joints0)
            weights = self.robust_weights(self.residuals(joints0, self.conf))
            r0 = self.residuals(joints0, weights)
            cost0 = self.objective(z0, z0, joints0, bones0, r0)
        z = z0.clone().requires_grad_(True)
        adam = _Adam(z, cfg.lr, active=self.usable)
        for _ in range(cfg.steps):
            _, joints = self.body(z)
            r = self.residuals(joints, weights)
            loss = self.objective(z, z0, joints, bones0, r).sum()
            (grad,) = torch.autograd.grad(loss, z)
            adam.step(grad)
            weights = self.robust_weights(r)
        with torch.no_grad():
            z = z.detach()
            verts, joints = self.body(z)
            r = self.residuals(joints, weights)
            cost = self.objective(z, z0, joints, bones0, r)
            refined = self.usable & torch.isfinite(cost) & (cost < cost0)
            keep = refined[:, None, None]
            return _FitOutput(vertices=torch.where(keep, verts, verts0), latents=torch.where(keep, z, z0),
                              refined=refined, error_before=_mean_error(r0, self.conf),
                              error_after=torch.where(refined, _mean_error(r, self.conf), _mean_error(r0, self.conf)))


class _Adam:
    """Adam on one tensor, in place, with rows outside ``active`` frozen: a handful of fused ops per step
    (``torch.optim.Adam`` costs more than that per step for tensors this small)."""

    def __init__(self, param: torch.Tensor, lr: float, active: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.mask = active.to(param.dtype).reshape(-1, *([1] * (param.ndim - 1)))
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        grad = grad * self.mask
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        step = self.lr * (1 - b2 ** self.t) ** 0.5 / (1 - b1 ** self.t)
        self.param.addcdiv_(self.m, self.v.sqrt().add_(self.eps), value=-step)


def _affine_fit(xy: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``a · xy + (b, c)`` with the weighted least-squares scale ``a`` and shift ``(b, c)`` that map the points
    (Q, J, 2) onto ``target``: the weak-perspective projection with the best camera (differentiable)."""
    w = weights[..., None]
    total = w.sum(dim=1, keepdim=True).clamp_min(1e-12)
    mean_xy = (w * xy).sum(dim=1, keepdim=True) / total
    mean_t = (w * target).sum(dim=1, keepdim=True) / total
    d_xy = xy - mean_xy
    scale = (w * d_xy * (target - mean_t)).sum(dim=(1, 2)) / (w * d_xy * d_xy).sum(dim=(1, 2)).clamp_min(1e-12)
    scale = scale.clamp_min(1e-3)  # a mirrored (negative) scale is no camera
    return scale[:, None, None] * d_xy + mean_t


def _mean_error(r: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    valid = (conf > 0).to(r.dtype)
    return (r.norm(dim=-1) * valid).sum(-1) / valid.sum(-1).clamp_min(1)
