"""What the viewer shows, as a plain Python model the widgets observe (napari's model/view split).

The step scrubber and the hypothesis browser are two indices into one :class:`RecoveryResult`: ``sample``
picks a hypothesis (or the mean / the deterministic reference) and ``step`` a generation step (``None`` =
the finished mesh). Nothing here imports Qt, so the selection logic is testable without a display.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from megaviewer.app.pipeline import Person, largest_person
from megaviewer.intrinsics import PhotoCamera
from megaviewer.result import RecoveryResult

MEAN = -1
"""``sample`` value selecting the mean of the Q hypotheses."""
REFERENCE = -2
"""``sample`` value selecting the deterministic reference mesh (computed beside every stochastic run)."""

Listener = Callable[[set[str]], None]


VIEW_FLAGS: dict[str, bool] = {"heatmap": False, "overlay": True, "compare": False, "before_fit": False}
"""The view's on/off switches and their defaults (each is an action of the View menu, kept in the settings)."""


class ViewerState:
    """The current image, people, result and the indices into it; notifies listeners with the changed names."""

    def __init__(self) -> None:
        self.image: np.ndarray | None = None  # BGR
        self.image_path: Path | None = None
        self.camera: PhotoCamera | None = None  # the photo's camera (EXIF focal); None: the typical one
        self.people: list[Person] = []
        self.person: int = -1
        self.result: RecoveryResult | None = None
        self.reference: RecoveryResult | None = None
        self.sample: int = 0
        self.step: int | None = None
        self.heatmap: bool = False
        self.overlay: bool = True
        self.compare: bool = False
        self.before_fit: bool = False  # show the bodies before the fit to the keypoints beside the fitted ones
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------------------------------ observers
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, *names: str) -> None:
        changed = set(names)
        for listener in list(self._listeners):
            listener(changed)

    # ------------------------------------------------------------------------------------- setters
    def set_image(self, image: np.ndarray | None, path: Path | None = None, camera: PhotoCamera | None = None) -> None:
        """A new photo or frame clears the people and the result that belonged to the old one."""
        self.image, self.image_path, self.camera = image, path, camera
        self.people, self.person = [], -1
        self.result, self.reference = None, None
        self.sample, self.step = 0, None
        self._emit("image", "people", "result")

    def set_people(self, people: list[Person], person: int | None = None) -> None:
        self.people = list(people)
        self.person = person if person is not None else (largest_person(self.people) if self.people else -1)
        self._emit("people")

    def set_frame(self, image: np.ndarray, people: list[Person], person: int) -> None:
        """A live frame: new picture and people, but the result stays until the frame's own arrives."""
        self.image, self.image_path, self.camera = image, None, None
        self.people, self.person = list(people), person
        self._emit("image", "people")

    def select_person(self, index: int) -> None:
        if 0 <= index < len(self.people) and index != self.person:
            self.person = index
            self._emit("person")

    def set_result(self, result: RecoveryResult | None, reference: RecoveryResult | None = None,
                   keep_indices: bool = False) -> None:
        """Show a new result; live updates keep the selected sample/step so the view does not jump."""
        self.result, self.reference = result, reference
        if not keep_indices or result is None or self.sample >= result.num_samples:
            self.sample = 0
        if self.sample == REFERENCE and reference is None:
            self.sample = 0
        if not keep_indices or (self.step is not None and self.step >= self.num_steps):
            self.step = None
        self._emit("result")

    def select_sample(self, sample: int) -> None:
        if self.result is None or sample == self.sample:
            return
        valid = 0 <= sample < self.result.num_samples or sample == MEAN or (
            sample == REFERENCE and self.reference is not None)
        if valid:
            self.sample = sample
            if sample < 0:
                self.step = None  # the mean and the reference have no generation trace to scrub
            self._emit("sample")

    def set_step(self, step: int | None) -> None:
        """``None`` (or the last index) shows the finished mesh."""
        if step is not None and (step < 0 or step >= self.num_steps):
            step = None
        if self.sample < 0 and step is not None:
            self.sample = 0
        if step != self.step:
            self.step = step
            self._emit("step")

    def set_view_flag(self, name: str, on: bool) -> None:
        if name not in VIEW_FLAGS:
            raise ValueError(f"unknown view flag {name!r}")
        if getattr(self, name) != on:
            setattr(self, name, on)
            self._emit(name)

    # ----------------------------------------------------------------------------------- derived
    @property
    def num_steps(self) -> int:
        trace = self.result.trace if self.result is not None else None
        return int(trace.tokens.shape[0]) if trace is not None else 0

    @property
    def has_spread(self) -> bool:
        """Whether a per-vertex SD exists (it needs at least two hypotheses)."""
        return self.result is not None and self.result.num_samples > 1

    @property
    def current_person(self) -> Person | None:
        return self.people[self.person] if 0 <= self.person < len(self.people) else None
