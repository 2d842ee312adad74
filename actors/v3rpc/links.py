"""The gRPC door's links: to the gateway's core (in the same process for a member's own door,
actors/gateway/grpc_door.py; for a standalone door one DEALER to the members' client endpoints, as any client:
auth is checked there) shared by every call, and one DEALER per watch stream to a watch hub.

The standalone door's gateway link multiplexes: each call gets a ``msg_id`` and waits for the reply whose
``in_reply_to`` names it, so thousands of gRPC calls share one connection; at most
``max_inflight`` are sent at once (the gateway refuses more per connection), the rest wait
here. A reply that comes after its call gave up is dropped.

A watch stream has a hub connection of its own because a hub's watch ids, progress requests
and flow control are per connection, exactly as etcd's are per gRPC stream. When a stream
ends, its connection is kept for the next one (``HubPool``) once its watchers are cancelled
and the hub has answered a ping sent after the cancels (the hub answers in order, so nothing of
the old stream can follow): a hub only notices a vanished connection after its idle timeout,
and a client that opens and drops streams would otherwise fill the hub's stream bound. Its receive queue
is small (``HUB_RCVHWM``): a gRPC client that stops reading stops this side reading, and the
hub's own bounds then cancel that stream's watchers with a reason instead of anything growing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import zmq
import zmq.asyncio

from actors.runtime import curve as curvezmq
from actors.runtime.curve import Curve
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.envelope import pack, reply_queue, unpack_header
from proto_schemas.errors import ErrorCode, ErrorResponse, error_response
from proto_schemas.watch import (
    WatchCancelRequest,
    WatchHubsRequest,
    WatchHubsResponse,
    WatchPing,
    WatchPong,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

HUB_RCVHWM = 64  # frames from a hub waiting for a slow gRPC reader
HUBS_FRESH_S = 5.0  # how long the gateway's list of hubs is used before asking again
RELEASE_S = 2.0  # a finished stream's hub connection must be quiet within this to be reused
POOLED = 64  # idle hub connections kept for the next streams


class Link:
    """How the door reaches its gateway's core: ``call`` one request, get its answer."""

    def __init__(self) -> None:
        self._hubs: list[str] = []
        self._hubs_at = -HUBS_FRESH_S
        # The member's revision and raft term as last heard: what the door fills into a header
        # whose source does not know them (a hub's watch responses know no term, a lease
        # keepalive no revision), as etcd's server fills every header.
        self.revision = 0
        self.raft_term = 0

    def heard(self, reply: Any) -> None:
        header = getattr(reply, "header", None)
        if header is not None:
            self.revision = max(self.revision, header.revision)
            self.raft_term = max(self.raft_term, header.raft_term)

    async def run(self) -> None:
        """Runs as long as the link works (its end is a failure of the door)."""
        raise NotImplementedError

    async def call(self, request: Any, token: str, timeout_s: float) -> Any:
        """The gateway's answer (a response or an ``ErrorResponse``, never an exception);
        waiting for a slot, for the connection and for the answer all count in ``timeout_s``."""
        raise NotImplementedError

    async def hub_url(self, now: float, timeout_s: float) -> str | None:
        """A watch hub serving this member's events, as the member knows them."""
        if now - self._hubs_at > HUBS_FRESH_S or not self._hubs:
            reply = await self.call(WatchHubsRequest(), "", timeout_s)
            if isinstance(reply, WatchHubsResponse):
                self._hubs, self._hubs_at = list(reply.urls), now
        return random.choice(self._hubs) if self._hubs else None


class GatewayLink(Link):
    """The standalone door's link: a client connection to the members' client URLs."""

    def __init__(self, ctx: zmq.asyncio.Context, url: str, secured: Curve | None, max_inflight: int) -> None:
        super().__init__()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, reply_queue(max_inflight))
        curvezmq.connect_as(self.sock, secured)  # type: ignore[arg-type]
        # A standalone door names several members (comma-separated): calls go round-robin to
        # those connected, and none waits queued for a member that is not.
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        for one in url.split(","):
            self.sock.connect(one)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._slots = asyncio.Semaphore(max_inflight)

    async def run(self) -> None:
        """Route each reply to the call that waits for it (the link's one reader)."""
        while True:
            frames = await self.sock.recv_multipart()
            try:
                header, body = unpack_header(frames)
            except DecodeError:
                continue
            waiter = self._pending.pop(header.in_reply_to, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)

    async def call(self, request: Any, token: str, timeout_s: float) -> Any:
        msg_id = next(self._ids)
        try:
            async with asyncio.timeout(timeout_s):
                raw = await self._exchange(msg_id, encode(request), token)
        except TimeoutError:
            return error_response(ErrorCode.TIMEOUT)
        finally:
            self._pending.pop(msg_id, None)
        try:
            reply = decode(raw)
        except DecodeError as exc:
            return error_response(ErrorCode.INTERNAL, f"malformed reply from the gateway: {exc}")
        self.heard(reply)
        return reply

    async def _exchange(self, msg_id: int, body: bytes, token: str) -> bytes:
        async with self._slots:
            waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self._pending[msg_id] = waiter
            await self.sock.send_multipart(pack(body, msg_id=msg_id, token=token))
            return await waiter


class HubLink:
    """One watch stream's connection to a hub."""

    def __init__(self, ctx: zmq.asyncio.Context, url: str, secured: Curve | None, token: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, HUB_RCVHWM)
        curvezmq.connect_as(self.sock, secured)  # type: ignore[arg-type]
        self.sock.connect(url)
        self.token = token
        self._ids = itertools.count(1)
        self._watch_ids = itertools.count(1)  # never reused on this connection (streams.py)

    def next_watch_id(self) -> int:
        return next(self._watch_ids)

    async def send(self, body: Any) -> None:
        await self.sock.send_multipart(pack(body, msg_id=next(self._ids), token=self.token))

    async def hello(self, cluster_id: int) -> None:
        await self.send(WatchPing(cluster_id=cluster_id, shared=True))  # reads shared responses

    async def receive(self) -> Any:
        """The hub's next message, or an ``ErrorResponse`` for one that cannot be read."""
        frames = await self.sock.recv_multipart()
        try:
            return decode(unpack_header(frames)[1])
        except DecodeError as exc:
            return ErrorResponse(code=ErrorCode.INTERNAL, message=f"malformed message from the hub: {exc}")

    def close(self) -> None:
        self.sock.close(linger=0)


class HubPool:
    """Hub connections of finished streams, ready for new ones."""

    def __init__(self, ctx: zmq.asyncio.Context, secured: Curve | None) -> None:
        self.ctx = ctx
        self.secured = secured
        self.idle: dict[str, list[HubLink]] = {}
        self.releasing: set[asyncio.Task[None]] = set()

    def take(self, url: str, token: str) -> HubLink:
        free = self.idle.get(url)
        if free:
            hub = free.pop()
            hub.token = token
            return hub
        return HubLink(self.ctx, url, self.secured, token)

    def give_back(self, url: str, hub: HubLink, watch_ids: set[int]) -> None:
        """Cancel the stream's watchers, then keep the connection (in the background)."""
        task = asyncio.ensure_future(self._release(url, hub, set(watch_ids)))
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)

    async def _release(self, url: str, hub: HubLink, watch_ids: set[int]) -> None:
        try:
            async with asyncio.timeout(RELEASE_S):
                pongs = await self._cancel(hub, watch_ids)
                while pongs:
                    msg = await hub.receive()
                    if isinstance(msg, WatchPong):
                        pongs -= 1
                    elif isinstance(msg, WatchResponses | WatchResponse):
                        late = msg.each() if isinstance(msg, WatchResponses) else [msg]
                        created = {r.watch_id for r in late if r.created and not r.canceled}
                        if created:  # a create in flight when the stream ended
                            pongs += await self._cancel(hub, created)
                    else:
                        raise TimeoutError  # an error: not worth keeping
        except (TimeoutError, zmq.ZMQError):
            hub.close()
            return
        free = self.idle.setdefault(url, [])
        if len(free) < POOLED:
            free.append(hub)
        else:
            hub.close()

    @staticmethod
    async def _cancel(hub: HubLink, watch_ids: set[int]) -> int:
        for watch_id in watch_ids:
            await hub.send(WatchRequest(request=WatchCancelRequest(watch_id=watch_id)))
        await hub.send(WatchPing(shared=True))
        return 1
