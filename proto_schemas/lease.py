"""etcd's Lease API (rpc.proto) as etcdz messages (type ids 140-159), and the lease messages
inside a node (type ids 350-369).

Grants, revokes and checkpoints are raft entries (applied by every member); keep-alives and
time-to-live questions go to the leader's lease expirer, which alone keeps deadlines.
"""

from __future__ import annotations

from dataclasses import field

from proto_schemas.codec import message, wire
from proto_schemas.kv import ResponseHeader

MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL (seconds)


@message(140)
@wire
class LeaseGrantRequest:
    ttl: int
    id: int = 0  # 0: the server chooses


@message(141)
@wire
class LeaseGrantResponse:
    header: ResponseHeader
    id: int = 0
    ttl: int = 0
    error: str = ""


@message(142)
@wire
class LeaseRevokeRequest:
    id: int


@message(143)
@wire
class LeaseRevokeResponse:
    header: ResponseHeader


@message(144)
@wire
class LeaseCheckpoint:
    id: int
    remaining_ttl: int


@message(145)
@wire
class LeaseCheckpointRequest:
    checkpoints: list[LeaseCheckpoint] = field(default_factory=list)


@message(146)
@wire
class LeaseCheckpointResponse:
    header: ResponseHeader


@message(147)
@wire
class LeaseKeepAliveRequest:
    id: int


@message(148)
@wire
class LeaseKeepAliveResponse:
    header: ResponseHeader
    id: int = 0
    ttl: int = 0


@message(149)
@wire
class LeaseTimeToLiveRequest:
    id: int
    keys: bool = False


@message(150)
@wire
class LeaseTimeToLiveResponse:
    header: ResponseHeader
    id: int = 0
    ttl: int = -1  # -1: the lease does not exist (expired or revoked)
    granted_ttl: int = 0
    keys: list[bytes] = field(default_factory=list)


@message(151)
@wire
class LeaseLeasesRequest:
    pass


@message(152)
@wire
class LeaseStatus:
    id: int


@message(153)
@wire
class LeaseLeasesResponse:
    header: ResponseHeader
    leases: list[LeaseStatus] = field(default_factory=list)


# -- inside a node -----------------------------------------------------------------------------


@message(350)
@wire
class LeaseEvent:
    """A lease change the backend applied, for the lease expirer: granted, revoked, or
    checkpointed (``remaining`` 0 then clears an earlier checkpoint)."""

    id: int
    ttl: int = 0
    remaining: int = 0
    revoked: bool = False
    checkpointed: bool = False


@message(351)
@wire
class LeaseEvents:
    """Lease changes applied up to ``index``: from the apply worker after each batch, or the
    whole table from the backend when the lease expirer starts (``initial``)."""

    index: int
    events: list[LeaseEvent] = field(default_factory=list)
    initial: bool = False


@message(352)
@wire
class LeaseTableRequest:
    """Lease expirer -> backend at start: every lease, with the consistent index."""


@message(353)
@wire
class LeaseCall:
    """Gateway -> lease expirer: a keep-alive or time-to-live question (leader only); from the
    raft core, a follower's (``LeaseQuery``)."""

    read_id: int
    request: LeaseKeepAliveRequest | LeaseTimeToLiveRequest
    reply_to: str = "gateway"  # the actor whose inbox gets the answer (a ReadResult)


@message(354)
@wire
class LeaseRead:
    """Lease expirer -> backend: answer a time-to-live with the expirer's remaining TTL
    (the backend knows the granted TTL and the keys)."""

    read_id: int
    request: LeaseTimeToLiveRequest
    remaining: int  # -1: the expirer does not know the lease
    reply_to: str = "gateway"  # the call's (LeaseCall.reply_to)


@message(355)
@wire
class LeaseQuery:
    """A follower's gateway passes a client's keep-alive or time-to-live to the leader on the
    leader's peer port, as etcd's followers do (leasehttp on the peer URLs): member-to-member
    calls travel on the peer mesh (authenticated by its Curve keys when set), and the follower
    has checked the client's auth itself, so the call carries no client token or user."""

    cluster_id: int
    from_: int
    query_id: int
    request: LeaseKeepAliveRequest | LeaseTimeToLiveRequest


@message(356)
@wire
class LeaseAnswer:
    """The leader's answer to a ``LeaseQuery``: an encoded ``LeaseKeepAliveResponse``,
    ``LeaseTimeToLiveResponse`` or ``ErrorResponse``."""

    query_id: int
    member_id: int
    body: bytes
