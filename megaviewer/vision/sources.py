"""Frame sources behind one interface: a still image, a video file, a webcam.

The CLI and the GUI loop over ``source.read()`` until it returns ``None`` and never care where frames
come from. Every failure a user can cause (a missing file, a file that is not a video, a camera index
that does not exist, a camera unplugged while streaming) raises :class:`SourceError` with a sentence
that says what happened; OpenCV itself only returns ``False``/``None`` and logs to stderr.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm",
                              ".jfif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ogv", ".3gp"})


class SourceError(RuntimeError):
    """A frame source that cannot be opened or stopped working; the message says which and why."""


class FrameSource:
    """Base class: ``open()``, ``read()`` -> BGR uint8 (H, W, 3) or ``None`` at the end, ``close()``.

    Use as a context manager (opens on enter, closes on exit) or iterate over it. ``fps`` is the nominal
    frame rate (``None`` for a still image or unknown), ``frame_count`` the number of frames when known,
    ``frames_read`` how many frames ``read`` has returned so far.
    """

    name: str = "source"
    fps: float | None = None
    frame_count: int | None = None

    def __init__(self) -> None:
        self.frames_read = 0
        self._opened = False

    @property
    def is_open(self) -> bool:
        return self._opened

    def open(self) -> FrameSource:
        self._opened = True
        return self

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _require_open(self, handle: object = True) -> None:
        """Refuse ``read`` before ``open`` (or after ``close``, when the subclass's ``handle`` is gone)."""
        if not self._opened or handle is None:
            raise SourceError(f"{self.name}: read() before open()")

    def close(self) -> None:
        self._opened = False

    def __enter__(self) -> FrameSource:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self._opened:
            self.open()
        while (frame := self.read()) is not None:
            yield frame

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ImageSource(FrameSource):
    """A still image as a one-frame source (EXIF orientation applied; see :mod:`megaviewer.vision.images`)."""

    def __init__(self, path: str | Path, max_side: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.name = self.path.name
        self.frame_count = 1
        self.max_side = max_side
        self._image: np.ndarray | None = None
        self.scale = 1.0

    def open(self) -> ImageSource:
        from megaviewer.vision.images import DEFAULT_MAX_SIDE, ImageLoadError, read_image

        try:
            loaded = read_image(self.path, self.max_side or DEFAULT_MAX_SIDE)
        except ImageLoadError as exc:
            raise SourceError(str(exc)) from None
        self._image, self.scale = loaded.image, loaded.scale
        self.frames_read = 0
        super().open()
        return self

    def read(self) -> np.ndarray | None:
        self._require_open()
        if self.frames_read > 0 or self._image is None:
            return None
        self.frames_read += 1
        return self._image

    def close(self) -> None:
        self._image = None
        super().close()


class VideoSource(FrameSource):
    """A video file read with OpenCV (FFmpeg backend); ``loop=True`` rewinds at the end (live preview).

    A file that is cut off mid-stream ends at the last decodable frame: ``read`` returns ``None`` there,
    exactly as at a normal end, because a half-downloaded video is still worth its first frames.
    """

    def __init__(self, path: str | Path, loop: bool = False):
        super().__init__()
        self.path = Path(path)
        self.name = self.path.name
        self.loop = loop
        self._cap = None
        self._pending: np.ndarray | None = None

    def open(self) -> VideoSource:
        import cv2

        if not self.path.exists():
            raise SourceError(f"{self.path}: file not found")
        if not self.path.is_file():
            raise SourceError(f"{self.path}: not a file")
        with _quiet_opencv():
            cap = cv2.VideoCapture(str(self.path))
            ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            cap.release()
            raise SourceError(f"{self.path}: not a readable video (OpenCV/FFmpeg could not decode a frame)")
        self._cap = cap
        self._pending = frame
        self.fps = _capture_fps(cap)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self.frames_read = 0
        super().open()
        return self

    def read(self) -> np.ndarray | None:
        import cv2

        self._require_open(self._cap)
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            with _quiet_opencv():
                ok, frame = self._cap.read()
            if (not ok or frame is None) and self.loop and self.frames_read > 0:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                with _quiet_opencv():
                    ok, frame = self._cap.read()
            if not ok or frame is None:
                return None
        self.frames_read += 1
        return _as_bgr(frame)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None
        super().close()


class WebcamSource(FrameSource):
    """A camera by OpenCV index. A failed read is retried ``retries`` times (``retry_delay`` s apart)
    before :class:`SourceError` says the camera stopped: USB cameras drop single frames routinely."""

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None, retries: int = 5,
                 retry_delay: float = 0.05):
        super().__init__()
        self.index = int(index)
        self.name = f"camera {self.index}"
        self.size_request = (width, height)
        self.retries = retries
        self.retry_delay = retry_delay
        self._cap = None

    def open(self) -> WebcamSource:
        import cv2

        with _quiet_opencv():
            cap = cv2.VideoCapture(self.index)
            if cap.isOpened():
                width, height = self.size_request
                if width:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                if height:
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {self.index} is not available (no such camera, no permission, or it is "
                              "in use by another program)")
        self._cap = cap
        self.fps = _capture_fps(cap)
        self.frames_read = 0
        super().open()
        return self

    def read(self) -> np.ndarray | None:
        self._require_open(self._cap)
        for attempt in range(self.retries + 1):
            with _quiet_opencv():
                ok, frame = self._cap.read()
            if ok and frame is not None:
                self.frames_read += 1
                return _as_bgr(frame)
            if attempt < self.retries:
                time.sleep(self.retry_delay)
        raise SourceError(f"camera {self.index} stopped delivering frames ({self.retries + 1} reads failed in a "
                          "row; was it disconnected?)")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        super().close()


def parse_camera_spec(spec: int | str) -> int | None:
    """``0``, ``"0"``, ``"cam:0"``, ``"camera:1"`` -> camera index; anything else -> ``None``."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    if isinstance(spec, str):
        text = spec.strip().lower()
        for prefix in ("cam:", "camera:", "webcam:"):
            if text.startswith(prefix) and text[len(prefix):].isdigit():
                return int(text[len(prefix):])
        if text.isdigit() and not Path(spec).exists():
            return int(text)
    return None


def kind_of(spec: int | str | Path) -> str:
    """``"camera"``, ``"video"``, ``"image"`` or ``"unknown"`` for a source spec (by its extension)."""
    if not isinstance(spec, Path) and parse_camera_spec(spec) is not None:
        return "camera"
    suffix = Path(spec).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return "unknown"


def open_source(spec: int | str | Path, loop: bool = False) -> FrameSource:
    """A source for ``spec`` (not yet opened): camera index / ``"cam:N"``, a video or an image path.

    Files with an unknown extension are sniffed: PIL recognises it -> image, else it is tried as video.
    """
    kind = kind_of(spec)
    if kind == "camera":
        return WebcamSource(parse_camera_spec(spec))  # type: ignore[arg-type]
    path = Path(spec)
    if kind == "video":
        return VideoSource(path, loop=loop)
    if kind == "image":
        return ImageSource(path)
    if not path.exists():
        raise SourceError(f"{path}: file not found")
    return ImageSource(path) if _looks_like_image(path) else VideoSource(path, loop=loop)


def _looks_like_image(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception:  # noqa: BLE001 - any failure just means "not an image PIL knows"
        return False


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    from megaviewer.vision.images import ensure_bgr_uint8

    return frame if frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 else ensure_bgr_uint8(frame)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (e.g. "can't open camera by index"): we raise clearer errors."""
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _capture_fps(cap) -> float | None:
    """The stream's frame rate, or None when OpenCV reports nothing usable (0, NaN, negative)."""
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and np.isfinite(fps) and fps > 0 else None
