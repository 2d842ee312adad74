"""One asyncio connection to one member with any number of calls in flight.

Each call registers a future under its ``msg_id`` and sends; one reader task receives every
reply and resolves the future its ``in_reply_to`` names (replies come in any order; one for a
call given up is dropped). A call's deadline is a timer on the loop that resolves its future
with ``NO_REPLY``. ``close()`` stops the reader and answers every waiting call ``NO_REPLY``,
so the failover rules of ``etcdz._calls`` apply to them as to a silent member.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from etcdz._calls import MAX_IN_FLIGHT, NO_REPLY, NOT_SENT, reply_id
from etcdz._conn import dealer


class AioConnection:
    def __init__(
        self, ctx: zmq.asyncio.Context, url: str, configure: Callable[[zmq.Socket[Any]], None]
    ) -> None:
        self.url = url
        self.generation = 0
        self._sock: zmq.asyncio.Socket = dealer(ctx, url, configure)
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[object]] = {}
        self._reader = self._loop.create_task(self._read(), name=f"etcdz-replies-{url}")
        self.closed = False
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def exchange(self, msg_id: int, frames: list[bytes], deadline: float, dial_s: float) -> object:
        """The reply's body (bytes), ``NOT_SENT`` or ``NO_REPLY``; ``deadline`` on the loop's clock."""
        async with self._slots:
            return await self._exchange(msg_id, frames, deadline, dial_s)

    async def _exchange(self, msg_id: int, frames: list[bytes], deadline: float, dial_s: float) -> object:
        if self.closed or self._loop.time() >= deadline:
            return NOT_SENT
        future: asyncio.Future[object] = self._loop.create_future()
        self._pending[msg_id] = future  # before sending: the reply may come at once
        try:
            if not await self._send(frames, min(dial_s, deadline - self._loop.time())):
                return NOT_SENT
            timer = self._loop.call_at(deadline, _resolve, future, NO_REPLY)
            try:
                return await future
            finally:
                timer.cancel()
        finally:
            self._pending.pop(msg_id, None)

    async def _send(self, frames: list[bytes], dial_s: float) -> bool:
        """Send now, or once connected within ``dial_s``. Only the socket's own (asyncio)
        calls touch it: reading its events directly would swallow the wake-up the reader
        task waits for."""
        for attempt in range(2):
            try:  # with NOBLOCK the send is done (or refused) at once
                await self._sock.send_multipart(frames, zmq.NOBLOCK)
                return True
            except zmq.Again:
                if attempt or dial_s <= 0 or self.closed:
                    return False
                if not await self._sock.poll(math.ceil(dial_s * 1000), zmq.POLLOUT):  # type: ignore[call-arg]
                    return False
                if self.closed:
                    return False
        return False

    async def _read(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            reply = reply_id(frames)
            if reply is not None and (future := self._pending.get(reply[0])) is not None:
                _resolve(future, reply[1])

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        for future in self._pending.values():
            _resolve(future, NO_REPLY)
        self._sock.close(linger=0)


def _resolve(future: asyncio.Future[object], value: object) -> None:
    if not future.done():
        future.set_result(value)
