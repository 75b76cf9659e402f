"""Latency and throughput of the local backend's image endpoint, with dynamic batching on and off.

Runs the real app (uvicorn on a loopback port, in this process) over a tiny random-weight Stable
Diffusion pipeline on CPU, 32x32 with 2 steps, so the numbers show the serving and batching overhead
rather than a real model's speed.  Usage::

    python bench/local_backend_bench.py            # full run, writes bench/LOCAL_BACKEND_RESULTS.md
    python bench/local_backend_bench.py --smoke    # a few requests per cell, prints only
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from local_backend.app import build_app
from local_backend.config import BackendConfig, parse_config

CONCURRENCY_LEVELS = (1, 4, 8)
RESULTS_PATH = Path(__file__).with_name("LOCAL_BACKEND_RESULTS.md")


@dataclass(frozen=True)
class Cell:
    """One measured configuration."""

    batching: bool
    concurrency: int
    requests: int
    p50_ms: float
    p90_ms: float
    images_per_s: float
    mean_batch: float
    device_ms_per_image: float


def _config(pipeline_dir: Path, *, batching: bool, torch_threads: int | None) -> BackendConfig:
    batching_settings = (
        {"max_batch_size": 8, "max_wait_ms": 20, "max_queue": 256}
        if batching
        else {"max_batch_size": 1, "max_wait_ms": 0, "max_queue": 256}
    )
    model = {
        "name": "tiny-sd",
        "source": str(pipeline_dir),
        "modality": "image",
        "device": "cpu",
        "load": "startup",
        "batching": batching_settings,
        "image": {"num_inference_steps": 2, "guidance_scale": 0.0, "width": 32, "height": 32},
    }
    return parse_config({"models": [model], "torch_threads": torch_threads}, origin="benchmark")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _measure(http: httpx.AsyncClient, *, batching: bool, concurrency: int, requests: int) -> Cell:
    latencies: list[float] = []
    batch_sizes: list[int] = []
    device_seconds: list[float] = []
    remaining = iter(range(requests))

    async def client_loop() -> None:
        for seed in remaining:
            started = time.perf_counter()
            response = await http.post(
                "/v1/images/generations", json={"model": "tiny-sd", "prompt": "a red cat", "seed": seed}
            )
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            batch_sizes.append(int(response.headers["x-batch-size"]))
            device_seconds.append(float(response.headers["x-device-seconds"]))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Cell(
        batching=batching,
        concurrency=concurrency,
        requests=requests,
        p50_ms=_percentile(latencies, 0.5) * 1000,
        p90_ms=_percentile(latencies, 0.9) * 1000,
        images_per_s=requests / elapsed,
        mean_batch=statistics.fmean(batch_sizes),
        device_ms_per_image=statistics.fmean(device_seconds) * 1000,
    )


async def _run_backend(
    pipeline_dir: Path, *, batching: bool, requests: int, torch_threads: int | None
) -> list[Cell]:
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(_config(pipeline_dir, batching=batching, torch_threads=torch_threads)),
            host="127.0.0.1",
            port=0,
            log_level="warning",
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as http:
            async with asyncio.timeout(120):
                while (await http.get("/readyz")).status_code != 200:  # noqa: ASYNC110 - state is behind HTTP
                    await asyncio.sleep(0.05)
            await _measure(http, batching=batching, concurrency=2, requests=4)  # warm-up
            return [
                await _measure(http, batching=batching, concurrency=level, requests=requests)
                for level in CONCURRENCY_LEVELS
            ]
    finally:
        server.should_exit = True
        await task


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _table(cells: list[Cell]) -> str:
    lines = [
        "| batching | concurrency | requests | p50 ms | p90 ms | images/s | mean batch | device ms/image |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in cells:
        lines.append(
            f"| {'on' if cell.batching else 'off'} | {cell.concurrency} | {cell.requests} | {cell.p50_ms:.1f} "
            f"| {cell.p90_ms:.1f} | {cell.images_per_s:.1f} | {cell.mean_batch:.2f} | {cell.device_ms_per_image:.1f} |"
        )
    return "\n".join(lines)


def _report(table: str, requests: int, load_before: tuple[float, float, float], threads: int | None) -> str:
    import torch

    load_after = os.getloadavg()

    today = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# Local backend benchmark

`python {" ".join(["bench/local_backend_bench.py", *sys.argv[1:]])}` on {today}.

- Machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}, no GPU; Python {platform.python_version()}, torch {torch.__version__}.
- Load average (1 min) before / after the run: {load_before[0]:.2f} / {load_after[0]:.2f}; other work on the
  machine at the same time inflates latencies, so compare rows of one run rather than runs.
- Model: tiny random-weight Stable Diffusion pipeline (`local_backend.testing.write_tiny_image_pipeline`),
  32x32, 2 steps, CPU fp32, loaded through `AutoPipelineForText2Image`.
- Server: the real app under uvicorn on 127.0.0.1, in the same process as the httpx client.
- torch intra-op threads: {threads or "torch default (one per core)"}.
- Batching on: `max_batch_size: 8`, `max_wait_ms: 20`; off: `max_batch_size: 1`.
- {requests} requests per cell, each client sending its next request when the previous one is answered.
- `device ms/image` is the `x-device-seconds` each request was charged (its share of the batch).

{table}

How to read it: with batching off, requests queue behind each other, so latency grows with concurrency
while images/s stays flat.  With batching on, concurrent requests share one pipeline call (mean batch), so
images/s rises and each image is charged a fraction of the call.  At concurrency 1 batching costs up to
`max_wait_ms` of extra latency per request, spent waiting for company that never comes.
"""


def main() -> int:
    """Run every cell, print the table, and (for a full run) record it in LOCAL_BACKEND_RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few requests per cell; print only")
    parser.add_argument("--requests", type=int, default=64, help="requests per cell (full run)")
    parser.add_argument("--torch-threads", type=int, default=None, help="models.yaml torch_threads setting")
    parser.add_argument(
        "--output", type=Path, default=None, help=f"results file (default {RESULTS_PATH.name})"
    )
    args = parser.parse_args()
    requests = 4 if args.smoke else args.requests
    load_before = os.getloadavg()

    from local_backend.testing import write_tiny_image_pipeline

    with tempfile.TemporaryDirectory() as scratch:
        pipeline_dir = write_tiny_image_pipeline(Path(scratch) / "tiny-sd")
        cells: list[Cell] = []
        for batching in (False, True):
            cells += asyncio.run(
                _run_backend(
                    pipeline_dir, batching=batching, requests=requests, torch_threads=args.torch_threads
                )
            )
    table = _table(cells)
    print(table)
    output = args.output or (None if args.smoke else RESULTS_PATH)
    if output is not None:
        output.write_text(_report(table, requests, load_before, args.torch_threads), encoding="utf-8")
        print(f"recorded in {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
