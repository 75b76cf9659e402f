"""The live policy: loaded once, swapped atomically on reload, with the providers it needs.

A request takes one `LoadedPolicy` snapshot at its start and uses it to the end, so a reload never changes
the rules under a request in flight. Providers whose spec did not change are reused (their connection pools
stay warm); providers a new policy dropped are closed after the old policy's deadline has passed.

Example::

    store = PolicyStore.from_file("policies/default.yaml", metrics)
    ok, message = await store.reload()       # invalid file: ok is False, the old policy keeps serving
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from gateway.metrics import Metrics
from gateway.pii import PiiDetector
from gateway.policy import Policy, ProviderSpec
from gateway.policy_loader import PolicyError, load_policy
from providers.base import Provider
from providers.registry import build_provider, import_from_string

log = logging.getLogger("gateway.policy")

ProviderBuilder = Callable[[str, ProviderSpec], Provider]


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    policy: Policy
    providers: dict[str, Provider]
    detector: PiiDetector
    source: str
    loaded_at: float


def build_detector(policy: Policy) -> PiiDetector:
    factory = import_from_string(policy.pii.detector)
    return cast(PiiDetector, factory(policy.pii.kinds))  # type: ignore[operator]


class PolicyStore:
    def __init__(
        self,
        policy: Policy,
        metrics: Metrics,
        *,
        path: str | Path | None = None,
        provider_builder: ProviderBuilder = build_provider,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.metrics = metrics
        self._build_provider = provider_builder
        self._specs: dict[str, ProviderSpec] = {}
        self.current = self._assemble(policy, {})
        self._stamp = self._file_stamp()
        self._closing: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    @classmethod
    def from_file(cls, path: str | Path, metrics: Metrics, **kwargs: ProviderBuilder) -> PolicyStore:
        return cls(load_policy(path), metrics, path=path, **kwargs)

    def _assemble(self, policy: Policy, old: dict[str, Provider]) -> LoadedPolicy:
        providers: dict[str, Provider] = {}
        for name, spec in policy.providers.items():
            reuse = old.get(name)
            providers[name] = (
                reuse
                if reuse is not None and self._specs.get(name) == spec
                else self._build_provider(name, spec)
            )
        self._specs = dict(policy.providers)
        source = str(self.path) if self.path else "<memory>"
        return LoadedPolicy(policy, providers, build_detector(policy), source, time.time())

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    async def reload(self) -> tuple[bool, str]:
        """Validate the file and swap it in; on any problem keep serving the current policy."""
        if self.path is None:
            return False, "this gateway was started without a policy file"
        async with self._lock:
            self._stamp = self._file_stamp()
            try:
                policy = await asyncio.to_thread(load_policy, self.path)
                old = self.current
                new = self._assemble(policy, old.providers)
            except (PolicyError, OSError, ValueError, ImportError) as exc:
                self.metrics.reloads.labels("refused").inc()
                log.error("policy reload refused, keeping the running policy: %s", exc)
                return False, str(exc)
            self.current = new
            self.metrics.reloads.labels("ok").inc()
            dropped = [p for name, p in old.providers.items() if new.providers.get(name) is not p]
            if dropped:
                grace = old.policy.fallback.deadline_ms / 1000.0
                task = asyncio.create_task(self._close_later(dropped, grace))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            log.info("policy reloaded from %s", self.path)
            return True, "reloaded"

    async def _close_later(self, providers: list[Provider], delay: float) -> None:
        await asyncio.sleep(delay)  # requests that began under the old policy may still use these
        for p in providers:
            await p.aclose()

    async def watch(self, interval_s: float = 1.0) -> None:
        """Reload when the file changes (mtime or size). Runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            stamp = self._file_stamp()
            if stamp is not None and stamp != self._stamp:
                await self.reload()

    def install_sighup(self) -> bool:
        """Reload on SIGHUP; returns False where signals cannot be installed (not the main thread)."""
        try:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        except (RuntimeError, ValueError, NotImplementedError):
            return False
        return True

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for provider in self.current.providers.values():
            await provider.aclose()
        if os.name == "posix":
            with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
