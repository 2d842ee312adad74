"""The gRPC door's server: etcd's v3 services (grpcio's asyncio server) in front of the member.

Every unary call is decoded here (bytes in, so that undecodable protobuf gets grpc-go's own
``Internal`` status instead of an exception), translated (translate.py), sent to the member's
gateway on its client endpoint (as any client: auth is checked there), and the answer
translated back; an etcdz error becomes the gRPC status etcd gives for it (calls.py). Watch
streams go to a watch hub, one hub connection per stream (watch_stream.py); LeaseKeepAlive
streams are keepalive calls one after another; Snapshot streams the pieces of the member's copy
as an etcdz snapshot file.

TLS (``https://`` URLs) and client certificates: see actors/runtime/tls.py; a verified
certificate's Common Name reaches the gateway as a certificate token (``Door.token``), on the
same path as a client's token, so the gateway's auth is the only auth.

Bounds, so that no client makes the process grow: at most ``max_rpcs`` calls and streams at
once (grpcio answers ``RESOURCE_EXHAUSTED`` beyond), at most ``max_watch_streams`` watch
streams (each holds a hub connection), ``max_inflight`` calls at the gateway, a receive limit
of the request limit plus etcd's 512 KiB of gRPC overhead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
import zmq.asyncio
from google.protobuf.message import Message

from actors.auth.tokens import cert_token
from actors.runtime.curve import Curve
from actors.runtime.loop import HEARTBEAT_S, touch_heartbeat
from actors.runtime.tls import GrpcTls
from actors.v3rpc.calls import common_name, fail, parse, token_of, translated
from actors.v3rpc.links import GatewayLink, HubPool, Link
from actors.v3rpc.translate import to_pb
from actors.v3rpc.watch_stream import WatchStreams
from etcdz.snapshot import FileBuilder
from proto_schemas.cluster import grpc_urls
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.etcdpb import rpc_pb2
from proto_schemas.kv import HashKVRequest
from proto_schemas.lease import LeaseKeepAliveRequest
from proto_schemas.maintenance import SnapshotRequest

GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's allowance for gRPC framing over --max-request-bytes
LOGIN_ATTEMPTS = 6  # 0.1 + 0.2 + ... + 1.6 s: past a burst of the gateway's per-address limit
LOGIN_BACKOFF_S = 0.1
LOGIN_RETRY = frozenset({ErrorCode.TOO_MANY_REQUESTS, ErrorCode.AUTH_OLD_REVISION})
MAX_WATCH_STREAMS = 1000  # each holds a hub connection: a socket and its buffers
CLUSTER_RPCS = frozenset(m.name for m in rpc_pb2.DESCRIPTOR.services_by_name["Cluster"].methods)
UNSERVED = frozenset({"Downgrade"})  # etcd 3.5's downgrade: etcdz has one version; UNIMPLEMENTED


@dataclass(frozen=True)
class DoorConfig:
    name: str
    listen_urls: list[str]  # http://host:port, https://host:port (TLS with ``tls``)
    gateway_url: str  # the member's client URL (never the node's trusted private socket)
    gateway_curve: Curve | None = None
    cluster_id: int = 0
    member_id: int = 0
    advertise_urls: list[str] | None = None
    hub_curve: Curve | None = None  # how to reach the watch hubs
    max_request_bytes: int = 1536 * 1024
    request_timeout_s: float = 7.0
    max_rpcs: int = 10_000
    max_watch_streams: int = MAX_WATCH_STREAMS
    max_inflight: int = 1000
    heartbeat_path: str = ""
    tls: GrpcTls | None = None  # the https URLs' certificate, key and client CAs
    cert_secret: bytes = b""  # vouches for a verified client certificate's user (auth/tokens.py)


class Door:
    def __init__(self, config: DoorConfig, link: Link, ctx: zmq.asyncio.Context, log: Any) -> None:
        self.config = config
        self.link = link
        self.ctx = ctx
        self.log = log
        self.timeout_s = config.request_timeout_s + 1.0
        self.watches = WatchStreams(
            link=link,
            hubs=HubPool(ctx, config.hub_curve),
            token=self.token,
            fill=self.fill,
            cluster_id=config.cluster_id,
            member_id=config.member_id,
            max_streams=config.max_watch_streams,
            timeout_s=self.timeout_s,
        )
        # etcd's "CommonName as user": only a certificate the handshake verified names one
        self.cert_users = bool(config.tls and config.tls.client_cert_auth and config.cert_secret)

    def token(self, context: grpc.aio.ServicerContext) -> str:
        """What the gateway checks a call's auth by: its token; without one, on a connection
        whose client certificate was verified, a certificate token for its Common Name (the
        gateway then takes that name as the user, as etcd does)."""
        token = token_of(context)
        if token or not self.cert_users:
            return token
        user = common_name(context)
        return cert_token(self.config.cert_secret, user) if user else ""

    def fill(self, out: Message, revision: bool = True) -> Message:
        """Complete a response's header as etcd's server does for every RPC: cluster and
        member ids, revision and raft term (those its source left unset). The Cluster
        service's headers carry no revision in etcd (``revision=False``): etcdctl prints them."""
        header = out.header
        header.cluster_id = header.cluster_id or self.config.cluster_id
        header.member_id = header.member_id or self.config.member_id
        if revision:
            header.revision = header.revision or self.link.revision
        header.raft_term = header.raft_term or self.link.raft_term
        return out

    async def ask(self, context: grpc.aio.ServicerContext, request: Any) -> Any:
        reply = await self.link.call(request, self.token(context), self.timeout_s)
        if isinstance(reply, ErrorResponse):
            await fail(context, reply)
        return reply

    async def login(self, context: grpc.aio.ServicerContext, request: Any) -> Any:
        """A login refused as busy is tried again, as the SDK does: the gateway limits logins
        per address, and every gRPC client's comes from this process's address."""
        for attempt in range(LOGIN_ATTEMPTS):
            reply = await self.link.call(request, "", self.timeout_s)
            busy = isinstance(reply, ErrorResponse) and reply.code in LOGIN_RETRY
            if not busy or attempt == LOGIN_ATTEMPTS - 1:
                break
            await asyncio.sleep(LOGIN_BACKOFF_S * 2**attempt)
        if isinstance(reply, ErrorResponse):
            await fail(context, reply)
        return reply

    # -- unary -----------------------------------------------------------------------------
    def unary(self, name: str, req: type[Message], resp: type[Message]) -> Callable[..., Any]:
        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            msg = await parse(context, req, raw)
            if name == "Hash":  # etcdz hashes its key-value history (HashKV), not a db file
                reply = await self.ask(context, HashKVRequest(revision=0))
            elif name == "Authenticate":
                reply = await self.login(context, await translated(context, msg))
            else:
                reply = await self.ask(context, await translated(context, msg))
            out = self.fill(to_pb(reply, resp), revision=name not in CLUSTER_RPCS)
            members = list(getattr(out, "members", ()))  # MemberList, MemberAdd/Remove/...
            if any(grpc_urls(list(m.clientURLs)) for m in members) or self.config.advertise_urls:
                for member in members:  # etcd's clients reach the members at their gRPC URLs
                    urls = grpc_urls(list(member.clientURLs))
                    if member.ID == self.config.member_id and not urls:  # not published yet
                        urls = list(self.config.advertise_urls or ())
                    del member.clientURLs[:]
                    member.clientURLs.extend(urls)
            return out.SerializeToString()

        return self.guarded(name, handle)

    def guarded(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Any failure of ours becomes a clear ``Internal`` status and a log line, never an
        unexplained ``Unknown`` (the statuses a handler chose pass through)."""

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await handler(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                self.log.error("rpc failed", rpc=name, error=str(exc), error_type=type(exc).__name__)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"etcdserver: internal error ({type(exc).__name__})"
                )

        return handle

    # -- LeaseKeepAlive --------------------------------------------------------------------
    async def keep_alive(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        async for raw in requests:
            msg = await parse(context, rpc_pb2.LeaseKeepAliveRequest, raw)
            lease_id = msg.ID
            request = LeaseKeepAliveRequest(id=lease_id)
            reply = await self.link.call(request, self.token(context), self.timeout_s)
            if isinstance(reply, ErrorResponse):
                if reply.code != ErrorCode.LEASE_NOT_FOUND:
                    await fail(context, reply)
                # etcd answers a keepalive of an unknown lease with TTL 0, not an error
                gone = rpc_pb2.LeaseKeepAliveResponse(ID=lease_id, TTL=0)
                await context.write(self.fill(gone).SerializeToString())
                continue
            await context.write(self.fill(to_pb(reply, rpc_pb2.LeaseKeepAliveResponse)).SerializeToString())

    # -- Snapshot --------------------------------------------------------------------------
    async def snapshot(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        await parse(context, rpc_pb2.SnapshotRequest, raw)
        builder = FileBuilder()
        resp = await self.ask(context, SnapshotRequest())
        header = self.fill(to_pb(resp, rpc_pb2.SnapshotResponse)).header
        blob = builder.first(resp)
        while not resp.done:
            piece = rpc_pb2.SnapshotResponse(header=header, remaining_bytes=1, blob=blob)
            await context.write(piece.SerializeToString())
            resp = await self.ask(context, SnapshotRequest(snap_id=resp.snap_id, seq=resp.seq + 1))
            blob = builder.piece(resp)
        last = rpc_pb2.SnapshotResponse(header=header, remaining_bytes=0, blob=blob + builder.end())
        await context.write(last.SerializeToString())

    # -- the services ----------------------------------------------------------------------
    def handlers(self) -> list[grpc.GenericRpcHandler]:
        streams: dict[str, Callable[..., Any]] = {
            "Watch": grpc.stream_stream_rpc_method_handler(self.guarded("Watch", self.watches.watch)),
            "LeaseKeepAlive": grpc.stream_stream_rpc_method_handler(
                self.guarded("LeaseKeepAlive", self.keep_alive)
            ),
            "Snapshot": grpc.unary_stream_rpc_method_handler(self.guarded("Snapshot", self.snapshot)),
        }
        out: list[grpc.GenericRpcHandler] = []
        for service in rpc_pb2.DESCRIPTOR.services_by_name.values():
            methods: dict[str, Any] = {}
            for method in service.methods:
                if method.name in UNSERVED:
                    continue
                if method.name in streams:
                    methods[method.name] = streams[method.name]
                    continue
                req = getattr(rpc_pb2, method.input_type.name)
                resp = getattr(rpc_pb2, method.output_type.name)
                methods[method.name] = grpc.unary_unary_rpc_method_handler(self.unary(method.name, req, resp))
            out.append(grpc.method_handlers_generic_handler(service.full_name, methods))
        return out


def server_options(config: DoorConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", config.max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", config.max_rpcs),
        ("grpc.so_reuseport", 0),
    ]


def credentials(tls: GrpcTls) -> grpc.ServerCredentials:
    """TLS with the door's certificate; with client-cert-auth, a client certificate signed by
    one of the trusted CAs is required and verified in the handshake (grpc's
    REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, etcd's RequireAndVerifyClientCert)."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)],
        root_certificates=tls.trusted_ca if tls.client_cert_auth else None,
        require_client_auth=tls.client_cert_auth,
    )


async def beat(path: str) -> None:
    """Touch the heartbeat file every second: the supervisor kills a side whose beat stops."""
    while True:
        touch_heartbeat(path)
        await asyncio.sleep(HEARTBEAT_S)


class ListenError(Exception):
    """A listen URL that cannot be bound: fatal at the first start (the member says so)."""


async def serve(
    config: DoorConfig,
    log: structlog.BoundLogger,
    bound: Callable[[list[str]], None],
    link: Link | None = None,
) -> None:
    """Serve until stopped; ``link`` reaches the gateway's core (default: a ZeroMQ client
    connection to ``config.gateway_url``, the standalone door's)."""
    ctx = zmq.asyncio.Context()
    ctx.setsockopt(zmq.LINGER, 0)
    ctx.set(zmq.MAX_SOCKETS, config.max_watch_streams + 64)
    if link is None:
        link = GatewayLink(ctx, config.gateway_url, config.gateway_curve, config.max_inflight)
    door = Door(config, link, ctx, log)
    server = grpc.aio.server(
        handlers=door.handlers(), options=server_options(config), maximum_concurrent_rpcs=config.max_rpcs
    )
    urls = []
    for url in config.listen_urls:
        scheme, _, host = url.partition("://")
        try:
            if scheme != "https":
                port = server.add_insecure_port(host)
            elif config.tls is None:
                raise ListenError(f"--listen-grpc-urls {url} needs --grpc-cert-file and --grpc-key-file")
            else:
                port = server.add_secure_port(host, credentials(config.tls))
        except RuntimeError as exc:
            raise ListenError(f"cannot listen on --listen-grpc-urls {url}: {exc}") from None
        if port == 0:
            raise ListenError(f"cannot listen on --listen-grpc-urls {url}: address in use or invalid")
        urls.append(f"{scheme}://{host.rpartition(':')[0]}:{port}")
    await server.start()
    bound(urls)
    tasks = [asyncio.ensure_future(link.run())]
    if config.heartbeat_path:
        tasks.append(asyncio.ensure_future(beat(config.heartbeat_path)))
    stopped = asyncio.ensure_future(server.wait_for_termination())
    try:
        # The link's reader or the heartbeat ending is a failure of this process: it exits
        # (with the reason) and its supervisor starts it again, rather than serve on deaf.
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()
                raise RuntimeError("the gateway link stopped")
    finally:
        for task in [stopped, *tasks]:
            task.cancel()
        await server.stop(grace=1.0)
        ctx.term()
