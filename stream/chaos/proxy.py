"""A TCP relay in front of the encoder service, which can answer 503 instead.

Workers are pointed at the relay, the relay at the service. Passing, it copies bytes both
ways, so a killed service looks killed (a refused backend connection resets the
worker's) and a frozen one looks frozen (the bytes wait). Failing, it answers every
HTTP request itself with ``503 Service Unavailable``. Switching modes drops the open
connections, so a client's pooled keep-alive connection cannot outlive the switch.
Runs on its own event loop in a daemon thread of the scenario's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

from stream.kafka.embedded import free_port

Mode = Literal["pass", "503"]
_BODY = b'{"error": "service unavailable (injected fault)"}'
_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + _BODY
)
_MAX_HEAD = 64 * 1024


class FaultyProxy:
    """Relays 127.0.0.1:``port`` to 127.0.0.1:``backend_port``, or answers 503."""

    def __init__(self, backend_port: int, port: int | None = None) -> None:
        self.backend_port = backend_port
        self.port = port or free_port()
        self.mode: Mode = "pass"
        self.answered_503 = 0
        self.refused = 0  # client connections dropped because the backend refused
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="encoder-proxy")
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """Base URL workers call."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        """Listen, on the relay's own thread."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def set_mode(self, mode: Mode) -> None:
        """Pass or fail from now on; open connections are dropped."""
        asyncio.run_coroutine_threadsafe(self._switch(mode), self._loop).result(timeout=10)

    def stop(self) -> None:
        """Close every connection and the listener; end the thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- on the relay's loop -------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _switch(self, mode: Mode) -> None:
        self.mode = mode
        for writer in list(self._open):
            writer.transport.abort()

    async def _close(self) -> None:
        await self._switch(self.mode)
        if self._server is not None:
            self._server.close()
        # Connections still relaying (a frozen backend's) end here, not at interpreter exit.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            if self.mode == "503":
                await self._answer_503(reader, writer)
            else:
                await self._relay(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a dropped connection is what this relay is for
        finally:
            self._open.discard(writer)
            writer.transport.abort()

    async def _answer_503(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        await reader.readexactly(length)  # the body, read so the client sees an answer
        self.answered_503 += 1
        writer.write(_ANSWER)
        await writer.drain()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            self.refused += 1
            return  # the caller's connection is reset, as a dead service's would be
        self._open.add(backend_writer)
        pair = (writer, backend_writer)
        try:
            await asyncio.gather(_pipe(reader, backend_writer, pair), _pipe(backend_reader, writer, pair))
        finally:
            self._open.discard(backend_writer)
            backend_writer.transport.abort()


async def _pipe(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, pair: tuple[asyncio.StreamWriter, ...]
) -> None:
    """Copy ``source`` to ``sink`` until end of stream, then close ``sink``'s write side; on
    an error drop both connections of the ``pair`` (a reset travels through)."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, RuntimeError):
        for writer in pair:
            writer.transport.abort()
        return
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()
