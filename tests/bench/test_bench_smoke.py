"""`python -m bench --smoke` runs end to end and prints its table. A benchmark is not a test: no timings
are asserted, only that every smoke target answered and the report has its rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_smoke_prints_a_table() -> None:
    # Only the interpreter's own directory on PATH, so wrk, nginx and node are out of reach, as on CI.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    report = out.stdout
    assert "| target | conns | req/s |" in report
    labels = (
        "(a) direct to upstream (aiohttp)",
        "(b) bare passthrough",
        "(e) hybrid-gateway",
        "(f) bare passthrough",
    )
    for label in labels:
        assert sum(label in line for line in report.splitlines()) >= 3, label  # 2 load rows + 1 TTFT row
    assert "load generator: Python" in report
    load_rows = [line.strip("|").split("|") for line in report.splitlines() if line.startswith("| (")]
    errors = [cells[8].strip() for cells in load_rows if len(cells) == 10]  # the load table's errors column
    assert len(errors) == 8 and all(e == "0" for e in errors), report
