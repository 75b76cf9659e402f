"""Issue 8, fault matrix: (fault x endpoint x healthy-or-faulty fallback), one test item per cell.

The cells run once per module, eight at a time (each has its own fakes, proxies and app), and every
item asserts its own cell; `python -m tests.reliability.fault_matrix` prints the same matrix as a table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.fault_matrix import ENDPOINTS, FAULTS, Cell, expected, run_matrix, table
from tests.reliability.rel_support import set_provider_keys

pytestmark = pytest.mark.slow


CELLS = [
    pytest.param(f, e, h, id=f"{f}-{e}-{'healthy' if h else 'faulty'}")
    for h in (True, False)
    for f in FAULTS
    for e in ENDPOINTS
]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str, bool], Cell]]:
    tmp = tmp_path_factory.mktemp("matrix")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in set_provider_keys().items():
            mp.setenv(k, v)
        cells = asyncio.run(run_matrix(Path(tmp), concurrency=8))
    (tmp / "matrix.md").write_text(table(cells))
    yield {(c.fault, c.endpoint, c.fallback_healthy): c for c in cells}


@pytest.mark.parametrize(("fault", "endpoint", "fallback_healthy"), CELLS)
def test_rel_fault_cell(
    matrix: dict[tuple[str, str, bool], Cell], fault: str, endpoint: str, fallback_healthy: bool
) -> None:
    cell = matrix[(fault, endpoint, fallback_healthy)]
    problem = expected(cell)
    assert problem is None, (
        f"{fault} on {endpoint} ({'healthy' if fallback_healthy else 'faulty'} fallback): {problem}; "
        f"status {cell.status}, attempts {cell.attempts}, {cell.seconds:.2f}s, body {cell.body[:300]!r}"
    )


def test_rel_matrix_covers_every_fault_and_endpoint() -> None:
    assert len(FAULTS) == 15 and len(ENDPOINTS) == 4
