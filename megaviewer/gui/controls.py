"""The generation panel: mode, camera fit, samples Q, steps T, temperature and seed, plus the run buttons.

It edits a :class:`RecoverySettings` and says so with ``settingsChanged``; it never runs anything itself.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from megaviewer.settings import RecoverySettings


class RecoveryControls(QWidget):
    settingsChanged = Signal(object)  # RecoverySettings
    recoverRequested = Signal()
    randomRequested = Signal()

    def __init__(self, settings: RecoverySettings | None = None, parent=None):
        super().__init__(parent)
        mode_box = QGroupBox("Mode", self)
        self.deterministic = QRadioButton("Deterministic", mode_box)
        self.deterministic.setToolTip("One decoder pass over all tokens (fast, one mesh)")
        self.stochastic = QRadioButton("Stochastic", mode_box)
        self.stochastic.setToolTip("Q hypotheses sampled over T iterative unmasking steps (Ctrl+M)")
        self._mode_group = QButtonGroup(self)
        self._mode_group.addButton(self.deterministic)
        self._mode_group.addButton(self.stochastic)
        self.fit_camera = QCheckBox("Fit camera to keypoints", mode_box)
        self.fit_camera.setToolTip("Fits each hypothesis's rotation and camera to the detected keypoints so the "
                                   "mesh sits on the person; off = the network's own camera")
        self.refine = QCheckBox("Fit bodies to keypoints", mode_box)
        self.refine.setToolTip("After the camera fit, fits each hypothesis's body to the detected keypoints "
                               "(about 0.1 s per person; the live view skips it); off = the network's bodies")
        self.expected_codes = QCheckBox("Expected codes", mode_box)
        self.expected_codes.setToolTip("Where the generation picks the most likely code (the deterministic pass, the "
                                       "last stochastic step), decode the code averaged under the model's "
                                       "distribution instead: more accurate bodies; off = the paper's argmax")
        mode_column = QVBoxLayout(mode_box)
        mode_row = QHBoxLayout()
        mode_row.addWidget(self.deterministic)
        mode_row.addWidget(self.stochastic)
        mode_column.addLayout(mode_row)
        mode_column.addWidget(self.fit_camera)
        mode_column.addWidget(self.refine)
        mode_column.addWidget(self.expected_codes)

        self.sampling = QGroupBox("Sampling", self)
        self.samples = QSpinBox(self.sampling)
        self.samples.setRange(1, 64)
        self.samples.setToolTip("Number of hypotheses Q sampled in one batch")
        self.steps = QSpinBox(self.sampling)
        self.steps.setRange(1, 32)
        self.steps.setToolTip("Unmasking steps T (the paper uses few: each step reveals a cosine share)")
        self.temperature = QDoubleSpinBox(self.sampling)
        self.temperature.setRange(0.0, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setToolTip("Sampling temperature: higher gives more varied hypotheses")
        self.seed = QSpinBox(self.sampling)
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Seed of the sampling noise: the same seed gives the same hypotheses")
        self.random_seed = QCheckBox("new each run", self.sampling)
        self.random_seed.setToolTip("Draw a fresh seed for every run")
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        form = QFormLayout(self.sampling)
        form.addRow("Samples Q", self.samples)
        form.addRow("Steps T", self.steps)
        form.addRow("Temperature", self.temperature)
        form.addRow("Seed", seed_row)

        self.recover_button = QPushButton("Recover", self)
        self.recover_button.setToolTip("Run the model on the selected person (Ctrl+R)")
        self.random_button = QPushButton("Random humans", self)
        self.random_button.setToolTip("Q bodies from the unconditional pre-trained model (Ctrl+U)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.recover_button, 1)
        buttons.addWidget(self.random_button, 1)

        result_box = QGroupBox("Result", self)
        self.summary = QLabel("nothing recovered yet", result_box)
        self.summary.setWordWrap(True)
        # Long lines must wrap, never widen the dock (that would shrink the 3D view on every new result).
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setToolTip("What the shown result is, its spread over the hypotheses and what it cost")
        QVBoxLayout(result_box).addWidget(self.summary)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(mode_box)
        layout.addWidget(self.sampling)
        layout.addLayout(buttons)
        layout.addWidget(result_box)
        layout.addStretch(1)

        self.set_settings(settings or RecoverySettings())
        for signal in (self.deterministic.toggled, self.samples.valueChanged, self.steps.valueChanged,
                       self.temperature.valueChanged, self.seed.valueChanged, self.random_seed.toggled,
                       self.fit_camera.toggled, self.refine.toggled, self.expected_codes.toggled):
            signal.connect(self._changed)
        self.recover_button.clicked.connect(self.recoverRequested)
        self.random_button.clicked.connect(self.randomRequested)

    def settings(self) -> RecoverySettings:
        return RecoverySettings(
            mode="stochastic" if self.stochastic.isChecked() else "deterministic",
            num_samples=self.samples.value(), steps=self.steps.value(),
            temperature=round(self.temperature.value(), 4), seed=self.seed.value(),
            random_seed=self.random_seed.isChecked(), fit_camera=self.fit_camera.isChecked(),
            refine=self.refine.isChecked(), expected_codes=self.expected_codes.isChecked(),
        )

    def set_settings(self, settings: RecoverySettings) -> None:
        """Show ``settings`` without emitting ``settingsChanged`` for each field."""
        widgets = (self.deterministic, self.stochastic, self.samples, self.steps, self.temperature, self.seed,
                   self.random_seed, self.fit_camera, self.refine, self.expected_codes)
        for widget in widgets:
            widget.blockSignals(True)
        (self.stochastic if settings.mode == "stochastic" else self.deterministic).setChecked(True)
        self.samples.setValue(settings.num_samples)
        self.steps.setValue(settings.steps)
        self.temperature.setValue(settings.temperature)
        self.seed.setValue(settings.seed)
        self.random_seed.setChecked(settings.random_seed)
        self.fit_camera.setChecked(settings.fit_camera)
        self.refine.setChecked(settings.refine)
        self.expected_codes.setChecked(settings.expected_codes)
        for widget in widgets:
            widget.blockSignals(False)
        self._sync_enabled()

    def set_mode(self, mode: str) -> None:
        (self.stochastic if mode == "stochastic" else self.deterministic).setChecked(True)

    def set_random_available(self, reason: str | None) -> None:
        """Disable "Random humans" with the reason as tooltip when the engine cannot do it."""
        self.random_button.setEnabled(reason is None)
        self.random_button.setToolTip(reason or "Q bodies from the unconditional pre-trained model (Ctrl+U)")

    def _sync_enabled(self) -> None:
        stochastic = self.stochastic.isChecked()
        self.seed.setEnabled(not self.random_seed.isChecked())
        self.refine.setEnabled(self.fit_camera.isChecked())  # the body fit starts from the fitted camera
        for widget in (self.samples, self.steps, self.temperature):
            widget.setEnabled(stochastic or self.random_button.isEnabled())
        self.sampling.setTitle("Sampling" if stochastic else "Sampling (stochastic mode and random humans)")

    def _changed(self, *_args) -> None:
        self._sync_enabled()
        self.settingsChanged.emit(self.settings())
