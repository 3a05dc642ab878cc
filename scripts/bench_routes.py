"""Time the CPU inference routes megaviewer chooses against their alternatives; print and write a JSON report.

    python scripts/bench_routes.py [--repeats 30] [--threads N] [--out resources/bench/cpu_routes.json]

The measuring functions live in :mod:`benchmarks.routes`; this file only calls them. Figures depend on the CPU
and its load (both are recorded in the report).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.routes import main  # noqa: E402

if __name__ == "__main__":
    main()
