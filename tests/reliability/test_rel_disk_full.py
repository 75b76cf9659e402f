"""A full disk under the ledger: the answer is withheld, its cost still counts, and no later row is lost.

The disk is "full" for the gateway process alone: the test lowers that process's file-size limit
(RLIMIT_FSIZE, via prlimit) to just past the end of its spool file, so the next row is cut short and its
rest refused, as on a full disk (Python ignores SIGXFSZ, so the write fails with EFBIG). Raising the
limit again is the operator freeing space.
"""

from __future__ import annotations

import resource
import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI
from tests.reliability.rel_support import Served, gateway_process

HELLO = [{"role": "user", "content": "hello"}]
ACME = {"x-tenant": "acme"}
BUDGET_USD = 1.0


def spool_file(ledger: Path, served: Served) -> Path:
    files = list((ledger.parent / f"{ledger.name}.spool").glob(f"{served.proc.pid}-*.rows"))
    assert len(files) == 1, files
    return files[0]


def set_file_size_limit(served: Served, limit: int) -> None:
    resource.prlimit(served.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


async def metric(served: Served, line_start: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(served.base + "/metrics")).text
    values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(line_start)]
    assert len(values) == 1, (line_start, text[-2000:])
    return values[0]


async def test_a_full_disk_withholds_the_answer_counts_its_cost_and_loses_no_later_row(
    tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    policy = tmp_path / "policy.yaml"
    text = hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    policy.write_text(text + f"tenants:\n  acme: {{budget: {{daily_usd: {BUDGET_USD}}}}}\n")
    ledger = tmp_path / "ledger.sqlite3"
    remaining = 'gateway_budget_remaining_usd{period="day",scope="tenant:acme",tenant="acme"}'

    async with gateway_process(policy, ledger, tmp_path / "gateway.log") as served:
        async with openai.AsyncOpenAI(base_url=served.base + "/v1", api_key="none", max_retries=0) as client:
            ask = {"model": "chat", "messages": HELLO, "max_tokens": 1000, "extra_headers": ACME}
            for _ in range(3):
                await client.chat.completions.create(**ask)  # type: ignore[call-overload]
            cost_each = (BUDGET_USD - await metric(served, remaining)) / 3
            assert 0 < cost_each < 0.001  # the real cost, far below the $0.015 reserved for 1,000 tokens

            # The disk fills up while the answer is on its way: 40 bytes left, a row needs ~500.
            set_file_size_limit(served, spool_file(ledger, served).stat().st_size + 40)
            with pytest.raises(openai.InternalServerError) as withheld:
                await client.chat.completions.create(**ask)  # type: ignore[call-overload]
            assert withheld.value.status_code == 503
            assert withheld.value.code == "ledger_unavailable"
            assert withheld.value.response.headers["retry-after"] == "5"
            assert "Hello from vendor" not in withheld.value.response.text  # the answer is withheld

            # The next request finds a byte free (the probe passes), streams, and cannot end with [DONE].
            stream = await client.chat.completions.create(stream=True, **ask)  # type: ignore[call-overload]
            with pytest.raises(openai.APIError, match="could not record this request"):
                async for _ in stream:  # the chunks arrive, then an error event in place of [DONE]
                    pass

            # Both calls were made upstream and paid for: the budget holds their real cost, not a reservation.
            spent = BUDGET_USD - await metric(served, remaining)
            assert spent == pytest.approx(5 * cost_each, rel=1e-6)
            assert vendor.calls() == 5

            # Not a byte left: requests are refused before any upstream call, so none is paid for in vain.
            set_file_size_limit(served, spool_file(ledger, served).stat().st_size)
            for _ in range(3):
                with pytest.raises(openai.InternalServerError) as refused:
                    await client.chat.completions.create(**ask)  # type: ignore[call-overload]
                assert refused.value.code == "ledger_unavailable"
            assert vendor.calls() == 5
            assert BUDGET_USD - await metric(served, remaining) == pytest.approx(spent, rel=1e-9)
            assert await metric(served, "gateway_ledger_writable ") == 0  # what the alert watches

            set_file_size_limit(served, resource.RLIM_INFINITY)  # space is freed
            after = await client.chat.completions.create(**ask)  # type: ignore[call-overload]
            assert after.choices[0].message.content
            assert await metric(served, "gateway_ledger_writable ") == 1

    # Stopped cleanly: every row written is in the database, none glued to the cut ones.
    log = (tmp_path / "gateway.log").read_text(errors="replace")
    assert "skipped a line that is not a row" not in log
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT status, cost_usd FROM requests ORDER BY ts").fetchall()
    assert [status for status, _ in rows] == [200, 200, 200, 200]
    assert sum(cost for _, cost in rows) == pytest.approx(4 * cost_each, rel=1e-6)
    assert not list((tmp_path / "ledger.sqlite3.spool").glob("*.rows"))  # all ingested, file removed
