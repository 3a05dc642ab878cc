"""Authored key poses for the procedural pose prior, as a handful of anatomical angles each.

Why hand-authored: no free motion capture can be shipped (see spec ``pose-data.md``), so the prior mixes
these recognisable everyday, sport and rest poses with correlated noise. Angles are in degrees, in
anatomical conventions (0 = anatomical neutral: standing,
arms hanging, palms facing the thighs; flexion and abduction positive, internal rotation positive,
pronation positive, ankle dorsiflexion positive, trunk/neck bending and turning toward the left positive).

The DOFs and their ranges of motion are :data:`SIDED_RANGES` and :data:`TRUNK_RANGES`.
A key ``"hip_flex"`` sets both sides; ``"hip_flex_l"`` / ``"hip_flex_r"`` set one side and win over the
two-sided key. ``root`` is the pelvis tilt (pitch forward, roll to the body's left) in degrees that the
global orientation gets, so that e.g. a pick-up pose keeps its legs vertical in the world while its
canonical mesh keeps the pelvis upright. Samples are mirrored at random, so one side suffices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Ranges of motion of a normal adult (AAOS / clinical goniometry), degrees, and the noise sigma of each
# anatomical DOF: name -> (low, high, sigma). Sided DOFs exist as ``<name>_l`` and ``<name>_r``.
SIDED_RANGES: dict[str, tuple[float, float, float]] = {
    "hip_flex": (-30, 120, 10), "hip_abd": (-30, 45, 5), "hip_rot": (-45, 45, 10),
    "knee_flex": (0, 135, 10), "ankle_flex": (-50, 20, 6), "ankle_inv": (-15, 20, 4),
    "shoulder_flex": (-60, 180, 14), "shoulder_abd": (-40, 180, 10), "shoulder_rot": (-90, 70, 14),
    "elbow_flex": (0, 150, 15), "forearm_pron": (-80, 80, 20), "wrist_flex": (-70, 80, 12),
    "wrist_dev": (-20, 30, 6),
}
TRUNK_RANGES: dict[str, tuple[float, float, float]] = {
    "spine_flex": (-25, 80, 6), "spine_bend": (-35, 35, 5), "spine_rot": (-45, 45, 7),
    "neck_flex": (-45, 45, 12), "neck_bend": (-45, 45, 7), "neck_rot": (-70, 70, 20),
}


@dataclass(frozen=True)
class KeyPose:
    """One authored pose: angles (degrees) of the DOFs it moves; all others stay at neutral."""

    name: str
    category: str  # interpolation partners are drawn from the same category
    angles: dict[str, float]
    weight: float = 1.0  # relative sampling probability
    root: tuple[float, float] = field(default=(0.0, 0.0))  # (pitch forward, roll left), degrees


_RELAXED_ARMS = {"shoulder_abd": 8.0, "elbow_flex": 12.0, "forearm_pron": 10.0}

KEY_POSES: tuple[KeyPose, ...] = (
    # --- standing -----------------------------------------------------------------------------------------
    KeyPose("stand_relaxed", "upright", {**_RELAXED_ARMS}, weight=3.0),
    KeyPose("stand_a_pose", "upright", {"shoulder_abd": 40.0, "elbow_flex": 10.0}),
    KeyPose("t_pose", "upright", {"shoulder_abd": 90.0, "forearm_pron": 60.0}),
    KeyPose("stand_contrapposto", "upright", {**_RELAXED_ARMS, "hip_abd_r": 8.0, "knee_flex_r": 12.0,
                                              "hip_flex_r": 5.0, "spine_bend": 4.0, "hip_rot_r": -10.0}),
    KeyPose("hands_on_hips", "upright", {"shoulder_abd": 45.0, "shoulder_flex": -15.0, "shoulder_rot": 70.0,
                                         "elbow_flex": 100.0, "forearm_pron": 30.0, "wrist_flex": -20.0}),
    KeyPose("arms_crossed", "upright", {"shoulder_flex": 40.0, "shoulder_abd": 12.0, "shoulder_rot": 60.0,
                                        "elbow_flex": 115.0, "forearm_pron": 60.0,
                                        "shoulder_flex_r": 20.0, "elbow_flex_r": 120.0}),
    KeyPose("hands_behind_head", "upright", {"shoulder_abd": 115.0, "shoulder_flex": 15.0,
                                             "shoulder_rot": -90.0, "elbow_flex": 150.0}),
    KeyPose("look_at_phone", "upright", {**_RELAXED_ARMS, "shoulder_flex_l": 20.0, "elbow_flex_l": 100.0,
                                         "forearm_pron_l": -30.0, "neck_flex": 30.0, "shoulder_rot_l": 20.0}),
    # --- gait -----------------------------------------------------------------------------------------------
    KeyPose("walk_contact", "upright", {"hip_flex_l": 25.0, "knee_flex_l": 5.0, "hip_flex_r": -15.0,
                                        "knee_flex_r": 12.0, "ankle_flex_r": -10.0, "shoulder_flex_l": -20.0,
                                        "shoulder_flex_r": 20.0, "shoulder_abd": 6.0, "elbow_flex": 20.0,
                                        "spine_rot": -6.0}, weight=2.0),
    KeyPose("walk_passing", "upright", {"hip_flex_l": 5.0, "knee_flex_l": 8.0, "hip_flex_r": 25.0,
                                        "knee_flex_r": 60.0, "ankle_flex_r": 5.0, "shoulder_abd": 6.0,
                                        "elbow_flex": 18.0}, weight=1.5),
    KeyPose("run_flight", "upright", {"hip_flex_l": 55.0, "knee_flex_l": 85.0, "hip_flex_r": -20.0,
                                      "knee_flex_r": 45.0, "ankle_flex_r": -30.0, "shoulder_flex_l": -40.0,
                                      "shoulder_flex_r": 45.0, "shoulder_abd": 10.0, "elbow_flex": 90.0,
                                      "spine_flex": 10.0, "spine_rot": -10.0}, weight=1.5),
    KeyPose("run_stance", "upright", {"hip_flex_l": 25.0, "knee_flex_l": 35.0, "ankle_flex_l": 12.0,
                                      "hip_flex_r": 10.0, "knee_flex_r": 110.0, "ankle_flex_r": -20.0,
                                      "shoulder_flex_l": -35.0, "shoulder_flex_r": 40.0, "shoulder_abd": 10.0,
                                      "elbow_flex": 85.0, "spine_flex": 10.0}),
    KeyPose("climb_step", "upright", {"hip_flex_l": 65.0, "knee_flex_l": 85.0, "ankle_flex_l": 5.0,
                                      "knee_flex_r": 10.0, "ankle_flex_r": -15.0, "shoulder_flex_r": 25.0,
                                      "shoulder_flex_l": -10.0, "shoulder_abd": 10.0, "elbow_flex": 25.0,
                                      "spine_flex": 10.0}),
    KeyPose("lunge", "upright", {"hip_flex_l": 85.0, "knee_flex_l": 90.0, "ankle_flex_l": 10.0,
                                 "hip_flex_r": -20.0, "knee_flex_r": 70.0, "ankle_flex_r": -35.0,
                                 "shoulder_abd": 15.0, "elbow_flex": 15.0}),
    # --- reaching, gestures -------------------------------------------------------------------------------
    KeyPose("reach_up_both", "upright", {"shoulder_flex": 165.0, "shoulder_abd": 10.0, "elbow_flex": 10.0,
                                         "forearm_pron": 0.0, "spine_flex": -8.0, "neck_flex": -20.0,
                                         "ankle_flex": -20.0}),
    KeyPose("reach_up_one", "upright", {**_RELAXED_ARMS, "shoulder_flex_l": 160.0, "shoulder_abd_l": 15.0,
                                        "elbow_flex_l": 10.0, "spine_bend": -8.0, "neck_flex": -15.0}),
    KeyPose("reach_forward", "upright", {"shoulder_flex": 85.0, "shoulder_abd": 5.0, "elbow_flex": 8.0,
                                         "forearm_pron": 50.0, "spine_flex": 15.0, "hip_flex": 10.0}),
    KeyPose("reach_side", "upright", {**_RELAXED_ARMS, "shoulder_abd_l": 95.0, "elbow_flex_l": 5.0,
                                      "forearm_pron_l": 60.0, "spine_bend": 15.0, "hip_abd_r": 10.0,
                                      "neck_rot": 30.0}),
    KeyPose("point", "upright", {**_RELAXED_ARMS, "shoulder_flex_l": 80.0, "shoulder_abd_l": 20.0,
                                 "elbow_flex_l": 5.0, "forearm_pron_l": 60.0, "neck_rot": 20.0}),
    KeyPose("wave", "upright", {**_RELAXED_ARMS, "shoulder_abd_l": 95.0, "shoulder_flex_l": 20.0,
                                "shoulder_rot_l": -75.0, "elbow_flex_l": 90.0, "forearm_pron_l": 0.0,
                                "wrist_dev_l": 15.0}),
    KeyPose("boxing_guard", "upright", {"shoulder_flex": 45.0, "shoulder_abd": 20.0, "shoulder_rot": 30.0,
                                        "elbow_flex": 130.0, "hip_flex_l": 25.0, "knee_flex_l": 20.0,
                                        "hip_flex_r": -5.0, "knee_flex_r": 20.0, "spine_flex": 10.0,
                                        "neck_flex": 15.0, "shoulder_flex_l": 60.0}),
    KeyPose("throw", "upright", {"shoulder_abd_r": 90.0, "shoulder_rot_r": -80.0, "elbow_flex_r": 90.0,
                                 "shoulder_flex_l": 60.0, "shoulder_abd_l": 20.0, "elbow_flex_l": 20.0,
                                 "spine_rot": -25.0, "hip_flex_l": 30.0, "knee_flex_l": 15.0,
                                 "hip_abd_r": 15.0, "knee_flex_r": 20.0, "spine_bend": 10.0}),
    KeyPose("kick", "upright", {"hip_flex_r": 75.0, "knee_flex_r": 20.0, "ankle_flex_r": -20.0,
                                "knee_flex_l": 15.0, "shoulder_abd": 45.0, "shoulder_flex_l": 30.0,
                                "elbow_flex": 20.0, "spine_flex": -5.0}),
    # --- jumps ----------------------------------------------------------------------------------------------
    KeyPose("jump_star", "upright", {"shoulder_abd": 150.0, "elbow_flex": 5.0, "hip_abd": 30.0,
                                     "knee_flex": 8.0, "ankle_flex": -35.0, "forearm_pron": 60.0}),
    KeyPose("jump_takeoff", "upright", {"hip_flex": 60.0, "knee_flex": 75.0, "ankle_flex": 20.0,
                                        "shoulder_flex": -45.0, "elbow_flex": 15.0, "spine_flex": 30.0},
            root=(15.0, 0.0)),
    KeyPose("jump_tuck", "upright", {"hip_flex": 95.0, "knee_flex": 120.0, "ankle_flex": -20.0,
                                     "shoulder_flex": 60.0, "elbow_flex": 60.0, "spine_flex": 15.0}),
    # --- sitting, crouching, kneeling ---------------------------------------------------------------------
    KeyPose("sit_chair", "low", {"hip_flex": 90.0, "knee_flex": 90.0, "hip_abd": 6.0, "shoulder_flex": 25.0,
                                 "elbow_flex": 60.0, "forearm_pron": 70.0, "spine_flex": 5.0}, weight=2.0),
    KeyPose("sit_chair_lean_back", "low", {"hip_flex": 75.0, "knee_flex": 70.0, "hip_abd": 12.0,
                                           "ankle_flex": -10.0, "shoulder_abd": 15.0, "elbow_flex": 30.0,
                                           "spine_flex": -10.0, "neck_flex": 10.0}),
    KeyPose("sit_floor_legs_out", "low", {"hip_flex": 80.0, "knee_flex": 5.0, "ankle_flex": -20.0,
                                          "shoulder_flex": -30.0, "shoulder_abd": 15.0, "elbow_flex": 5.0},
            root=(-10.0, 0.0)),
    KeyPose("sit_cross_legged", "low", {"hip_flex": 85.0, "hip_abd": 40.0, "hip_rot": -40.0,
                                        "knee_flex": 130.0, "ankle_flex": -10.0, "shoulder_flex": 30.0,
                                        "elbow_flex": 45.0, "forearm_pron": 60.0, "spine_flex": 10.0}),
    KeyPose("squat", "low", {"hip_flex": 110.0, "knee_flex": 125.0, "ankle_flex": 20.0, "hip_abd": 25.0,
                             "shoulder_flex": 95.0, "elbow_flex": 20.0, "spine_flex": 20.0},
            root=(20.0, 0.0)),
    KeyPose("crouch_low", "low", {"hip_flex": 115.0, "knee_flex": 130.0, "ankle_flex": 20.0, "hip_abd": 20.0,
                                  "shoulder_flex": 40.0, "shoulder_abd": 35.0, "elbow_flex": 60.0,
                                  "spine_flex": 35.0},
            root=(25.0, 0.0)),
    KeyPose("kneel_upright", "low", {"knee_flex": 90.0, "ankle_flex": -40.0, **_RELAXED_ARMS}),
    KeyPose("kneel_one_knee", "low", {"hip_flex_l": 90.0, "knee_flex_l": 90.0, "hip_flex_r": -10.0,
                                      "knee_flex_r": 95.0, "ankle_flex_r": -35.0, "shoulder_flex_l": 30.0,
                                      "elbow_flex_l": 50.0, "elbow_flex_r": 15.0}),
    KeyPose("kneel_sit_heels", "low", {"hip_flex": 60.0, "knee_flex": 135.0, "ankle_flex": -45.0,
                                       "shoulder_flex": 30.0, "elbow_flex": 40.0, "spine_flex": 5.0},
            root=(-10.0, 0.0)),
    # --- bending -----------------------------------------------------------------------------------------
    KeyPose("bend_pick_up", "bent", {"hip_flex": 55.0, "knee_flex": 20.0, "spine_flex": 45.0,
                                     "shoulder_flex": 85.0, "elbow_flex": 10.0, "neck_flex": -20.0},
            root=(45.0, 0.0)),
    KeyPose("forward_fold", "bent", {"hip_flex": 60.0, "spine_flex": 50.0, "shoulder_flex": 100.0,
                                     "elbow_flex": 5.0, "neck_flex": 10.0}, root=(60.0, 0.0)),
    KeyPose("bend_side_stretch", "upright", {"spine_bend": 30.0, "shoulder_abd_r": 165.0,
                                             "elbow_flex_r": 20.0, "shoulder_abd_l": 15.0,
                                             "elbow_flex_l": 20.0}),
    # --- yoga / sport --------------------------------------------------------------------------------------
    KeyPose("yoga_tree", "upright", {"hip_flex_l": 40.0, "hip_abd_l": 45.0, "hip_rot_l": -45.0,
                                     "knee_flex_l": 130.0, "ankle_flex_l": -30.0, "shoulder_flex": 170.0,
                                     "shoulder_abd": 10.0, "elbow_flex": 15.0}),
    KeyPose("yoga_warrior", "upright", {"hip_flex_l": 80.0, "knee_flex_l": 85.0, "hip_flex_r": -25.0,
                                        "ankle_flex_r": 5.0, "shoulder_abd": 90.0, "forearm_pron": 70.0,
                                        "spine_rot": 20.0, "neck_rot": 40.0}),
    KeyPose("stretch_quad", "upright", {"knee_flex_l": 130.0, "hip_flex_l": -10.0, "ankle_flex_l": -40.0,
                                        "shoulder_flex_l": -45.0, "elbow_flex_l": 30.0,
                                        "shoulder_abd_r": 60.0}),
    # --- lying (few percent) ------------------------------------------------------------------------------
    KeyPose("lie_supine", "lying", {"shoulder_abd": 20.0, "elbow_flex": 15.0, "hip_flex": 5.0,
                                    "knee_flex": 5.0, "ankle_flex": -25.0, "hip_rot": -15.0},
            weight=0.6, root=(-90.0, 0.0)),
    KeyPose("lie_supine_knees_up", "lying", {"shoulder_abd": 30.0, "elbow_flex": 40.0, "hip_flex": 50.0,
                                             "knee_flex": 90.0}, weight=0.4, root=(-90.0, 0.0)),
    KeyPose("lie_prone", "lying", {"shoulder_flex": 150.0, "shoulder_abd": 30.0, "elbow_flex": 100.0,
                                   "ankle_flex": -40.0}, weight=0.4, root=(90.0, 0.0)),
    KeyPose("lie_side", "lying", {"hip_flex": 40.0, "knee_flex": 60.0, "hip_flex_r": 20.0,
                                  "shoulder_flex": 60.0, "elbow_flex": 70.0, "neck_bend": -15.0},
            weight=0.4, root=(0.0, -90.0)),
)
