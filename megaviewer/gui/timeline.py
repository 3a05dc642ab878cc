"""The generation timeline: a slider over the T steps of the selected hypothesis, with play/pause.

Position T+1 ("final") is the finished mesh; positions 1..T show the mesh decoded after each step with the
still-masked token regions grey and the regions revealed by that step highlighted (paper Fig. 3).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QSlider, QToolButton, QVBoxLayout, QWidget


class StepTimeline(QWidget):
    """``stepChanged(step)`` with ``step`` in 0..T-1, or -1 for the finished mesh."""

    stepChanged = Signal(int)
    playingChanged = Signal(bool)

    def __init__(self, parent=None, interval_ms: int = 700):
        super().__init__(parent)
        self.play_button = QToolButton(self)
        self.play_button.setCheckable(True)
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play the generation steps (P)")
        self.play_button.toggled.connect(self.set_playing)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, 0)
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(1)
        self.slider.setToolTip("Scrub through the generation: step 1 … T, then the final mesh (, and .)")
        self.slider.valueChanged.connect(self._value_changed)
        self.position = QLabel("", self)
        self.position.setMinimumWidth(64)
        self.label = QLabel("no generation yet", self)
        # Never let a long step description widen the central area (it would squeeze the docks).
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend = QLabel("<span style='color:#5c5e66'>■</span> masked &nbsp;"
                             "<span style='color:#ff9628'>■</span> revealed now &nbsp;"
                             "<span style='color:#b0c4e2'>■</span> kept", self)
        top = QHBoxLayout()
        top.addWidget(self.play_button)
        top.addWidget(self.slider, 1)
        top.addWidget(self.position)
        bottom = QHBoxLayout()
        bottom.addWidget(self.label, 1)
        bottom.addWidget(self.legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addLayout(bottom)
        self._steps = 0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._advance)
        self.setEnabled(False)

    # ---------------------------------------------------------------------------------------- model
    def set_steps(self, steps: int, step: int | None = None) -> None:
        """Configure for a result with ``steps`` trace steps (0 disables the timeline)."""
        self._steps = steps
        self.slider.blockSignals(True)
        self.slider.setRange(0, steps)
        self.slider.setValue(steps if step is None else step)
        self.slider.blockSignals(False)
        self._show_position()
        self.setEnabled(steps > 0)
        if steps == 0:
            self.set_playing(False)
            self.legend.setVisible(False)

    def set_step(self, step: int | None) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self._steps if step is None else step)
        self.slider.blockSignals(False)
        self._show_position()

    def _show_position(self) -> None:
        value = self.slider.value()
        if self._steps == 0:
            self.position.setText("")
        else:
            self.position.setText("final" if value >= self._steps else f"{value + 1} / {self._steps}")

    def describe(self, text: str) -> None:
        self.label.setText(text)
        self.label.setToolTip(text)

    @property
    def value(self) -> int | None:
        v = self.slider.value()
        return None if v >= self._steps else v

    # ----------------------------------------------------------------------------------------- play
    def set_playing(self, playing: bool) -> None:
        playing = playing and self._steps > 0
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self.play_button.setText("⏸" if playing else "▶")
        if playing:
            if self.slider.value() >= self._steps:
                self.slider.setValue(0)
            self._timer.start()
        else:
            self._timer.stop()
        self.playingChanged.emit(playing)

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def _advance(self) -> None:
        nxt = self.slider.value() + 1
        if nxt > self._steps:
            nxt = 0  # loop: the generation is short, watching it repeat is the point
        self.slider.setValue(nxt)

    def step_by(self, delta: int) -> None:
        self.slider.setValue(max(0, min(self._steps, self.slider.value() + delta)))

    def _value_changed(self, value: int) -> None:
        self._show_position()
        self.stepChanged.emit(-1 if value >= self._steps else value)
