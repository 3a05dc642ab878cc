"""Time the engine, the detector and the live loop; print a table and write a JSON report.

    python scripts/bench.py [--repeats 30] [--out resources/bench/bench_cpu.json] [--device cpu|cuda]
                            [--preset-paper] [--random-preset cpu_fast] [--no-detector] [--half] [--compile]

The measuring functions live in :mod:`benchmarks.bench` (importable and tested); this file only calls them.
Run it on an otherwise idle machine: the report records the load average, and a busy CPU slows every figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench import main  # noqa: E402

if __name__ == "__main__":
    main()
