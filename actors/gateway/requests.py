"""What the gateway knows of a request before acting on it: the kinds it serves, their classes, their checks.

Rules (etcd's v3 server):
- Only the requests in ``CLIENT_REQUESTS`` are served; anything else gets ``UNKNOWN_OP``.
- Writes (Put, DeleteRange, Txn, Compaction, lease grants and revokes, alarms, membership and
  auth changes) go through raft. Every txn does, read-only ones included: one ordered path keeps
  a txn's compares and reads atomic with respect to every write, at the cost of a log entry.
- A learner (etcd's rule, ``isRPCSupportedForLearner``) refuses writes, linearizable reads and
  lease calls (``refused_on_learner``).
- A streamed range's ``resume_key`` must lie inside its range (``bad request`` otherwise): the
  permission check is on the range, so the read must stay in it.
- An answer is told to be an error from its first bytes, without decoding it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, cast

from actors.mvcc.txn import in_range, validate_txn
from proto_schemas.auth import AUTH_REQUESTS, AuthCheckRequest
from proto_schemas.cluster import CLUSTER_CHANGES, CLUSTER_REQUESTS, PeerBatch, ReadIndexQuery
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.errors import ErrorCode, ErrorResponse, EtcdzError, error_response
from proto_schemas.internal import Propose, ReadBatch, ReadIndexRequest, ReadRequest
from proto_schemas.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    HashKVRequest,
    PutRequest,
    RangeRequest,
    RangeStreamRequest,
    StatusRequest,
    TxnRequest,
)
from proto_schemas.lease import (
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseQuery,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
)
from proto_schemas.maintenance import AlarmRequest, DefragmentRequest, SnapshotRequest
from proto_schemas.watch import HubAnnounce, WatchHistoryRequest, WatchHubsRequest

# What a hub holding the members' key may do without a login: a hub reads every key anyway.
HUB_REQUESTS = (HubAnnounce, WatchHubsRequest, WatchHistoryRequest)
VERSION = "3.5.0"  # the etcd API version etcdz speaks
CLIENT_REQUESTS = (
    RangeRequest,
    PutRequest,
    DeleteRangeRequest,
    TxnRequest,
    CompactionRequest,
    RangeStreamRequest,
    StatusRequest,
    HashKVRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseLeasesRequest,
    LeaseKeepAliveRequest,
    WatchHistoryRequest,
    WatchHubsRequest,
    HubAnnounce,
    AlarmRequest,
    DefragmentRequest,
    SnapshotRequest,
    AuthCheckRequest,
    *CLUSTER_REQUESTS,
    *AUTH_REQUESTS,
)
# Answered by the leader's lease expirer (deadlines live there only), forwarded if need be.
LEASE_CALLS = (LeaseKeepAliveRequest, LeaseTimeToLiveRequest)


@dataclass(slots=True)
class Pending:
    route: bytes
    msg_id: int
    deadline: float
    write: bool
    body: bytes = b""  # the client's encoded request (reads: forwarded to the backend as is)
    request: Any = None
    op: str = ""  # for the request metrics
    user: str | None = None  # who asked (None: the node itself), checked at ``auth_revision``
    auth_revision: int = 0
    issued: str = ""  # a login's new token, handed out once the login is applied
    # A write's session (its client's, or the gateway's own): see actors/mvcc/sessions.py.
    client_id: int = 0
    seq: int = 0
    acked: int = 0
    proposal: bytes = b""  # the encoded entry, once proposed (a copy is the same bytes)
    copies: int = 0  # proposed again after a raft core restart or a leader change


ToLeader = PeerBatch | ReadIndexQuery | LeaseQuery  # what a follower's gateway sends the leader's peer port


@dataclass(slots=True)
class Outbox:
    """What one batch produced; the shell sends each list once."""

    to_client: list[tuple[bytes, int, Any]] = field(default_factory=list)  # route, reply-to, body
    to_raft: list[Any] = field(default_factory=list)
    to_mvcc: list[Any] = field(default_factory=list)
    to_lease: list[Any] = field(default_factory=list)
    # For the leader's peer port (a follower's writes as raft's proposal, its ReadIndex query,
    # its lease calls), each with what goes to the local raft core should that port not take
    # it, or None: the call then times out (see ``Routing.take_outbox``)
    at_leader: list[tuple[ToLeader, Propose | ReadIndexRequest | None]] = field(default_factory=list)
    logs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (event, fields) to log


def batched_reads(to_mvcc: list[Any]) -> list[Any]:
    """``to_mvcc`` with each run of two or more reads in one ``ReadBatch`` (the backend answers
    in order, so nothing overtakes anything)."""
    out: list[Any] = []
    run: list[ReadRequest] = []
    for msg in [*to_mvcc, None]:
        if isinstance(msg, ReadRequest):
            run.append(msg)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else ReadBatch(reads=run))
            run = []
        if msg is not None:
            out.append(msg)
    return out


WRITES = (
    PutRequest,
    DeleteRangeRequest,
    CompactionRequest,
    TxnRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    AlarmRequest,
    *CLUSTER_CHANGES,
    *AUTH_REQUESTS,
)


def request_op(request: Any) -> str:
    return type(request).__name__.removesuffix("Request")


# Every encoded ErrorResponse starts with these bytes (the tag, the field count, the type id),
# and no other message does: an answer is told apart without decoding it.
_ERROR_HEAD = cast(
    bytes,
    os.path.commonprefix(  # bytes in, bytes out
        [
            encode(error_response(ErrorCode.BAD_REQUEST, "a")),
            encode(dataclasses.replace(error_response(ErrorCode.TIMEOUT), definite=True)),
        ]
    ),
)


def error_code(body: bytes) -> ErrorCode | None:
    """The error code of an encoded answer, None if it is not an error."""
    if not body.startswith(_ERROR_HEAD):
        return None
    try:
        answer = decode(body)
    except DecodeError:
        return ErrorCode.INTERNAL
    return answer.code if isinstance(answer, ErrorResponse) else None


def is_write(request: Any) -> bool:
    """A request that changes state (so a timeout leaves its outcome unknown)."""
    # Every txn goes through raft, read-only ones included: one ordered path keeps a txn's
    # compares and reads atomic with respect to every write, at the cost of a log entry.
    return isinstance(request, WRITES)


def refused_on_learner(request: Any) -> bool:
    return is_write(request) or is_linearizable(request) or isinstance(request, LEASE_CALLS)


def is_linearizable(request: Any) -> bool:
    if isinstance(request, LeaseLeasesRequest):
        return True
    if isinstance(request, RangeRequest):
        return not request.serializable
    if isinstance(request, RangeStreamRequest):
        return not request.range.serializable
    return False


def validate_request(request: Any, max_txn_ops: int) -> None:
    if isinstance(request, RangeRequest | PutRequest | DeleteRangeRequest) and not request.key:
        raise EtcdzError(ErrorCode.EMPTY_KEY)
    if isinstance(request, RangeStreamRequest):
        if not request.range.key:
            raise EtcdzError(ErrorCode.EMPTY_KEY)
        if request.chunk_bytes <= 0:
            raise EtcdzError(ErrorCode.BAD_REQUEST, "chunk_bytes must be positive")
        r = request.range
        if request.resume_key and not in_range(request.resume_key, r.key, r.range_end):
            # the permission check is on the range: a chunk must never start outside it
            raise EtcdzError(ErrorCode.BAD_REQUEST, "resume_key is outside the range")
    if isinstance(request, TxnRequest):
        validate_txn(request, max_txn_ops)
