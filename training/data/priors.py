"""The pose priors that training and evaluation draw bodies from, by name.

* ``keyposes``: the authored key poses only (:class:`~megaviewer.body.pose_prior.PosePrior` as is); the
  benchmark's main split draws from it, so its figures stay comparable across models.
* ``motion``: the key poses mixed with frames of the real motion clips that training may see
  (:data:`~training.data.motion_clips.TRAIN_CLIPS`): what the shipped models are trained on.
* ``hard``: frames of the held-out clips only (:data:`~training.data.motion_clips.HARD_CLIPS`, rolling and
  getting up from lying on the back): the benchmark's hard-poses split, never seen in training.
"""

from __future__ import annotations

from dataclasses import replace

from megaviewer.body.pose_prior import PosePrior, PosePriorConfig

PRIOR_KINDS: tuple[str, ...] = ("keyposes", "motion", "hard")


def make_prior(body, kind: str = "motion", config: PosePriorConfig | None = None) -> PosePrior:
    """A prior of the named kind for ``body`` (the clips need the ``train`` extra: pybullet's data).

    Anny gets :class:`PosePrior`; SMPL / SMPL-H bodies get :class:`~megaviewer.body.smpl_pose_prior.SmplPosePrior`,
    the same anatomical poses and motion converted to SMPL's joints, so every kind exists for both bodies.
    """
    from training.data.motion_clips import HARD_CLIPS, TRAIN_CLIPS, load_motion_bank

    if kind not in PRIOR_KINDS:
        raise ValueError(f"unknown prior {kind!r}; choose one of {PRIOR_KINDS}")
    prior_class = PosePrior
    if getattr(body, "model_type", None) in ("smpl", "smplh"):
        from megaviewer.body.smpl_pose_prior import SmplPosePrior

        prior_class = SmplPosePrior
    config = config or PosePriorConfig()
    if kind == "keyposes":
        return prior_class(body, config)
    if kind == "motion":
        return prior_class(body, config, motion=load_motion_bank(TRAIN_CLIPS))
    return prior_class(body, replace(config, motion_prob=1.0), motion=load_motion_bank(HARD_CLIPS))
