"""Screenshots of the desktop app in its main states, for the README and for checking the layout by eye.

    python scripts/make_screenshots.py --out resources/figures/

Opens the real main window on the sample photo (scikit-image's astronaut, or ``--image``), waits for each
state (deterministic, the body before the fit to the keypoints, stochastic with the gallery, a mid-generation
step, the SD heatmap, the overlay with the deterministic ghost, random humans when the model has an
unconditional part) and saves the window as
``app_<state>.png`` plus ``screenshots.json`` listing them. Uses the shipped
model (``Engine.from_pretrained``); ``--tiny`` (or no shipped model) uses a random-weight test model, which
shows the layout but not a plausible body. Without a display it starts a virtual one (PyVirtualDisplay, else
re-runs itself under ``xvfb-run``); the 3D view needs OpenGL, so never set ``QT_QPA_PLATFORM=offscreen``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ensure_display(size: tuple[int, int]) -> None:
    """Start Xvfb when there is no X display (re-exec under xvfb-run if PyVirtualDisplay is missing)."""
    if os.environ.get("DISPLAY"):
        return
    try:
        from pyvirtualdisplay import Display

        Display(visible=False, size=size, color_depth=24).start()
    except (ImportError, OSError) as exc:
        if shutil.which("xvfb-run") is None or os.environ.get("MEGAVIEWER_XVFB_REEXEC"):
            raise SystemExit(f"no display and no way to start one ({exc}); install xvfb") from exc
        env = dict(os.environ, MEGAVIEWER_XVFB_REEXEC="1")
        cmd = ["xvfb-run", "-a", "-s", f"-screen 0 {size[0]}x{size[1]}x24", sys.executable, *sys.argv]
        raise SystemExit(subprocess.call(cmd, env=env)) from None


def load_engine(tiny: bool, tokenizer: Path | None):
    """The shipped model, or a random-weight ``test_tiny`` model (optionally with a trained tokenizer)."""
    from megaviewer.paths import default_model_dir

    if not tiny and (default_model_dir() / "config.json").exists():
        from megaviewer.engine import Engine

        return Engine.from_pretrained()
    sys.path.insert(0, str(REPO))
    from tests._gui_helpers import tiny_engine

    engine = tiny_engine(seed=0)
    if tokenizer is not None:
        from megaviewer.engine import Engine
        from megaviewer.tokenizer.model import MeshVQVAE

        engine = Engine(engine.model, MeshVQVAE.from_pretrained(tokenizer), engine.coco_regressor, device="cpu",
                        name=f"test_tiny+{tokenizer.name}")
    print("make_screenshots: no shipped model (or --tiny): random-weight test model", file=sys.stderr)
    return engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "figures")
    parser.add_argument("--image", type=Path, help="photo to show (default: the sample astronaut)")
    parser.add_argument("--size", default="1440x900", help="window size WxH")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="random-weight test model even if a model ships")
    parser.add_argument("--tokenizer", type=Path, help="with the tiny model: a trained tokenizer folder")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    ensure_display((width + 160, height + 160))

    from PySide6.QtCore import QSettings, Qt

    from megaviewer.gui.app import application, apply_theme, create_window
    from megaviewer.paths import shown_path

    sys.path.insert(0, str(REPO))
    from benchmarks.figures import compact_png_file

    app = application()
    apply_theme(app)
    engine = load_engine(args.tiny, args.tokenizer)
    settings = QSettings(str(args.out / ".screenshots.ini"), QSettings.Format.IniFormat)
    settings.clear()  # the pictures must not depend on a previous run's layout
    window = create_window(engine=engine, settings=settings, sample=args.image is None)
    window.resize(width, height)
    window.show()

    def wait(seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until is not None and until()):
            app.processEvents()
            time.sleep(0.01)
        for _ in range(20):  # let repaints land
            app.processEvents()
            time.sleep(0.01)

    def result_is(mode: str):
        return lambda: window.state.result is not None and window.state.result.mode == mode

    args.out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def save(name: str) -> None:
        path = args.out / f"app_{name}.png"
        window.grab().save(str(path))
        compact_png_file(path)
        written[name] = shown_path(path)
        print(f"wrote {path}")

    if args.image is not None:
        window.open_path(args.image)
    wait(60, result_is("deterministic"))
    save("deterministic")
    if window.state.result.before_fit is not None:  # the body before the fit to the keypoints, beside the fitted one
        window.state.set_view_flag("before_fit", True)
        wait(0.8)
        save("before_fit")
        window.state.set_view_flag("before_fit", False)

    window.controls.samples.setValue(args.samples)
    window.controls.steps.setValue(args.steps)
    window.controls.stochastic.setChecked(True)
    wait(120, lambda: result_is("stochastic")() and window.state.result.num_samples == args.samples)
    window.state.select_sample(min(2, args.samples - 1))
    wait(0.5)
    save("stochastic")

    window.state.set_step(max(0, args.steps // 2 - 1))
    wait(0.5)
    save("steps")

    window.state.set_step(None)
    window.state.set_view_flag("heatmap", True)
    wait(0.5)
    save("heatmap")

    window.state.set_view_flag("heatmap", False)
    window.state.set_view_flag("compare", True)
    window.resizeDocks([window.docks["image"]], [int(width * 0.45)], Qt.Orientation.Horizontal)  # photo first
    wait(0.8)
    save("overlay")

    window.state.set_view_flag("compare", False)
    if window.actions_by_name["random_humans"].isEnabled():  # only with an unconditional (pre-trained) model
        window.actions_by_name["random_humans"].trigger()
        wait(120, result_is("unconditional"))
        save("random")

    (args.out / "screenshots.json").write_text(json.dumps({"states": written, "model": engine.describe(),
                                                           "window": [width, height]}, indent=2))
    settings_file = Path(settings.fileName())
    window.close()
    settings_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
