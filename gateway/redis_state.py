"""The Redis connection that replicas share state through, and whether it can be used right now.

Every Redis call is bounded (`op_timeout_s`) and goes through `RedisState.call`. A failure marks Redis
*down*: from then on calls fail at once with `Unavailable` (no request waits on a dead server) and the
shared components decide locally, until the background loop's PING succeeds again and marks it *up*.
Nothing here runs on the request path except `call`, which is always awaited, so the event loop never
blocks on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

log = logging.getLogger("gateway.redis")

T = TypeVar("T")
Arg = str | int | float

HEARTBEAT_S = 2.0  # a replica that has not beaten for 3 beats no longer counts (see `replicas`)


class Unavailable(Exception):
    """Redis cannot be used right now; the caller decides locally."""


class Participant(Protocol):
    """A shared component: `sync` pushes what changed here and pulls what changed elsewhere.

    When `state.generation` changed since its last `sync`, Redis was away and may have restarted empty.
    """

    async def sync(self, state: RedisState) -> None: ...


class RedisState:
    """One client per process, a health flag, a replica id and the background loop of its participants."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "hgw:",
        op_timeout_s: float = 1.0,
        interval_s: float = 0.2,
        max_connections: int = 64,
    ) -> None:
        self.prefix = prefix
        self.replica = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.op_timeout_s = op_timeout_s
        self.interval_s = interval_s
        self.up = False  # until the first PING answers, decisions are local
        self.replicas = 1  # live replicas (heartbeats), for splitting a budget while Redis is down
        # +1 each time Redis comes back: participants re-push what a restarted (empty) Redis may have lost.
        self.generation = 0
        # A timeout marks Redis down for this replica only; a loaded event loop must not cause that
        # (connecting under a burst of requests can take a while), hence a generous bound.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout_s,
            socket_timeout=op_timeout_s,
            socket_connect_timeout=op_timeout_s,
            # No client-side retries: a dead server must cost one bounded attempt, not several.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._participants: list[Participant] = []
        self._on_up: list[Callable[[], Awaitable[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def register(self, participant: Participant) -> None:
        self._participants.append(participant)

    def wake(self) -> None:
        """Run the loop now rather than at the next interval (something is waiting to be pushed)."""
        self._wake.set()

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation, bounded; raise Unavailable (and mark Redis down) when it fails."""
        if not self.up:
            raise Unavailable("redis is down")
        try:
            async with asyncio.timeout(self.op_timeout_s * 2):
                return await op()
        except (RedisError, OSError, TimeoutError) as exc:
            self._mark_down(exc)
            raise Unavailable(str(exc)) from exc

    async def script(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Arg] = ()) -> Any:
        """Run a registered Lua script through `call`."""
        return await self.call(lambda: script(keys=list(keys), args=list(args)))

    def _mark_down(self, exc: BaseException) -> None:
        if self.up:
            log.warning("redis unavailable (%s): deciding locally until it answers again", exc)
        self.up = False

    async def start(self) -> None:
        """Start the background loop (inside the app's lifespan); one PING first, bounded."""
        await self._probe()
        self._task = asyncio.create_task(self._run(), name="redis-state")

    async def aclose(self) -> None:
        """Push what is pending (bounded), stop the loop and close the connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Unavailable):
            await self._sync_all()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self.op_timeout_s * 2):
                await self.client.aclose(close_connection_pool=True)  # the pool is ours, not the client's

    async def _probe(self) -> None:
        try:
            async with asyncio.timeout(self.op_timeout_s * 2):
                await self.client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self._mark_down(exc)
            return
        if not self.up:
            log.info("redis answers: sharing state with the other replicas")
            self.generation += 1
        self.up = True

    async def _run(self) -> None:
        while True:
            try:
                if not self.up:
                    await self._probe()
                if self.up:
                    await self._heartbeat()
                    await self._sync_all()
            except Unavailable:
                pass  # already marked down; the next round probes again
            except Exception:  # a bug in one round must not stop sharing for good
                log.exception("redis state sync failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def _sync_all(self) -> None:
        for participant in self._participants:
            await participant.sync(self)

    async def _heartbeat(self) -> None:
        key = self.key("replicas")

        async def beat() -> Any:
            now = float((await self.client.time())[0])
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {self.replica: now})
                pipe.zremrangebyscore(key, "-inf", now - 3 * HEARTBEAT_S)
                pipe.zcard(key)
                pipe.expire(key, 60)
                return await pipe.execute()

        self.replicas = max(1, int((await self.call(beat))[2]))
