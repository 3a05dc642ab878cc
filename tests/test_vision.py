"""Seeing people: the MediaPipe detector on real photos, frame sources, the image loader, the pipeline.

Photos are scikit-image's public-domain ``astronaut()`` (upper body) and ``camera()`` (grayscale, a man
with a camera). The accuracy test at the end needs the trained model and skips until it has landed.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from megaviewer.vision.images import ImageLoadError, read_image
from megaviewer.vision.sources import (
    ImageSource,
    SourceError,
    VideoSource,
    WebcamSource,
    open_source,
)
from tests._engines import tiny_engine, trained_engine

skimage_data = pytest.importorskip("skimage.data")

L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, NOSE = 5, 6, 11, 12, 0


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[..., ::-1])


@pytest.fixture(scope="module")
def cameraman() -> np.ndarray:
    return skimage_data.camera()  # (512, 512) uint8 grayscale: the detector must take it as is


@pytest.fixture(scope="module")
def detector():
    from megaviewer.vision.detector import PoseDetector

    with PoseDetector(max_people=4) as det:
        yield det


# ------------------------------------------------------------------------------------------- detector
def _check_person(det, image_size):
    w, h = image_size
    kp, ok = det.keypoints, det.valid
    assert det.keypoints.shape == (17, 3) and ok.sum() >= 6
    assert (kp[ok, 0] >= 0).all() and (kp[ok, 0] < w).all() and (kp[ok, 1] >= 0).all() and (kp[ok, 1] < h).all()
    assert ok[L_SHOULDER] and ok[R_SHOULDER]
    shoulders_y = kp[[L_SHOULDER, R_SHOULDER], 1].mean()
    if ok[NOSE]:
        assert kp[NOSE, 1] < shoulders_y
    hips = [i for i in (L_HIP, R_HIP) if ok[i]]
    if hips:
        assert shoulders_y < kp[hips, 1].mean()
    assert 0 < det.box_side <= 1.5 * max(w, h)


def test_person_found_on_astronaut(detector, astronaut):
    people = detector.detect(astronaut)
    assert len(people) == 1, people.message
    _check_person(people[0], (512, 512))
    nose = people[0].keypoints[NOSE]
    assert abs(nose[0] - 224) < 25 and abs(nose[1] - 127) < 25  # the astronaut's face, checked by eye


def test_person_found_on_grayscale_camera_photo(detector, cameraman):
    people = detector.detect(cameraman)
    assert len(people) == 1, people.message
    _check_person(people[0], (512, 512))
    assert people[0].valid[[L_HIP, R_HIP]].any()


def test_crop_keypoints_and_box(detector, astronaut):
    from megaviewer.vision.detector import crop_box, crop_keypoints

    det = detector.detect(astronaut)[0]
    kp = crop_keypoints(det)
    assert kp.shape == (17, 3) and kp.dtype == np.float32
    assert (kp[~det.valid] == 0).all()  # missing keypoints exactly zero, as in training
    assert (np.abs(kp[det.valid, :2]) <= 1.0 / 1.2 + 1e-4).all()  # the 1.2x keypoint box
    assert (kp[det.valid, 2] >= detector.min_confidence).all()
    box = crop_box(det, (512, 512))
    assert box.image_size == (512, 512) and box.side == pytest.approx(det.box_side)


def test_no_person_is_an_empty_list_with_a_message(detector):
    for image in (np.full((240, 320, 3), 200, np.uint8), skimage_data.coffee()[..., ::-1].copy()):
        people = detector.detect(image)
        assert people == [] and "no person" in people.message


def test_two_people_side_by_side(detector, astronaut, cameraman):
    both = np.concatenate([astronaut, cv2.cvtColor(cameraman, cv2.COLOR_GRAY2BGR)], axis=1)
    people = detector.detect(both)
    assert len(people) == 2, people.message
    centres = sorted(p.box_center[0] for p in people)
    assert centres[0] < 512 < centres[1]  # one in each half
    for p in people:
        _check_person(p, (1024, 512))


def test_tracking_detector_follows_video_frames(astronaut):
    from megaviewer.vision.detector import PoseDetector

    with PoseDetector(tracking=True) as det:
        found = [len(det.detect(np.roll(astronaut, 4 * i, axis=1))) for i in range(3)]
    assert found == [1, 1, 1]


def test_pipeline_recovers_each_person_and_reports_nobody(detector, astronaut):
    from megaviewer.app.pipeline import recover_people

    engine = tiny_engine()
    people = recover_people(engine, detector, astronaut, mode="stochastic", num_samples=2, return_trace=False)
    assert len(people) == 1 and people.found
    res = people[0].result
    assert res.camera_vertices.shape[:2] == (2, engine.tokenizer.config.level_sizes[0])
    assert res.focal == pytest.approx(512 * 2**0.5 / (2 * np.tan(np.radians(27.5))), rel=1e-4)  # 55° diagonal
    empty = recover_people(engine, detector, np.zeros((100, 100, 3), np.uint8))
    assert empty == [] and not empty.found and "no person" in empty.message


# -------------------------------------------------------------------------------------------- sources
def _write_video(path, frames: int = 10, size=(320, 240), fourcc: str = "MJPG", fps: float = 12.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 20 * i % 255, np.uint8)
        cv2.putText(frame, str(i), (20, 100), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(frame)
    writer.release()
    return path


def test_video_source_reads_back_every_frame(tmp_path):
    path = _write_video(tmp_path / "clip.avi")
    with VideoSource(path) as src:
        frames = list(src)
        assert src.fps == pytest.approx(12.0) and src.frame_count == 10
    assert len(frames) == 10 and all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert src.frames_read == 10


def test_video_source_loops(tmp_path):
    path = _write_video(tmp_path / "clip.avi", frames=4)
    with VideoSource(path, loop=True) as src:
        frames = [src.read() for _ in range(9)]
    assert all(f is not None for f in frames)


def test_truncated_video_ends_cleanly(tmp_path):
    path = _write_video(tmp_path / "clip.avi", frames=20)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with VideoSource(cut) as src:
        frames = list(src)
    assert 1 <= len(frames) < 20


def test_source_errors_are_clear(tmp_path):
    with pytest.raises(SourceError, match="camera 99 is not available"):
        WebcamSource(99).open()
    with pytest.raises(SourceError, match="file not found"):
        VideoSource(tmp_path / "missing.mp4").open()
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all")
    with pytest.raises(SourceError, match="not a readable video"):
        VideoSource(fake).open()
    with pytest.raises(SourceError, match="not an image"):
        ImageSource(tmp_path / "notes.mp4").open()


class _FlakyCapture:
    """A stand-in for cv2.VideoCapture whose reads fail ``failures`` times before working (or forever)."""

    def __init__(self, failures: int | None):
        self.failures = failures

    def read(self):
        if self.failures is None or self.failures > 0:
            self.failures = None if self.failures is None else self.failures - 1
            return False, None
        return True, np.zeros((4, 4, 3), np.uint8)

    def release(self):
        pass


def test_webcam_retries_then_reports_a_lost_camera():
    cam = WebcamSource(0, retries=3, retry_delay=0.0)
    cam._cap, cam._opened = _FlakyCapture(failures=2), True
    assert cam.read().shape == (4, 4, 3)  # two dropped frames are retried silently
    cam._cap = _FlakyCapture(failures=None)
    with pytest.raises(SourceError, match="camera 0 stopped delivering frames .4 reads failed"):
        cam.read()
    cam.close()


def test_open_source_dispatch(tmp_path):
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    assert isinstance(open_source("cam:1"), WebcamSource) and open_source(2).index == 2
    assert isinstance(open_source(tmp_path / "x.mkv"), VideoSource)
    assert isinstance(open_source(png), ImageSource)
    odd = tmp_path / "picture.data"
    odd.write_bytes(png.read_bytes())
    assert isinstance(open_source(odd), ImageSource)  # sniffed
    with ImageSource(png) as src:
        assert src.read().shape == (8, 8, 3) and src.read() is None


# --------------------------------------------------------------------------------------------- images
def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[:20, :20] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(Image.fromarray(stored), tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    loaded = read_image(path)
    assert loaded.image.shape == (200, 100, 3) and loaded.original_size == (100, 200)
    top_right = loaded.image[:15, -15:].reshape(-1, 3).mean(axis=0)
    assert top_right[2] > 200 and top_right[0] < 60  # BGR red: the block moved to the top-right


def test_modes_are_converted(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:5] = (255, 0, 0, 255)  # opaque red; bottom half fully transparent
    img = read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png")).image
    assert tuple(img[0, 0]) == (0, 0, 255) and tuple(img[9, 9]) == (255, 255, 255)

    deep = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    img = read_image(_save(Image.fromarray(deep), tmp_path / "deep.png")).image
    assert img.dtype == np.uint8 and img.shape == (2, 2, 3)
    assert img[0, 1, 0] == 128 and img[1, 0, 0] == 255 and img[0, 0, 0] == 0

    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([0, 255, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    img = read_image(_save(pal, tmp_path / "pal.png")).image
    assert tuple(img[0, 0]) == (0, 255, 0) and tuple(img[0, 1]) == (255, 0, 0)

    gray = read_image(_save(Image.fromarray(np.full((4, 6), 77, np.uint8)), tmp_path / "g.png")).image
    assert gray.shape == (4, 6, 3) and (gray == 77).all()


def test_huge_image_is_downscaled(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (12000, 9000), 128).save(buffer, "JPEG", quality=50)
    path = tmp_path / "huge.jpg"
    path.write_bytes(buffer.getvalue())
    loaded = read_image(path)
    assert max(loaded.image.shape[:2]) == 4096 and loaded.original_size == (12000, 9000)
    assert loaded.scale == pytest.approx(4096 / 12000, rel=1e-3)


def test_bad_files_raise_image_load_error(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(good, "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.getvalue()[:2000])
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    for path, reason in ((cut, "corrupt or truncated"), (text, "not an image"),
                         (tmp_path / "missing.png", "file not found"), (tmp_path, "not a file")):
        with pytest.raises(ImageLoadError, match=reason) as info:
            read_image(path)
        assert str(path) in str(info.value)


# ---------------------------------------------------------------------------- trained model
@pytest.mark.parametrize("photo", ["astronaut", "cameraman"])
def test_trained_model_reprojects_onto_detected_keypoints(photo, detector, request):
    """The recovered COCO joints, projected with the full-image camera, land on the detected keypoints."""
    import torch

    from megaviewer.app.pipeline import recover_people
    from megaviewer.camera import perspective_project

    image = request.getfixturevalue(photo)
    h, w = image.shape[:2]
    people = recover_people(trained_engine(), detector, image, mode="deterministic")
    assert len(people) == 1, people.message
    det, res = people[0].detection, people[0].result
    px = perspective_project(res.joints[:1].float(), res.focal, torch.tensor([[w / 2.0, h / 2.0]]))[0].numpy()
    err = np.linalg.norm(px[det.valid] - det.keypoints[det.valid, :2], axis=1)
    # Target: under 10 % of the box side. The network's own camera lands at 13-17 % (its rotation /
    # camera head is under-trained on a CPU); the engine's camera fit to the keypoints (on by default,
    # megaviewer.camera_fit) brings it to about 2 % (astronaut) and 4 % (cameraman).
    assert err.mean() < 0.10 * det.box_side, f"mean reprojection error {err.mean():.1f} px, box {det.box_side:.0f}"
    fit = res.camera_fit
    assert fit is not None and bool(fit.fitted[0]) and fit.error_after[0] < fit.error_before[0]


def test_sources_refuse_reads_before_open_and_after_close(tmp_path):
    """Every source says clearly that it was read while closed, before opening and after closing."""
    from tests._gui_helpers import write_video

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((40, 30, 3), 128, np.uint8))
    video = write_video(tmp_path / "clip.avi", frames=3)
    for source in (ImageSource(photo), VideoSource(video), WebcamSource(99)):
        with pytest.raises(SourceError, match="read\\(\\) before open\\(\\)"):
            source.read()
    for source in (ImageSource(photo), VideoSource(video)):
        source.open()
        assert source.read() is not None
        source.close()
        with pytest.raises(SourceError, match="read\\(\\) before open\\(\\)"):
            source.read()
