"""An asyncio TCP proxy on loopback that breaks connections on purpose, one scripted fault per connection.

    proxy = FaultProxy(("127.0.0.1", upstream_port)); await proxy.start()
    proxy.script(ConnFault.reset_before_first_byte())     # the next accepted connection is reset
    proxy.default = ConnFault.stall_after(200, 5.0)       # every later connection stalls after 200 bytes
    proxy.url("/v1")                                       # "http://127.0.0.1:<port>/v1", for a policy
    await proxy.refuse()                                   # close the listener: connection refused
    await proxy.blackhole()                                # accept queue full: connects time out
    await proxy.resume()                                   # listen again on the same port
    await proxy.stop()

Faults act on real TCP: a reset is an RST (SO_LINGER 0), a stall keeps the socket open and silent, and
byte counts are of the upstream's answer (upstream -> client), so "after N bytes" cuts a body or a stream
wherever N falls. `connections` records each accepted connection with its fault and the bytes moved.
Every wait is bounded: a stall ends by itself after `seconds`, and `stop()` aborts whatever is open.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConnFault:
    kind: str = "pass"  # pass | delay | reset | stall
    after_bytes: int = 0
    seconds: float = 0.0

    @classmethod
    def passthrough(cls) -> ConnFault:
        return cls("pass")

    @classmethod
    def delay_connect(cls, seconds: float) -> ConnFault:
        """Accept, then wait before connecting upstream (the client sees a silent, open connection)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def reset_before_first_byte(cls) -> ConnFault:
        return cls("reset", after_bytes=0)

    @classmethod
    def reset_after(cls, after_bytes: int) -> ConnFault:
        return cls("reset", after_bytes=after_bytes)

    @classmethod
    def stall_after(cls, after_bytes: int, seconds: float) -> ConnFault:
        """Relay `after_bytes` of the answer, then go silent for `seconds`, then close."""
        return cls("stall", after_bytes=after_bytes, seconds=seconds)


@dataclass
class ConnRecord:
    fault: ConnFault
    up_bytes: int = 0  # client -> upstream
    down_bytes: int = 0  # upstream -> client


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    default: ConnFault = field(default_factory=ConnFault.passthrough)
    connections: list[ConnRecord] = field(default_factory=list)
    port: int = 0
    _script: collections.deque[ConnFault] = field(default_factory=collections.deque)
    _server: asyncio.Server | None = None
    _blackhole: list[socket.socket] = field(default_factory=list)
    _held: socket.socket | None = None  # the port, bound but not listening, while refusing
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def to_url(cls, base_url: str) -> FaultProxy:
        """A proxy in front of `http://127.0.0.1:PORT/...` (a fake's base_url)."""
        hostport = base_url.split("//", 1)[1].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        return cls((host, int(port)))

    def url(self, path: str = "/v1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *faults: ConnFault) -> None:
        self._script.extend(faults)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def refuse(self) -> None:
        """Stop listening: new connections are refused (open ones are left alone).

        The port stays bound, not listening, until `resume()` or `stop()`: a port given back to the kernel
        can be handed to the next server started in the meantime (another test's fake, running in the same
        loop), which would then answer in this proxy's place instead of the refusal."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()  # closes the listening socket now (selector loop), so the port can be held at once
            self._hold_port()  # no await in between: no other task can bind the port first
            await server.wait_closed()

    def _hold_port(self) -> None:
        if self._held is not None:
            return
        held = socket.socket()
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", self.port))
        except OSError as exc:
            held.close()
            raise OSError(f"port {self.port} was taken as the proxy stopped listening: {exc}") from exc
        self._held = held

    def _release_port(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    async def blackhole(self) -> None:
        """Listen with a full accept queue that is never drained: new connects hang until they time out."""
        await self.refuse()
        self._release_port()  # and bind it again at once, below, with no await in between
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", self.port))
        lsock.listen(0)
        self._blackhole.append(lsock)
        for _ in range(3):  # fill the backlog; the kernel then drops further SYNs
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", self.port))
            self._blackhole.append(filler)
        await asyncio.sleep(0.05)

    async def resume(self) -> None:
        for s in self._blackhole:
            s.close()
        self._blackhole.clear()
        if self._server is None:
            for _ in range(50):  # the port may linger briefly after a blackhole (bounded)
                try:
                    await self.start()  # binds beside the held socket (both SO_REUSEADDR, it never listens)
                    self._release_port()
                    return
                except OSError:
                    await asyncio.sleep(0.05)
            raise OSError(f"could not listen again on port {self.port}")

    async def stop(self) -> None:
        await self.refuse()
        self._release_port()
        for s in self._blackhole:
            s.close()
        self._blackhole.clear()
        self._stopping.set()
        for w in list(self._writers):
            w.transport.abort()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for t in pending:
                t.cancel()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the proxy stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        fault = self._script.popleft() if self._script else self.default
        record = ConnRecord(fault)
        self.connections.append(record)
        up_writer: asyncio.StreamWriter | None = None
        try:
            if fault.kind == "reset" and fault.after_bytes == 0:
                with contextlib.suppress(TimeoutError):  # let the request arrive, then reset unanswered
                    async with asyncio.timeout(0.2):
                        await reader.read(1)
                _rst(writer)
                return
            if fault.kind == "delay":
                await self._pause(fault.seconds)
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            pump_up = asyncio.create_task(self._pump_up(reader, up_writer, record))
            try:
                await self._pump_down(up_reader, writer, record)
            finally:
                pump_up.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await pump_up
        except (OSError, asyncio.IncompleteReadError):
            _rst(writer)
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    if not w.transport.is_closing():
                        w.transport.close()
            self._tasks.discard(task)

    async def _pump_up(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: ConnRecord
    ) -> None:
        while data := await reader.read(65536):
            record.up_bytes += len(data)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _pump_down(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: ConnRecord
    ) -> None:
        fault = record.fault
        limit = fault.after_bytes if fault.kind in ("reset", "stall") else None
        while data := await reader.read(65536):
            if limit is not None and record.down_bytes + len(data) >= limit:
                head = data[: limit - record.down_bytes]
                record.down_bytes += len(head)
                writer.write(head)
                await writer.drain()
                if fault.kind == "stall":
                    await self._pause(fault.seconds)
                    writer.transport.close()
                else:
                    _rst(writer)
                return
            record.down_bytes += len(data)
            writer.write(data)
            await writer.drain()
