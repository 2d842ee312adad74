"""The watch hub's ZeroMQ shell: clients on a ROUTER, the backend's events on a SUB, history
reads and announcements through members' gateways.

A hub holds nothing but its watchers, so it runs anywhere: started by the ``etcdz`` supervisor
next to a member (events over ipc) or alone with ``etcdz watch-hub`` on another host (events
over tcp, learned from a member's gateway unless ``--backend-events`` is given). Replies to a
client that is not reading fail fast (``SNDHWM`` + ``NOBLOCK``) and go back to the core, which
rewinds the watchers instead of buffering; a client that vanished (``EHOSTUNREACH`` with
``ROUTER_MANDATORY``) loses its stream at once.

Auth: a member's own hubs reach its gateway on the node's private socket and are trusted. A
hub elsewhere that holds the members' Curve key pair presents the hub token derived from it
(announces, history reads); without one it logs in with ``user``/``password`` (a user with the
root role: it reads every key's history) when a member refuses it for want of a token, at
most once per ``LOGIN_S``.

Never silently blind: the listeners bind where ``--listen-watch-urls`` says or the process
fails at once naming flag and address (port 0: a free port, announced as bound, so hubs of
members on one host never collide); the hub serves one cluster -- its member's, or the one
its ``--endpoints`` answer for -- and says so in every ``WatchPong``; a client of another
cluster and an event stream of another cluster are refused (see the core).
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
import zmq

from actors.runtime import curve as curvezmq
from actors.runtime.curve import Curve
from actors.runtime.listen import bind_all, resolve_advertised
from actors.runtime.loop import Loop
from actors.watch.batching import batched, encode_sharing
from actors.watch.core import HubCore
from proto_schemas.auth import AuthenticateRequest, AuthenticateResponse
from proto_schemas.codec import DecodeError, Template, decode, peek
from proto_schemas.envelope import MAX_REQUEST_BYTES, MAX_REQUEST_ITEMS, TooLarge, pack, unpack_header
from proto_schemas.errors import RELOGIN, ErrorCode, ErrorResponse, error_response
from proto_schemas.watch import (
    EventBatch,
    HubAnnounce,
    WatchHistoryResponse,
    WatchHubsResponse,
)

CLIENT_SNDHWM = 256  # sends queued per client before it counts as slow
BATCH_BYTES = 64 << 10  # responses sent together to one client, about this much at most
CLIENT_RCVHWM = 10_000
MAX_CLIENT_MSG = 4 << 20
ANNOUNCE_S = 1.0
TICK_S = 0.05
LOGIN_S = 1.0
WARN_EVERY_S = 10.0  # a repeated configuration error is logged at most this often
# A member's refusals that mean this hub is misconfigured (logged at error level).
REFUSALS = frozenset({ErrorCode.PERMISSION_DENIED, ErrorCode.CLUSTER_ID_MISMATCH, ErrorCode.AUTH_FAILED})


@dataclass
class _Login:
    """The hub's own token at the members (as its configured user), and when it last asked."""

    token: str = ""
    asked_at: float = -LOGIN_S


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    name: str
    listen_urls: list[str]
    advertise_urls: list[str]
    endpoints: list[str]  # members' client URLs: history reads and announcements
    events_urls: list[str] = field(default_factory=list)  # empty: ask the first endpoint
    progress_interval_s: float = 600.0
    max_response_bytes: int = 1536 * 1024
    cluster_id: int = 0
    member_id: int = 0
    log_format: str = "json"
    log_level: str = "info"
    user: str = ""  # for members with auth enabled (hubs not started by a member)
    password: str = ""
    curve: Curve | None = None  # serving watchers, and subscribing to the members' events
    members_curve: Curve | None = None  # reaching the members' gateways
    max_streams: int = 10_000  # bounds on what clients may hold (see HubCore)
    max_watchers_per_stream: int = 10_000
    max_queued_bytes: int = 4 << 20
    slot: str = ""  # a member's own hub: its slot (watch0...), by which the member tracks it
    hub_credential: bool = False  # present the hub token derived from ``members_curve``'s key


def build(config: HubConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    hub_id = os.urandom(8).hex()
    core = HubCore(
        max_response_bytes=config.max_response_bytes,
        progress_interval_s=config.progress_interval_s,
        cluster_id=config.cluster_id,
        member_id=config.member_id,
        hub_id=hub_id,
        max_streams=config.max_streams,
        max_watchers_per_stream=config.max_watchers_per_stream,
        max_queued_bytes=config.max_queued_bytes,
    )
    curvezmq.guard(loop, config.curve)
    clients = loop.ctx.socket(zmq.ROUTER)
    curvezmq.serve(clients, config.curve, "watchers")
    clients.setsockopt(zmq.ROUTER_MANDATORY, 1)
    clients.setsockopt(zmq.SNDHWM, CLIENT_SNDHWM)
    clients.setsockopt(zmq.RCVHWM, CLIENT_RCVHWM)
    clients.setsockopt(zmq.MAXMSGSIZE, MAX_CLIENT_MSG)
    clients.setsockopt(zmq.LINGER, 0)
    bound = bind_all(clients, config.listen_urls, "--listen-watch-urls")
    advertise = resolve_advertised(config.advertise_urls, config.listen_urls, bound)
    events = loop.ctx.socket(zmq.SUB)
    events.setsockopt(zmq.RCVHWM, 100_000)
    events.setsockopt(zmq.LINGER, 0)
    events.setsockopt(zmq.SUBSCRIBE, b"")
    listening = [True]  # whether ``events`` is subscribed (see HubCore.listening)
    curvezmq.connect_as(events, config.curve)
    subscribed: list[str] = []

    def subscribe(urls: list[str]) -> None:
        for url in urls:
            events.connect(url)
            subscribed.append(url)
        log.info("subscribed to events", urls=urls)

    if config.events_urls:
        subscribe(config.events_urls)
    members: list[zmq.Socket[bytes]] = []
    for url in config.endpoints:
        sock = loop.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        curvezmq.connect_as(sock, config.members_curve)
        sock.connect(url)
        members.append(sock)
    ids = itertools.count(1 << 40)  # above the core's check ids
    slow: set[bytes] = set()  # clients whose queue was full at the last try
    history_turn = itertools.count()
    auth = _Login()
    hub_token = curvezmq.hub_token(config.members_curve) if config.hub_credential else ""

    def to_member(body: Any, msg_id: int = 0) -> None:
        """Send to the first member we are connected to (taking turns)."""
        first = next(history_turn)
        for i in range(len(members)):
            try:
                members[(first + i) % len(members)].send_multipart(
                    pack(body, msg_id=msg_id or next(ids), token=hub_token or auth.token), zmq.NOBLOCK
                )
                return
            except zmq.ZMQError:
                continue  # none connected: the core asks again after its timeout

    def login() -> None:
        now = time.monotonic()
        if config.user and now - auth.asked_at >= LOGIN_S:
            auth.asked_at = now
            to_member(AuthenticateRequest(name=config.user, password=config.password))

    def from_clients(batch: list[list[bytes]]) -> None:
        now = time.monotonic()
        for frames in batch:
            if len(frames) < 2:
                continue
            route = frames[0]
            try:
                header, body = unpack_header(frames[1:], MAX_REQUEST_BYTES)
            except TooLarge as exc:
                reply(route, exc.header.msg_id, error_response(ErrorCode.REQUEST_TOO_LARGE))
                continue
            except DecodeError as exc:
                reply(route, 0, error_response(ErrorCode.BAD_REQUEST, str(exc)))
                continue
            try:
                request = decode(body, max_items=MAX_REQUEST_ITEMS)
            except DecodeError as exc:
                reply(route, header.msg_id, error_response(ErrorCode.BAD_REQUEST, str(exc)))
                continue
            core.client(route, header.msg_id, request, now, header.token)

    def from_events(batch: list[list[bytes]]) -> None:
        now = time.monotonic()
        for frames in batch:
            try:
                _, body = unpack_header(frames)
                if not core.watching:
                    core.skip(*peek(body, EventBatch, 3))
                    continue
                msg = decode(body, EventBatch)
            except DecodeError as exc:
                log.error("dropped malformed event batch", error=str(exc))
                continue
            foreign = core.foreign_batches
            core.live(msg, now)
            if core.foreign_batches > foreign and now_warn("foreign events"):
                log.error(
                    "dropped events of another cluster: check --backend-events",
                    cluster_id=f"{core.cluster_id:x}",
                    other=f"{msg.cluster_id:x}",
                    urls=subscribed,
                )

    def from_member(batch: list[list[bytes]]) -> None:
        now = time.monotonic()
        for frames in batch:
            try:
                header, body = unpack_header(frames)
                msg = decode(body)
            except DecodeError as exc:
                log.error("dropped malformed member reply", error=str(exc))
                continue
            learn_cluster(msg)
            if core.is_check(header.in_reply_to):
                core.checked(header.in_reply_to, msg, now)
            elif isinstance(msg, AuthenticateResponse):
                auth.token = msg.token
                log.info("logged in to the cluster", user=config.user)
                core.ask_history_again(now)
            elif isinstance(msg, ErrorResponse) and msg.code in RELOGIN:
                login()
            elif isinstance(msg, ErrorResponse):
                if now_warn("refused"):  # e.g. an announce without the hub credential
                    level = log.error if msg.code in REFUSALS else log.warning
                    level("a member refused this hub", error=msg.message)
            elif isinstance(msg, WatchHistoryResponse):
                core.history(msg, now)
            elif isinstance(msg, WatchHubsResponse):
                if not subscribed and msg.events_urls:
                    subscribe(msg.events_urls)
            else:
                log.warning("unexpected member reply", reply=type(msg).__name__)

    def learn_cluster(msg: Any) -> None:
        """A hub not started by a member learns its cluster from the members' answers; a
        member of another cluster among ``--endpoints`` is a configuration error, said loudly."""
        header = getattr(msg, "header", None)
        cluster_id = getattr(header, "cluster_id", 0)
        if not cluster_id:
            return
        if not core.cluster_id:
            core.cluster_id = cluster_id
            log.info("serving cluster", cluster_id=f"{cluster_id:x}")
        elif cluster_id != core.cluster_id and now_warn("foreign member"):
            log.error(
                "a member of another cluster answered: check --endpoints",
                cluster_id=f"{core.cluster_id:x}",
                other=f"{cluster_id:x}",
            )

    warned: dict[str, float] = {}

    def now_warn(what: str) -> bool:
        """Whether to log ``what`` now (a repeated configuration error: once per WARN_EVERY_S)."""
        now = time.monotonic()
        if now - warned.get(what, -WARN_EVERY_S) < WARN_EVERY_S:
            return False
        warned[what] = now
        return True

    def reply(route: bytes, reply_to: int, body: Any) -> bool:
        try:
            clients.send_multipart([route, *pack(body, in_reply_to=reply_to)], zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError:  # EHOSTUNREACH: the client is gone
            core.gone(route)
            return True

    m_watchers = loop.metrics.gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.")
    m_streams = loop.metrics.gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.")
    m_overflows = loop.metrics.counter(
        "etcdz_watch_streams_overflowed_total",
        "Watch streams whose client did not read its replies, so that its watches were canceled.",
    )

    def flush() -> None:
        now = time.monotonic()
        out = core.take_outbox()
        shared: dict[tuple[Any, ...], Template] = {}
        failed: dict[bytes, list[tuple[int, Any]]] = {}
        sent: set[bytes] = set()
        grouped = frozenset(route for route, stream in core.streams.items() if stream.shared)
        for send in batched(out.to_client, BATCH_BYTES, grouped):
            if send.route in failed or not reply(
                send.route, send.reply_to, encode_sharing(send.body, shared)
            ):
                failed.setdefault(send.route, []).extend(send.items)
            else:
                sent.add(send.route)
        for route in sent:
            core.reading(route)
        for route, unsent in failed.items():
            core.stalled(route, unsent, now)
            if route not in slow:
                slow.add(route)
                log.info("client stream stalled", client=route.hex(), unsent=len(unsent))
        core.bound()  # the streams that just stalled past their queue
        for route, watches in out.overflowed + core.out.overflowed:
            m_overflows.inc()
            log.warning(
                "watch stream not read: its watches were canceled", client=route.hex(), watches=watches
            )
        core.out.overflowed.clear()
        for route in [r for r in slow if r in sent or r not in core.streams]:
            slow.discard(route)
            if route in sent:
                log.info("client stream caught up", client=route.hex())
        for request_id, request in out.to_backend:
            to_member(request, request_id)
        if core.listening != listening[0]:
            listening[0] = core.listening
            events.setsockopt(zmq.SUBSCRIBE if listening[0] else zmq.UNSUBSCRIBE, b"")

    def announce() -> None:
        m_watchers.set(core.watcher_count)
        m_streams.set(len(core.streams))
        announcement = HubAnnounce(
            hub_id=hub_id, urls=advertise, name=config.slot, cluster_id=core.cluster_id
        )
        token = hub_token or auth.token
        for sock in members:
            try:
                sock.send_multipart(pack(announcement, msg_id=next(ids), token=token), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # that member is down; the others still hear us

    loop.on_frames(clients, from_clients)
    loop.on_frames(events, from_events)
    for sock in members:
        loop.on_frames(sock, from_member)
    loop.every(TICK_S, lambda: core.tick(time.monotonic()))
    loop.every(ANNOUNCE_S, announce)
    loop.after_batch(flush)
    announce()
    log.info("watch hub listening", urls=bound, advertised=advertise, hub_id=hub_id)
    return loop
