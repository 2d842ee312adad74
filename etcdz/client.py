"""The etcdz client: one DEALER socket to one member at a time, failover across endpoints.

Each call sends ``[header, body]`` with a fresh ``msg_id`` and waits for the reply whose
``in_reply_to`` matches (late replies to abandoned calls are discarded). Failover rules:
- a *definite* failure that another member may not have (no leader, unavailable, stopping) or
  no reply at all, for a read: try the next endpoint, within the call's deadline;
- no reply to a *write*: raise ``RequestTimedOut(definite=False)`` — it may have been applied,
  so the SDK never retries it behind the caller's back.
With ``user`` and ``password`` the client logs in before its first call and again whenever a
member answers ``invalid auth token`` (expired, or issued before that member restarted), then
retries the call once: the refused call did not happen.
A client is safe to share between threads (calls are serialised by a lock).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:
    import proto_schemas.auth
    import proto_schemas.cluster
    import proto_schemas.lease
    import proto_schemas.maintenance
    import proto_schemas.watch
    from etcdz.lease import KeptLease
    from etcdz.snapshot import SnapshotStatus
    from etcdz.watcher import Watch, WatchStream

import proto_schemas as pb  # a protocol module is imported by the first call that uses it
from etcdz import ops
from etcdz.auth import AuthApi
from etcdz.errors import EtcdzError, RequestTimedOut, Unavailable, from_response
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.errors import RELOGIN, ErrorCode, ErrorResponse
from proto_schemas.kv import (
    CompactionRequest,
    CompactionResponse,
    DeleteRangeResponse,
    HashKVRequest,
    HashKVResponse,
    KeyValue,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RangeStreamRequest,
    RangeStreamResponse,
    ResponseHeader,
    StatusRequest,
    StatusResponse,
    TxnResponse,
)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:2379"
_NOT_SENT = object()  # the request never left: no connection to the endpoint
RETRY_ELSEWHERE = {ErrorCode.NO_LEADER, ErrorCode.UNAVAILABLE, ErrorCode.STOPPING}
# Requests that may change state: one whose answer is lost is never retried behind the caller's
# back. Named rather than listed as classes, so that a call imports only its own message's module.
WRITES = frozenset(
    {
        "PutRequest",
        "DeleteRangeRequest",
        "TxnRequest",
        "CompactionRequest",
        "LeaseGrantRequest",
        "LeaseRevokeRequest",
        "MemberAddRequest",
        "MemberRemoveRequest",
        "MemberUpdateRequest",
        "MemberPromoteRequest",
        "MoveLeaderRequest",
        "AlarmRequest",
    }
)


def is_write(request: Any) -> bool:
    """Whether ``request`` may change state (every auth request but the login does)."""
    cls = type(request)
    if cls.__module__ == "proto_schemas.auth":
        return cls.__name__ != "AuthenticateRequest"
    return cls.__name__ in WRITES


LOGIN_ATTEMPTS = 5  # a login refused as busy, or checked against a changed auth store, is retried
LOGIN_BACKOFF_S = 0.1


class Client(AuthApi):
    """A connection to an etcdz cluster.

    >>> with Client(["tcp://127.0.0.1:2379"]) as c:
    ...     c.put("greeting", "hello")
    ...     c.get("greeting").kvs[0].value
    """

    def __init__(
        self,
        endpoints: str | list[str] = DEFAULT_ENDPOINT,
        timeout: float = 7.0,
        dial_timeout: float = 2.0,
        watch_endpoints: str | list[str] | None = None,
        user: str | None = None,
        password: str | None = None,
        server_key: str | None = None,
        client_key: str | None = None,
        token: str = "",
    ) -> None:
        """``watch_endpoints``: watch hubs to use instead of those the members advertise, for a
        client that reaches the hubs at other addresses (published ports, a load balancer).
        ``user``/``password``: log in (needed once auth is enabled).
        ``server_key``: the members' public CurveZMQ certificate (a ``.key`` file): the
        connection is encrypted and the servers authenticated; ``client_key``: this client's
        ``.key_secret`` certificate, for members that accept only known clients (without it
        the client makes up a key pair). ``token``: a token obtained elsewhere (no login)."""
        self._options: dict[str, Any] = {
            "endpoints": endpoints,
            "timeout": timeout,
            "dial_timeout": dial_timeout,
            "watch_endpoints": watch_endpoints,
            "user": user,
            "password": password,
            "server_key": server_key,
            "client_key": client_key,
            "token": token,
        }
        self.curve = curve_keys(server_key, client_key)
        self.user = user
        self._password = password or ""
        self._token = token
        self._need_login = user is not None
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        hubs = watch_endpoints or []
        self.watch_endpoints = [hubs] if isinstance(hubs, str) else list(hubs)
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self._ctx = zmq.Context()
        self._sock: zmq.Socket[bytes] | None = None
        self._current = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stream_lock = threading.Lock()
        self._watch_stream: WatchStream | None = None
        self.cluster_id = 0  # as the members' answers say (0: not heard yet)

    # -- connection ------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    def _socket(self) -> zmq.Socket[bytes]:
        if self._sock is None:
            sock = self._ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            # Queue nothing for an endpoint we are not connected to: a request either reaches
            # a live connection or is known not to have been sent (and may go elsewhere).
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            self.secure(sock)
            sock.connect(self.endpoint)
            self._sock = sock
        return self._sock

    def _next_endpoint(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._current = (self._current + 1) % len(self.endpoints)

    def secure(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a Curve client as this client is (before it connects)."""
        if self.curve is not None:
            server, public, secret = self.curve
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server, public, secret

    def clone(self, **changes: Any) -> Client:
        """A new client with this one's settings (its own connection), ``changes`` applied."""
        return Client(**{**self._options, **changes})

    def close(self) -> None:
        if self._watch_stream is not None:
            self._watch_stream.close()
            self._watch_stream = None
        with self._lock:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None
            self._ctx.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one call path -----------------------------------------------------------------
    def call(self, request: Any, timeout: float | None = None) -> Any:
        """Send any etcdz request message and return its response message (or raise)."""
        body = encode(request)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        write = is_write(request)
        with self._lock:
            if self._need_login:
                self._login(deadline)
            try:
                return self._call(body, deadline, write)
            except EtcdzError as exc:
                if self.user is None or exc.code not in RELOGIN:
                    raise
            self._login(deadline)
            return self._call(body, deadline, write)

    def auth_token(self) -> str:
        """This client's token ("" without a user), logging in first if need be (what a watch
        stream sends to the hubs)."""
        with self._lock:
            if self._need_login:
                self._login(time.monotonic() + self.timeout)
            return self._token

    def relogin(self) -> None:
        """Forget the token (a hub refused it): the next call logs in again."""
        with self._lock:
            self._token = ""
            self._need_login = self.user is not None

    def _login(self, deadline: float) -> None:
        """Get a token; with auth disabled, go on without one (as clientv3 does)."""
        self._token = ""
        body = encode(pb.auth.AuthenticateRequest(name=self.user or "", password=self._password))
        for attempt in range(LOGIN_ATTEMPTS):
            try:
                response = self._call(body, deadline, write=False)
            except EtcdzError as exc:
                if exc.code == ErrorCode.AUTH_NOT_ENABLED:
                    break
                retry = exc.code in (ErrorCode.AUTH_OLD_REVISION, ErrorCode.TOO_MANY_REQUESTS)
                if not retry or attempt == LOGIN_ATTEMPTS - 1 or time.monotonic() >= deadline:
                    raise
                if exc.code == ErrorCode.TOO_MANY_REQUESTS:
                    time.sleep(min(LOGIN_BACKOFF_S * 2**attempt, max(0.0, deadline - time.monotonic())))
                continue
            if isinstance(response, pb.auth.AuthenticateResponse):
                self._token = response.token
            break
        self._need_login = False

    def _call(self, body: bytes, deadline: float, write: bool) -> Any:
        """One request, with failover (the lock held)."""
        tried = 0
        while True:
            tried += 1
            response = self._exchange(body, deadline)
            if response is _NOT_SENT:  # unreachable: safe to try elsewhere, writes too
                self._next_endpoint()
                if tried >= len(self.endpoints) or time.monotonic() >= deadline:
                    raise Unavailable(f"no endpoint reachable: {', '.join(self.endpoints)}")
                continue
            if response is None:  # sent, but nothing came back from this endpoint
                self._next_endpoint()
                if write:
                    raise RequestTimedOut(definite=False)
                if tried >= len(self.endpoints) or time.monotonic() >= deadline:
                    raise (
                        Unavailable(f"no reply from {', '.join(self.endpoints)}")
                        if tried > 1
                        else RequestTimedOut()
                    )
                continue
            header = getattr(response, "header", None)
            if isinstance(header, ResponseHeader) and header.cluster_id:
                self.cluster_id = header.cluster_id  # the hubs a watch uses must serve it
            if isinstance(response, ErrorResponse):
                if (
                    response.code in RETRY_ELSEWHERE
                    and tried < len(self.endpoints)
                    and time.monotonic() < deadline
                ):
                    self._next_endpoint()
                    continue
                raise from_response(response)
            return response

    def _exchange(self, body: bytes, deadline: float) -> Any | None:
        sock = self._socket()
        msg_id = next(self._ids)
        dial = min(self.dial_timeout, max(0.0, deadline - time.monotonic()))
        if not sock.poll(math.ceil(dial * 1000), zmq.POLLOUT):
            return _NOT_SENT
        try:
            sock.send_multipart(pack(body, msg_id=msg_id, token=self._token), zmq.NOBLOCK)
        except zmq.Again:
            return _NOT_SENT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(math.ceil(remaining * 1000)):
                return None
            frames = sock.recv_multipart()
            try:
                header, reply = unpack_header(frames)
                if header.in_reply_to != msg_id:
                    continue  # a late reply to an abandoned call
                return decode(reply)
            except DecodeError as exc:
                raise EtcdzError(f"malformed reply from {self.endpoint}: {exc}") from None

    # -- KV ----------------------------------------------------------------------------------
    def get(self, key: ops.Bytes, **options: Any) -> RangeResponse:
        """Range over ``key`` (``prefix=``, ``from_key=``, ``range_end=``, ``limit=``,
        ``revision=``, ``sort_order=``, ``sort_target=``, ``serializable=``, ``keys_only=``,
        ``count_only=``, min/max mod/create revision): etcd's Range."""
        return self.call(ops.get(key, **options))

    def put(self, key: ops.Bytes, value: ops.Bytes, **options: Any) -> PutResponse:
        """etcd's Put (``lease=``, ``prev_kv=``, ``ignore_value=``, ``ignore_lease=``)."""
        return self.call(ops.put(key, value, **options))

    def delete(self, key: ops.Bytes, **options: Any) -> DeleteRangeResponse:
        """etcd's DeleteRange (``prefix=``, ``from_key=``, ``range_end=``, ``prev_kv=``)."""
        return self.call(ops.delete(key, **options))

    def txn(
        self,
        compare: list[Any] | None = None,
        success: list[Any] | None = None,
        failure: list[Any] | None = None,
    ) -> TxnResponse:
        """etcd's Txn; see also ``transaction()`` for the fluent builder."""
        return self.call(ops.txn(compare, success, failure))

    def transaction(self) -> Txn:
        """``client.transaction().when(Value("k") == "v").then(ops.put("k", "w")).commit()``."""
        return Txn(self)

    def compact(self, revision: int, physical: bool = False) -> CompactionResponse:
        return self.call(CompactionRequest(revision=revision, physical=physical))

    def status(self) -> StatusResponse:
        return self.call(StatusRequest())

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        return self.call(HashKVRequest(revision=revision))

    # -- watch ---------------------------------------------------------------------------------
    def watch(self, key: ops.Bytes, range_end: ops.Bytes | None = None, **options: Any) -> Watch:
        """etcd's Watch: an iterator of responses for ``key`` (``prefix=``, ``from_key=``,
        ``range_end``, ``start_revision=``, ``prev_kv=``, ``filters=``, ``progress_notify=``,
        ``fragment=``). Served by a watch hub; ``cancel()`` or a ``with`` block ends it."""
        from etcdz.watcher import create_request

        return self.watch_stream().watch(create_request(key, range_end, **options))

    def watch_stream(self) -> WatchStream:
        """This client's one watch stream (started on first use), shared by all its watches."""
        from etcdz.watcher import WatchStream

        with self._stream_lock:
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
            with self._lock:
                self._next_endpoint()
        return []

    # -- maintenance ---------------------------------------------------------------------------
    def alarms(self) -> pb.maintenance.AlarmResponse:
        """Every raised alarm (``etcdzctl alarm list``)."""
        return self.call(pb.maintenance.AlarmRequest(action=pb.maintenance.AlarmAction.GET))

    def alarm_raise(self, member_id: int, alarm: pb.maintenance.AlarmType) -> pb.maintenance.AlarmResponse:
        return self.call(
            pb.maintenance.AlarmRequest(
                action=pb.maintenance.AlarmAction.ACTIVATE, member_id=member_id, alarm=alarm
            )
        )

    def alarm_disarm(
        self, member_id: int = 0, alarm: pb.maintenance.AlarmType | None = None
    ) -> pb.maintenance.AlarmResponse:
        """Clear an alarm; with no arguments every raised alarm, as clientv3's AlarmDisarm.
        The response lists what was cleared."""
        kind = pb.maintenance.AlarmType.NONE if alarm is None else alarm
        targets = [pb.maintenance.AlarmMember(member_id=member_id, alarm=kind)]
        if member_id == 0 and kind == pb.maintenance.AlarmType.NONE:
            targets = self.alarms().alarms
        cleared: list[pb.maintenance.AlarmMember] = []
        resp = None
        for m in targets:
            resp = self.call(
                pb.maintenance.AlarmRequest(
                    action=pb.maintenance.AlarmAction.DEACTIVATE, member_id=m.member_id, alarm=m.alarm
                )
            )
            cleared += resp.alarms
        if resp is None:
            return pb.maintenance.AlarmResponse(header=self.alarms().header)
        return pb.maintenance.AlarmResponse(header=resp.header, alarms=cleared)

    def defragment(self) -> pb.maintenance.DefragmentResponse:
        """Reclaim the space compaction freed, on the member this client talks to (one member:
        the others keep theirs until asked)."""
        return self.call(pb.maintenance.DefragmentRequest(), timeout=max(self.timeout, 60.0))

    def snapshot(self, path: str) -> SnapshotStatus:
        """Save a point-in-time copy of the member's backend to ``path`` (see etcdz.snapshot)."""
        from etcdz import snapshot

        return snapshot.save(self, path)

    # -- leases --------------------------------------------------------------------------------
    def lease_grant(self, ttl: int, lease_id: int = 0) -> pb.lease.LeaseGrantResponse:
        """Grant a lease of ``ttl`` seconds (raised to the cluster's minimum, 1.5 election
        timeouts); ``lease_id`` 0 lets the cluster choose. Attach keys with ``put(..., lease=)``."""
        return self.call(pb.lease.LeaseGrantRequest(ttl=ttl, id=lease_id))

    def lease(self, ttl: int, lease_id: int = 0) -> KeptLease:
        """A lease kept alive in the background until the ``with`` block ends (then revoked)."""
        from etcdz.lease import KeptLease

        return KeptLease(self.clone(), ttl, lease_id)

    def lease_revoke(self, lease_id: int) -> pb.lease.LeaseRevokeResponse:
        """End the lease now: its keys are deleted in one revision."""
        return self.call(pb.lease.LeaseRevokeRequest(id=lease_id))

    def lease_keep_alive_once(self, lease_id: int) -> pb.lease.LeaseKeepAliveResponse:
        """Renew the lease for its full TTL (answered by the leader's lease expirer)."""
        return self.call(pb.lease.LeaseKeepAliveRequest(id=lease_id))

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> pb.lease.LeaseTimeToLiveResponse:
        """Remaining and granted TTL (``ttl == -1``: the lease no longer exists), and with
        ``keys=True`` the keys attached to it."""
        return self.call(pb.lease.LeaseTimeToLiveRequest(id=lease_id, keys=keys))

    def leases(self) -> pb.lease.LeaseLeasesResponse:
        return self.call(pb.lease.LeaseLeasesRequest())

    # -- cluster -------------------------------------------------------------------------------
    def member_list(self) -> pb.cluster.MemberListResponse:
        return self.call(pb.cluster.MemberListRequest())

    def member_add(self, peer_urls: list[str], is_learner: bool = False) -> pb.cluster.MemberAddResponse:
        """Add a member (a voter, or a learner that replicates but does not vote until
        promoted); start it afterwards with ``--initial-cluster-state existing``."""
        return self.call(pb.cluster.MemberAddRequest(peer_urls=list(peer_urls), is_learner=is_learner))

    def member_remove(self, member_id: int) -> pb.cluster.MemberRemoveResponse:
        return self.call(pb.cluster.MemberRemoveRequest(id=member_id))

    def member_update(self, member_id: int, peer_urls: list[str]) -> pb.cluster.MemberUpdateResponse:
        return self.call(pb.cluster.MemberUpdateRequest(id=member_id, peer_urls=list(peer_urls)))

    def member_promote(self, member_id: int) -> pb.cluster.MemberPromoteResponse:
        return self.call(pb.cluster.MemberPromoteRequest(id=member_id))

    def move_leader(self, target_id: int) -> pb.cluster.MoveLeaderResponse:
        """Hand leadership to ``target_id``; must be sent to the current leader's endpoint
        (``etcdserver: not leader`` otherwise), as etcd's MoveLeader."""
        return self.call(pb.cluster.MoveLeaderRequest(target_id=target_id))

    def get_stream(self, key: ops.Bytes, chunk_bytes: int = 1 << 20, **options: Any) -> Iterator[KeyValue]:
        """Every kv of a range, fetched in chunks of about ``chunk_bytes`` at one revision, so
        neither side ever builds the whole range as one message."""
        for chunk in self.range_stream(key, chunk_bytes=chunk_bytes, **options):
            yield from chunk.kvs

    def range_stream(
        self, key: ops.Bytes, chunk_bytes: int = 1 << 20, **options: Any
    ) -> Iterator[RangeStreamResponse]:
        request = ops.get(key, **options)
        resume = b""
        while True:
            chunk: RangeStreamResponse = self.call(
                RangeStreamRequest(range=request, chunk_bytes=chunk_bytes, resume_key=resume)
            )
            yield chunk
            if not chunk.resume_key:
                return
            resume = chunk.resume_key
            if request.revision == 0:  # pin every later chunk to the first chunk's revision
                request = _with_revision(request, chunk.header.revision)


def curve_keys(server_key: str | None, client_key: str | None) -> tuple[bytes, bytes, bytes] | None:
    """(server public, own public, own secret) from certificate files, None without a server key."""
    if not server_key:
        return None
    import zmq.auth  # only a Curve client pays for it (it imports logging and more)

    try:
        server, _ = zmq.auth.load_certificate(server_key)
        if client_key:
            public, secret = zmq.auth.load_certificate(client_key)
            if secret is None:
                raise ValueError(f"{client_key} holds no secret key (give the .key_secret file)")
        else:
            public, secret = zmq.curve_keypair()
    except OSError as exc:
        raise ValueError(f"cannot read key file: {exc}") from None
    return server, public, secret


def _with_revision(request: RangeRequest, revision: int) -> RangeRequest:
    return dataclasses.replace(request, revision=revision)


class Txn:
    """Fluent builder: ``when(*compares).then(*ops).otherwise(*ops).commit()``."""

    def __init__(self, client: Client) -> None:
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
