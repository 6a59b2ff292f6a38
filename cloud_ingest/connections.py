"""A cap on the connections that have not yet shown a valid token.

Anybody can open a TCP connection and send nothing, or a header byte every few seconds.
The header timeout (aiohttp's keep-alive timer, which also runs before the first request)
closes such a connection after ``IngestConfig.header_timeout_s``; until then each holds a
file descriptor. :class:`ConnectionGuard` bounds how many may be held at once: a
connection counts as *unauthenticated* from its opening until one of its requests carries
a valid bearer token. When a new connection would exceed the cap, the oldest
unauthenticated connection is closed to make room, so a flood of idle sockets neither
exhausts the descriptors nor locks out a client that connects now and sends its request
at once; connections of authenticated clients are never evicted.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from aiohttp import web


class ConnectionGuard:
    """Tracks unauthenticated connections, oldest first, and evicts beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the unauthenticated connection limit must be at least 1")
        self.limit = limit
        self.evicted = 0
        self._pending: OrderedDict[asyncio.BaseTransport, None] = OrderedDict()

    @property
    def unauthenticated(self) -> int:
        """Connections open now that have not shown a valid token."""
        return len(self._pending)

    def opened(self, transport: asyncio.BaseTransport) -> None:
        while len(self._pending) >= self.limit:
            oldest, _ = self._pending.popitem(last=False)
            self.evicted += 1
            if isinstance(oldest, asyncio.WriteTransport):
                oldest.abort()  # frees the descriptor now, not after a flush
            else:  # pragma: no cover - stream servers always give write transports
                oldest.close()
        self._pending[transport] = None

    def closed(self, transport: asyncio.BaseTransport) -> None:
        self._pending.pop(transport, None)

    def authenticated(self, transport: asyncio.BaseTransport | None) -> None:
        """A request on ``transport`` carried a valid token: never evict it."""
        if transport is not None:
            self._pending.pop(transport, None)


class _GuardedProtocol(asyncio.Protocol):
    """Passes everything to aiohttp's request handler, telling the guard of open and close."""

    __slots__ = ("_guard", "_inner", "_transport")

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner, self._guard = inner, guard
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._guard.opened(transport)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.closed(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _GuardedServer:
    """aiohttp's protocol factory with every protocol it makes wrapped for the guard."""

    def __init__(self, server: web.Server, guard: ConnectionGuard) -> None:
        self._server, self._guard = server, guard

    def __call__(self) -> asyncio.Protocol:
        return _GuardedProtocol(self._server(), self._guard)

    def __getattr__(self, name: str) -> Any:
        # shutdown(), connections, ...: the runner manages the wrapped server as before
        return getattr(self._server, name)


class GuardedAppRunner(web.AppRunner):
    """An :class:`aiohttp.web.AppRunner` whose connections go through a ConnectionGuard."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        guarded: Any = _GuardedServer(server, self.guard)
        return guarded  # type: ignore[no-any-return]
