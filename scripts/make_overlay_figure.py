"""The README's ``megaviewer infer`` figures, made by the real command on three real photos.

    python scripts/make_overlay_figure.py                 # -> resources/figures/infer_{overlay,side}_<photo>.png
    python scripts/make_overlay_figure.py --tag before_refine --no-refine   # the network's bodies
    python scripts/make_overlay_figure.py --no-camera-fit --out /tmp/raw   # the network's own camera

Saves scikit-image's public-domain ``astronaut`` and ``camera`` photos and matplotlib's ``grace_hopper``
sample as PNGs into a temporary folder, runs exactly ``megaviewer infer DIR --out OUT --formats png`` on that
folder (the CLI's ``main``, same code path as the console command, shipped model) and copies the overlays and
side views to ``--out`` as ``infer_<view>_<photo>[_<tag>].png``. Extra arguments after the known ones go to
``megaviewer infer`` unchanged.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "camera", "grace_hopper")
VIEWS = ("overlay", "side")


def load_photo(name: str):
    """RGB (or grey) array of a sample photo that a registry package ships."""
    if name == "grace_hopper":
        import matplotlib.cbook
        import numpy as np
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    from skimage import data

    return getattr(data, name)()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "figures", help="where the PNGs go")
    parser.add_argument("--tag", default="", help="suffix of the copied file names (e.g. before_refine)")
    args, infer_extra = parser.parse_known_args(argv)

    import cv2
    import numpy as np

    from megaviewer.cli import main as cli_main

    sys.path.insert(0, str(REPO))
    from benchmarks.figures import compact_png_file

    with tempfile.TemporaryDirectory(prefix="megaviewer_overlay_") as tmp:
        photos, results = Path(tmp) / "photos", Path(tmp) / "results"
        photos.mkdir()
        for name in PHOTOS:
            image = load_photo(name)
            bgr = image if image.ndim == 2 else np.ascontiguousarray(image[..., ::-1])
            cv2.imwrite(str(photos / f"{name}.png"), bgr)
        command = ["infer", str(photos), "--out", str(results), "--formats", "png", *infer_extra]
        print("megaviewer " + " ".join(command))
        code = cli_main(command)
        if code != 0:
            return code
        args.out.mkdir(parents=True, exist_ok=True)
        suffix = f"_{args.tag}" if args.tag else ""
        for name in PHOTOS:
            for view in VIEWS:
                made = results / f"{name}_{view}.png"
                if not made.exists():
                    print(f"no {view} for {name} (nobody found?)", file=sys.stderr)
                    return 1
                target = args.out / f"infer_{view}_{name}{suffix}.png"
                shutil.copyfile(made, target)
                compact_png_file(target)
                print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
