"""Load results and the percentile arithmetic shared by the load generators."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class LoadResult:
    """One load run against one target at one concurrency. Latencies in milliseconds."""

    tool: str
    connections: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100); 0.0 for an empty list."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def median_result(runs: list[LoadResult]) -> LoadResult:
    """The per-field median of repeated runs (each field independently: the noise is per field)."""
    first = runs[0]
    return LoadResult(
        tool=first.tool,
        connections=first.connections,
        requests=int(statistics.median(r.requests for r in runs)),
        errors=max(r.errors for r in runs),
        seconds=statistics.median(r.seconds for r in runs),
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p90_ms=statistics.median(r.p90_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
    )
