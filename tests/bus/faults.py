"""A real TCP proxy in front of the test's Redis that loses one reply, as a network does.

Not a mock: every command reaches the real Redis and is executed there. The proxy only drops
the reply to the first XADD and closes the connection, so the client sees a lost reply for a
write that did happen -- the case where a retried publish stores an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class ReplyLosingProxy:
    def __init__(self, redis_url: str) -> None:
        target = urlsplit(redis_url)
        self.host, self.port = target.hostname or "127.0.0.1", target.port or 6379
        self.lost = 0  # replies dropped so far (at most one)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        xadd_sent = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if b"XADD" in data.upper() and not self.lost:
                    xadd_sent.set()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if xadd_sent.is_set() and not self.lost:
                    self.lost += 1  # Redis stored it; the client never hears so
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        with contextlib.suppress(ConnectionError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ReplyLosingProxy]:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
