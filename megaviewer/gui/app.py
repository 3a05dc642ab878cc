"""``megaviewer [IMAGE|VIDEO]``: the QApplication, the dark theme, the settings store and start-up.

The window appears at once with the sample photo; the model loads on a worker thread and a failure becomes a
message instead of a crash. Tests build the same window with :func:`create_window` and an injected engine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

APP_NAME = "megaviewer"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=APP_NAME, description="Desktop viewer for MEGA human mesh recovery: "
                                     "open a photo or a video, or stream from a webcam.")
    parser.add_argument("source", nargs="?", help="an image or a video file (default: the sample photo)")
    parser.add_argument("--camera", type=int, metavar="INDEX", help="start streaming from this webcam")
    parser.add_argument("--model", type=Path, help="MEGA checkpoint folder (default: the shipped model)")
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument("--light", action="store_true", help="light theme instead of the dark one")
    return parser.parse_args(argv)


def application(argv: list[str] | None = None):
    """The process-wide QApplication (created once), styled with qdarkstyle."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication([APP_NAME, *(argv or [])])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    return app


def apply_theme(app, light: bool = False) -> None:
    """qdarkstyle's dark (or light) palette; the app still works unstyled if the theme is missing."""
    try:
        import qdarkstyle
    except ImportError:
        return
    if light:
        from qdarkstyle.light.palette import LightPalette

        app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6", palette=LightPalette))
    else:
        app.setStyleSheet(qdarkstyle.load_stylesheet(qt_api="pyside6"))


def create_window(engine: Any = None, settings=None, detector_factory=None, auto_update: bool | float = False,
                  sample: bool = True):
    """A ready main window; with ``engine=None`` call ``window.session.load_engine()`` to load the default."""
    from megaviewer.gui.main_window import MainWindow

    window = MainWindow(settings=settings, detector_factory=detector_factory, auto_update=auto_update)
    if engine is not None:
        window.set_engine(engine)
    if sample:
        window.load_sample()
    return window


def run(argv: list[str] | None = None, engine: Any = None) -> int:
    """Entry point of the ``megaviewer`` command; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        print("megaviewer: QT_QPA_PLATFORM=offscreen cannot show the 3D view; unset it (or use xvfb-run).",
              file=sys.stderr)
    app = application()
    apply_theme(app, args.light)
    if args.source is not None and not Path(args.source).exists():
        print(f"megaviewer: {args.source}: file not found", file=sys.stderr)
        return 2
    window = create_window(engine=engine, sample=args.source is None and args.camera is None)
    if engine is None:  # --model, else the model opened last time if it still loads, else the shipped default
        window.load_start_model(args.model, args.device)
    app.aboutToQuit.connect(window.session.shutdown)  # worker threads must stop before Qt tears down
    window.show()
    if args.source is not None:
        window.open_path(args.source)  # a video waits for the model; a photo is detected meanwhile
    elif args.camera is not None:
        window.live_panel.camera_index.setValue(args.camera)
        window.start_webcam()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(run())
