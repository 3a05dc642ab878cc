"""The live panel: pick a webcam index or a video file, start / pause / stop, and read FPS and latency.

It only collects the user's choice and shows numbers; :class:`megaviewer.gui.workers.LiveWorker` does the work.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv);;All files (*)"


class LivePanel(QWidget):
    startRequested = Signal(object)  # int camera index or Path of a video file
    pauseRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.webcam = QRadioButton("Webcam", self)
        self.webcam.setChecked(True)
        self.camera_index = QSpinBox(self)
        self.camera_index.setRange(0, 16)
        self.camera_index.setToolTip("OpenCV camera index (0 = the default camera)")
        self.video = QRadioButton("Video file", self)
        self.video_path = QLineEdit(self)
        self.video_path.setPlaceholderText("choose a video…")
        self.browse = QToolButton(self)
        self.browse.setText("…")
        self.browse.setToolTip("Choose a video file")
        self.browse.clicked.connect(self._browse)
        self.loop = QCheckBox("loop", self)
        self.loop.setChecked(True)
        self.loop.setToolTip("Start the video again at its end")
        grid = QGridLayout()
        grid.addWidget(self.webcam, 0, 0)
        grid.addWidget(self.camera_index, 0, 1, 1, 2)
        grid.addWidget(self.video, 1, 0)
        grid.addWidget(self.video_path, 1, 1)
        grid.addWidget(self.browse, 1, 2)
        grid.addWidget(self.loop, 2, 1)

        self.start_button = QPushButton("Start", self)
        self.start_button.setToolTip("Start recovering live (F5)")
        self.pause_button = QPushButton("Pause", self)
        self.pause_button.setToolTip("Pause or resume (Space)")
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setToolTip("Stop the stream (Esc)")
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        self.stats = QLabel("idle", self)
        self.stats.setToolTip("Recovered frames per second, capture-to-mesh latency and frames skipped because "
                              "the model was still busy (frames are dropped, never queued)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(grid)
        layout.addLayout(buttons)
        layout.addWidget(self.stats)
        layout.addStretch(1)
        self.start_button.clicked.connect(self._start)
        self.pause_button.clicked.connect(self.pauseRequested)
        self.stop_button.clicked.connect(self.stopRequested)
        self.video_path.textEdited.connect(lambda _text: self.video.setChecked(True))
        self.set_running(False)

    def _browse(self) -> None:
        start = str(Path(self.video_path.text()).parent) if self.video_path.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Choose a video", start, VIDEO_FILTER)
        if path:
            self.video_path.setText(path)
            self.video.setChecked(True)

    def source_spec(self) -> int | Path:
        if self.video.isChecked() and self.video_path.text().strip():
            return Path(self.video_path.text().strip())
        return self.camera_index.value()

    def _start(self) -> None:
        self.startRequested.emit(self.source_spec())

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.pause_button.setText("Resume" if paused else "Pause")
        for widget in (self.webcam, self.camera_index, self.video, self.video_path, self.browse, self.loop):
            widget.setEnabled(not running)
        if not running:
            self.stats.setText("idle")

    def show_stats(self, fps: float, latency_ms: float, dropped: int, frame: int) -> None:
        self.stats.setText(f"{fps:.1f} fps · latency {latency_ms:.0f} ms · frame {frame} · dropped {dropped}")
