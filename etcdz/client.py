"""The blocking etcdz client: one DEALER socket to one member at a time, failover across endpoints.

Each call sends ``[header, body]`` with a fresh ``msg_id`` and is given the reply whose
``in_reply_to`` matches, so any number of threads may share one client, each with its call in
flight on the one connection (``etcdz._conn``); the failover and login rules are those of
``etcdz._calls``, shared with the asyncio client. With ``user`` and ``password`` the client
logs in before its first call and again whenever a member answers ``invalid auth token``
(expired, or issued before that member restarted), then retries the call once: the refused
call did not happen.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:
    import proto_schemas.maintenance
    from etcdz.concurrency import SessionLock
    from etcdz.lease import KeptLease
    from etcdz.snapshot import SnapshotStatus
    from etcdz.watcher import Events, Watch, WatchStream

import proto_schemas as pb  # a protocol module is imported by the first call that uses it
from etcdz import ops
from etcdz._api import RequestApi, Settings, disarm_request, disarm_targets, disarmed, next_chunk
from etcdz._calls import (
    NOT_SENT,
    WRITES,
    Failover,
    WriteSession,
    cluster_id_of,
    decode_reply,
    is_write,
    login_retry,
    relogin_cures,
)
from etcdz._conn import Connection
from etcdz.errors import EtcdzError
from proto_schemas.codec import encode
from proto_schemas.kv import (
    KeyValue,
    RangeStreamRequest,
    RangeStreamResponse,
    TxnResponse,
)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:2379"
__all__ = ["DEFAULT_ENDPOINT", "WRITES", "Client", "Txn", "is_write"]


class Client(Settings, RequestApi):
    """A connection to an etcdz cluster, safe to share between threads.

    >>> with Client(["tcp://127.0.0.1:2379"]) as c:
    ...     c.put("greeting", "hello")
    ...     c.get("greeting").kvs[0].value
    """

    def __init__(self, endpoints: str | list[str] = DEFAULT_ENDPOINT, *args: Any, **options: Any) -> None:
        """Options as ``Settings`` says (``timeout``, ``dial_timeout``, ``watch_endpoints``,
        ``user``, ``password``, ``server_key``, ``client_key``, ``token``)."""
        super().__init__(endpoints, *args, **options)
        self._ctx = zmq.Context()
        self._conn: Connection | None = None
        self._ids = itertools.count(1)
        self._session = WriteSession(self._ids)
        self._lock = threading.Lock()  # the connection and the endpoint choice
        self._login_lock = threading.Lock()
        self._stream_lock = threading.Lock()
        self._watch_stream: WatchStream | None = None
        self._closed = False

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> Connection:
        with self._lock:
            if self._closed:
                raise EtcdzError("the client is closed")
            if self._conn is None:
                self._conn = Connection(self._ctx, self._endpoints.current, self.secure)
                self._conn.generation = self._endpoints.generation
            return self._conn

    def _move(self, seen_generation: int) -> None:
        """Leave the endpoint of ``seen_generation`` for the next (once, however many callers
        saw it fail); calls still in flight there end as that member's silence would."""
        with self._lock:
            if self._endpoints.move(seen_generation) and self._conn is not None:
                self._conn.close()
                self._conn = None

    def clone(self, **changes: Any) -> Client:
        """A new client with this one's settings (its own connection), ``changes`` applied."""
        return Client(**{**self._options, **changes})

    def close(self) -> None:
        """Close the watch stream and the connection, and end the ZeroMQ context: nothing of
        this client is left running. Calls made afterwards raise ``EtcdzError``."""
        if self._watch_stream is not None:
            self._watch_stream.close()
            self._watch_stream = None
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            conn.shut.wait(self.timeout + self.dial_timeout)
        self._ctx.term()

    def __del__(self) -> None:
        # A client dropped unclosed, found in a reference cycle (a raised error's traceback
        # holds the frames that hold the client): close its sockets before the collector
        # finalizes the context, whose term() would otherwise wait for them forever.
        conn = getattr(self, "_conn", None)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # at interpreter exit ZeroMQ may be gone already
                pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one call path -----------------------------------------------------------------
    def call(self, request: Any, timeout: float | None = None) -> Any:
        """Send any etcdz request message and return its response message (or raise)."""
        body = encode(request)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seq = self._session.open() if is_write(request) else 0  # the same on every attempt
        try:
            token = self._logged_in(deadline)
            try:
                return self._call(body, deadline, seq, token)
            except EtcdzError as exc:
                if not relogin_cures(self.user, exc):
                    raise
            with self._login_lock:
                if self._token == token:  # nobody logged in again meanwhile
                    self._login(deadline)
                token = self._token
            return self._call(body, deadline, seq, token)
        finally:
            if seq:
                self._session.close(seq)

    def _logged_in(self, deadline: float) -> str:
        if self._need_login:
            with self._login_lock:
                if self._need_login:
                    self._login(deadline)
        return self._token

    def auth_token(self) -> str:
        """This client's token ("" without a user), logging in first if need be (what a watch
        stream sends to the hubs)."""
        return self._logged_in(time.monotonic() + self.timeout)

    def relogin(self) -> None:
        """Forget the token (a hub refused it): the next call logs in again."""
        with self._login_lock:
            self._token = ""
            self._need_login = self.user is not None

    def _login(self, deadline: float) -> None:
        """(login lock held) Get a token; with auth disabled, go on without one."""
        self._token = ""
        body = encode(self.login_request())
        for attempt in itertools.count():
            try:
                response = self._call(body, deadline, 0, "")
            except EtcdzError as exc:
                delay = login_retry(exc, attempt, time.monotonic() >= deadline)
                if delay is None:
                    raise
                if delay < 0:
                    break
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            self._token = self.token_of(response)
            break
        self._need_login = False

    def _call(self, body: bytes, deadline: float, seq: int, token: str) -> Any:
        """One request, with failover; a write (``seq``: its number in the client's session)
        keeps it as its msg_id on every attempt."""
        attempts = Failover(self._endpoints, bool(seq))
        while True:
            conn = self._connection()
            msg_id, frames = self._session.attempt(body, seq, token)
            got = conn.exchange(msg_id, frames, deadline, self.dial_timeout)
            if got is NOT_SENT and conn.closed:
                continue  # another call moved the client on before ours left: on the new connection
            outcome = decode_reply(got, conn.url) if isinstance(got, bytes) else got
            self.cluster_id = cluster_id_of(outcome) or self.cluster_id
            step = attempts.step(outcome, time.monotonic() >= deadline)
            if step.move:
                self._move(conn.generation)
            if step.error is not None:
                raise step.error
            if step.done:
                return step.response
            if step.delay:
                time.sleep(min(step.delay, max(0.0, deadline - time.monotonic())))

    def transaction(self) -> Txn:
        """``client.transaction().when(Value("k") == "v").then(ops.put("k", "w")).commit()``."""
        return Txn(self)

    # -- watch ---------------------------------------------------------------------------------
    def watch(self, key: ops.Bytes, range_end: ops.Bytes | None = None, **options: Any) -> Watch:
        """etcd's Watch: an iterator of responses for ``key`` (``prefix=``, ``from_key=``,
        ``range_end``, ``start_revision=``, ``prev_kv=``, ``filters=``, ``progress_notify=``,
        ``fragment=``). Served by a watch hub; ``cancel()`` or a ``with`` block ends it."""
        from etcdz.watcher import create_request

        return self.watch_stream().watch(create_request(key, range_end, **options))

    def watch_prefix(self, prefix: ops.Bytes, **options: Any) -> Events:
        """Every event under ``prefix``, one at a time: ``for event in client.watch_prefix(p)``
        (options as ``watch``'s)."""
        from etcdz.watcher import Events

        return Events(self.watch(prefix, prefix=True, **options))

    def watch_key(self, key: ops.Bytes, **options: Any) -> Events:
        """Every event of one key, one at a time."""
        from etcdz.watcher import Events

        return Events(self.watch(key, **options))

    def lock(self, name: ops.Bytes, ttl: int = 60) -> SessionLock:
        """A lock with a session of its own: ``with client.lock("/locks/job", ttl=10):``
        (see ``etcdz.concurrency`` for locks sharing one session)."""
        from etcdz.concurrency import SessionLock

        return SessionLock(self, name, ttl)

    def watch_stream(self) -> WatchStream:
        """This client's one watch stream (started on first use), shared by all its watches."""
        from etcdz.watcher import WatchStream

        with self._stream_lock:
            if self._closed:
                raise EtcdzError("the client is closed")
            if self._watch_stream is None or (
                self._watch_stream.error is not None and not self._watch_stream.is_alive()
            ):  # a stream that ended with an error: the next watch tries afresh
                self._watch_stream = WatchStream(self)
                self._watch_stream.start()
            return self._watch_stream

    def request_progress(self) -> None:
        """Ask for a progress notification on every watch of this client."""
        if self._watch_stream is not None:
            self._watch_stream.request_progress()

    def watch_hubs(self) -> list[str]:
        """The watch hubs serving the cluster, as the members advertise them."""
        for _ in self.endpoints:
            urls = self.call(pb.watch.WatchHubsRequest()).urls
            if urls:
                return list(urls)
            self._move(self._endpoints.generation)
        return []

    # -- maintenance ---------------------------------------------------------------------------
    def alarm_disarm(
        self, member_id: int = 0, alarm: pb.maintenance.AlarmType | None = None
    ) -> pb.maintenance.AlarmResponse:
        """Clear an alarm; with no arguments every raised alarm, as clientv3's AlarmDisarm.
        The response lists what was cleared."""
        targets = disarm_targets(member_id, alarm)
        if targets is None:
            targets = self.alarms().alarms
        cleared = [self.call(disarm_request(m)) for m in targets]
        return disarmed(cleared) if cleared else self.alarms()

    def snapshot(self, path: str) -> SnapshotStatus:
        """Save a point-in-time copy of the member's backend to ``path`` (see etcdz.snapshot)."""
        from etcdz import snapshot

        return snapshot.save(self, path)

    # -- leases --------------------------------------------------------------------------------
    def lease(self, ttl: int, lease_id: int = 0) -> KeptLease:
        """A lease kept alive in the background until the ``with`` block ends (then revoked)."""
        from etcdz.lease import KeptLease

        if self._closed:
            raise EtcdzError("the client is closed")
        return KeptLease(self.clone(), ttl, lease_id)

    def get_stream(self, key: ops.Bytes, chunk_bytes: int = 1 << 20, **options: Any) -> Iterator[KeyValue]:
        """Every kv of a range, fetched in chunks of about ``chunk_bytes`` at one revision, so
        neither side ever builds the whole range as one message."""
        for chunk in self.range_stream(key, chunk_bytes=chunk_bytes, **options):
            yield from chunk.kvs

    def range_stream(
        self, key: ops.Bytes, chunk_bytes: int = 1 << 20, **options: Any
    ) -> Iterator[RangeStreamResponse]:
        request: RangeStreamRequest | None = RangeStreamRequest(
            range=ops.get(key, **options), chunk_bytes=chunk_bytes
        )
        while request is not None:
            chunk: RangeStreamResponse = self.call(request)
            yield chunk
            request = next_chunk(request, chunk)


class Txn:
    """Fluent builder: ``when(*compares).then(*ops).otherwise(*ops).commit()`` (with an
    ``AsyncClient``, ``await ....commit()``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._compare: list[Any] = []
        self._success: list[Any] = []
        self._failure: list[Any] = []

    def when(self, *compares: Any) -> Txn:
        self._compare.extend(compares)
        return self

    def then(self, *requests: Any) -> Txn:
        self._success.extend(requests)
        return self

    def otherwise(self, *requests: Any) -> Txn:
        self._failure.extend(requests)
        return self

    def commit(self) -> TxnResponse:
        return self._client.txn(self._compare, self._success, self._failure)
