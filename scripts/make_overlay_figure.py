"""The README's ``megaviewer infer`` overlay figure, made by the real command on two real photos.

    python scripts/make_overlay_figure.py                 # -> resources/figures/infer_overlay_<photo>.png
    python scripts/make_overlay_figure.py --no-camera-fit --out /tmp/raw   # the network's own camera

Saves scikit-image's public-domain ``astronaut`` and ``camera`` photos as PNGs into a temporary folder,
runs exactly ``megaviewer infer DIR --out OUT --formats png`` on that folder (the CLI's ``main``, same code
path as the console command, shipped model) and copies the overlays to ``--out`` as
``infer_overlay_<photo>.png``. Extra arguments after the known ones go to ``megaviewer infer`` unchanged.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "camera")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "figures", help="where the PNGs go")
    args, infer_extra = parser.parse_known_args(argv)

    import cv2
    import numpy as np
    from skimage import data

    from megaviewer.cli import main as cli_main

    with tempfile.TemporaryDirectory(prefix="megaviewer_overlay_") as tmp:
        photos, results = Path(tmp) / "photos", Path(tmp) / "results"
        photos.mkdir()
        for name in PHOTOS:
            image = getattr(data, name)()
            bgr = image if image.ndim == 2 else np.ascontiguousarray(image[..., ::-1])
            cv2.imwrite(str(photos / f"{name}.png"), bgr)
        command = ["infer", str(photos), "--out", str(results), "--formats", "png", *infer_extra]
        print("megaviewer " + " ".join(command))
        code = cli_main(command)
        if code != 0:
            return code
        args.out.mkdir(parents=True, exist_ok=True)
        for name in PHOTOS:
            overlay = results / f"{name}_overlay.png"
            if not overlay.exists():
                print(f"no overlay for {name} (nobody found?)", file=sys.stderr)
                return 1
            target = args.out / f"infer_overlay_{name}.png"
            shutil.copyfile(overlay, target)
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
