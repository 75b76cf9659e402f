"""Property: whatever faults happen, a confidential or PII-bearing request never reaches a closed vendor.

Hypothesis draws a classification, whether the prompt carries PII, and a fault schedule for every
deployment; the fake vendors record everything they receive, and the test searches it for the markers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import build_app
from gateway.policy_loader import parse_policy
from gateway.settings import Settings
from tests.conftest import hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault

FAULTS = st.sampled_from(
    [
        Fault.ok(),
        Fault.http(500),
        Fault.http(429, retry_after="0"),
        Fault.http(404, "model_not_found"),
        Fault.http(401),
        Fault.malformed(),
        Fault.reset(),
        Fault.http(400, "context_length_exceeded"),
        Fault.cut_stream(0),
        Fault.cut_stream(2),
    ]
)
SCENARIO = st.tuples(
    st.sampled_from(["public", "internal", "confidential", None]),
    st.booleans(),
    st.booleans(),
    st.lists(FAULTS, max_size=4),
    st.lists(FAULTS, max_size=4),
    st.lists(FAULTS, max_size=4),
)


async def run_scenario(tmp: Path, scenarios: list[tuple[object, ...]]) -> None:
    fakes = {name: FakeOpenAI(name) for name in ("vendor", "vendor2", "local")}
    for fake in fakes.values():
        await fake.start()
    try:
        text = hybrid_policy_text(
            vendor=fakes["vendor"].base_url,
            vendor2=fakes["vendor2"].base_url,
            local=fakes["local"].base_url,
            min_requests=3,
        )
        app = build_app(
            Settings(policy_path=tmp / "p.yaml", ledger_path=tmp / "l.sqlite3", watch_policy=False),
            policy=parse_policy(text),
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                for i, (cls, pii, stream, f_best, f_cheap, f_local) in enumerate(scenarios):
                    fakes["vendor"].script("big-model", *f_best)
                    fakes["vendor2"].script("small-model", *f_cheap)
                    fakes["local"].script("local-llm", *f_local)
                    marker = f"SECRET-MARKER-{i}"
                    content = f"{marker} card 4111-1111-1111-1111" if pii else marker
                    headers = {"x-data-classification": cls} if cls else {}
                    body = {
                        "model": "chat",
                        "messages": [{"role": "user", "content": content}],
                        "stream": stream,
                    }
                    await http.post("/v1/chat/completions", json=body, headers=headers)
                    if cls == "confidential" or pii:
                        for closed in ("vendor", "vendor2"):
                            leaked = [r for r in fakes[closed].received if marker in str(r.body)]
                            assert not leaked, f"{marker} reached closed {closed}"
        assert (
            "gateway_privacy_blocks_total{" not in app.state.gateway.accounting.metrics.exposition().decode()
        )
    finally:
        for fake in fakes.values():
            await fake.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenarios=st.lists(SCENARIO, min_size=1, max_size=6))
def test_no_fault_sequence_sends_private_data_to_a_closed_vendor(
    tmp_path: Path, scenarios: list[tuple[object, ...]]
) -> None:
    asyncio.run(run_scenario(tmp_path, scenarios))
