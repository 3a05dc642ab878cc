"""Compare the engine's speed in two source trees side by side, e.g. before and after an optimisation.

    git worktree add /tmp/base HEAD~1
    python scripts/bench_compare.py --base /tmp/base --what "HEAD~1 vs the working tree" \
        --rounds 3 --repeats 10 --out resources/bench/<what_is_compared>.json

Each round runs a fresh subprocess per tree (base, then this tree), each timing ``Engine.recover`` for
stochastic Q=16 and Q=1 (T=5), deterministic recovery and a Q=16 tokenizer decode, interleaved
(:func:`benchmarks.bench.measure_interleaved`). Alternating the trees round by round exposes both to the
same machine load; the report keeps every round and the median over rounds of each tree's medians. The timing
code is always this tree's (loaded from its file), so both trees are measured the same way; only
``megaviewer`` comes from each tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HARNESS = ROOT / "benchmarks" / "bench.py"

CHILD = r"""
import importlib.util, json, sys, torch
import megaviewer
from megaviewer.engine import Engine
spec = importlib.util.spec_from_file_location("bench_harness", sys.argv[3])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
torch.set_num_threads(int(sys.argv[2]))
engine = Engine.from_pretrained()
inputs = bench.engine_inputs(engine)
ids = torch.randint(0, 512, (16, 54), generator=torch.Generator().manual_seed(0))
def decode16():
    with torch.inference_mode():
        engine.tokenizer.decode(ids)
cases = {
    "stochastic_q16_ms": lambda: engine.recover(**inputs, mode="stochastic", num_samples=16, steps=5, seed=0),
    "stochastic_q1_ms": lambda: engine.recover(**inputs, mode="stochastic", num_samples=1, steps=5, seed=0),
    "deterministic_ms": lambda: engine.recover(**inputs, mode="deterministic"),
    "decode_q16_ms": decode16,
}
stats = bench.measure_interleaved(cases, int(sys.argv[1]))
print(json.dumps({"source": megaviewer.__file__, **{k: v["median_ms"] for k, v in stats.items()}}))
"""


def run_tree(tree: Path, repeats: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(repeats), str(threads), str(HARNESS)], cwd=tree, env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["source"].startswith(str(tree.resolve())):
        raise RuntimeError(f"{tree} imported megaviewer from {result['source']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other source tree (e.g. a git worktree)")
    parser.add_argument("--what", default="", help="what the two trees differ by, kept in the report")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON report path")
    args = parser.parse_args()
    trees = {"base": Path(args.base).resolve(), "this": ROOT}
    rounds = []
    for i in range(args.rounds):
        row = {name: run_tree(tree, args.repeats, args.threads) for name, tree in trees.items()}
        rounds.append(row)
        print(f"round {i + 1}: " + "; ".join(f"{n} q16 {r['stochastic_q16_ms']:.1f} ms" for n, r in row.items()),
              flush=True)
    keys = [k for k in rounds[0]["this"] if k.endswith("_ms")]
    summary = {name: {k: statistics.median(r[name][k] for r in rounds) for k in keys} for name in trees}
    for k in keys:
        print(f"{k:22s} base {summary['base'][k]:8.1f}   this {summary['this'][k]:8.1f}   "
              f"ratio {summary['base'][k] / summary['this'][k]:.2f}")
    report = {"what": args.what, "command": " ".join(["python scripts/bench_compare.py", *sys.argv[1:]]),
              "base": str(trees["base"]), "rounds": rounds, "median_of_rounds": summary,
              "load_average": os.getloadavg(), "threads": args.threads, "repeats": args.repeats}
    if args.out:
        from megaviewer.io.atomic import atomic_write_text

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), json.dumps(report, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
