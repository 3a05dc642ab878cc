"""The recovery settings and their defaults, in one place for the engine, the command line and the app.

Why one dataclass: each door (``Engine.recover``, ``megaviewer infer``, the app's controls) used to carry its
own defaults, so the same photo gave 1, 8 or 10 hypotheses depending on where it came in. Every default
is read from :data:`DEFAULTS`; nothing here imports torch or Qt, so any layer can depend on it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MODES = ("deterministic", "stochastic")
"""The keypoint-conditioned generation modes (paper Sec. 3.4): one decoder pass, or Q sampled hypotheses."""


@dataclass(frozen=True)
class RecoverySettings:
    """How one person is recovered; the app stores it in QSettings as a dict (versioned by field names)."""

    mode: str = "deterministic"
    num_samples: int = 8  # Q, used in stochastic mode; deterministic mode returns one mesh
    steps: int = 5  # T; the paper's HRNet setting (Sec. 4)
    temperature: float = 1.0  # A; the temperature decays as A (1 - t/T)
    seed: int = 0
    random_seed: bool = False  # the app's "new each run": draw a fresh seed per run instead of ``seed``
    fit_camera: bool = True  # fit each hypothesis's rotation and camera to the keypoints (megaviewer.camera_fit)
    # Then fit each hypothesis's body to the keypoints too (megaviewer.refine): lower PA-MPJPE on the benchmark
    # and on hard poses (resources/bench/refine.json); ~0.1 s per person, so live streams turn it off.
    refine: bool = True
    # Decode the expected code where the generation takes an argmax (megaviewer.generate): the deterministic
    # pass and the last step of the stochastic one. Off: the paper's argmax codes.
    expected_codes: bool = True

    @property
    def samples(self) -> int:
        """Hypotheses a run returns: Q when stochastic, else 1."""
        return self.num_samples if self.mode == "stochastic" else 1

    def with_(self, **changes: Any) -> RecoverySettings:
        """A copy with some fields changed (unknown names raise ``TypeError``)."""
        return replace(self, **changes)

    def recover_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`megaviewer.engine.Engine.recover` for these settings."""
        seed = random.randrange(2**31 - 1) if self.random_seed else self.seed
        return {"mode": self.mode, "num_samples": self.samples, "steps": self.steps,
                "temperature": self.temperature, "seed": seed, "fit_camera": self.fit_camera,
                "refine": self.refine, "expected_codes": self.expected_codes}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RecoverySettings:
        """Tolerant of old or hand-edited settings: unknown keys are dropped, bad values fall back."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in (data or {}):
                continue
            value, default = data[f.name], getattr(DEFAULTS, f.name)
            try:
                if isinstance(default, bool):
                    value = value if isinstance(value, bool) else str(value).lower() in ("1", "true")
                values[f.name] = type(default)(value)
            except (TypeError, ValueError):
                pass
        if values.get("mode", DEFAULTS.mode) not in MODES:
            values.pop("mode")
        return cls(**values)


DEFAULTS = RecoverySettings()
