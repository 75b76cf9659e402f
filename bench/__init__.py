"""Benchmark harness: the gateway beside a direct call, a bare passthrough, LiteLLM and Portkey.

    python -m bench                      # full comparison (see bench/RESULTS.md)
    python -m bench --smoke              # seconds-long run of (a), (b), (e) with the Python tools only
    python -m bench --soak 100000        # RSS growth of the gateway over N requests
    python -m bench.routing              # plan_route microbenchmark (1,000 deployments, 100 rules)

A benchmark is not a test: nothing here asserts a time; tests/bench only smoke-runs it.
"""
