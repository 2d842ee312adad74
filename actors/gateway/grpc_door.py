"""A member's gRPC door, inside its gateway's process: the gateway core's second front door.

The ZeroMQ clients' requests reach the core from the gateway's ROUTER; the gRPC clients' from
here, with nothing between them but a queue in memory: the door's asyncio loop runs the gRPC
server (shell.py) on a thread of the gateway process, and each call it translates goes to the
same ``GatewayCore.client_message`` as a ZeroMQ client's request (the same preflight, auth,
quota, proposal batching, ReadIndex rounds and answers), under a route of its own (``ROUTE``).
A write thus takes the path a ZeroMQ client's takes, with no process, socket or re-encoding
more (docs/architecture.md says why the door is not a process of its own any more).

Threads: the gateway's loop owns the core and is the only thread to touch it. The door's thread
appends each call to ``Mailbox.calls`` and wakes the loop through an inproc socket, once per
batch (``wake_pending``: no wake while one is unanswered); the loop drains the queue after the
wake and hands every answer of a batch back in one ``call_soon_threadsafe``. A failure of the
door's thread ends the process (crash-only: the supervisor restarts the gateway with its door);
the door ends with the process (a stopping member's gRPC clients see their connection close, as
a stopping etcd's do).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections import deque
from typing import Any

import structlog
import zmq

from actors.gateway.core import GatewayCore
from actors.runtime.config import NodeConfig
from actors.runtime.listen import ListenError
from actors.runtime.loop import Loop
from actors.runtime.tls import TlsFiles, plaintext_warning
from actors.v3rpc.links import Link
from actors.v3rpc.shell import MAX_WATCH_STREAMS, DoorConfig, serve
from actors.v3rpc.shell import ListenError as DoorListenError
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import pack
from proto_schemas.errors import ErrorCode, error_response

ROUTE = b"G"  # the core's route for the door's calls (the ZeroMQ ROUTERs' tags are C and L)
SOURCE = "grpc"  # the address the core's login limiter counts the door's logins under
START_TIMEOUT_S = 30.0


def door_config(config: NodeConfig, cert_secret: bytes = b"") -> DoorConfig:
    """The member's door settings; its TLS files are read here (ValueError if unusable)."""
    given = tls_files(config)
    secure = any(url.startswith("https://") for url in config.listen_grpc_urls)
    return DoorConfig(
        name=config.name,
        listen_urls=config.listen_grpc_urls,
        advertise_urls=config.advertise_grpc_urls or None,
        gateway_url="",  # the core is in this process
        cluster_id=config.cluster_id,
        member_id=config.member_id,
        hub_curve=config.client_curve(),
        max_request_bytes=config.max_request_bytes,
        request_timeout_s=config.request_timeout_ms / 1000,
        max_inflight=config.max_client_inflight,
        # a stream holds a hub connection (a socket): the hubs' bound, within the door's own
        max_watch_streams=min(config.watch_limits.get("max_streams", MAX_WATCH_STREAMS), MAX_WATCH_STREAMS),
        tls=given.load() if secure else None,
        cert_secret=cert_secret,
    )


def tls_files(config: NodeConfig) -> TlsFiles:
    return TlsFiles(
        cert_file=config.grpc_cert_file,
        key_file=config.grpc_key_file,
        trusted_ca_file=config.grpc_trusted_ca_file,
        client_cert_auth=config.grpc_client_cert_auth,
    )


def attach(loop: Loop, core: GatewayCore, config: NodeConfig, log: structlog.BoundLogger) -> EmbeddedDoor:
    """The member's door, to ``start`` once the gateway's loop is built."""
    try:
        door = door_config(config, core.cert_secret)
    except ValueError as exc:  # a TLS file changed since the start's check
        raise ListenError(str(exc)) from None
    ignored = plaintext_warning(door.listen_urls, tls_files(config))
    if ignored:
        log.warning(ignored)
    plain = [url for url in door.listen_urls if url.startswith("http://")]
    if config.key_file and plain:
        log.warning(
            "etcd's gRPC API is served in plaintext on http:// URLs while the ZeroMQ endpoints "
            "are encrypted: serve it on https:// (--grpc-cert-file) or keep it on loopback",
            urls=plain,
        )
    return EmbeddedDoor(loop, core, door, log)


class Mailbox:
    """Calls from the door's thread to the gateway's loop."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.address = f"inproc://grpc-door-{id(self)}"
        self.inbox = ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.bind(self.address)
        self.ctx = ctx
        self.calls: deque[list[bytes]] = deque()
        self.wake_pending = False
        self._wake: zmq.Socket[bytes] | None = None  # the door thread's end, made there

    def post(self, frames: list[bytes]) -> None:
        """(door thread) Queue one call; wake the loop unless a wake is on its way. The loop
        clears ``wake_pending`` before it drains, so a call queued after its drain sees the
        flag cleared and wakes it again."""
        self.calls.append(frames)
        if not self.wake_pending:
            self.wake_pending = True
            if self._wake is None:
                self._wake = self.ctx.socket(zmq.PUSH)
                self._wake.setsockopt(zmq.LINGER, 0)
                self._wake.connect(self.address)
            self._wake.send(b"", zmq.NOBLOCK)


class LocalLink(Link):
    """(door thread) The door's link to a core in the same process."""

    def __init__(self, mailbox: Mailbox, max_inflight: int) -> None:
        super().__init__()
        self.mailbox = mailbox
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._slots = asyncio.Semaphore(max_inflight)  # the core allows a route this many

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing to read: answers are handed over (``answered``)

    async def call(self, request: Any, token: str, timeout_s: float) -> Any:
        msg_id = next(self._ids)
        try:
            async with asyncio.timeout(timeout_s), self._slots:
                waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._pending[msg_id] = waiter
                self.mailbox.post(pack(request, msg_id=msg_id, token=token))
                body = await waiter
        except TimeoutError:
            return error_response(ErrorCode.TIMEOUT)
        finally:
            self._pending.pop(msg_id, None)
        if not isinstance(body, bytes):
            return body
        try:
            return decode(body)
        except DecodeError as exc:
            return error_response(ErrorCode.INTERNAL, f"malformed answer from the gateway: {exc}")

    def answered(self, answers: list[tuple[int, Any]], revision: int, raft_term: int) -> None:
        """A batch of the core's answers (an answer to a call that gave up is dropped), and
        the member's revision and term as the core knows them."""
        self.revision, self.raft_term = revision, raft_term
        for msg_id, body in answers:
            waiter = self._pending.pop(msg_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(body)


class EmbeddedDoor:
    """(gateway loop) The door's thread, its calls into the core and its answers out."""

    ROUTE = ROUTE

    def __init__(self, loop: Loop, core: GatewayCore, config: DoorConfig, log: structlog.BoundLogger) -> None:
        self.core = core
        self.config = config
        self.log = log
        self.mailbox = Mailbox(loop.ctx)
        self.answers: list[tuple[int, Any]] = []
        self.link: LocalLink | None = None
        self.aio: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self.error: Exception | None = None
        self.urls: list[str] = []
        loop.on_frames(self.mailbox.inbox, self._woken)
        self.thread = threading.Thread(target=self._run, name="grpc-door", daemon=True)

    def start(self) -> None:
        """Start serving; raises ``ListenError`` (fatal) when a gRPC URL cannot be bound."""
        self.thread.start()
        if not self.started.wait(START_TIMEOUT_S):
            raise ListenError("the gRPC door did not start")
        if self.error is not None:
            raise ListenError(str(self.error)) from self.error

    def _woken(self, _wakes: list[list[bytes]]) -> None:
        self.mailbox.wake_pending = False
        calls = self.mailbox.calls
        now = time.monotonic()
        while calls:
            self.core.client_message(ROUTE, calls.popleft(), now, source=SOURCE)

    def answer(self, msg_id: int, body: Any) -> None:
        self.answers.append((msg_id, body))

    def flush(self) -> None:
        """After the gateway's flush: this batch's answers to the door, in one hand-over."""
        if self.answers and self.aio is not None and self.link is not None:
            answers, self.answers = self.answers, []
            try:
                term = self.core.raft.term if self.core.raft is not None else 0
                self.aio.call_soon_threadsafe(self.link.answered, answers, self.core.revision, term)
            except RuntimeError:  # the door's loop is closed: the process is stopping
                pass

    # -- the door's thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except DoorListenError as exc:
            self.error = exc
            self.started.set()
            return
        except BaseException as exc:
            self.log.error("gRPC door failed", error=str(exc), error_type=type(exc).__name__, exc_info=True)
        else:
            self.log.error("gRPC door failed", error="its server stopped")
        os._exit(2)  # crash-only: the supervisor restarts the gateway, with its door

    async def _serve(self) -> None:
        self.aio = asyncio.get_running_loop()
        self.link = LocalLink(self.mailbox, self.config.max_inflight)
        await serve(self.config, self.log, self._bound, self.link)

    def _bound(self, urls: list[str]) -> None:
        self.urls = urls
        self.log.info("serving etcd's gRPC API", urls=urls)
        self.started.set()
