"""Speed measurements of the engine, the detector and the live loop, as importable functions.

Why a module and not only a script: the same functions feed ``scripts/bench.py`` (a table and a JSON file
in ``resources/bench/``), ``scripts/bench_compare.py`` and ``tests/test_bench.py``, which runs them on a tiny
random engine with two repeats to prove the plumbing and the JSON schema. The tests never look at the numbers:
wall-clock figures depend on the machine and on whatever else runs on it. It sits outside the runtime package
``megaviewer`` because it needs what an installed app does not: ``training`` (a random-weight tokenizer when
none is shipped), scikit-image's sample photo and a source tree to write its report into.

Conventions. Every case is timed ``repeats`` times after ``warmup`` untimed calls (first calls pay for
lazy initialisation: allocator, oneDNN kernel selection, the encoder-constant cache, MediaPipe's graph);
the summary keeps the median (the headline figure), p10/p90, min and mean, all in milliseconds. On CUDA
every timed call is bracketed by ``torch.cuda.synchronize``. The environment block records what the
figures depend on (torch threads, device, torch version, CPU model, the model preset and its size) and
the load average, because a busy machine makes every figure slower.

Targets (CPU, medians) and the paper's figures (GTX 1070) are in :data:`TARGETS` and :data:`PAPER`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from megaviewer.settings import DEFAULTS

if TYPE_CHECKING:
    from megaviewer.engine import Engine

SCHEMA = "megaviewer.bench/1"
RESULTS_DIR = Path(__file__).resolve().parents[1] / "resources" / "bench"  # where reports are kept
FRAME_SIZE = (640, 480)  # (W, H) of the detector and live-loop frames
STOCHASTIC_QS = (1, 4, 16, 25)
STOCHASTIC_STEPS = 5

TARGETS: dict[str, dict[str, Any]] = {
    "deterministic_ms": {"target": 15.0, "better": "lower",
                         "what": "deterministic, model + decode, ms/person"},
    "stochastic_q16_t5_ms": {"target": 150.0, "better": "lower", "what": "stochastic Q=16, T=5, ms"},
    "live_fps": {"target": 15.0, "better": "higher", "what": "live loop 640x480 incl. detector, FPS"},
    "batched_speedup": {"target": 5.0, "better": "higher", "what": "16 sequential calls / one Q=16 call"},
}
"""The speed targets on a CPU (medians); :func:`checks` compares a report against them."""

PAPER: dict[str, float] = {
    "deterministic_hrnet_ms": 70.0,
    "deterministic_resnet_ms": 30.0,
    "stochastic_q16_resnet_ms": 230.0,
}
"""The paper's timings on a GTX 1070 (per image), for the side-by-side columns of the table."""


# ------------------------------------------------------------------------------------------ timing
def summarize(times_ms: Sequence[float]) -> dict[str, float]:
    """Median (headline), p10, p90, min, mean of a list of durations in ms; ``n`` = how many."""
    arr = np.asarray(times_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no timings to summarise")
    return {"median_ms": float(statistics.median(arr.tolist())), "p10_ms": float(np.percentile(arr, 10)),
            "p90_ms": float(np.percentile(arr, 90)), "min_ms": float(arr.min()), "mean_ms": float(arr.mean()),
            "n": int(arr.size)}


def _sync_for(device: torch.device | str | None) -> Callable[[], None]:
    """A no-op on the CPU; ``torch.cuda.synchronize`` on CUDA, so kernels launched inside a timed call
    are counted in that call and not in the next."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def measure(fn: Callable[[], Any], repeats: int, warmup: int = 2,
            device: torch.device | str | None = None) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; :func:`summarize` of the latter."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sync = _sync_for(device)
    for _ in range(max(0, warmup)):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return summarize(times)


def measure_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2,
                        device: torch.device | str | None = None) -> dict[str, dict[str, float]]:
    """Time several callables round-robin (a, b, a, b, ...), so a change in machine load during the run
    (another process starting, thermal throttling) hits all of them alike: what a ratio needs."""
    sync = _sync_for(device)
    for _ in range(max(0, warmup)):
        for fn in fns.values():
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: summarize(values) for name, values in times.items()}


# ------------------------------------------------------------------------------------------ inputs
def standing_keypoints(body: str = "anny") -> np.ndarray:
    """COCO-17 keypoints (17, 3) of the body's rest mesh seen from the front, crop-normalised as MEGA
    expects (the keypoint box x1.2 maps to [-1, 1]), confidence 0.9.

    Why not random numbers: generation cost does not depend on the values, but a plausible person keeps
    the benchmark honest if it is ever used to eyeball the output too.
    """
    from megaviewer.body.assets import BodyAssets

    assets = BodyAssets.load(body)
    joints = (assets.coco_regressor.double() @ assets.template.double()).numpy()  # (17, 3), y up
    xy = np.stack([joints[:, 0], -joints[:, 1]], axis=1)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    xy = (xy - (lo + hi) / 2) * (2.0 / (1.2 * float((hi - lo).max())))
    return np.concatenate([xy, np.full((17, 1), 0.9)], axis=1).astype(np.float32)


def engine_inputs(engine: Engine, seed: int = 0) -> dict[str, Any]:
    """``recover`` keyword arguments for whatever the engine's model is conditioned on, plus a crop box
    in a 640x480 frame (so the camera maths runs as in the live loop)."""
    from megaviewer.engine import CropBox

    kinds = engine.model.config.conditioning.kinds
    out: dict[str, Any] = {"crop": CropBox(center=(320.0, 240.0), side=400.0, image_size=FRAME_SIZE)}
    if "keypoints" in kinds:
        try:
            out["keypoints"] = standing_keypoints(engine.tokenizer.config.body)
        except Exception:  # noqa: BLE001 - any asset trouble: the timing does not depend on the values
            kp = np.random.default_rng(seed).uniform(-0.8, 0.8, (17, 3)).astype(np.float32)
            kp[:, 2] = 0.9
            out["keypoints"] = kp
    if "image" in kinds:
        h, w = engine.model.config.conditioning.image_size
        out["image"] = torch.randn(3, h, w, generator=torch.Generator().manual_seed(seed))
    if "landmarks" in kinds:
        out["landmarks_3d"] = standing_landmarks(engine.tokenizer.config.body)
    return out


def standing_landmarks(body: str = "anny") -> np.ndarray:
    """The detector's 3D landmarks (33, 4) of the rest mesh seen from the front: its COCO-17 joints around the hips
    in camera axes at BlazePose's indices, visibility 0.9; the other 16 points missing (visibility 0)."""
    from megaviewer.body.assets import BodyAssets
    from megaviewer.vision.detector import MEDIAPIPE_TO_COCO17

    assets = BodyAssets.load(body)
    joints = (assets.coco_regressor.double() @ assets.template.double()).numpy()  # (17, 3), y up, facing +z
    joints = joints * np.array([1.0, -1.0, -1.0])  # camera axes: x right, y down, z away (facing the camera)
    out = np.zeros((33, 4), np.float32)
    out[list(MEDIAPIPE_TO_COCO17), :3] = joints - joints[11:13].mean(axis=0)
    out[list(MEDIAPIPE_TO_COCO17), 3] = 0.9
    return out


def _precision(engine: Engine):
    scope = getattr(engine, "_precision", None)
    return scope() if scope is not None else nullcontext()


# ------------------------------------------------------------------------------------------ engine
def bench_deterministic(engine: Engine, repeats: int = 30, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Deterministic recovery of one person, four ways:

    - ``model_decode`` (the speed target's "model + decode"): conditioning, one decoder pass on the cached
      encoder constant, argmax, rotation/camera head, tokenizer decode of the 54 tokens;
    - ``model`` and ``decode``: those two parts alone;
    - ``total``: the whole ``Engine.recover`` call, which adds input checks, the camera fit to the keypoints,
      camera placement, joint regression and the copies into the result.
    """
    from megaviewer import generate
    from megaviewer.vision.landmarks import coco_landmarks

    inputs = engine_inputs(engine)
    raw = {k: v for k, v in inputs.items() if k in ("keypoints", "image", "landmarks_3d")}
    landmarks = coco_landmarks(raw["landmarks_3d"]) if "landmarks_3d" in raw else None
    dev = engine.device

    def total() -> None:
        engine.recover(**inputs, refine=False, mode="deterministic")

    codebook = engine.tokenizer.quantizer.codebook if DEFAULTS.expected_codes else None

    @torch.inference_mode()
    def model_only() -> generate.GenerationResult:
        """The deterministic pass as the engine runs it by default (with its expected codes)."""
        with _precision(engine):
            cond = engine.model.encode_conditioning(engine._conditioning(raw.get("keypoints"), raw.get("image"),
                                                                         landmarks))
            return generate.deterministic(engine.model, cond, codebook=codebook)

    generated = model_only()

    @torch.inference_mode()
    def decode_only() -> torch.Tensor:
        with _precision(engine):
            return generated.decode(engine.tokenizer)

    def model_decode() -> None:
        with torch.inference_mode(), _precision(engine):
            model_only().decode(engine.tokenizer)

    stats = measure_interleaved({"model_decode": model_decode, "total": total}, repeats, warmup, dev)
    return {**stats, "model": measure(model_only, repeats, warmup, dev),
            "decode": measure(decode_only, repeats, warmup, dev)}


def bench_stochastic(engine: Engine, repeats: int = 30, warmup: int = 3, qs: Iterable[int] = STOCHASTIC_QS,
                     steps: int = STOCHASTIC_STEPS) -> dict[str, dict[str, float]]:
    """Stochastic recovery (``Engine.recover``, decode included) for each Q, T = ``steps``: ``q<Q>`` keys,
    each with ``per_sample_ms`` = median / Q added."""
    inputs = engine_inputs(engine)
    out: dict[str, dict[str, float]] = {}
    for q in qs:
        stats = measure(lambda q=q: engine.recover(**inputs, refine=False, mode="stochastic", num_samples=q,
                                                   steps=steps, seed=0),
                        repeats, warmup, engine.device)
        stats["per_sample_ms"] = stats["median_ms"] / q
        stats["steps"] = steps
        out[f"q{q}"] = stats
    return out


def bench_batched_vs_sequential(engine: Engine, repeats: int = 30, warmup: int = 3, q: int = 16,
                                steps: int = STOCHASTIC_STEPS) -> dict[str, Any]:
    """Q samples in one ``recover`` call vs Q calls of one sample each, timed interleaved in one run.

    ``speedup`` = median(sequential) / median(batched): what batching the samples buys on this device.
    """
    inputs = engine_inputs(engine)

    def batched() -> None:
        engine.recover(**inputs, refine=False, mode="stochastic", num_samples=q, steps=steps, seed=0)

    def sequential() -> None:
        for i in range(q):
            engine.recover(**inputs, refine=False, mode="stochastic", num_samples=1, steps=steps, seed=i)

    stats = measure_interleaved({"batched": batched, "sequential": sequential}, repeats, warmup, engine.device)
    speedup = stats["sequential"]["median_ms"] / max(stats["batched"]["median_ms"], 1e-9)
    return {"q": q, "steps": steps, **stats, "speedup": speedup}


def bench_unconditional(engine: Engine, repeats: int = 30, warmup: int = 3, q: int = 8,
                        steps: int = 20) -> dict[str, Any]:
    """Random humans from the pre-trained model (Q=8, T=20, decode included); ``skipped`` if it has none."""
    if engine.unconditional_model is None:
        return {"skipped": "the engine has no unconditional (pre-trained) model"}
    stats = measure(lambda: engine.unconditional(num_samples=q, steps=steps, seed=0), repeats, warmup,
                    engine.device)
    return {"q": q, "steps": steps, **stats}


def bench_tokenizer_decode(engine: Engine, repeats: int = 30, warmup: int = 3,
                           batches: Iterable[int] = (1, 16)) -> dict[str, dict[str, float]]:
    """Tokenizer decode alone (token ids -> vertices on the engine's device) for each batch size."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for b in batches:
        ids = torch.randint(0, engine.tokenizer.config.num_codes, (b, engine.tokenizer.num_tokens),
                            generator=gen).to(engine.device)

        @torch.inference_mode()
        def decode(ids: torch.Tensor = ids) -> None:
            with _precision(engine):
                engine.tokenizer.decode(ids)

        stats = measure(decode, repeats, warmup, engine.device)
        stats["per_mesh_ms"] = stats["median_ms"] / b
        out[f"b{b}"] = stats
    return out


# ------------------------------------------------------------------------------------------ frames
def photo_bgr() -> tuple[np.ndarray, str]:
    """A real photo of a person (scikit-image's ``astronaut``, BGR) and where it came from.

    Without scikit-image a mid-grey picture stands in; the detector then finds nobody, which the report
    says (``photo``), so its detector and live-loop figures are not mistaken for the real ones.
    """
    try:
        from skimage.data import astronaut
    except ImportError:
        return np.full((512, 512, 3), 128, dtype=np.uint8), "grey (scikit-image missing: nobody to detect)"
    return np.ascontiguousarray(astronaut()[:, :, ::-1]), "skimage.data.astronaut"


def synthetic_frame(photo: np.ndarray, size: tuple[int, int] = FRAME_SIZE, shift: tuple[int, int] = (0, 0)
                    ) -> np.ndarray:
    """``photo`` scaled to the frame height, centred on a grey ``size`` (W, H) frame, moved by ``shift`` px."""
    import cv2

    w, h = size
    scale = h / photo.shape[0]
    pw, ph = max(1, round(photo.shape[1] * scale)), h
    scaled = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    frame = np.full((h, w, 3), 128, dtype=np.uint8)
    x0, y0 = (w - pw) // 2 + int(shift[0]), int(shift[1])
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = scaled[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return frame


def synthetic_frames(count: int, photo: np.ndarray | None = None, size: tuple[int, int] = FRAME_SIZE
                     ) -> list[np.ndarray]:
    """``count`` frames of the photo drifting sideways (±40 px) and bobbing (±10 px): a little motion, so
    a tracker has to follow someone instead of seeing the same pixels again."""
    photo = photo if photo is not None else photo_bgr()[0]
    out = []
    for i in range(count):
        phase = 2 * math.pi * i / max(count, 1)
        out.append(synthetic_frame(photo, size, (round(40 * math.sin(phase)), round(10 * math.sin(2 * phase)))))
    return out


def write_synthetic_video(path: str | Path, frames: int = 60, fps: float = 30.0, size: tuple[int, int] = FRAME_SIZE,
                          photo: np.ndarray | None = None) -> Path:
    """Write :func:`synthetic_frames` as a video; returns the path written (``.mp4`` with the mp4v codec,
    or ``.avi`` with MJPG where this OpenCV build cannot write mp4)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = synthetic_frames(frames, photo, size)
    for suffix, codec in ((path.suffix or ".mp4", "mp4v"), (".avi", "MJPG")):
        target = path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*codec), fps, size)
        if not writer.isOpened():
            writer.release()
            continue
        for picture in pictures:
            writer.write(picture)
        writer.release()
        if target.exists() and target.stat().st_size > 0:
            return target
    raise RuntimeError(f"OpenCV could not write a video next to {path} (tried mp4v and MJPG)")


# ------------------------------------------------------------------------------------------ detector
def mediapipe_available() -> str | None:
    """None when MediaPipe imports; else why not (the detector benchmarks are then skipped)."""
    try:
        import mediapipe  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "no detector here"
        return f"mediapipe unavailable: {exc}"
    return None


def bench_detector(frames: Sequence[np.ndarray], repeats: int = 30, warmup: int = 3,
                   multi_repeats: int | None = None) -> dict[str, Any]:
    """PoseDetector on 640x480 frames: ``single`` (one still-image pass), ``tracking`` (the live-video
    mode, fed consecutive frames), ``multi`` (the multi-person search, max_people=4; its cost is one pass
    per person plus the empty pass plus the tile passes)."""
    reason = mediapipe_available()
    if reason is not None:
        return {"skipped": reason}
    from megaviewer.vision.detector import PoseDetector

    out: dict[str, Any] = {}
    still = frames[0]
    with PoseDetector(max_people=1) as det:
        out["single"] = measure(lambda: det.detect(still), repeats, warmup)
        out["single"]["people"] = len(det.detect(still))
    with PoseDetector(max_people=1, tracking=True) as det:
        counter = iter(range(10**9))
        out["tracking"] = measure(lambda: det.detect(frames[next(counter) % len(frames)]), repeats, warmup)
    with PoseDetector(max_people=4) as det:
        out["multi"] = measure(lambda: det.detect(still), multi_repeats or repeats, min(warmup, 1))
        out["multi"]["people"] = len(det.detect(still))
        out["multi"]["detector_runs"] = det.last_timings_ms.get("detector_runs", float("nan"))
    return out


def bench_live_loop(engine: Engine, video: str | Path, frames: int = 30, warmup: int = 5) -> dict[str, Any]:
    """The live loop end to end on a video file, one frame after another as fast as it goes: read a frame
    -> detect (tracking mode) -> crop -> deterministic recovery -> decode (what the app's live view does
    per frame, drawing excepted).

    ``latency`` is per frame (warm-up frames excluded); ``fps`` = frames / their summed latency;
    ``detect``/``recover``/``read`` split the latency; ``found`` = fraction of frames with a person.
    """
    reason = mediapipe_available()
    if reason is not None:
        return {"skipped": reason}
    from megaviewer.app.pipeline import recover_people
    from megaviewer.vision.detector import PoseDetector
    from megaviewer.vision.sources import VideoSource

    sync = _sync_for(engine.device)
    lat, read, detect, recover = [], [], [], []
    found = 0
    with VideoSource(video, loop=True) as source, PoseDetector(max_people=1, tracking=True) as detector:
        for i in range(warmup + frames):
            t0 = time.perf_counter()
            frame = source.read()
            t1 = time.perf_counter()
            people = recover_people(engine, detector, frame, mode="deterministic", refine=False)
            sync()
            t2 = time.perf_counter()
            if i < warmup:
                continue
            lat.append((t2 - t0) * 1000.0)
            read.append((t1 - t0) * 1000.0)
            detect.append(people.timings_ms.get("detect_ms", 0.0))
            recover.append(people.timings_ms.get("recover_ms", 0.0))
            found += int(len(people) > 0)
        size = (int(frame.shape[1]), int(frame.shape[0]))
    total_s = sum(lat) / 1000.0
    return {"frames": frames, "frame_size": list(size), "fps": frames / total_s if total_s > 0 else float("inf"),
            "latency": summarize(lat), "read": summarize(read), "detect": summarize(detect),
            "recover": summarize(recover), "found": found / frames}


# ------------------------------------------------------------------------------------------ paper preset
def paper_engine(template: Engine, kind: str = "keypoints") -> Engine:
    """A random-weight ``paper`` preset (D=1024, 12 + 4 blocks) over ``template``'s tokenizer.

    ``kind`` = ``"keypoints"`` (keypoint conditioning, no image backbone) or a timm backbone name such as
    ``"hrnet_w48"`` (image conditioning, random backbone weights; nothing is downloaded). The weights are
    meaningless; the shapes, hence the cost, are the paper's.
    """
    from megaviewer.engine import Engine
    from megaviewer.model.config import get_preset
    from megaviewer.model.mega import Mega

    config = get_preset("paper", seq_len=int(template.tokenizer.num_tokens),
                        vocab=int(template.tokenizer.config.num_codes))
    if kind == "keypoints":
        config.conditioning = replace(config.conditioning, kinds=("keypoints",))
    else:
        config.conditioning = replace(config.conditioning, kinds=("image",), image_backbone=kind,
                                      backbone_weights=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Mega(config)
    return Engine(model, template.tokenizer, template.coco_regressor, template.device, name=f"paper-{kind}",
                  half=template.half, compile=template.compiled)


def bench_paper(template: Engine, repeats: int = 2, warmup: int = 1, kinds: Sequence[str] = ("keypoints", "hrnet_w48"),
                q: int = 16, steps: int = STOCHASTIC_STEPS) -> dict[str, Any]:
    """Deterministic and stochastic (Q=16, T=5) recovery with the paper-sized model, per ``kinds`` entry.

    Slow on a CPU (seconds per call; keep ``repeats`` small); on a GPU the figures compare with the
    paper's (:data:`PAPER`).
    """
    out: dict[str, Any] = {}
    for kind in kinds:
        try:
            engine = paper_engine(template, kind)
        except Exception as exc:  # noqa: BLE001 - e.g. a timm without that backbone: report, do not abort
            out[kind] = {"skipped": f"could not build the paper preset with {kind}: {exc}"}
            continue
        inputs = engine_inputs(engine)
        out[kind] = {
            "parameters": _parameter_counts(engine.model),
            "deterministic": measure(lambda e=engine, i=inputs: e.recover(**i, refine=False, mode="deterministic"),
                                     repeats, warmup, engine.device),
            f"stochastic_q{q}": measure(lambda e=engine, i=inputs: e.recover(**i, refine=False, mode="stochastic",
                                                                             num_samples=q, steps=steps, seed=0),
                                        repeats, warmup, engine.device),
        }
        del engine
    return out


# ------------------------------------------------------------------------------------------ environment
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` "model name"), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _parameter_counts(model: torch.nn.Module | None) -> dict[str, int] | None:
    if model is None:
        return None
    counts = dict(model.parameter_counts()) if hasattr(model, "parameter_counts") else {}
    counts["total"] = int(sum(p.numel() for p in model.parameters()))
    return counts


def preset_of(config: Any) -> str:
    """The registered preset a model config was made from ("custom" when none matches): the checkpoint
    records sizes, not the preset's name."""
    from megaviewer.model.config import get_preset, list_presets

    def key(cfg: Any) -> dict:
        data = cfg.to_dict()
        data["conditioning"].pop("backbone_weights", None)
        for field in ("seq_len", "vocab", "head_dropout"):
            data.pop(field, None)
        return data

    mine = key(config)
    for name in list_presets():
        if key(get_preset(name)) == mine:
            return name
    return "custom"


def environment(engine: Engine) -> dict[str, Any]:
    """What the figures depend on: software, hardware, threads, load, and the model's size."""
    import importlib.metadata as md

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    dev = engine.device
    info: dict[str, Any] = {
        "device": str(dev), "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "mediapipe": version("mediapipe"), "opencv": version("opencv-python"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "model_name": engine.name, "model_preset": preset_of(engine.model.config),
        "model_config": {k: v for k, v in engine.model.config.to_dict().items() if k != "conditioning"},
        "conditioning": list(engine.model.config.conditioning.kinds),
        "parameters": {"model": _parameter_counts(engine.model),
                       "unconditional": _parameter_counts(engine.unconditional_model),
                       "tokenizer": int(sum(p.numel() for p in engine.tokenizer.parameters()))},
        "half": bool(getattr(engine, "half", False)), "compiled": bool(getattr(engine, "compiled", False)),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


# ------------------------------------------------------------------------------------------ the run
def run_all(engine: Engine, repeats: int = 30, warmup: int = 3, detector: bool = True,
            work_dir: str | Path | None = None, paper: bool = False, paper_repeats: int = 2,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every benchmark on ``engine``; the report dict that :func:`format_table` prints and JSON stores.

    ``detector=False`` skips MediaPipe (detector and live loop). ``work_dir`` receives the synthetic
    video (a temporary folder by default). ``paper=True`` adds :func:`bench_paper`.
    """
    say = log or (lambda _msg: None)
    started = time.time()
    report: dict[str, Any] = {"schema": SCHEMA, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "repeats": repeats, "warmup": warmup, "environment": environment(engine),
                              "results": {}}
    res = report["results"]
    say("deterministic")
    res["deterministic"] = bench_deterministic(engine, repeats, warmup)
    say("stochastic Q = " + ", ".join(map(str, STOCHASTIC_QS)))
    res["stochastic"] = bench_stochastic(engine, repeats, warmup)
    say("batched vs sequential")
    res["batched_vs_sequential"] = bench_batched_vs_sequential(engine, repeats, warmup)
    say("unconditional")
    res["unconditional"] = bench_unconditional(engine, repeats, warmup)
    say("tokenizer decode")
    res["tokenizer_decode"] = bench_tokenizer_decode(engine, repeats, warmup)
    if paper:  # before MediaPipe runs: timm's first import of triton after MediaPipe can crash (see tests)
        say("paper preset (random weights)")
        res["paper"] = bench_paper(engine, paper_repeats, 1)
    if detector:
        photo, photo_name = photo_bgr()
        report["environment"]["photo"] = photo_name
        frames = synthetic_frames(30, photo)
        say("detector")
        res["detector"] = bench_detector(frames, repeats, warmup, multi_repeats=max(2, min(repeats, 10)))
        with tempfile.TemporaryDirectory() if work_dir is None else nullcontext(str(work_dir)) as folder:
            video = write_synthetic_video(Path(folder) / "live_640x480.mp4", frames=90, photo=photo)
            say("live loop")
            res["live_loop"] = bench_live_loop(engine, video, frames=max(repeats, 2), warmup=min(max(warmup, 1), 5))
    else:
        res["detector"] = {"skipped": "disabled (--no-detector)"}
        res["live_loop"] = {"skipped": "disabled (--no-detector)"}
    report["environment"]["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["wall_s"] = time.time() - started
    report["checks"] = checks(report)
    return report


def headline(report: dict[str, Any]) -> dict[str, float | None]:
    """The four figures the targets are about (None where skipped)."""
    res = report["results"]
    live = res.get("live_loop", {})
    return {
        "deterministic_ms": res["deterministic"]["model_decode"]["median_ms"],
        "stochastic_q16_t5_ms": res["stochastic"].get("q16", {}).get("median_ms"),
        "live_fps": live.get("fps"),
        "batched_speedup": res["batched_vs_sequential"].get("speedup"),
    }


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the measured value and whether it is met (None when not measured)."""
    out = {}
    for name, value in headline(report).items():
        spec = TARGETS[name]
        met = None
        if value is not None:
            met = bool(value <= spec["target"]) if spec["better"] == "lower" else bool(value >= spec["target"])
        out[name] = {"value": value, "target": spec["target"], "better": spec["better"], "met": met,
                     "what": spec["what"]}
    return out


def save_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as indented JSON (atomically: a reader never sees half a file)."""
    from megaviewer.io.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------ table
def _ms(stats: dict[str, Any] | None) -> str:
    if not stats or "median_ms" not in stats:
        return "-"
    return f"{stats['median_ms']:9.2f}  (p10 {stats['p10_ms']:.2f}, p90 {stats['p90_ms']:.2f})"


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the medians, the targets and the paper's figures."""
    env, res = report["environment"], report["results"]
    lines = [f"megaviewer bench - {env['model_name']} ({env['model_preset']}, "
             f"{env['parameters']['model']['total'] / 1e6:.2f} M params) on {env['device']}"
             + (f" [{env['gpu']}]" if env.get("gpu") else f" [{env['cpu_model']}]"),
             f"torch {env['torch']}, {env['torch_threads']} threads, load average at start "
             f"{', '.join(f'{x:.2f}' for x in env['load_average'] or [])}; repeats {report['repeats']}, "
             f"warm-up {report['warmup']}; medians in ms (p10, p90)", ""]

    def row(label: str, stats: dict[str, Any] | None, extra: str = "") -> None:
        lines.append(f"  {label:<38} {_ms(stats)}{('   ' + extra) if extra else ''}")

    det = res["deterministic"]
    lines.append("engine")
    row("deterministic: model + decode", det["model_decode"], "paper GTX1070: 30 (ResNet) / 70 (HRNet)")
    row("  model only", det["model"])
    row("  decode only", det["decode"])
    row("  whole recover call (+ camera fit)", det["total"])
    for key, stats in res["stochastic"].items():
        extra = f"{stats['per_sample_ms']:.2f} ms/sample"
        if key == "q16":
            extra += "   paper GTX1070: 230 (ResNet)"
        row(f"stochastic {key.upper()}, T={stats['steps']}", stats, extra)
    bvs = res["batched_vs_sequential"]
    row(f"Q={bvs['q']} batched (one call)", bvs["batched"])
    row(f"Q={bvs['q']} sequential ({bvs['q']} calls)", bvs["sequential"], f"speedup x{bvs['speedup']:.2f}")
    unc = res["unconditional"]
    if "skipped" in unc:
        lines.append(f"  {'unconditional':<38} skipped: {unc['skipped']}")
    else:
        row(f"unconditional Q={unc['q']}, T={unc['steps']}", unc)
    for key, stats in res["tokenizer_decode"].items():
        row(f"tokenizer decode batch {key[1:]}", stats, f"{stats['per_mesh_ms']:.2f} ms/mesh")
    lines.append("detector (640x480)" + (f", photo: {env.get('photo')}" if env.get("photo") else ""))
    det_res = res.get("detector", {})
    if "skipped" in det_res:
        lines.append(f"  skipped: {det_res['skipped']}")
    else:
        row("single person (still image)", det_res["single"])
        row("tracking (video mode)", det_res["tracking"])
        row("multi-person search (max 4)", det_res["multi"],
            f"{det_res['multi']['people']} found, {det_res['multi']['detector_runs']:.0f} detector runs")
    live = res.get("live_loop", {})
    lines.append("live loop (video file 640x480: read -> detect (tracking) -> crop -> recover -> decode)")
    if "skipped" in live:
        lines.append(f"  skipped: {live['skipped']}")
    else:
        row("latency per frame", live["latency"], f"{live['fps']:.1f} FPS, person found in "
                                                  f"{100 * live['found']:.0f}% of frames")
        row("  read", live["read"])
        row("  detect", live["detect"])
        row("  recover + decode", live["recover"])
    if "paper" in res:
        lines.append("paper preset (D=1024, random weights)")
        for kind, entry in res["paper"].items():
            if "skipped" in entry:
                lines.append(f"  {kind}: skipped: {entry['skipped']}")
                continue
            total = entry["parameters"]["total"] / 1e6
            for key, stats in entry.items():
                if key != "parameters":
                    row(f"{kind} ({total:.0f} M) {key}", stats)
    lines += ["", "targets"]
    for chk in report["checks"].values():
        value = chk["value"]
        shown = "-" if value is None else f"{value:.2f}"
        sign = "<=" if chk["better"] == "lower" else ">="
        verdict = {True: "met", False: "NOT met", None: "not measured"}[chk["met"]]
        lines.append(f"  {chk['what']:<48} {shown:>9}  (target {sign} {chk['target']:g})  {verdict}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ command line
def build_engine(args: argparse.Namespace) -> Engine:
    """The shipped model (or ``--model``), or with ``--random-preset`` a random-weight model of that preset
    over the shipped tokenizer: for timing before a trained model exists (the report says so)."""
    from megaviewer.engine import Engine

    device = args.device
    if args.random_preset:
        from megaviewer.body.assets import BodyAssets
        from megaviewer.model.mega import Mega
        from megaviewer.paths import tokenizer_dir
        from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig

        if (tokenizer_dir() / "model.safetensors").exists():
            tokenizer = MeshVQVAE.from_pretrained()
        else:
            from training.tokenizer import build_tokenizer

            tokenizer = build_tokenizer(TokenizerConfig(channels=[16, 32, 64]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = Mega.from_preset(args.random_preset, seq_len=int(tokenizer.num_tokens),
                                     vocab=int(tokenizer.config.num_codes))
            uncond = Mega.from_preset(args.random_preset, seq_len=int(tokenizer.num_tokens),
                                      vocab=int(tokenizer.config.num_codes), conditioning={})
        return Engine(model, tokenizer, BodyAssets.load(tokenizer.config.body).coco_regressor, device,
                      name=f"random-{args.random_preset}", unconditional_model=uncond, half=args.half,
                      compile=args.compile)
    from megaviewer.paths import default_model_dir

    folder = Path(args.model) if args.model else default_model_dir()
    if not (folder / "model.safetensors").exists() and not folder.is_file():
        raise SystemExit(f"no trained model at {folder}: train it (scripts/train_default.py), pass --model, or "
                         "time a random-weight model with --random-preset cpu_fast")
    return Engine.from_pretrained(args.model, device=device, half=args.half, compile=args.compile)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description="Time the engine, the detector and the live loop; "
                                     "print a table and write JSON.")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each case")
    parser.add_argument("--out", default=None,
                        help="JSON report (default resources/bench/bench_<device>.json)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--model", default=None, help="MEGA checkpoint folder (default: the shipped one)")
    parser.add_argument("--random-preset", default=None,
                        help="time a random-weight model of this preset instead of a trained one")
    parser.add_argument("--no-detector", action="store_true", help="skip MediaPipe (detector and live loop)")
    parser.add_argument("--preset-paper", action="store_true",
                        help="also time a random-weight paper-sized model (keypoints; HRNet-W48 image input)")
    parser.add_argument("--paper-repeats", type=int, default=2, help="timed calls per paper-preset case")
    parser.add_argument("--half", action="store_true", help="fp16 autocast (CUDA only; ignored on a CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the blocks (CUDA only)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``scripts/bench.py`` command: run everything, print the table, write the JSON report."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = build_engine(args)
    report = run_all(engine, args.repeats, args.warmup, detector=not args.no_detector, paper=args.preset_paper,
                     paper_repeats=args.paper_repeats, log=lambda msg: print(f"[bench] {msg}", file=sys.stderr,
                                                                             flush=True))
    report["environment"]["weights"] = "random" if args.random_preset else "trained"
    report["command"] = " ".join(["scripts/bench.py", *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out) if args.out else RESULTS_DIR / f"bench_{args.device}.json"
    save_report(report, out)
    print(format_table(report))
    print(f"\nwrote {out}")
    return report
