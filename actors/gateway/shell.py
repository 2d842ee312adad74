"""The gateway's ZeroMQ shell: a ROUTER for clients, an inbox for node replies.

The client ROUTER is bound on every ``--listen-client-urls`` address; a second ROUTER on the
node's private ipc directory serves the node's own watch hubs (trusted: see the core). Routes
are tagged with the socket they came from (``CLIENT``/``LOCAL``) so a reply goes back the same
way whatever identity a peer chose. ``ROUTER_MANDATORY`` makes
a reply to a vanished client an error we can drop, not a silent block; ``MAXMSGSIZE`` makes
ZeroMQ itself refuse frames far beyond the request limit, so a hostile client cannot make the
gateway buffer gigabytes (below that guard, an oversize request gets etcd's typed error).
Each client connection may have ``--max-client-requests-in-flight`` requests (of
``--max-client-bytes-in-flight`` bytes) unanswered; beyond, ``etcdserver: too many requests``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from actors.auth import jwt
from actors.gateway import compactor
from actors.gateway.core import GatewayCore
from actors.gateway.requests import batched_reads
from actors.runtime import curve, failpoints
from actors.runtime.config import NodeConfig
from actors.runtime.listen import bind_all
from actors.runtime.loop import NOBLOCK, Loop, send, send_frames
from proto_schemas.cluster import ReadIndexAnswer
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.envelope import pack, reply_queue
from proto_schemas.internal import ActorStarted
from proto_schemas.lease import LeaseAnswer

# Requests queued per client connection: as many as it may have in flight by default
# (``--max-client-requests-in-flight``); past it ZeroMQ stops reading that connection (TCP
# pushes back).
CLIENT_HWM = 1_000
CLIENT = b"C"
LOCAL = b"L"


def _jwt(config: NodeConfig) -> jwt.JwtTokens | None:
    options = config.auth_jwt
    if options is None:
        return None
    return jwt.JwtTokens.from_options(options, time.time)


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    core = GatewayCore(
        member_id=config.member_id,
        cluster_id=config.cluster_id,
        max_request_bytes=config.max_request_bytes,
        max_txn_ops=config.max_txn_ops,
        request_timeout_s=config.request_timeout_ms / 1000,
        max_gap=config.max_gap_committed_applied,
        boot_nonce=int.from_bytes(os.urandom(4), "big"),
        min_lease_ttl=config.min_lease_ttl,
        events_urls=config.advertise_events_urls,
        quota_bytes=config.quota_backend_bytes,
        metrics=loop.metrics,
        unsafe_local_reads=failpoints.enabled("gateway-skip-read-index"),
        auth_token_ttl_s=config.auth_token_ttl_s,
        hub_token=curve.hub_token(config.client_curve()),
        # a member's own door shares its process: without the members' key, a secret of its own
        cert_secret=curve.door_secret(config.client_curve()) or os.urandom(32),
        local_hubs=config.watch_hubs,
        open_hubs=config.allow_unauthenticated_hubs,
        jwt=_jwt(config),
        max_client_inflight=config.max_client_inflight,
        max_client_inflight_bytes=config.max_client_inflight_bytes,
        compactor=compactor.build(
            config.auto_compaction_mode, config.auto_compaction_retention, time.monotonic()
        ),
    )

    client_curve = config.client_curve()
    curve.guard(loop, client_curve)

    def router(urls: list[str], secured: curve.Curve | None, flag: str) -> zmq.Socket[bytes]:
        sock = loop.ctx.socket(zmq.ROUTER)
        curve.serve(sock, secured, "clients")
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, reply_queue(config.max_client_inflight))
        sock.setsockopt(zmq.RCVHWM, CLIENT_HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, 4 * config.max_request_bytes + 65536)
        sock.setsockopt(zmq.LINGER, 0)
        bind_all(sock, urls, flag)
        return sock

    clients = router(config.listen_client_urls, client_curve, "--listen-client-urls")
    local = router([config.local_client_url], None, "the node's socket directory")
    by_tag = {CLIENT: clients, LOCAL: local}
    inbox = loop.inbox(config.inbox("gateway"))
    to_raft = loop.outbox(config.inbox("raft"))
    send(to_raft, ActorStarted(actor="gateway"))  # where raft is, when restarted alone
    to_mvcc = loop.outbox(config.inbox("mvcc"))
    to_lease = loop.outbox(config.inbox("lease"))
    leader: dict[str, Any] = {"urls": [], "sock": None}  # a connection to the leader's peer port
    peer_curve = config.peer_curve()

    def leader_socket() -> zmq.Socket[bytes] | None:
        """Lease calls on a follower go to the leader's lease expirer (keep-alives are not
        replicated), on the leader's peer port as a member's ``LeaseQuery``; reconnect
        whenever the leader changes."""
        urls = core.raft.leader_peer_urls if core.raft is not None else []
        if urls != leader["urls"]:
            if leader["sock"] is not None:
                loop.forget(leader["sock"])
                leader["sock"].close(linger=0)
                leader["sock"] = None
            leader["urls"] = urls
            if urls:
                sock = loop.ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, CLIENT_HWM)
                curve.connect_as(sock, peer_curve)
                for url in urls:
                    sock.connect(url)
                loop.on_frames(sock, from_leader)
                leader["sock"] = sock
        return leader["sock"]

    def to_leader_port(msg: object) -> bool:
        """Whether ``msg`` left for the leader's peer port (not without a known leader, nor
        while its connection's queue is full)."""
        sock = leader_socket()
        if sock is None:
            return False
        try:
            sock.send(encode(msg), NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def from_leader(batch: list[list[bytes]]) -> None:
        for frames in batch:
            try:
                answer = decode(frames[-1], expect=(LeaseAnswer, ReadIndexAnswer))
            except DecodeError:
                continue
            core.leader_answered(answer, time.monotonic())

    def receiver(tag: bytes) -> Callable[[list[list[bytes]]], None]:
        def from_clients(batch: list[list[bytes]]) -> None:
            now = time.monotonic()
            for address, *frames in batch:
                if len(frames) < 2:
                    continue  # no routing id: cannot even answer
                source = address.decode("latin-1")
                core.client_message(tag + frames[0], frames[1:], now, local=tag == LOCAL, source=source)

        return from_clients

    def from_node(msgs: list[object]) -> None:
        now = time.monotonic()
        for msg in msgs:
            core.internal(msg, now)

    def flush() -> None:
        out = core.take_outbox()
        for event, fields in out.logs:
            getattr(log, str(fields.pop("level", "info")))(event, **fields)
        for msg in out.to_raft:
            send(to_raft, msg)
        for msg, fallback in out.at_leader:
            if to_leader_port(msg):
                continue
            if fallback is not None:
                send(to_raft, fallback)  # the raft core passes it on, or refuses it without a leader
            else:  # a lease call: it times out
                log.debug("call not forwarded to the leader", kind=type(msg).__name__)
        for msg in batched_reads(out.to_mvcc):
            send(to_mvcc, msg)
        for msg in out.to_lease:
            send(to_lease, msg)
        for route, reply_to, body in out.to_client:
            if door is not None and route[:1] == door.ROUTE:
                door.answer(reply_to, body)
                continue
            try:
                send_frames(by_tag[route[:1]], [route[1:], *pack(body, in_reply_to=reply_to)], NOBLOCK)
            except zmq.ZMQError as exc:  # client gone (EHOSTUNREACH) or not reading (EAGAIN)
                log.debug("reply dropped", error=str(exc))

    door = _grpc_door(loop, core, config, log)  # the core's second front door, if configured
    loop.on_frames(clients, receiver(CLIENT), peer_address=True)
    loop.on_frames(local, receiver(LOCAL), peer_address=True)
    loop.on_messages(inbox, from_node)
    loop.every(0.05, lambda: core.tick(time.monotonic()))
    loop.after_batch(flush)
    if door is not None:
        loop.after_batch(door.flush)
        door.start()
    return loop


def _grpc_door(loop: Loop, core: GatewayCore, config: NodeConfig, log: structlog.BoundLogger) -> Any:
    """etcd's gRPC API served by this process (``--listen-grpc-urls``), into the same core:
    see actors/gateway/grpc_door.py (imported only then: grpc is heavy)."""
    if not config.listen_grpc_urls:
        return None
    from actors.gateway.grpc_door import attach

    return attach(loop, core, config, log)
