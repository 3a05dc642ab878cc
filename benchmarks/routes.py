"""The CPU measurements behind the inference routes the runtime picks, as importable functions.

Where megaviewer takes a different code path on a CPU at inference than in training, it is because that path
measured faster here; this module re-measures each choice, both ways, interleaved (:func:`measure_interleaved`):

- ``tokenizer_decode``: a whole token decode through the cached channel-major route (``VcConv.infer``, what
  ``MeshVQVAE._run`` uses without autograd) against the trainable route, per batch size;
- ``vcconv_layers``: each conv layer of the decoder with per-vertex kernels against the basis-first sparse mix
  (``VcConv._mixes_sparsely`` picks the mix for layers that keep or shrink the channels);
- ``basis_first``: inside the sparse mix, the basis applied as per-vertex small matmuls against one large
  matmul (``BATCHED_BASIS_MIN_BATCH`` is the batch from which the former is used);
- ``attention``: two plain batched matmuls against ``scaled_dot_product_attention`` on this model's sequence
  lengths (``transformer.attend``);
- ``camera_fit``: the keypoint fit of Q hypotheses (it runs in the live loop).

``python scripts/bench_routes.py`` writes the report to ``resources/bench/cpu_routes.json``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.bench import RESULTS_DIR, cpu_model, measure, measure_interleaved, save_report

SCHEMA = "megaviewer.bench.routes/1"
DECODE_BATCHES = (1, 4, 8, 16)
BASIS_BATCHES = (1, 8, 16)
ATTENTION_SHAPES = ((16, 4, 72, 32), (16, 4, 39, 32), (1, 4, 72, 32))  # (B, heads, tokens, head dim), cpu_fast
CAMERA_FIT_QS = (1, 16)


def _conv_layers(tokenizer) -> list[tuple[str, Any]]:
    """The decoder's layers that have a conv branch, with a readable label each."""
    out = []
    for i, layer in enumerate(tokenizer.decoder):
        if layer.residual_rate < 1.0:
            label = (f"decoder {i}: {layer.in_channels}->{layer.out_channels} channels, "
                     f"{layer.num_in}->{layer.num_out} vertices")
            out.append((label, layer))
    return out


def _channel_major_input(layer, batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(layer.num_in, layer.in_channels, batch, generator=torch.Generator().manual_seed(seed))


def bench_tokenizer_decode(tokenizer, repeats: int, warmup: int = 3, batches: Sequence[int] = DECODE_BATCHES
                           ) -> dict[str, dict[str, Any]]:
    """``cached`` (inference route) vs ``trainable`` (the training route run without autograd) per batch."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for b in batches:
        ids = torch.randint(0, tokenizer.config.num_codes, (b, tokenizer.num_tokens), generator=gen)
        latents = tokenizer.quantizer.lookup(ids)

        @torch.no_grad()
        def cached(latents: torch.Tensor = latents) -> None:
            tokenizer._run(tokenizer.decoder, latents)

        @torch.no_grad()
        def trainable(latents: torch.Tensor = latents) -> None:
            tokenizer.decoder(latents.transpose(0, 1))

        out[f"b{b}"] = measure_interleaved({"cached": cached, "trainable": trainable}, repeats, warmup)
    return out


def bench_vcconv_layers(tokenizer, repeats: int, warmup: int = 3, batch: int = 16) -> dict[str, dict[str, Any]]:
    """Per conv layer of the decoder: ``kernels`` vs ``sparse_mix`` at ``batch``; ``chosen`` = the runtime's."""
    out = {}
    for label, layer in _conv_layers(tokenizer):
        routes = {}
        for name, mixes in (("kernels", False), ("sparse_mix", True)):
            forced = copy.deepcopy(layer)  # the copy leaves the inference cache behind
            forced._mixes_sparsely = lambda mixes=mixes: mixes
            routes[name] = forced
        x = _channel_major_input(layer, batch)
        fns = {name: torch.no_grad()(lambda lay=lay, x=x: lay.infer(x)) for name, lay in routes.items()}
        stats = measure_interleaved(fns, repeats, warmup)
        out[label] = {**stats, "batch": batch, "chosen": "sparse_mix" if layer._mixes_sparsely() else "kernels"}
    return out


def bench_basis_first(tokenizer, repeats: int, warmup: int = 3, batches: Sequence[int] = BASIS_BATCHES
                      ) -> dict[str, Any]:
    """The sparse-mix layers' basis step both ways: ``per_vertex_matmuls`` vs ``one_matmul``, per batch."""
    from megaviewer.tokenizer import layers as vc

    def forced(layer, weights: dict, x: torch.Tensor, threshold: int):
        def run() -> None:
            saved = vc.BATCHED_BASIS_MIN_BATCH
            vc.BATCHED_BASIS_MIN_BATCH = threshold  # 0: always per-vertex matmuls; huge: always one matmul
            try:
                layer._conv_mix(weights, x)
            finally:
                vc.BATCHED_BASIS_MIN_BATCH = saved
        return torch.no_grad()(run)

    out: dict[str, Any] = {"threshold": vc.BATCHED_BASIS_MIN_BATCH}
    for label, layer in _conv_layers(tokenizer):
        if not layer._mixes_sparsely():
            continue
        weights = layer._inference_weights()
        out[label] = {}
        for b in batches:
            x = _channel_major_input(layer, b)
            out[label][f"b{b}"] = measure_interleaved({"per_vertex_matmuls": forced(layer, weights, x, 0),
                                                       "one_matmul": forced(layer, weights, x, 10**9)},
                                                      repeats, warmup)
    return out


def bench_attention(repeats: int, warmup: int = 3, shapes: Sequence[tuple[int, ...]] = ATTENTION_SHAPES
                    ) -> dict[str, dict[str, Any]]:
    """``matmul`` (``transformer.attend`` without a mask at inference) vs ``sdpa`` per (B, heads, L, d)."""
    from megaviewer.model.transformer import attend

    gen = torch.Generator().manual_seed(0)
    out = {}
    for shape in shapes:
        q, k, v = (torch.randn(*shape, generator=gen) for _ in range(3))
        fns = {"matmul": torch.no_grad()(lambda q=q, k=k, v=v: attend(q, k, v, None)),
               "sdpa": torch.no_grad()(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v))}
        out["x".join(map(str, shape))] = measure_interleaved(fns, repeats, warmup)
    return out


def bench_camera_fit(repeats: int, warmup: int = 3, qs: Sequence[int] = CAMERA_FIT_QS) -> dict[str, dict[str, Any]]:
    """``fit_camera`` of Q hypotheses on 17 keypoints (random joints; the cost does not depend on the values)."""
    from megaviewer.camera_fit import fit_camera

    gen = torch.Generator().manual_seed(0)
    out = {}
    for q in qs:
        joints = torch.randn(q, 17, 3, generator=gen) * 0.3
        keypoints = torch.cat([torch.rand(17, 2, generator=gen) * 2 - 1, torch.full((17, 1), 0.9)], dim=1)
        rotation = torch.eye(3).expand(q, 3, 3).clone()
        cam = torch.tensor([1.0, 0.0, 0.0]).expand(q, 3).clone()
        args = (joints, keypoints, rotation, cam)
        out[f"q{q}"] = measure(lambda args=args: fit_camera(*args), repeats, warmup)
    return out


def run_all(tokenizer, repeats: int = 30, warmup: int = 3) -> dict[str, Any]:
    """Every measurement of this module; the report :func:`benchmarks.bench.save_report` stores."""
    started = time.time()
    report: dict[str, Any] = {
        "schema": SCHEMA, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeats": repeats, "warmup": warmup,
        "environment": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                        "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
                        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "tokenizer_decode": bench_tokenizer_decode(tokenizer, repeats, warmup),
        "vcconv_layers": bench_vcconv_layers(tokenizer, repeats, warmup),
        "basis_first": bench_basis_first(tokenizer, repeats, warmup),
        "attention": bench_attention(repeats, warmup),
        "camera_fit": bench_camera_fit(repeats, warmup),
    }
    report["wall_s"] = time.time() - started
    return report


def format_table(report: dict[str, Any]) -> str:
    """Medians (ms) of every pair, the faster one marked."""
    env = report["environment"]
    lines = [f"CPU routes on {env['cpu_model']}, torch {env['torch']}, {env['torch_threads']} threads; medians in ms"]

    def pair(label: str, stats: dict[str, Any]) -> None:
        timed = {k: v["median_ms"] for k, v in stats.items() if isinstance(v, dict) and "median_ms" in v}
        best = min(timed, key=timed.get)
        lines.append(f"  {label:<58} " + "   ".join(f"{k} {v:7.3f}{'*' if k == best else ' '}"
                                                      for k, v in timed.items()))

    for section in ("tokenizer_decode", "vcconv_layers", "attention"):
        lines.append(section)
        for key, stats in report[section].items():
            pair(key, stats)
    lines.append(f"basis_first (per-vertex matmuls from batch {report['basis_first']['threshold']})")
    for label, per_batch in report["basis_first"].items():
        if label != "threshold":
            for key, stats in per_batch.items():
                pair(f"{label} {key}", stats)
    lines.append("camera_fit")
    for key, stats in report["camera_fit"].items():
        lines.append(f"  {key:<58} {stats['median_ms']:7.3f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_routes", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before each case")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--out", default=None, help="JSON report (default resources/bench/cpu_routes.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``scripts/bench_routes.py`` command: measure with the shipped tokenizer, print, write the JSON."""
    from megaviewer.tokenizer.model import MeshVQVAE

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run_all(MeshVQVAE.from_pretrained().eval(), args.repeats, args.warmup)
    report["command"] = " ".join(["python scripts/bench_routes.py", *(argv if argv is not None else sys.argv[1:])])
    out = save_report(report, args.out or RESULTS_DIR / "cpu_routes.json")
    print(format_table(report))
    print(f"\nwrote {out}")
    return report
