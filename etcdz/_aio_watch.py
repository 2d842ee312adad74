"""The asyncio client's watch stream: one task on the client's loop, no thread.

The stream's rules are ``etcdz._watch_core``'s, as for the blocking client: this module is the
task around them. Users' calls (create, cancel, progress) run on the same loop, so they hand
their request to an outbox and set an event; the task sends the outbox, reads every message
the hub has ready as one batch, pings an idle hub every ``PING_S`` and moves to another hub
when the one it has stays silent for ``DEAD_AFTER_S`` (every watch resumes there from the last
revision it delivered + 1). ``close()`` cancels the task, which closes its socket and ends
every watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from etcdz._transport import AsyncWatchTransport
from etcdz._watch_core import PING_S, StreamCore, WatchState, ping
from etcdz.errors import EtcdzError, Unavailable
from etcdz.watcher import dealer_to_hub
from proto_schemas.envelope import pack
from proto_schemas.watch import WatchCreateRequest, WatchHubsRequest

_DRAIN_MAX = 1000  # messages read per wake-up before the outbox and the clock get a turn


class AioWatchStream:
    """The connection to one hub, shared by the watches of one ``AsyncClient``."""

    def __init__(self, client: AsyncWatchTransport, ctx: zmq.asyncio.Context) -> None:
        self._client = client
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._core = StreamCore(client.user is not None, self._loop.time())
        self._ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._outbox: list[Any] = []
        self._wake = asyncio.Event()
        self._connected = False
        self._stopping = False  # no token could be had: the watches end with the reason
        self.ended = False
        self._task = self._loop.create_task(self._run(), name="etcdz-aio-watch")

    @property
    def error(self) -> EtcdzError | None:
        return self._core.error

    @property
    def hub(self) -> str:
        return self._core.hub

    # -- the user's side (same loop) --------------------------------------------------------------
    def watch(self, request: WatchCreateRequest, sink: Callable[[Any], None]) -> WatchState:
        if self.ended:
            raise self.error or Unavailable("the watch stream is closed")
        w = WatchState(next(self._ids), request, sink)
        self._submit(self._core.create(w))  # registered now: a new hub gets it in any case
        return w

    def cancel(self, w: WatchState) -> None:
        if not self.ended:
            self._submit(self._core.cancel(w))

    def request_progress(self) -> None:
        if not self.ended:
            self._submit(self._core.progress())

    def _submit(self, body: Any) -> None:
        if body is not None and self._connected:  # else the next hub gets every watch anyway
            self._outbox.append(body)
            self._wake.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # -- the task ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while not self._stopping:
                sock = await self._connect()
                if sock is None:
                    break
                try:
                    await self._serve(sock)
                finally:
                    self._connected = False
                    sock.close(linger=0)
        except asyncio.CancelledError:
            pass  # closed by the client
        except Exception as exc:  # a bug must end the watches with an error, never silently
            self._core.error = self._core.error or EtcdzError(f"watch stream failed: {exc!r}")
        finally:
            self.ended = True
            self._core.end_all()

    async def _connect(self) -> zmq.asyncio.Socket | None:
        """A connection to a hub not known to have failed, None (``error`` set) when none
        turns up within the client's timeout: the watches then end with that error."""
        core, client = self._core, self._client
        while True:
            try:
                if not client.cluster_id:
                    await client.call(WatchHubsRequest())  # learn the cluster the hubs must serve
                urls = client.watch_endpoints or await client.watch_hubs()
                last_error: EtcdzError = core.no_hub_error(urls)
            except EtcdzError as exc:
                urls, last_error = [], exc
            now = self._loop.time()
            candidates = core.candidates(urls, now)
            while candidates:
                url = random.choice(candidates)
                sock = self._open(url)
                if sock is not None:
                    return sock
                candidates.remove(url)
            if core.gave_up(now, client.timeout):
                core.error = last_error
                return None
            await asyncio.sleep(0.2)

    def _open(self, url: str) -> zmq.asyncio.Socket | None:
        sock: zmq.asyncio.Socket | None = dealer_to_hub(self._ctx, url, self._client.secure, self._core)
        if sock is None:
            return None
        self._outbox = self._core.opened(url, self._client.cluster_id)
        self._connected = True
        return sock

    async def _serve(self, sock: zmq.asyncio.Socket) -> None:
        core = self._core
        heard = sent = self._loop.time()
        recv: asyncio.Future[list[bytes]] | None = None
        waiter: asyncio.Task[Any] | None = None
        try:
            while True:
                if self._outbox:
                    if not await self._send(sock):
                        return
                    sent = self._loop.time()
                if recv is None:
                    recv = sock.recv_multipart()  # type: ignore[assignment]
                if waiter is None:
                    waiter = self._loop.create_task(self._wake.wait())
                reading: asyncio.Future[list[bytes]] = recv  # type: ignore[assignment]
                done, _ = await asyncio.wait(
                    {reading, waiter}, timeout=PING_S / 2, return_when=asyncio.FIRST_COMPLETED
                )
                now = self._loop.time()
                if waiter in done:
                    self._wake.clear()
                    waiter = None
                if reading in done:
                    heard = now
                    frames, recv = reading.result(), None
                    for _ in range(_DRAIN_MAX):
                        core.receive(frames, now, self._client.cluster_id)
                        try:
                            frames = await sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                    if core.relogin_wanted:
                        core.relogin_wanted = False
                        self._client.relogin()
                    self._outbox.extend(core.after_receive())
                if core.left(now, heard):
                    return  # a hub of another cluster, or a silent one: move the stream
                if now - sent >= PING_S:
                    self._outbox.append(ping())
        finally:
            for pending in (recv, waiter):
                if pending is not None:
                    pending.cancel()

    async def _send(self, sock: zmq.asyncio.Socket) -> bool:
        """Send the outbox (False: no token could be had, the watches end with the reason)."""
        bodies, self._outbox = self._outbox, []
        try:
            token = await self._client._logged_in(self._loop.time() + self._client.timeout)
        except EtcdzError as exc:
            self._core.error, self._stopping = exc, True
            return False
        for body in bodies:
            try:
                await sock.send_multipart(pack(body, msg_id=next(self._msg_ids), token=token), zmq.NOBLOCK)
            except zmq.Again:
                pass  # not connected yet: the hub will look dead and the stream moves
        return True
