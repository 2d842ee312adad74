"""Messages between the actors of one node (never seen by clients). Type ids 300-399.

The pipeline of a write: gateway ``Propose`` -> raft core ``Persist`` -> WAL writer
``Persisted`` -> raft core ``Apply`` -> apply worker ``ApplyBatch`` -> MVCC backend ``Results``
-> gateway (and ``ApplyDone`` -> apply worker). Entry payloads are ``InternalRequest`` bytes,
encoded once by the gateway and decoded once by the backend; the committed entries themselves
are encoded once by the raft core and decoded once by the backend (``Committed``): the apply
worker orders them by the indexes ``Apply`` names and passes the bytes on.

A read: gateway ``ReadRequest`` (the reads of one turn of its loop as one ``ReadBatch``) ->
MVCC backend ``ReadResult`` (``ReadResults``) -> gateway.
"""

from __future__ import annotations

from dataclasses import field

from proto_schemas.auth import (
    AuthDisableRequest,
    AuthEnableRequest,
    AuthenticateRequest,
    AuthState,
    AuthStatusRequest,
    RoleAddRequest,
    RoleDeleteRequest,
    RoleGetRequest,
    RoleGrantPermissionRequest,
    RoleListRequest,
    RoleRevokePermissionRequest,
    TokenGranted,
    UserAddRequest,
    UserChangePasswordRequest,
    UserDeleteRequest,
    UserGetRequest,
    UserGrantRoleRequest,
    UserListRequest,
    UserRevokeRoleRequest,
)
from proto_schemas.codec import encode, message, wire
from proto_schemas.errors import ErrorCode
from proto_schemas.kv import CompactionRequest, DeleteRangeRequest, PutRequest, TxnRequest
from proto_schemas.lease import LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest
from proto_schemas.maintenance import AlarmRequest
from proto_schemas.raft import Entry, HardState, RaftMessage, Snapshot


@message(300)
@wire
class InternalRequest:
    """The payload of a normal raft entry: a client write and the id its result is routed by.
    ``user`` is who proposed it (None: the node itself), checked against the auth store at
    ``auth_revision``; applied under a newer one, it is checked again. ``client_id`` (0: none),
    ``seq`` and ``acked`` name the write in its session, so that a second copy of it in the
    log is answered without being applied again (actors/mvcc/sessions.py)."""

    request_id: int
    request: (
        PutRequest
        | DeleteRangeRequest
        | TxnRequest
        | CompactionRequest
        | LeaseGrantRequest
        | LeaseRevokeRequest
        | LeaseCheckpointRequest
        | AlarmRequest
        | AuthEnableRequest
        | AuthDisableRequest
        | AuthStatusRequest
        | AuthenticateRequest
        | UserAddRequest
        | UserGetRequest
        | UserDeleteRequest
        | UserChangePasswordRequest
        | UserGrantRoleRequest
        | UserRevokeRoleRequest
        | UserListRequest
        | RoleAddRequest
        | RoleGetRequest
        | RoleDeleteRequest
        | RoleGrantPermissionRequest
        | RoleRevokePermissionRequest
        | RoleListRequest
    )
    user: str | None = None
    auth_revision: int = 0
    client_id: int = 0
    seq: int = 0
    acked: int = 0


@message(301)
@wire
class Propose:
    """Client writes for the raft core; ``request_ids[i]`` is the id inside ``data[i]``, kept
    beside the opaque payload so a failed proposal can be answered without decoding it."""

    data: list[bytes]
    request_ids: list[int]


@message(302)
@wire
class ProposeFailed:
    request_ids: list[int]
    code: ErrorCode


@message(303)
@wire
class ReadIndexRequest:
    read_id: int


@message(304)
@wire
class ReadIndexResponse:
    read_id: int
    index: int = 0
    code: ErrorCode | None = None


@message(305)
@wire
class RaftStatus:
    member_id: int
    cluster_id: int
    term: int
    leader: int
    commit: int
    applied: int
    is_learner: bool = False
    leader_peer_urls: list[str] = field(default_factory=list)  # where lease calls are passed on (LeaseQuery)


@message(306)
@wire
class Persist:
    """Entries and hard state to make durable, and messages to release once they are."""

    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState | None = None
    messages: list[RaftMessage] = field(default_factory=list)
    snapshot: Snapshot | None = None  # installed from the leader: saved before the entries
    generation: int = 0  # the raft core's, as in its ``WalLoad`` (see actors/wal/core.py)
    seq: int = 0  # counts the core's Persists, echoed in ``Persisted`` (actors/raft/persisting.py)


@message(307)
@wire
class Persisted:
    last_index: int
    last_term: int
    messages: list[RaftMessage] = field(default_factory=list)
    generation: int = 0  # of the batch's last ``Persist``
    seq: int = 0  # of the batch's last ``Persist``: every one up to it is durable


@message(308)
@wire
class WalLoad:
    """A raft core starting: send me the log (``WalState``). Its ``generation`` is random:
    ``Persist`` of any other (a dead predecessor's, still queued) is dropped from then on."""

    generation: int = 0


@message(309)
@wire
class WalState:
    member_id: int
    cluster_id: int
    hard_state: HardState
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None


@message(310)
@wire
class Apply:
    """Committed entries from the raft core: ``committed`` is an encoded ``Committed`` (empty:
    none) holding entries ``first`` to ``last``."""

    committed: bytes = b""
    first: int = 0
    last: int = 0
    restored: int = 0  # a snapshot brought the backend to this index: skip what it covers
    resync: bool = False  # the answer to ``ApplyFrom``: every ``Apply`` before it is stale

    @classmethod
    def of(cls, entries: list[Entry], restored: int = 0, resync: bool = False) -> Apply:
        if not entries:
            return cls(restored=restored, resync=resync)
        raw = encode(Committed(entries=entries))
        first, last = entries[0].index, entries[-1].index
        return cls(committed=raw, first=first, last=last, restored=restored, resync=resync)


@message(311)
@wire
class ApplyBatch:
    committed: list[bytes]  # encoded ``Committed``, one after the other in the log


@message(375)
@wire
class Committed:
    entries: list[Entry]


@message(312)
@wire
class ApplyResult:
    request_id: int
    body: bytes


@message(313)
@wire
class ApplyDone:
    """The backend applied a batch (its results went straight to the gateway as ``Results``,
    its lease events to the lease expirer): the apply worker may send the next."""

    applied_index: int


@message(314)
@wire
class Results:
    applied_index: int
    results: list[ApplyResult] = field(default_factory=list)
    db_size: int = -1
    revision: int = 0  # the backend's revision after these (0: not known)
    auth: AuthState | None = None
    tokens: list[TokenGranted] = field(default_factory=list)


@message(315)
@wire
class Applied:
    index: int


@message(316)
@wire
class ReadRequest:
    read_id: int
    body: bytes
    raft_term: int = 0
    reply_to: str = "gateway"  # the actor whose inbox gets the ReadResult (raft: peers' HashQuery)


@message(317)
@wire
class ReadResult:
    read_id: int
    body: bytes


@message(376)
@wire
class ReadBatch:
    """The reads a gateway sends its backend in one turn of its loop, as one message: a message
    costs each end more than the read (docs/performance.md)."""

    reads: list[ReadRequest]


@message(377)
@wire
class ReadResults:
    """The answers to one ``ReadBatch``."""

    results: list[ReadResult]


@message(318)
@wire
class BackendStateRequest:
    """Asked by the apply worker at start (``reply_to="apply"``) and by the gateway for status."""

    read_id: int = 0
    reply_to: str = "gateway"
    sync: bool = False  # make everything applied durable first (before a snapshot)


@message(319)
@wire
class BackendState:
    read_id: int
    consistent_index: int
    revision: int
    compact_revision: int
    db_size: int
    db_size_in_use: int
    auth: AuthState | None = None  # for the gateway: at its start and after a snapshot install


@message(370)
@wire
class MetricSample:
    name: str  # the family name, or with _bucket/_sum/_count for a histogram
    labels: list[str] = field(default_factory=list)  # name, value, name, value, ...
    value: float | int = 0


@message(371)
@wire
class MetricFamily:
    name: str
    kind: str  # counter, gauge, histogram
    help: str = ""
    samples: list[MetricSample] = field(default_factory=list)


@message(372)
@wire
class MetricsReport:
    """An actor's metrics as they are now, sent to the node's metrics process every second."""

    actor: str
    families: list[MetricFamily] = field(default_factory=list)


@message(373)
@wire
class ActorStarted:
    """An actor (re)started while its neighbours run on. To the raft core, from the gateway
    and the lease expirer: send me where raft is (its status goes out on a change only, and
    they must not wait for the next one). From the raft core, to the apply worker (tell me the
    applied index again) and the gateway (read index rounds asked of the old one are lost);
    from the backend, to the gateway (reads sent to the old one are lost)."""

    actor: str


@message(374)
@wire
class ApplyFrom:
    """The apply worker, started while the raft core ran on (or at the node's start), to the
    raft core: the backend holds everything up to ``index - 1``; send the committed entries
    from ``index`` on again (``Apply`` with ``resync``), then go on as before."""

    index: int
