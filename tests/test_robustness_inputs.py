"""Bad inputs: every way a user can hand the loader, the engine, the detector or ``megaviewer infer`` something
broken, odd or huge. Each case asserts a clear message (or the documented conversion) and, where the CLI is
involved, that the rest of the batch still completes.

What ``test_vision.py`` / ``test_cli.py`` already cover is not repeated: gray/RGBA/16-bit-gray/palette PNGs,
EXIF orientation 6 (its shape), a huge JPEG, a cut JPEG, a missing file, ``--no-such-option``, a broken
``--keypoints`` file, a 60 %-cut video and a webcam whose ``_cap`` is swapped by hand. Here: more formats, all
three rotating EXIF orientations with pixel checks, a huge *PNG* with a memory bound, truncated/garbage/bomb
files, a mixed batch through the CLI, keypoints JSON content, engine arguments, people at the border or in a
crowd, video and camera faults through a monkeypatched ``cv2.VideoCapture`` and unwritable outputs.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, features

from megaviewer.cli import main
from megaviewer.vision.images import ImageLoadError, read_image
from megaviewer.vision.pipeline import KeypointsFile, KeypointsFileError
from megaviewer.vision.sources import SourceError, WebcamSource
from tests._engines import tiny_engine

skimage_data = pytest.importorskip("skimage.data")
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[..., ::-1])


# ------------------------------------------------------------------------------------------ file makers
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bytes(width: int, height: int, color_type: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def flat_png_bytes(width: int, height: int, rgb: tuple[int, int, int], rows_per_block: int = 500) -> bytes:
    """A flat-colour RGB PNG of any size in a fraction of a second and a few MB of memory.

    One block of rows is deflated once and ended with a full flush (byte-aligned, history reset), so the
    same compressed bytes can be repeated for every block; only the Adler-32 checksum runs over all rows.
    """
    assert height % rows_per_block == 0
    row = b"\0" + bytes(rgb) * width  # filter type 0 + the pixels
    block = row * rows_per_block
    comp = zlib.compressobj(9)
    body = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    header, body = body[:2], body[2:]
    adler = 1
    for _ in range(height // rows_per_block):
        adler = zlib.adler32(block, adler)
    stream = header + body * (height // rows_per_block) + b"\x03\x00" + struct.pack(">I", adler)
    return _png_bytes(width, height, 2, stream)


def _noise(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _exif_jpeg(orientation: int) -> bytes:
    stored = np.full((100, 200, 3), 40, np.uint8)
    stored[:25, :25] = (255, 0, 0)  # a red block at the *stored* top-left corner (RGB)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=95)


def _red_corner(bgr: np.ndarray) -> str:
    """Which corner of a BGR image holds the red block: "tl", "tr", "bl" or "br"."""
    h, w = bgr.shape[:2]
    corners = {"tl": bgr[:15, :15], "tr": bgr[:15, w - 15:], "bl": bgr[h - 15:, :15], "br": bgr[h - 15:, w - 15:]}
    red = {k: float(v[..., 2].mean() - v[..., 0].mean()) for k, v in corners.items()}
    return max(red, key=red.get)


@dataclass
class Case:
    """One input file. ``error``: regex the :class:`ImageLoadError` must match; else ``shape`` (H, W) of
    the loaded BGR image and an optional ``check`` of its pixels."""

    name: str
    make: Callable[[], bytes]
    error: str | None = None
    shape: tuple[int, int] | None = None
    check: Callable[[np.ndarray], bool] | None = None


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _rgba_half() -> bytes:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[...] = (0, 0, 255, 128)  # blue at 50 % opacity
    return _encoded(Image.fromarray(rgba, "RGBA"), "PNG")


def _la() -> bytes:
    la = np.zeros((6, 9, 2), np.uint8)
    la[:, :, 0], la[:3, :, 1], la[3:, :, 1] = 0, 255, 0  # black: opaque top half, transparent bottom half
    return _encoded(Image.fromarray(la, "LA"), "PNG")


def _png48() -> bytes:
    bgr16 = np.zeros((5, 7, 3), np.uint16)
    bgr16[..., 0] = 65535  # 16-bit blue, written by OpenCV in BGR order
    bgr16[..., 1] = 32896  # 128 * 257
    return cv2.imencode(".png", bgr16)[1].tobytes()


def _palette_transparent() -> bytes:
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([255, 0, 0] + [0, 255, 0] + [0, 0, 0] * 254)
    return _encoded(pal, "PNG", transparency=0)  # index 0 (red) is transparent -> white


def _one_bit() -> bytes:
    bits = np.zeros((4, 8), bool)
    bits[:, 4:] = True
    return _encoded(Image.fromarray(bits), "PNG")


def _cmyk_jpeg() -> bytes:
    return _encoded(Image.new("CMYK", (16, 12), (255, 0, 0, 0)), "JPEG", quality=95)  # pure cyan


def _float_tiff() -> bytes:
    return _encoded(Image.fromarray(np.full((6, 5), 0.5, np.float32)), "TIFF")


def _int32_tiff() -> bytes:
    return _encoded(Image.fromarray(np.full((6, 5), 200, np.int32)), "TIFF")


def _gif_animated() -> bytes:
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _bomb_header() -> bytes:
    """A 1-KB PNG that claims 20000 x 20000 pixels (a decompression bomb): refused from the header."""
    return _png_bytes(20000, 20000, 0, zlib.compress(b"\0" * 100))


def _bad_ihdr_crc() -> bytes:
    data = bytearray(_encoded(Image.fromarray(_noise(20, 20)), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: the chunk's CRC no longer matches
    return bytes(data)


def _near(value, target, tol=3):
    return bool(np.all(np.abs(np.asarray(value, np.int32) - np.asarray(target, np.int32)) <= tol))


_GOOD_JPEG = _encoded(Image.fromarray(_noise(160, 160)), "JPEG", quality=90)
_GOOD_PNG = _encoded(Image.fromarray(_noise(60, 60)), "PNG")

CASES = [
    # broken files: refused with a reason, never a crash
    Case("empty.jpg", lambda: b"", error="not an image"),
    Case("empty.png", lambda: b"", error="not an image"),
    Case("cut_half.jpg", lambda: _cut(_GOOD_JPEG, 0.5), error="corrupt or truncated"),
    Case("cut_half.png", lambda: _cut(_GOOD_PNG, 0.5), error="corrupt or truncated"),
    Case("cut_in_header.png", lambda: _GOOD_PNG[:20], error="corrupt or truncated"),
    Case("random.jpg", lambda: np.random.default_rng(1).bytes(3000), error="not an image"),
    Case("random.png", lambda: np.random.default_rng(2).bytes(3000), error="not an image"),
    Case("jpeg_magic_then_garbage.jpg", lambda: b"\xff\xd8\xff" + np.random.default_rng(3).bytes(500),
         error="not an image"),
    Case("text.png", lambda: b"hello, I am a text file\n", error="not an image"),
    Case("bad_crc.png", _bad_ihdr_crc, error="not an image"),
    Case("bomb.png", _bomb_header, error="image too large"),
    # odd but valid images: converted to BGR uint8 (H, W, 3)
    Case("gray.jpg", lambda: _encoded(Image.fromarray(np.full((9, 11), 90, np.uint8)), "JPEG", quality=95),
         shape=(9, 11), check=lambda im: _near(im, 90)),
    Case("rgba_half.png", _rgba_half, shape=(8, 8), check=lambda im: _near(im[0, 0], (255, 127, 127), 2)),
    Case("la.png", _la, shape=(6, 9), check=lambda im: _near(im[0, 0], 0) and _near(im[5, 0], 255)),
    Case("deep48.png", _png48, shape=(5, 7), check=lambda im: _near(im[0, 0], (255, 128, 0), 1)),
    Case("palette_trns.png", _palette_transparent, shape=(2, 2),
         check=lambda im: _near(im[0, 0], 255, 0) and _near(im[0, 1], (0, 255, 0), 0)),
    Case("onebit.png", _one_bit, shape=(4, 8), check=lambda im: _near(im[:, :4], 0, 0) and _near(im[:, 4:], 255, 0)),
    Case("cmyk.jpg", _cmyk_jpeg, shape=(12, 16), check=lambda im: _near(im[6, 8], (255, 255, 0), 8)),
    Case("exif3.jpg", lambda: _exif_jpeg(3), shape=(100, 200), check=lambda im: _red_corner(im) == "br"),
    Case("exif6.jpg", lambda: _exif_jpeg(6), shape=(200, 100), check=lambda im: _red_corner(im) == "tr"),
    Case("exif8.jpg", lambda: _exif_jpeg(8), shape=(200, 100), check=lambda im: _red_corner(im) == "bl"),
    Case("float32.tif", _float_tiff, shape=(6, 5), check=lambda im: _near(im, 128, 1)),
    Case("int32.tif", _int32_tiff, shape=(6, 5), check=lambda im: _near(im, 200, 0)),
    Case("animated.gif", _gif_animated, shape=(10, 10), check=lambda im: _near(im[0, 0], (0, 0, 255), 2)),
    Case("one_pixel.png", lambda: _encoded(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), shape=(1, 1),
         check=lambda im: _near(im[0, 0], (3, 2, 1), 0)),
    Case("sliver.png", lambda: _encoded(Image.new("L", (9000, 3), 50), "PNG"), shape=None,
         check=lambda im: im.shape[1] == 4096 and 1 <= im.shape[0] <= 2),
]
if features.check("webp"):
    CASES.append(Case("photo.webp", lambda: _encoded(Image.new("RGB", (12, 10), (0, 0, 255)), "WEBP", lossless=True),
                      shape=(10, 12), check=lambda im: _near(im[0, 0], (255, 0, 0), 0)))


def _write_case(folder: Path, case: Case) -> Path:
    path = folder / case.name
    path.write_bytes(case.make())
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_image_loader_case(tmp_path, case):
    path = _write_case(tmp_path, case)
    if case.error is not None:
        with pytest.raises(ImageLoadError, match=case.error) as info:
            read_image(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        return
    image = read_image(path).image
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.flags.c_contiguous
    if case.shape is not None:
        assert image.shape[:2] == case.shape
    if case.check is not None:
        assert case.check(image), f"{case.name}: unexpected pixels {image.reshape(-1, 3)[:4].tolist()}"


def test_huge_png_is_downscaled_with_bounded_memory(tmp_path):
    """A 12000 x 9000 (108 MP) PNG: downscaled to 4096 px, not refused; peak memory well under the ~1.5 GB
    that decoding, transposing, converting and flipping it at full size used to cost."""
    status = Path("/proc/self/status")
    if not status.exists() or "VmHWM" not in status.read_text():
        pytest.skip("needs Linux's /proc/self/status (VmHWM) to measure peak memory")
    path = tmp_path / "huge.png"
    path.write_bytes(flat_png_bytes(12000, 9000, (30, 120, 200)))
    assert path.stat().st_size < 1_000_000  # cheap to make: flat colour compresses ~1000:1
    # VmHWM, not ru_maxrss: Linux carries the parent's peak RSS (this torch-laden pytest) into a child's
    # ru_maxrss across fork + exec, while VmHWM belongs to the child's fresh address space.
    script = ("import re, sys\n"
              "def peak_mb():\n"
              "    return int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)) // 1024\n"
              "from megaviewer.vision.images import read_image\n"
              "before = peak_mb()\n"
              "loaded = read_image(sys.argv[1])\n"
              "print(loaded.image.shape, loaded.original_size, round(loaded.scale, 4), loaded.image[0, 0].tolist(),"
              " peak_mb() - before)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    shape, size, scale, pixel, grown_mb = re.fullmatch(r"\((.*)\) \((.*)\) (\S+) \[(.*)\] (\d+)\n",
                                                       out.stdout).groups()
    assert shape == "3072, 4096, 3" and size == "12000, 9000" and float(scale) == pytest.approx(4096 / 12000, 1e-3)
    assert pixel == "200, 120, 30"  # BGR
    # PIL's own decoded buffer is 432 MB (4 bytes per pixel); everything after it now works on a reduced copy.
    assert int(grown_mb) < 1000, f"reading the 108 MP PNG grew the process by {grown_mb} MB"


# --------------------------------------------------------------------------------------- CLI: a batch
def _person_keypoints(size: tuple[int, int]) -> list[float]:
    """17 plausible COCO keypoints (x, y, v=2) spread over the middle of a (W, H) image."""
    w, h = size
    kp = np.zeros((17, 3))
    kp[:, 0] = (0.3 + 0.4 * (np.arange(17) % 2)) * (w - 1)
    kp[:, 1] = np.linspace(0.1, 0.9, 17) * (h - 1)
    kp[:, 2] = 2
    return kp.ravel().tolist()


def _infer(args, capsys, engine=True):
    code = main(["infer", *map(str, args)], engine=tiny_engine() if engine else None)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def no_mediapipe(monkeypatch):
    """Fail loudly if the CLI builds a MediaPipe detector (every image here has --keypoints)."""
    import megaviewer.vision.detector as detector_mod

    monkeypatch.setattr(detector_mod.PoseDetector, "__post_init__",
                        lambda self: pytest.fail("the detector must not run in this test"))


def test_cli_mixed_folder_every_bad_file_named_every_good_file_processed(tmp_path, capsys, no_mediapipe):
    """All the loader cases in one folder (sorted, so bad and good files interleave) plus a sub-folder, a
    hidden file and a file with a foreign extension: one line per bad file, the batch goes on, exit 0."""
    folder = tmp_path / "photos"
    folder.mkdir()
    keypoints = {}
    for case in CASES:
        path = _write_case(folder, case)
        if case.error is None:
            keypoints[case.name] = [{"keypoints": _person_keypoints(read_image(path).original_size)}]
    (folder / "subfolder").mkdir()
    (folder / "subfolder" / "ignored.png").write_bytes(_GOOD_PNG)
    (folder / ".hidden.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an input")
    kp_file = tmp_path / "keypoints.json"
    kp_file.write_text(json.dumps(keypoints))
    out_dir = tmp_path / "out"
    code, stdout, stderr = _infer([folder, "--out", out_dir, "--keypoints", kp_file, "--formats", "npz", "--quiet"],
                                  capsys)
    assert code == 0, stderr
    bad = [c for c in CASES if c.error is not None]
    good = [c for c in CASES if c.error is None]
    summary = stdout[stdout.index("Summary:"):]
    assert f"{len(CASES)} inputs: {len(good)} processed ({len(good)} people), 0 without people, {len(bad)} failed" \
        in summary
    for case in bad:
        assert re.search(rf"{re.escape(case.name)}: {case.error}", stderr), f"no message for {case.name}"
        assert re.search(rf"failed: .*{re.escape(case.name)}: {case.error}", summary)
    for case in good:
        assert f"{case.name}: recovered 1 person" in stdout
        data = np.load(out_dir / f"{Path(case.name).stem}_person0.npz")
        assert np.isfinite(data["camera_vertices"]).all()
    assert not any("ignored" in p.name or "hidden" in p.name or "notes" in p.name for p in out_dir.iterdir())


def test_cli_missing_paths_empty_folder_and_a_blocked_output_do_not_stop_the_batch(tmp_path, capsys, no_mediapipe):
    good = tmp_path / "good.png"
    good.write_bytes(_encoded(Image.fromarray(_noise(80, 60)), "PNG"))
    later = tmp_path / "later.png"
    later.write_bytes(good.read_bytes())
    (tmp_path / "empty_dir").mkdir()
    kp_file = tmp_path / "kp.json"
    kp_file.write_text(json.dumps({n: [{"keypoints": _person_keypoints((60, 80))}] for n in ("good.png", "later.png")}))
    out_dir = tmp_path / "out"
    (out_dir / "good_person0.npz").mkdir(parents=True)  # a folder where good.png's export must go
    code, stdout, stderr = _infer([tmp_path / "missing.jpg", tmp_path / "empty_dir", good, later, "--out", out_dir,
                                   "--keypoints", kp_file, "--formats", "npz", "--quiet"], capsys)
    assert code == 0
    assert "missing.jpg: file not found" in stderr
    assert "empty_dir: folder holds no image or video files" in stderr
    assert re.search(r"good\.png: cannot write .*good_person0\.npz", stderr)
    assert "later.png: recovered 1 person" in stdout and (out_dir / "later_person0.npz").is_file()
    assert "4 inputs: 1 processed (1 person), 0 without people, 3 failed" in stdout
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp file left behind


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_cli_unwritable_output_folder_is_a_clear_error(tmp_path, capsys, where):
    """Root ignores chmod, so the folder is made impossible instead: below a regular file, or inside /proc."""
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    out_dir = blocker / "out" if where == "under_a_file" else Path("/proc/self/megaviewer-out")
    image = tmp_path / "a.png"
    image.write_bytes(_GOOD_PNG)
    code, stdout, stderr = _infer([image, "--out", out_dir, "--quiet"], capsys)
    assert code == 1 and stdout == ""
    assert f"cannot create the output folder {out_dir}" in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["x.png", "--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
    (["--out", "o"], "the following arguments are required: INPUT"),
    ([], "the following arguments are required: INPUT, --out"),
    (["x.png", "--out", "o", "--max-people", "0"], "must be >= 1"),
    (["x.png", "--out", "o", "--every", "-3"], "must be >= 1"),
    (["x.png", "--out", "o", "--min-confidence", "1.5"], r"--min-confidence must lie in \[0, 1\]"),
    (["x.png", "--out", "o", "--mode", "fast"], "invalid choice: 'fast'"),
    (["x.png", "--out", "o", "--steps", "many"], "invalid int value: 'many'"),
    (["x.png", "--out", "o", "--formats", ","], r"--formats: unknown \(empty\)"),
    (["x.png", "--out", "o", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["x.png", "--out", "o", "--keypoints", "does/not/exist.json"], "keypoints file not found"),
], ids=["unknown-option", "no-input", "nothing", "max-people-0", "every-negative", "confidence-range", "bad-mode",
        "steps-not-int", "formats-empty", "bad-device", "keypoints-missing"])
def test_cli_usage_errors_exit_2_with_a_message(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = _infer(args, capsys)
    assert code == 2, stderr
    assert re.search(message, stderr), stderr
    assert stderr.startswith("usage: megaviewer infer")
    assert not (tmp_path / "o").exists()  # nothing was started


# --------------------------------------------------------------------------------- keypoints JSON file
_KP = [1.0] * 51
KEYPOINT_FILE_CASES = {
    "empty-file": ("", "not a readable JSON file"),
    "binary-garbage": (b"\xff\xfe\x00garbage", "not a readable JSON file"),
    "top-level-number": ("42", "expected a list or an object at the top level"),
    "zero-keypoints": ([{"file_name": "a.png", "keypoints": []}], "entry 0 has 0 keypoint values, expected 51"),
    "wrong-count": ([{"file_name": "a.png", "keypoints": [1.0] * 50}], "entry 0 has 50 keypoint values"),
    "keypoints-not-a-list": ([{"file_name": "a.png", "keypoints": 7}], "entry 0 has keypoints of type int"),
    "keypoints-strings": ([{"file_name": "a.png", "keypoints": ["x"] * 51}], "entry 0 has keypoints that are not 51"),
    "keypoints-nested-objects": ([{"file_name": "a.png", "keypoints": [{"x": 1}] * 51}], "not 51 numbers"),
    "missing-keypoints": ([{"file_name": "a.png"}, {"file_name": "b.png", "keypoints": _KP}],
                          "entry 0 has no 'keypoints'"),
    "missing-image-name": ([{"file_name": "a.png", "keypoints": _KP}, {"keypoints": _KP}],
                           "entry 1 names no image"),
    "bbox-not-a-box": ([{"file_name": "a.png", "keypoints": _KP, "bbox": 12}], "'bbox' that is not"),
    "score-not-a-number": ([{"file_name": "a.png", "keypoints": _KP, "score": "high"}], "'score' that is not"),
    "images-table-broken": ({"images": [3], "annotations": []}, "unexpected JSON layout"),
    "annotations-not-a-list": ({"annotations": 3}, "unexpected JSON layout"),
}


@pytest.mark.parametrize("name", list(KEYPOINT_FILE_CASES))
def test_keypoints_file_errors_are_one_documented_error(tmp_path, capsys, name):
    content, message = KEYPOINT_FILE_CASES[name]
    path = tmp_path / "kp.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(KeypointsFileError, match=message) as info:
        KeypointsFile(path)
    assert str(path) in str(info.value)
    # Through the CLI: a usage error (exit 2) naming the file, before any image is touched.
    code, _, stderr = _infer([tmp_path / "nothing.png", "--out", tmp_path / "o", "--keypoints", path], capsys)
    assert code == 2 and re.search(message, stderr) and not (tmp_path / "o").exists()


def test_keypoint_values_nan_inf_negative_and_outside_become_missing(tmp_path, capsys, no_mediapipe):
    """Parsable but bad values: the keypoints concerned count as missing, the box comes from the rest (or the
    bbox, or the whole image), and every export is finite."""
    size = (200, 300)
    good = np.asarray(_person_keypoints(size), dtype=float).reshape(17, 3)
    good[:, 2] = 0.9
    people = {}
    nan_xy = good.copy()
    nan_xy[0, 0] = np.nan  # NaN x with full confidence: must not become a keypoint at x = 0
    nan_xy[1, 1] = np.inf
    people["nan_inf.png"] = (nan_xy, None, {0, 1})
    negative = good.copy()
    negative[2:5, 2] = -1.0
    people["negative_conf.png"] = (negative, None, {2, 3, 4})
    outside = good.copy()
    outside[5:7, 0] = [-40.0, 5000.0]
    people["outside.png"] = (outside, None, {5, 6})
    all_nan = np.full((17, 3), np.nan)
    people["all_nan_inf_box.png"] = (all_nan, [np.inf, 0, 50, 50], set(range(17)))
    entries = []
    for name, (kp, bbox, _) in people.items():
        Image.fromarray(_noise(size[1], size[0])).save(tmp_path / name)
        entry = {"file_name": name, "keypoints": kp.ravel().tolist()}
        if bbox is not None:
            entry["bbox"] = bbox
        entries.append(entry)
    kp_file = tmp_path / "kp.json"
    kp_file.write_text(json.dumps(entries))  # json writes NaN / Infinity, which Python's reader accepts
    assert "NaN" in kp_file.read_text() and "Infinity" in kp_file.read_text()
    out_dir = tmp_path / "out"
    code, stdout, stderr = _infer([*(tmp_path / n for n in people), "--out", out_dir, "--keypoints", kp_file,
                                   "--formats", "npz", "--quiet"], capsys)
    assert code == 0 and "4 processed" in stdout, stdout + stderr
    for name, (_, _, missing) in people.items():
        data = np.load(out_dir / f"{Path(name).stem}_person0.npz")
        conf = data["keypoints_2d"][:, 2]
        assert {i for i in range(17) if conf[i] == 0} == missing, name
        for key in ("camera_vertices", "joints", "translation", "box_center", "box_side", "keypoints_2d"):
            assert np.isfinite(data[key]).all(), f"{name}: {key} is not finite"
    whole = np.load(out_dir / "all_nan_inf_box_person0.npz")  # nothing usable, inf bbox ignored: whole image
    assert tuple(whole["box_center"]) == (100.0, 150.0) and float(whole["box_side"]) == 300.0


# ------------------------------------------------------------------------------------------ the engine
def _crop_keypoints() -> np.ndarray:
    kp = np.random.default_rng(5).uniform(-0.8, 0.8, (17, 3)).astype(np.float32)
    kp[:, 2] = 1.0
    return kp


@pytest.mark.parametrize("keypoints", [np.zeros((0, 3)), np.zeros((16, 3)), np.zeros((17, 2)), [], [[1.0, 2.0]]],
                         ids=["zero-size", "16-keypoints", "no-confidence", "empty-list", "one-pair"])
def test_engine_refuses_wrong_keypoint_shapes_by_name(keypoints):
    with pytest.raises(ValueError, match=r"keypoints must be \(17, 3\) or \(B, 17, 3\).*got shape"):
        tiny_engine().recover(keypoints)


@pytest.mark.parametrize("fill", ["nan", "inf", "-inf", "huge", "negative-confidence", "all-missing"])
def test_engine_bad_keypoint_values_give_finite_meshes(fill):
    kp = _crop_keypoints()
    if fill == "nan":
        kp[::2] = np.nan
    elif fill == "inf":
        kp[:, 0] = np.inf
    elif fill == "-inf":
        kp[3:9] = -np.inf
    elif fill == "huge":
        kp[:, :2] = 1e30
    elif fill == "negative-confidence":
        kp[:, 2] = -5.0
    else:
        kp[:] = 0.0
    stochastic = {"mode": "stochastic", "num_samples": 2, "steps": 2} if fill == "nan" else {}
    res = tiny_engine().recover(kp, return_trace=False, **stochastic)
    for tensor in (res.camera_vertices, res.canonical_vertices, res.joints, res.cam_weak):
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "fast"}, "mode must be one of"),
    ({"mode": "stochastic", "num_samples": 0}, "num_samples >= 1"),
    ({"mode": "stochastic", "steps": 0}, "steps >= 1"),
    ({"mode": "stochastic", "temperature": -1.0}, "temperature >= 0"),
    ({"crop": "zero-side"}, "crop box needs a finite centre and a positive side"),
    ({"crop": "nan-centre"}, "crop box needs a finite centre"),
], ids=["mode", "samples-0", "steps-0", "negative-temperature", "crop-zero-side", "crop-nan-centre"])
def test_engine_refuses_bad_arguments_by_name(kwargs, message):
    from megaviewer.engine import CropBox

    kwargs = dict(kwargs)
    if kwargs.get("crop") == "zero-side":
        kwargs["crop"] = CropBox((50.0, 50.0), 0.0, (100, 100))
    elif kwargs.get("crop") == "nan-centre":
        kwargs["crop"] = CropBox((float("nan"), 50.0), 40.0, (100, 100))
    with pytest.raises(ValueError, match=message):
        tiny_engine().recover(_crop_keypoints(), return_trace=False, **kwargs)


# ---------------------------------------------------------------------------------------- the detector
@pytest.fixture(scope="module")
def detector():
    from megaviewer.vision.detector import PoseDetector

    with PoseDetector(max_people=4) as det:
        yield det


def _inside(det, size) -> bool:
    w, h = size
    kp = det.keypoints[det.valid]
    return bool((kp[:, 0] >= 0).all() and (kp[:, 0] <= w - 1).all() and (kp[:, 1] >= 0).all()
                and (kp[:, 1] <= h - 1).all())


def test_crowd_of_tiled_photos_finds_each_person_up_to_max_people(detector, astronaut):
    from megaviewer.vision.detector import _iou

    crowd = np.ascontiguousarray(np.tile(astronaut, (1, 3, 1)))  # the same person three times, side by side
    people = detector.detect(crowd)
    assert len(people) == 3, people.message
    thirds = sorted(int(p.box_center[0] // 512) for p in people)
    assert thirds == [0, 1, 2]  # one per copy
    for i, a in enumerate(people):
        assert _inside(a, (1536, 512)) and a.num_valid >= 6
        assert all(_iou(a.tight_box(), b.tight_box()) <= 0.4 for b in people[i + 1:])
    detector.max_people = 2  # the cap is read per call; the MediaPipe graph does not depend on it
    try:
        assert len(detector.detect(crowd)) == 2
    finally:
        detector.max_people = 4


def test_person_cut_by_the_image_border(detector, astronaut):
    """The astronaut shifted so the left part of the body is outside the photo: found, keypoints only
    inside the image, the crop box may stick out of the image, and the recovered mesh is finite."""
    from megaviewer.app.pipeline import recover_people

    cut = np.ascontiguousarray(astronaut[:, 180:])
    people = recover_people(tiny_engine(), detector, cut, return_trace=False)
    assert len(people) == 1, people.message
    det = people[0].detection
    assert _inside(det, (332, 512)) and 4 <= det.num_valid < 17
    assert det.box_center[0] - det.box_side / 2 < 0  # the box reaches past the left border
    res = people[0].result
    assert torch.isfinite(res.camera_vertices).all() and res.translation[0, 2] > 0


@pytest.mark.parametrize("image", ["rocket", "tiny", "gray-4x1000"])
def test_no_person_is_a_message_not_an_error(detector, image):
    if image == "rocket":
        picture, expected = np.ascontiguousarray(skimage_data.rocket()[..., ::-1]), "MediaPipe BlazePose saw nobody"
    elif image == "tiny":
        picture, expected = np.zeros((5, 5, 3), np.uint8), "only 5x5 pixels"
    else:
        picture, expected = np.full((4, 1000), 128, np.uint8), "only 1000x4 pixels"
    people = detector.detect(picture)
    assert people == [] and "no person found" in people.message and expected in people.message


# ------------------------------------------------------------------------------------ videos and cameras
def test_cli_video_cut_mid_stream_and_an_empty_video_in_one_batch(tmp_path, capsys, no_mediapipe, monkeypatch):
    """A video truncated mid-stream yields its first frames and counts as processed; a zero-byte video
    fails with a message; the image after them is still processed."""
    from megaviewer.app.batch import BatchJob
    from megaviewer.vision.detector import DetectionList

    class NobodyDetector:  # the video path always detects; a stub keeps this test about the video plumbing
        def detect(self, image):
            return DetectionList([], "no person found (stub)")

        def reset(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(BatchJob, "detector", lambda self, tracking=False: NobodyDetector())
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for i in range(30):
        writer.write(np.full((64, 96, 3), 8 * i, np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(_cut(video.read_bytes(), 0.5))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    image = tmp_path / "z_image.png"
    image.write_bytes(_GOOD_PNG)
    kp_file = tmp_path / "kp.json"
    kp_file.write_text(json.dumps({"z_image.png": [{"keypoints": _person_keypoints((60, 60))}]}))
    code, stdout, stderr = _infer([cut, empty, image, "--out", tmp_path / "out", "--keypoints", kp_file,
                                   "--formats", "npz", "--quiet"], capsys)
    assert code == 0, stderr
    frames = int(re.search(r"cut\.avi: (\d+) frames, 0 person detections", stdout).group(1))
    assert 1 <= frames < 30
    assert re.search(r"empty\.avi: not a readable video", stderr)
    assert "z_image.png: recovered 1 person" in stdout
    assert "3 inputs: 1 processed (1 person" in stdout and "1 without people, 1 failed" in stdout


class FakeCapture:
    """Stands in for ``cv2.VideoCapture``: ``frames`` reads succeed, then every read fails (unplugged)."""

    def __init__(self, index, frames: int = 3, opened: bool = True, frame_shape=(48, 64, 3)):
        self.index, self.left, self.opened, self.frame_shape = index, frames, opened, frame_shape
        self.released = False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full(self.frame_shape, 100, np.uint8)

    def release(self):
        self.released = True


def test_camera_that_does_not_exist(monkeypatch):
    made = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: made.append(FakeCapture(index, opened=False)) or made[-1])
    with pytest.raises(SourceError, match=r"^camera 7 is not available \(no such camera"):
        WebcamSource(7).open()
    assert made[0].released  # the failed handle is not leaked


@pytest.mark.parametrize("frame_shape", [(48, 64, 3), (48, 64), (48, 64, 4)], ids=["bgr", "gray", "bgra"])
def test_camera_that_disappears_mid_stream(monkeypatch, frame_shape):
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(index, frames=3, frame_shape=frame_shape))
    frames = []
    cam = WebcamSource(0, retries=2, retry_delay=0.0)
    with pytest.raises(SourceError, match=r"camera 0 stopped delivering frames \(3 reads failed in a row"):
        with cam:
            for frame in cam:
                frames.append(frame)
    assert len(frames) == 3 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert cam._cap is None  # closed on the way out
