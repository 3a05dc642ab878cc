"""The main window: layout, menus and toolbar from the action table, status bar and persisted settings.

Layout: the photo (with people) on the left, the 3D viewport with the step timeline in the middle, generation
and live controls on the right, the hypothesis gallery at the bottom. All panels are docks, so users can
rearrange them; QSettings restores geometry, dock state, the last folder, recent files and the settings.
Opening files, drag and drop, recent files and exports live in ``file_actions.py``.
"""

from __future__ import annotations

import json
import random
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QListWidget,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from megaviewer.app.pipeline import unconditional_unavailable_reason
from megaviewer.gui.actions import MENUS, ShortcutsDialog, build_actions
from megaviewer.gui.controls import RecoveryControls
from megaviewer.gui.file_actions import FileActionsMixin
from megaviewer.gui.gallery import HypothesisGallery
from megaviewer.gui.image_view import ImageView
from megaviewer.gui.live_panel import LivePanel
from megaviewer.gui.presenter import Presenter
from megaviewer.gui.session import DetectorFactory, Session
from megaviewer.gui.state import MEAN, REFERENCE, VIEW_FLAGS, ViewerState
from megaviewer.gui.timeline import StepTimeline
from megaviewer.gui.viewport import MeshViewport
from megaviewer.settings import RecoverySettings

TOOLBAR = ("open", "recover", "toggle_mode", "random_humans", None, "play_steps", "heatmap", "overlay", "compare",
           "before_fit", "reset_view", None, "export_mesh", "screenshot", None, "webcam", "live_stop")


class MainWindow(FileActionsMixin, QMainWindow):
    def __init__(self, settings: QSettings | None = None, detector_factory: DetectorFactory | None = None,
                 auto_update: bool | float = False):
        super().__init__()
        self.setWindowTitle("megaviewer — masked generative human mesh recovery")
        self.setAcceptDrops(True)
        self.qsettings = settings if settings is not None else QSettings("megaviewer", "megaviewer")
        self.last_message: tuple[str, str] | None = None
        self.state = ViewerState()
        self.session = Session(self.state, **({"detector_factory": detector_factory} if detector_factory else {}))
        self._build_widgets(auto_update)
        self.presenter = Presenter(self.state, self.viewport, self.image_view, self.gallery, self.timeline,
                                   self.people_list, self.controls.summary)
        self.actions_by_name = build_actions(self, self._handlers())
        self._build_menus_and_toolbar()
        self._build_status_bar()
        self._connect()
        self._restore_settings()
        self._sync_actions()

    # ----------------------------------------------------------------------------------- building
    def _build_widgets(self, auto_update: bool | float) -> None:
        self.viewport = MeshViewport(self, auto_update=auto_update)
        self.timeline = StepTimeline(self)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.viewport, 1)
        layout.addWidget(self.timeline)
        self.setCentralWidget(central)

        self.image_view = ImageView(self)
        self.people_list = QListWidget(self)
        self.people_list.setMaximumHeight(66)
        self.people_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.people_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.people_list.setToolTip("People found in the image: pick one (or click them on the photo)")
        image_panel = QWidget(self)
        image_layout = QVBoxLayout(image_panel)
        image_layout.setContentsMargins(0, 0, 0, 0)
        image_layout.addWidget(self.image_view, 1)
        image_layout.addWidget(self.people_list)
        self.controls = RecoveryControls(parent=self)
        # The panel scrolls rather than grow: a taller panel (a longer result summary) must never force the
        # window taller and resize the 3D view between two results.
        controls_scroll = QScrollArea(self)
        controls_scroll.setWidgetResizable(True)
        controls_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        controls_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        controls_scroll.setWidget(self.controls)
        # ... but never narrower than the panel's content (a scroll area alone would let the dock clip it).
        controls_scroll.setMinimumWidth(self.controls.minimumSizeHint().width()
                                        + controls_scroll.verticalScrollBar().sizeHint().width())
        self.live_panel = LivePanel(self)
        self.gallery = HypothesisGallery(self)
        self.gallery.setFlow(HypothesisGallery.Flow.LeftToRight)
        self.gallery.setWrapping(False)

        self.docks: dict[str, QDockWidget] = {}
        for name, title, widget, area in (
                ("image", "Image", image_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
                ("generation", "Generation", controls_scroll, Qt.DockWidgetArea.RightDockWidgetArea),
                ("live", "Live", self.live_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                ("gallery", "Hypotheses", self.gallery, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.resizeDocks([self.docks["image"], self.docks["generation"]], [470, 330], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["generation"], self.docks["live"]], [400, 160], Qt.Orientation.Vertical)
        self.resizeDocks([self.docks["gallery"]], [170], Qt.Orientation.Vertical)
        self.resize(1440, 880)

    def _handlers(self) -> dict[str, Any]:
        s, st = self.session, self.state
        return {
            "open": self.open_dialog, "open_video": self.open_video_dialog, "sample_image": self.load_sample,
            "open_model": self.open_model_dialog,
            "export_mesh": self.export_mesh_dialog, "export_npz": self.export_npz_dialog,
            "export_scene": self.export_scene_dialog,
            "screenshot": self.screenshot_dialog, "quit": self.close, "recover": s.recover,
            "toggle_mode": lambda on: self.controls.set_mode("stochastic" if on else "deterministic"),
            "random_humans": s.random_humans, "reseed": self.reseed,
            "step_prev": lambda: self.timeline.step_by(-1), "step_next": lambda: self.timeline.step_by(1),
            "step_final": lambda: st.set_step(None), "play_steps": self.timeline.set_playing,
            "sample_prev": lambda: self.step_sample(-1), "sample_next": lambda: self.step_sample(1),
            "show_mean": lambda: st.select_sample(MEAN), "show_reference": lambda: st.select_sample(REFERENCE),
            **{flag: (lambda on, flag=flag: st.set_view_flag(flag, on)) for flag in VIEW_FLAGS},
            "reset_view": self.viewport.reset_view,
            "webcam": self.start_webcam, "live_pause": s.pause_live, "live_stop": s.stop_live,
            "shortcuts": lambda: ShortcutsDialog(self).exec(), "about": self.about,
        }

    def _build_menus_and_toolbar(self) -> None:
        from megaviewer.gui.actions import ACTIONS

        menus = {title: self.menuBar().addMenu(title) for title in MENUS}
        self.recent_menu = QMenu("Open &recent", self)
        for spec in ACTIONS:
            menu = menus[spec.menu]
            if spec.name == "export_mesh":
                menu.addMenu(self.recent_menu)
                menu.addSeparator()
            if spec.name in ("quit", "step_prev", "sample_prev", "compare", "reset_view"):
                menu.addSeparator()
            menu.addAction(self.actions_by_name[spec.name])
        view_menu = menus["&View"]
        view_menu.addSeparator()
        panels = view_menu.addMenu("&Panels")
        for dock in self.docks.values():
            panels.addAction(dock.toggleViewAction())
        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("toolbar_main")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for name in TOOLBAR:
            toolbar.addSeparator() if name is None else toolbar.addAction(self.actions_by_name[name])
        self.addToolBar(toolbar)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.timing_label = QLabel("", self)
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(90)
        self.busy.setMaximumHeight(14)
        self.busy.setVisible(False)
        self.model_label = QLabel("model: loading…", self)
        bar.addPermanentWidget(self.timing_label)
        bar.addPermanentWidget(self.busy)
        bar.addPermanentWidget(self.model_label)

    def _connect(self) -> None:
        s, st = self.session, self.state
        self._rerun = QTimer(self)  # debounce: typing "12" in a spin box must not start two runs
        self._rerun.setSingleShot(True)
        self._rerun.setInterval(300)
        self._rerun.timeout.connect(s.recover)
        s.message.connect(self.notify)
        s.status.connect(self.timing_label.setText)
        s.busyChanged.connect(self.busy.setVisible)
        s.engineChanged.connect(self._engine_changed)
        s.modelOpened.connect(self.remember_model)
        s.liveChanged.connect(self._live_changed)
        s.liveStats.connect(self._live_stats)
        s.exported.connect(lambda path: self.statusBar().showMessage(f"Saved {path}", 8000))
        st.subscribe(lambda _changed: self._sync_actions())
        self.controls.settingsChanged.connect(self._settings_changed)
        self.controls.recoverRequested.connect(s.recover)
        self.controls.randomRequested.connect(s.random_humans)
        self.gallery.sampleSelected.connect(st.select_sample)
        self.timeline.stepChanged.connect(lambda step: st.set_step(None if step < 0 else step))
        self.timeline.playingChanged.connect(self.actions_by_name["play_steps"].setChecked)
        self.image_view.personClicked.connect(st.select_person)
        self.people_list.currentRowChanged.connect(st.select_person)
        self.live_panel.startRequested.connect(lambda spec: s.start_live(spec, loop=self.live_panel.loop.isChecked()))
        self.live_panel.pauseRequested.connect(s.pause_live)
        self.live_panel.stopRequested.connect(s.stop_live)

    # --------------------------------------------------------------------------------- engine/state
    def set_engine(self, engine: Any) -> None:
        self.session.set_engine(engine)

    def _engine_changed(self, engine: Any) -> None:
        if engine is None:
            self.model_label.setText("model: not loaded")
            self.model_label.setToolTip("")
            self.presenter.model_error = True
            self.viewport.set_placeholder(self.presenter.waiting_text())
        else:
            info = engine.describe()
            self.model_label.setText(f"model: {engine.label()} · {info['device']} · {info['tokens']} tokens")
            self.model_label.setToolTip(f"Checkpoint {info['model']}, conditioned on "
                                        f"{' + '.join(info['conditioning']) or 'nothing'}, making {info['body']} "
                                        "bodies (File > Open model… loads another)")
            self.presenter.model_error = False
            self.presenter.set_engine(self.session.scene, engine.decode_tokens)
            if not self.viewport.has_mesh:
                self.viewport.set_placeholder(self.presenter.waiting_text())
        reason = unconditional_unavailable_reason(engine)
        self.controls.set_random_available(reason)
        action = self.actions_by_name["random_humans"]
        action.setEnabled(reason is None)
        action.setToolTip(reason or action.statusTip())
        if self.state.result is not None:
            self.presenter.on_state({"result"})

    def _settings_changed(self, settings: RecoverySettings) -> None:
        self.session.set_settings(settings)
        self.actions_by_name["toggle_mode"].setChecked(settings.mode == "stochastic")
        if self.session.live is None and self.state.current_person is not None:
            self._rerun.start()

    def _sync_actions(self) -> None:
        st, acts = self.state, self.actions_by_name
        has_result = st.result is not None
        for name in ("export_mesh", "export_npz", "screenshot", "play_steps", "step_prev", "step_next",
                     "step_final", "overlay"):
            acts[name].setEnabled(has_result)
        acts["export_scene"].setEnabled(has_result and st.result.mode != "unconditional" and bool(st.people))
        many = has_result and st.result.num_samples > 1
        for name in ("sample_prev", "sample_next", "show_mean", "heatmap"):
            acts[name].setEnabled(many)
        acts["heatmap"].setToolTip("Colour vertices by their SD over the Q hypotheses (H)" if many else
                                   "Needs Q ≥ 2 hypotheses: run the stochastic mode first")
        acts["show_reference"].setEnabled(st.reference is not None)
        acts["compare"].setEnabled(st.reference is not None)
        acts["before_fit"].setEnabled(has_result and st.result.before_fit is not None)
        for name in VIEW_FLAGS:
            acts[name].setChecked(getattr(st, name))
        acts["live_pause"].setEnabled(self.session.live is not None)
        acts["live_stop"].setEnabled(self.session.live is not None)

    def step_sample(self, delta: int) -> None:
        if self.state.result is not None:
            q = self.state.result.num_samples
            self.state.select_sample((max(self.state.sample, 0) + delta) % q)

    def reseed(self) -> None:
        self.controls.seed.setValue(random.randrange(2**31 - 1))  # triggers a debounced recover

    # ------------------------------------------------------------------------------------ messages
    def notify(self, level: str, text: str) -> None:
        """Status-bar line for everything; a non-blocking dialog for warnings and errors."""
        self.last_message = (level, text)
        self.statusBar().showMessage(text.splitlines()[0], 10000)
        if level == "info" and self.state.image is not None and not self.state.people:
            self.image_view.set_message(text.splitlines()[0])
        if level in ("warning", "error"):
            icon = QMessageBox.Icon.Critical if level == "error" else QMessageBox.Icon.Warning
            box = QMessageBox(icon, "megaviewer", text, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()
            self.message_box = box

    def about(self) -> None:
        info = self.session.engine.describe() if self.session.engine is not None else {}
        details = "<br>".join(f"{k}: {v}" for k, v in info.items()) or "no model loaded"
        QMessageBox.about(self, "About megaviewer",
                          "<b>megaviewer</b> — MEGA: masked generative autoencoder for human mesh recovery "
                          f"(Fiche et al., CVPR 2025).<br><br>{details}")

    # ---------------------------------------------------------------------------------------- live
    def start_webcam(self) -> None:
        self.live_panel.webcam.setChecked(True)
        self.session.start_live(self.live_panel.camera_index.value())

    def _live_changed(self, running: bool, paused: bool) -> None:
        self.live_panel.set_running(running, paused)
        self.presenter.set_live(running and not paused)
        self._sync_actions()

    def _live_stats(self, frame) -> None:
        self.live_panel.show_stats(frame.fps, frame.latency_ms, frame.dropped, frame.index + 1)
        self.timing_label.setText(f"live · {frame.fps:.1f} fps · latency {frame.latency_ms:.0f} ms · "
                                  f"model {frame.process_ms:.0f} ms")

    # ------------------------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        qs = self.qsettings
        geometry, window_state = qs.value("window/geometry"), qs.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if window_state is not None:
            self.restoreState(window_state)
        try:
            stored = json.loads(str(qs.value("generation/settings", "{}")))
        except json.JSONDecodeError:
            stored = {}
        settings = RecoverySettings.from_dict(stored if isinstance(stored, dict) else {})
        self.controls.set_settings(settings)
        self.session.set_settings(settings)
        self.actions_by_name["toggle_mode"].setChecked(settings.mode == "stochastic")
        for flag, default in VIEW_FLAGS.items():
            self.state.set_view_flag(flag, str(qs.value(f"view/{flag}", default)).lower() == "true")
        self.live_panel.camera_index.setValue(int(qs.value("live/camera", 0) or 0))
        self.live_panel.video_path.setText(str(qs.value("live/video", "") or ""))
        self._refresh_recent_menu()

    def save_settings(self) -> None:
        qs = self.qsettings
        qs.setValue("window/geometry", self.saveGeometry())
        qs.setValue("window/state", self.saveState())
        qs.setValue("generation/settings", json.dumps(self.controls.settings().to_dict()))
        for flag in VIEW_FLAGS:
            qs.setValue(f"view/{flag}", bool(getattr(self.state, flag)))
        qs.setValue("live/camera", self.live_panel.camera_index.value())
        qs.setValue("live/video", self.live_panel.video_path.text())
        qs.sync()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.save_settings()
        self.timeline.set_playing(False)
        self.session.shutdown()
        self.viewport.close_plotter()
        super().closeEvent(event)
