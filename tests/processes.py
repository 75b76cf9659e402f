"""Starting `gateway serve` as a real process in tests: one free-port helper and one command line."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(policy: Path, port: int, ledger: Path | str, *extra: str) -> list[str]:
    """`python -m gateway serve` on loopback, without managed backends."""
    return [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--policy",
        str(policy),
        "--port",
        str(port),
        "--ledger",
        str(ledger),
        "--no-managed",
        *extra,
    ]
