"""etcd's unary API, written once for both clients.

Each method builds one request and returns ``self.call(request)``: the blocking ``Client``'s
``call`` returns the response, ``AsyncClient``'s is a coroutine, so there the same methods
return awaitables (``await client.get("k")``). Calls made of several requests (streams,
alarm disarm, keep-alive) are each client's own.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import zmq

import proto_schemas as pb  # a protocol module is imported by the first call that uses it
from etcdz import ops
from etcdz._calls import Endpoints
from etcdz.auth import AuthApi
from proto_schemas.kv import (
    CompactionRequest,
    CompactionResponse,
    DeleteRangeResponse,
    HashKVRequest,
    HashKVResponse,
    PutResponse,
    RangeResponse,
    RangeStreamRequest,
    RangeStreamResponse,
    StatusRequest,
    StatusResponse,
    TxnResponse,
)

if TYPE_CHECKING:
    import proto_schemas.auth
    import proto_schemas.cluster
    import proto_schemas.lease
    import proto_schemas.maintenance


class Settings:
    """What both clients are made of: endpoints, timeouts, credentials, Curve keys."""

    def __init__(
        self,
        endpoints: str | list[str] = "tcp://127.0.0.1:2379",
        timeout: float = 7.0,
        dial_timeout: float = 2.0,
        watch_endpoints: str | list[str] | None = None,
        user: str | None = None,
        password: str | None = None,
        server_key: str | None = None,
        client_key: str | None = None,
        token: str = "",
    ) -> None:
        """``timeout``: each call's deadline (seconds), failover included; ``dial_timeout``: how
        long a call waits for a connection to one member before trying the next.
        ``watch_endpoints``: watch hubs to use instead of those the members advertise, for a
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
        self._endpoints = Endpoints(endpoints)
        self.curve = curve_keys(server_key, client_key)
        self.user = user
        self._password = password or ""
        self._token = token
        self._need_login = user is not None
        hubs = watch_endpoints or []
        self.watch_endpoints = [hubs] if isinstance(hubs, str) else list(hubs)
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self.cluster_id = 0  # as the members' answers say (0: not heard yet)

    @property
    def endpoints(self) -> list[str]:
        return self._endpoints.urls

    @property
    def endpoint(self) -> str:
        """The member calls go to now."""
        return self._endpoints.current

    def secure(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a Curve client as this client is (before it connects)."""
        if self.curve is not None:
            server, public, secret = self.curve
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server, public, secret

    def login_request(self) -> Any:
        return pb.auth.AuthenticateRequest(name=self.user or "", password=self._password)

    @staticmethod
    def token_of(response: Any) -> str:
        return response.token if isinstance(response, pb.auth.AuthenticateResponse) else ""


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


class RequestApi(AuthApi):
    """Mixed into both clients: KV, lease, cluster and maintenance requests (auth: ``AuthApi``)."""

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

    def compact(self, revision: int, physical: bool = False) -> CompactionResponse:
        return self.call(CompactionRequest(revision=revision, physical=physical))

    def status(self) -> StatusResponse:
        return self.call(StatusRequest())

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        return self.call(HashKVRequest(revision=revision))

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

    def defragment(self) -> pb.maintenance.DefragmentResponse:
        """Reclaim the space compaction freed, on the member this client talks to (one member:
        the others keep theirs until asked)."""
        return self.call(pb.maintenance.DefragmentRequest(), timeout=max(self.timeout, 60.0))

    timeout: float

    # -- leases --------------------------------------------------------------------------------
    def lease_grant(self, ttl: int, lease_id: int = 0) -> pb.lease.LeaseGrantResponse:
        """Grant a lease of ``ttl`` seconds (raised to the cluster's minimum, 1.5 election
        timeouts); ``lease_id`` 0 lets the cluster choose. Attach keys with ``put(..., lease=)``."""
        return self.call(pb.lease.LeaseGrantRequest(ttl=ttl, id=lease_id))

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

    def member_add(
        self,
        peer_urls: list[str],
        is_learner: bool = False,
        *,
        auto_promote: bool = True,
        name: str = "",
        cluster_token: str = "",
    ) -> pb.cluster.MemberAddResponse:
        """Add a member (a voter, or a learner that replicates but does not vote until
        promoted: by the leader once it has caught up, unless ``auto_promote`` is false);
        start it afterwards with ``--initial-cluster-state existing``. ``name`` and
        ``cluster_token``, when given, are checked first (a name in use, another cluster)."""
        return self.call(
            pb.cluster.MemberAddRequest(
                peer_urls=list(peer_urls),
                is_learner=is_learner,
                auto_promote=auto_promote,
                name=name,
                cluster_token=cluster_token,
            )
        )

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


def disarm_targets(
    member_id: int, alarm: pb.maintenance.AlarmType | None
) -> list[pb.maintenance.AlarmMember] | None:
    """The alarms an AlarmDisarm clears; None: every raised alarm (ask the cluster which)."""
    kind = pb.maintenance.AlarmType.NONE if alarm is None else alarm
    if member_id == 0 and kind == pb.maintenance.AlarmType.NONE:
        return None
    return [pb.maintenance.AlarmMember(member_id=member_id, alarm=kind)]


def disarm_request(m: pb.maintenance.AlarmMember) -> pb.maintenance.AlarmRequest:
    return pb.maintenance.AlarmRequest(
        action=pb.maintenance.AlarmAction.DEACTIVATE, member_id=m.member_id, alarm=m.alarm
    )


def disarmed(responses: list[pb.maintenance.AlarmResponse]) -> pb.maintenance.AlarmResponse:
    """One answer for the disarms: the last one's header, every alarm cleared."""
    cleared = [a for r in responses for a in r.alarms]
    return pb.maintenance.AlarmResponse(header=responses[-1].header, alarms=cleared)


def next_chunk(request: RangeStreamRequest, chunk: RangeStreamResponse) -> RangeStreamRequest | None:
    """The request for the chunk after ``chunk`` (None: that was the last), pinned to the first
    chunk's revision so the whole range is read at one revision."""
    if not chunk.resume_key:
        return None
    rng = request.range
    if rng.revision == 0:
        rng = dataclasses.replace(rng, revision=chunk.header.revision)
    return dataclasses.replace(request, range=rng, resume_key=chunk.resume_key)
