"""Every user action declared once: text, shortcut, tooltip and menu (aitviewer's ``SHORTCUTS`` lesson).

Menus, toolbar tooltips and the Help > Shortcuts dialog are all built from :data:`ACTIONS`, so a shortcut
changed here changes everywhere and the help can never drift from the behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcut: str
    tip: str
    menu: str
    checkable: bool = False
    short: str = ""  # toolbar text; the menu text without "&" and "…" when empty


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "&Open image…", "Ctrl+O", "Open a photo and detect the people in it", "&File", short="Open"),
    ActionSpec("open_video", "Play &video file…", "Ctrl+Shift+O", "Recover live from a video file", "&File"),
    ActionSpec("sample_image", "Load &sample image", "Ctrl+Shift+N", "Reload the bundled sample photo", "&File"),
    ActionSpec("open_model", "Open &model…", "Ctrl+Shift+M",
               "Load another MEGA checkpoint folder (image-, keypoint- or landmark-conditioned) and recover again",
               "&File"),
    ActionSpec("export_mesh", "&Export mesh…", "Ctrl+E", "Save the shown mesh as OBJ, PLY or GLB", "&File",
               short="Export"),
    ActionSpec("export_npz", "Export &result (NPZ)…", "Ctrl+Shift+E",
               "Save tokens, all hypotheses, SD and camera as NPZ", "&File"),
    ActionSpec("export_scene", "Export s&cene (GLB)…", "Ctrl+Alt+E",
               "Save every person of the photo in one 3D scene, seen from the photo's camera (GLB)", "&File"),
    ActionSpec("screenshot", "Save &screenshot…", "Ctrl+Shift+S", "Save the 3D view as a PNG", "&File",
               short="Screenshot"),
    ActionSpec("quit", "&Quit", "Ctrl+Q", "Close megaviewer", "&File"),
    ActionSpec("recover", "&Recover", "Ctrl+R", "Run the model on the selected person with these settings",
               "&Generate", short="Recover"),
    ActionSpec("toggle_mode", "&Stochastic mode", "Ctrl+M",
               "Switch between one deterministic pass and Q sampled hypotheses", "&Generate", checkable=True,
               short="Stochastic"),
    ActionSpec("random_humans", "Random &humans", "Ctrl+U",
               "Generate Q bodies from the unconditional pre-trained model", "&Generate", short="Random"),
    ActionSpec("reseed", "New s&eed", "Ctrl+K", "Pick a new random seed and recover again", "&Generate"),
    ActionSpec("step_prev", "Previous step", ",", "Scrub one generation step back", "&View"),
    ActionSpec("step_next", "Next step", ".", "Scrub one generation step forward", "&View"),
    ActionSpec("step_final", "Final mesh", "End", "Show the finished mesh (leave step scrubbing)", "&View"),
    ActionSpec("play_steps", "&Play generation", "P", "Animate the generation steps", "&View", checkable=True,
               short="Play"),
    ActionSpec("sample_prev", "Previous hypothesis", "[", "Select the previous sampled mesh", "&View"),
    ActionSpec("sample_next", "Next hypothesis", "]", "Select the next sampled mesh", "&View"),
    ActionSpec("show_mean", "Show &mean mesh", "M", "Select the mean of the Q hypotheses", "&View"),
    ActionSpec("show_reference", "Show &deterministic mesh", "D",
               "Select the deterministic reference of a stochastic run", "&View"),
    ActionSpec("compare", "&Compare with deterministic", "C",
               "Draw the deterministic mesh as a ghost over the selected one", "&View", checkable=True,
               short="Compare"),
    ActionSpec("before_fit", "Show body &before the fit", "B",
               "Draw the network's body before the fit to the keypoints: a ghost in the 3D view, the body on the photo",
               "&View", checkable=True, short="Before fit"),
    ActionSpec("heatmap", "Uncertainty &heatmap", "H",
               "Colour vertices by their SD over the Q hypotheses (mm)", "&View", checkable=True, short="Heatmap"),
    ActionSpec("overlay", "Mesh &overlay on image", "O", "Draw the selected mesh over the photo", "&View",
               checkable=True, short="Overlay"),
    ActionSpec("reset_view", "&Reset 3D view", "R", "Look at the mesh from the camera again", "&View",
               short="Reset view"),
    ActionSpec("webcam", "Start &webcam", "F5", "Recover live from the chosen webcam", "&Live", short="Webcam"),
    ActionSpec("live_pause", "&Pause / resume", "Space", "Pause or resume the live stream", "&Live"),
    ActionSpec("live_stop", "&Stop", "Esc", "Stop the live stream", "&Live", short="Stop"),
    ActionSpec("shortcuts", "&Keyboard shortcuts", "F1", "List every shortcut", "&Help"),
    ActionSpec("about", "&About megaviewer", "", "Model, device and paper", "&Help"),
)

MENUS: tuple[str, ...] = ("&File", "&Generate", "&View", "&Live", "&Help")


def tooltip(spec: ActionSpec) -> str:
    """Tooltip text: what it does plus its shortcut, in the platform's notation."""
    key = QKeySequence(spec.shortcut).toString(QKeySequence.SequenceFormat.NativeText)
    return f"{spec.tip} ({key})" if key else spec.tip


def build_actions(parent, handlers: dict[str, Callable[..., object]]) -> dict[str, QAction]:
    """One QAction per spec, connected to ``handlers[name]`` (``triggered(bool)`` for checkable ones)."""
    actions: dict[str, QAction] = {}
    for spec in ACTIONS:
        action = QAction(spec.text, parent)
        action.setObjectName(f"action_{spec.name}")
        if spec.shortcut:
            action.setShortcut(QKeySequence(spec.shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(tooltip(spec))
        action.setStatusTip(spec.tip)
        action.setCheckable(spec.checkable)
        action.setIconText(spec.short or spec.text.replace("&", "").rstrip("…"))
        handler = handlers.get(spec.name)
        if handler is not None:
            action.triggered.connect(handler)
        actions[spec.name] = action
    return actions


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: the action table, read-only."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = [s for s in ACTIONS if s.shortcut]
        table = QTableWidget(len(rows), 3, self)
        table.setHorizontalHeaderLabels(["Shortcut", "Action", "What it does"])
        for i, spec in enumerate(rows):
            key = QKeySequence(spec.shortcut).toString(QKeySequence.SequenceFormat.NativeText)
            for j, text in enumerate((key, spec.text.replace("&", "").rstrip("…"), spec.tip)):
                table.setItem(i, j, QTableWidgetItem(text))
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        table.resizeColumnsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, parent=self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.table = table
        self.resize(680, 560)
