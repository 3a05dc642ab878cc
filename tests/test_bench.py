"""The benchmark plumbing on a tiny random engine with two repeats: every function runs, the report has the
documented schema and survives JSON. Nothing here asserts on wall-clock values (machine- and load-dependent);
only that timings are finite, non-negative numbers.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import bench
from tests._engines import tiny_engine

STATS_KEYS = {"median_ms", "p10_ms", "p90_ms", "min_ms", "mean_ms", "n"}


def _is_stats(stats: dict, n: int | None = None) -> bool:
    ok = STATS_KEYS <= set(stats) and all(math.isfinite(stats[k]) and stats[k] >= 0 for k in STATS_KEYS)
    return ok and (n is None or stats["n"] == n)


def _needs_mediapipe() -> None:
    reason = bench.mediapipe_available()
    if reason is not None:
        pytest.skip(reason)


def test_measure_and_summarize() -> None:
    calls = []
    stats = bench.measure(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and _is_stats(stats, 3)
    both = bench.measure_interleaved({"a": lambda: None, "b": lambda: None}, repeats=2, warmup=1)
    assert set(both) == {"a", "b"} and all(_is_stats(s, 2) for s in both.values())
    assert bench.summarize([3.0, 1.0, 2.0])["median_ms"] == 2.0
    with pytest.raises(ValueError):
        bench.measure(lambda: None, repeats=0)


def test_inputs_are_crop_normalised_keypoints() -> None:
    kp = bench.standing_keypoints()
    assert kp.shape == (17, 3) and np.isfinite(kp).all()
    assert np.abs(kp[:, :2]).max() <= 1.0 and np.allclose(kp[:, 2], 0.9)
    inputs = bench.engine_inputs(tiny_engine())
    assert set(inputs) == {"keypoints", "crop"} and inputs["crop"].image_size == bench.FRAME_SIZE


def test_engine_benchmarks() -> None:
    engine = tiny_engine()
    det = bench.bench_deterministic(engine, repeats=2, warmup=1)
    assert set(det) == {"model_decode", "total", "model", "decode"} and all(_is_stats(s, 2) for s in det.values())
    sto = bench.bench_stochastic(engine, repeats=2, warmup=1, qs=(1, 4), steps=2)
    assert set(sto) == {"q1", "q4"} and all(_is_stats(s, 2) and s["per_sample_ms"] >= 0 for s in sto.values())
    bvs = bench.bench_batched_vs_sequential(engine, repeats=2, warmup=1, q=3, steps=2)
    assert _is_stats(bvs["batched"], 2) and _is_stats(bvs["sequential"], 2) and bvs["speedup"] > 0
    dec = bench.bench_tokenizer_decode(engine, repeats=2, warmup=1, batches=(1, 2))
    assert set(dec) == {"b1", "b2"} and all(_is_stats(s, 2) for s in dec.values())
    assert "skipped" in bench.bench_unconditional(engine, repeats=2, warmup=1)


def test_environment_records_what_figures_depend_on() -> None:
    env = bench.environment(tiny_engine())
    for key in ("device", "torch", "cpu_model", "torch_threads", "model_preset", "parameters", "load_average"):
        assert key in env
    assert env["model_preset"] == "test_tiny"
    assert env["parameters"]["model"]["total"] > 0 and env["parameters"]["tokenizer"] > 0
    json.dumps(env)


def test_synthetic_video_round_trips(tmp_path) -> None:
    from megaviewer.vision.sources import VideoSource

    frames = bench.synthetic_frames(4)
    assert frames[0].shape == (480, 640, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[1], frames[2])  # a little motion
    path = bench.write_synthetic_video(tmp_path / "clip.mp4", frames=6)
    with VideoSource(path) as source:
        read = list(source)
    assert len(read) == 6 and read[0].shape == (480, 640, 3)


_DETECTOR_SCRIPT = """
import json, sys
from benchmarks import bench
from tests._engines import tiny_engine
photo, name = bench.photo_bgr()
frames = bench.synthetic_frames(3, photo)
det = bench.bench_detector(frames, repeats=2, warmup=1, multi_repeats=1)
video = bench.write_synthetic_video(sys.argv[1] + "/live.mp4", frames=5, photo=photo)
live = bench.bench_live_loop(tiny_engine(), video, frames=2, warmup=1)
print(json.dumps({"detector": det, "live": live}))
"""


def test_detector_and_live_loop(tmp_path) -> None:
    """Run in a child process: in a pytest process that has run MediaPipe, a later first import of triton
    (timm's image backbones in test_model.py) segfaults; keeping MediaPipe out of this process keeps the
    suite's alphabetical order safe."""
    import subprocess
    import sys
    from pathlib import Path

    _needs_mediapipe()
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", _DETECTOR_SCRIPT, str(tmp_path)], cwd=root, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    det, live = out["detector"], out["live"]
    assert _is_stats(det["single"], 2) and _is_stats(det["tracking"], 2) and _is_stats(det["multi"], 1)
    assert live["frames"] == 2 and live["fps"] > 0 and 0 <= live["found"] <= 1
    assert all(_is_stats(live[k], 2) for k in ("latency", "read", "detect", "recover"))
    assert live["frame_size"] == [640, 480]


def test_run_all_report_schema_table_and_json(tmp_path) -> None:
    report = bench.run_all(tiny_engine(), repeats=2, warmup=1, detector=False)
    assert report["schema"] == bench.SCHEMA
    res = report["results"]
    assert set(res) >= {"deterministic", "stochastic", "batched_vs_sequential", "unconditional",
                        "tokenizer_decode", "detector", "live_loop"}
    assert set(res["stochastic"]) == {f"q{q}" for q in bench.STOCHASTIC_QS}
    assert set(report["checks"]) == set(bench.TARGETS)
    assert report["checks"]["live_fps"]["met"] is None  # not measured without the detector
    assert isinstance(report["checks"]["deterministic_ms"]["met"], bool)
    table = bench.format_table(report)
    for needle in ("deterministic", "stochastic Q16", "sequential", "tokenizer decode", "targets"):
        assert needle in table
    path = bench.save_report(report, tmp_path / "bench.json")
    assert json.loads(path.read_text())["results"]["deterministic"]["total"]["n"] == 2


def test_cli_arguments() -> None:
    args = bench.parse_args([])
    assert args.repeats == 30 and args.device == "cpu" and not args.preset_paper and args.out is None
    args = bench.parse_args(["--repeats", "5", "--device", "cuda", "--preset-paper", "--out", "x.json"])
    assert args.repeats == 5 and args.device == "cuda" and args.preset_paper and args.out == "x.json"


def test_routes_report_pairs_every_choice(tmp_path) -> None:
    """The CPU-route measurements: both routes of every choice are timed, and the report survives JSON."""
    from benchmarks import routes

    tokenizer = tiny_engine().tokenizer
    report = routes.run_all(tokenizer, repeats=2, warmup=1)
    assert report["schema"] == routes.SCHEMA
    assert set(report["tokenizer_decode"]) == {f"b{b}" for b in routes.DECODE_BATCHES}
    assert all(set(p) == {"cached", "trainable"} and all(_is_stats(s, 2) for s in p.values())
               for p in report["tokenizer_decode"].values())
    layers = report["vcconv_layers"]
    assert layers and all(_is_stats(p["kernels"], 2) and _is_stats(p["sparse_mix"], 2) for p in layers.values())
    assert {p["chosen"] for p in layers.values()} <= {"kernels", "sparse_mix"}
    assert report["basis_first"]["threshold"] > 0
    assert set(report["attention"]) == {"x".join(map(str, s)) for s in routes.ATTENTION_SHAPES}
    assert all(_is_stats(s, 2) for s in report["camera_fit"].values())
    assert "tokenizer_decode" in routes.format_table(report)
    path = bench.save_report(report, tmp_path / "routes.json")
    assert json.loads(path.read_text())["schema"] == routes.SCHEMA


def test_compact_figure_png_keeps_the_picture_in_fewer_bytes(tmp_path):
    """README figures are stored as palette PNGs: smaller than the full-colour PNG, the same picture to the eye."""
    import cv2
    from PIL import Image

    from benchmarks.figures import compact_png_file

    y, x = np.mgrid[0:240, 0:320]
    grain = np.random.default_rng(0).integers(-3, 4, (240, 320, 3))  # shading and photo noise, as renders have
    rgb = np.clip(np.stack([x * 255 // 319, y * 255 // 239, (x + y) * 255 // 558], axis=-1) + grain, 0, 255)
    rgb = np.ascontiguousarray(rgb.astype(np.uint8))
    cv2.circle(rgb, (160, 120), 60, (250, 40, 40), -1)
    path = tmp_path / "figure.png"
    Image.fromarray(rgb).save(path)
    full = path.stat().st_size
    compact_png_file(path)
    with Image.open(path) as image:
        assert image.mode == "P"
        back = np.asarray(image.convert("RGB")).astype(int)
    assert path.stat().st_size < full
    assert np.abs(back - rgb).mean() < 4.0 and (back[120, 160] == [250, 40, 40]).all()


def test_training_speed_variants_read_the_inputs_they_name(tmp_path) -> None:
    """The time-to-accuracy benchmark trains a landmark variant on the simulated detector's 3D landmarks (for
    80 % of the people, as the shipped recipe), a lifter variant on the lifter's joints for everyone, and the
    keypoint variants on keypoints alone, each with its own schedule; minutes to the target interpolate between
    evaluations."""
    from benchmarks.training_speed import VARIANTS, CurvePoint, minutes_to_target, variant_config
    from training.data.observations import ObservationConfig
    from training.evaluate import TRAINING_LANDMARK_PROB

    def config(name, lifter=None):
        return variant_config(VARIANTS[name].stage, tmp_path / name, tmp_path / "pre", lifter, 300, 600, 1)

    plain = config("full75_rows4")
    assert plain.kinds is None and plain.observation == ObservationConfig() and plain.lifter is None
    assert (plain.steps, plain.lr, plain.masking, plain.reprojection_rows) == (1_800, 3e-3, "cosine_full75", 4)
    assert (plain.stop_at, plain.ckpt_every, plain.out_dir) == (600, 300, str(tmp_path / "full75_rows4"))
    assert config("full75_rows4_fresh5").fresh_lr_scale == 5.0
    own = config("landmarks_full75_rows4")
    assert own.kinds == ("keypoints", "landmarks") and own.lifter is None
    assert own.observation.landmarks is not None
    assert own.observation.landmark_prob == TRAINING_LANDMARK_PROB
    merged = VARIANTS["landmarks_merged_fresh5_seed1"]  # a repeat: its own seed, the merged token layout
    repeat = variant_config(merged.stage, tmp_path / "m", tmp_path / "pre", None, 300, 600, 1, seed=merged.seed)
    assert (repeat.seed, own.seed, repeat.preset, repeat.kinds) == (1, 0, "cpu_fast_merged", own.kinds)
    lifted = config("lifter_full75_rows4", tmp_path / "lifter")
    assert lifted.lifter == str(tmp_path / "lifter") and lifted.observation.landmark_prob == 0.0
    assert lifted.out_dir == str(tmp_path / "lifter_full75_rows4" / "mega") and lifted.steps == 1_500
    curve = [CurvePoint(300, 2.0, 90.0, 150.0), CurvePoint(600, 4.0, 70.0, 120.0)]
    assert minutes_to_target(curve, 80.0) == pytest.approx(3.0)
    assert minutes_to_target(curve, 60.0) is None
    assert minutes_to_target(curve, 80.0, expected_codes=True) is None  # not recorded with expected codes


def test_training_speed_counts_minutes_with_expected_codes_apart() -> None:
    """Each evaluation also decodes the expected codes; their minutes to the target and speed-ups are computed
    from those figures alone, against the baseline's own expected-code curve."""
    from dataclasses import asdict

    from benchmarks.training_speed import CurvePoint, add_speedups, minutes_to_target

    base = [CurvePoint(300, 10.0, 90.0, 150.0, pa_mpjpe_expected_codes=84.0),
            CurvePoint(600, 20.0, 77.0, 120.0, pa_mpjpe_expected_codes=70.0)]
    mine = [CurvePoint(300, 2.0, 85.0, 140.0, pa_mpjpe_expected_codes=78.7),
            CurvePoint(600, 4.0, 79.0, 130.0, pa_mpjpe_expected_codes=76.7)]
    assert minutes_to_target(base, 77.7, expected_codes=True) == pytest.approx(10.0 + 10.0 * 6.3 / 14.0)
    assert minutes_to_target(mine, 77.7, expected_codes=True) == pytest.approx(3.0)
    assert minutes_to_target(mine, 77.7) is None  # the argmax codes never get there
    variants = {name: {"curve": [asdict(p) for p in curve], "minutes_to_target": minutes_to_target(curve, 77.7),
                       "minutes_to_target_expected_codes": minutes_to_target(curve, 77.7, expected_codes=True)}
                for name, curve in (("baseline", base), ("mine", mine))}
    add_speedups(variants)
    assert variants["mine"]["speedup_vs_baseline"] is None
    assert variants["mine"]["speedup_vs_baseline_expected_codes"] == pytest.approx((10.0 + 10.0 * 6.3 / 14.0) / 3.0)


def test_tokenizer_speed_scores_every_checkpoint_against_the_baselines_end(tmp_path) -> None:
    """The tokenizer benchmark trains each recipe's own stage (its schedule, stopped early for a long recipe) with
    every checkpoint kept, takes the baseline's last PVE as the target and interpolates minutes to it."""
    from benchmarks.tokenizer_speed import RUNS, add_speedups, checkpoints, run_config, score_run
    from training.recipes import get_recipe

    base = run_config(RUNS["baseline"], tmp_path / "b", 500, 1)
    assert (base.steps, base.stop_at, base.ckpt_every, base.keep_last) == (12_000, None, 500, 10_000)
    assert base.tokenizer.residual_scale == 0.0 and base.prior == "keyposes"
    ours = run_config(RUNS["default"], tmp_path / "d", 500, 1)
    shipped = get_recipe("default").tokenizer
    assert (ours.steps, ours.stop_at, ours.lr) == (shipped.steps, 8_000, shipped.lr)  # its own schedule, cut short
    assert ours.tokenizer.num_tokens == shipped.tokens and ours.extremity_weight == shipped.extremity_weight
    short = run_config(RUNS["offsets_4k"], tmp_path / "o", 500, 1)  # a recipe's stage with its schedule shortened
    assert (short.steps, short.stop_at, short.lr, short.tokenizer.residual_scale) == (4_000, None, 6e-3, 5.0)
    for step in (1000, 500, 10_000):
        (tmp_path / "d" / "checkpoints" / f"step-{step:08d}").mkdir(parents=True)
    (tmp_path / "d" / "checkpoints" / "step-00000500.tmp").mkdir()
    assert [p.name for p in checkpoints(tmp_path / "d")] == ["step-00000500", "step-00001000", "step-00010000"]
    with pytest.raises(FileNotFoundError, match="train it first"):
        score_run(tmp_path / "untrained", None)
    report = {"runs": {
        "baseline": {"curve": [{"train_minutes": 10.0, "pve_mm": 30.0}, {"train_minutes": 30.0, "pve_mm": 16.0}]},
        "default": {"curve": [{"train_minutes": 2.0, "pve_mm": 20.0}, {"train_minutes": 4.0, "pve_mm": 12.0}]}}}
    add_speedups(report)
    assert report["target_pve_mm"] == 16.0
    assert report["runs"]["default"]["minutes_to_target"] == pytest.approx(3.0)
    assert report["runs"]["default"]["speedup_vs_baseline"] == pytest.approx(10.0)
    assert report["runs"]["baseline"]["speedup_vs_baseline"] == pytest.approx(1.0)
