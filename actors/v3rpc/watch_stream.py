"""The gRPC door's Watch streams: each a hub connection of its own (links.py), the client's
watch ids mapped to the hub's (streams.py).

A stream takes a connection from the pool, pumps the client's requests to the hub and the hub's
answers to the client, and pings a quiet hub: one silent for ``HUB_DEAD_AFTER_S`` ends the
stream as unavailable, and so does a pong saying the hub no longer holds the stream's watchers
(it restarted, or ZeroMQ connected again under the socket): the client then creates its
watches again from where they are, as etcd's clients do when a stream breaks, instead of
waiting for events that will not come. At most ``max_watch_streams`` streams at once (each holds a hub
connection); a client that cancels or drops its stream frees its place at once, and one that
never reads stops its hub connection (see links.py). A stream that ended cleanly gives its
connection back for the next one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from actors.v3rpc.calls import fail
from actors.v3rpc.links import HubLink, HubPool, Link
from actors.v3rpc.streams import DUPLICATE, StreamWatchers
from actors.v3rpc.translate import UNMARSHAL, Untranslatable, cancel_reason, to_cbor, to_pb
from proto_schemas.errors import ErrorResponse
from proto_schemas.etcdpb import rpc_pb2
from proto_schemas.kv import ResponseHeader
from proto_schemas.watch import (
    DUPLICATE_WATCH_ID,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchPong,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

PING_S = 3.0  # a quiet hub connection is pinged this often (a hub drops streams idle for 10 s)
HUB_DEAD_AFTER_S = 10.0
HUB_LOST = "etcdserver: watch hub lost this stream's watchers"


def watch_pb(resp: WatchResponse) -> rpc_pb2.WatchResponse:
    out = to_pb(resp, rpc_pb2.WatchResponse)
    if out.canceled:
        out.cancel_reason = cancel_reason(out.cancel_reason)
    return out


@dataclass
class WatchStreams:
    """A door's Watch streams: their count against the bound and their pool of hub connections."""

    link: Link
    hubs: HubPool
    token: Callable[[grpc.aio.ServicerContext], str]  # a call's auth (the door's)
    fill: Callable[[Message], Message]  # a response's header completed (the door's)
    cluster_id: int
    member_id: int
    max_streams: int
    timeout_s: float
    streams: int = 0

    async def watch(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        if self.streams >= self.max_streams:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
        loop = asyncio.get_running_loop()
        url = await self.link.hub_url(loop.time(), self.timeout_s)
        if url is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "etcdserver: no watch hub serves this member")
            return
        self.streams += 1
        # A stream the client cancels or drops ends here at once (its place and its hub
        # connection freed), not when the handler next happens to write to it.
        handler = asyncio.current_task()
        context.add_done_callback(lambda _: handler.cancel() if handler is not None else None)
        hub = self.hubs.take(url, self.token(context))
        mine = StreamWatchers()
        refusals: asyncio.Queue[WatchResponse] = asyncio.Queue(maxsize=16)  # the door's own answers
        pump = asyncio.ensure_future(self._watch_requests(requests, hub, mine, refusals))
        receive: asyncio.Future[Any] | None = None
        refused: asyncio.Future[WatchResponse] | None = None
        reusable = True
        try:
            await hub.hello(self.cluster_id)
            quiet = 0.0
            holder: tuple[str, int] | None = None  # the hub and hub stream holding our watchers
            while True:
                receive = receive or asyncio.ensure_future(hub.receive())
                refused = refused or asyncio.ensure_future(refusals.get())
                waited = {receive, refused, pump} if not pump.done() else {receive, refused}
                done, _ = await asyncio.wait(waited, timeout=PING_S, return_when=asyncio.FIRST_COMPLETED)
                if refused in done:
                    out = self.fill(watch_pb(refused.result()))
                    await context.write(out.SerializeToString())
                    refused = None
                if pump in done:
                    problem = pump.result()
                    if problem is not None:
                        await context.abort(*problem)
                    # else the client closed its side: as etcd's, the stream goes on sending
                    # until the client cancels it
                if not done:
                    quiet += PING_S
                    if quiet >= HUB_DEAD_AFTER_S:
                        reusable = False
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "etcdserver: watch hub unreachable")
                    await hub.hello(self.cluster_id)
                    continue
                if receive not in done:
                    continue
                quiet, msg, receive = 0.0, receive.result(), None
                if isinstance(msg, WatchResponses | WatchResponse):
                    for resp in msg.each() if isinstance(msg, WatchResponses) else [msg]:
                        watch_id = mine.answer(resp)
                        if watch_id is not None:
                            out = self.fill(watch_pb(resp))
                            out.watch_id = watch_id
                            await context.write(out.SerializeToString())
                            for due in mine.answered(resp.watch_id) if resp.created else []:
                                out = self.fill(watch_pb(due))
                                await context.write(out.SerializeToString())
                        elif resp.created and not resp.canceled:  # a former stream's: end it
                            await hub.send(WatchRequest(request=WatchCancelRequest(watch_id=resp.watch_id)))
                elif isinstance(msg, WatchPong):
                    if holder is None:
                        holder = (msg.hub_id, msg.stream)
                    elif (msg.hub_id, msg.stream) != holder:
                        reusable = False
                        await context.abort(grpc.StatusCode.UNAVAILABLE, HUB_LOST)
                elif isinstance(msg, ErrorResponse):
                    reusable = False
                    await fail(context, msg)
        finally:
            self.streams -= 1
            pump.cancel()
            for waiting in (receive, refused):
                if waiting is not None:
                    waiting.cancel()
            if reusable:
                self.hubs.give_back(url, hub, mine.hub_ids())
            else:
                hub.close()

    async def _watch_requests(
        self,
        requests: AsyncIterator[bytes],
        hub: HubLink,
        mine: StreamWatchers,
        refusals: asyncio.Queue[WatchResponse],
    ) -> tuple[Any, str] | None:
        """Client -> hub, watch ids turned into the hub's; the status to end the stream with, or
        None when the client is done. A create for an id the stream holds is refused here, as
        etcd refuses it (created and canceled at once, watch id -1)."""
        async for raw in requests:
            try:
                msg = rpc_pb2.WatchRequest.FromString(raw)
            except (DecodeError, RuntimeWarning, ValueError) as exc:
                return grpc.StatusCode.INTERNAL, f"{UNMARSHAL}: {exc}"
            try:
                request = to_cbor(msg)
            except Untranslatable as exc:
                return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
            inner = request.request
            if isinstance(inner, WatchCreateRequest):
                hub_id = mine.create(inner.watch_id, hub.next_watch_id)
                if hub_id is None:
                    refusal = WatchResponse(
                        header=ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id),
                        watch_id=DUPLICATE,
                        created=True,
                        canceled=True,
                        cancel_reason=DUPLICATE_WATCH_ID,
                    )
                    for now in mine.refuse(refusal):
                        await refusals.put(now)
                    continue
                request = WatchRequest(request=dataclasses.replace(inner, watch_id=hub_id))
            elif isinstance(inner, WatchCancelRequest):
                hub_id = mine.cancel(inner.watch_id)
                if hub_id is None:
                    continue  # no such watcher: nothing happens, as in etcd
                request = WatchRequest(request=WatchCancelRequest(watch_id=hub_id))
            await hub.send(request)
        return None
