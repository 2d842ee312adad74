"""etcd's Cluster and Maintenance membership messages (client-facing, type ids 120-139) and
the messages of the peer mesh and of membership inside a node (type ids 330-349).

A member is what ``etcdctl member list`` shows: id, name, peer and client URLs, learner flag.
The raft core owns the member table; it changes only by committed conf-change entries, whose
``context`` is an encoded ``MemberChange`` (who asked, and the member's new attributes).
"""

from __future__ import annotations

from dataclasses import field

from proto_schemas.codec import message, wire
from proto_schemas.errors import ErrorCode
from proto_schemas.kv import ResponseHeader
from proto_schemas.raft import RaftMessage, Snapshot


@message(120)
@wire
class Member:
    id: int
    name: str = ""  # empty until the member has started and published itself
    peer_urls: list[str] = field(default_factory=list)
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False
    auto_promote: bool = False  # a learner the leader promotes once it has caught up


@message(121)
@wire
class MemberListRequest:
    linearizable: bool = False


@message(122)
@wire
class MemberListResponse:
    header: ResponseHeader
    members: list[Member] = field(default_factory=list)


@message(123)
@wire
class MemberAddRequest:
    peer_urls: list[str]
    is_learner: bool = False
    # etcdz's own fields (etcd's request has none of them): a learner is promoted by the
    # leader once caught up unless ``auto_promote`` is false; a member adding itself
    # (``etcdz --join``) names itself and its cluster token, checked before anything changes.
    auto_promote: bool = True
    name: str = ""
    cluster_token: str = ""


@message(124)
@wire
class MemberAddResponse:
    header: ResponseHeader
    member: Member
    members: list[Member] = field(default_factory=list)


@message(125)
@wire
class MemberRemoveRequest:
    id: int


@message(126)
@wire
class MemberRemoveResponse:
    header: ResponseHeader
    members: list[Member] = field(default_factory=list)


@message(127)
@wire
class MemberUpdateRequest:
    id: int
    peer_urls: list[str]


@message(128)
@wire
class MemberUpdateResponse:
    header: ResponseHeader
    members: list[Member] = field(default_factory=list)


@message(129)
@wire
class MemberPromoteRequest:
    id: int


@message(130)
@wire
class MemberPromoteResponse:
    header: ResponseHeader
    members: list[Member] = field(default_factory=list)


@message(131)
@wire
class MoveLeaderRequest:
    target_id: int


@message(132)
@wire
class MoveLeaderResponse:
    header: ResponseHeader


CLUSTER_CHANGES = (
    MemberAddRequest,
    MemberRemoveRequest,
    MemberUpdateRequest,
    MemberPromoteRequest,
    MoveLeaderRequest,
)
CLUSTER_REQUESTS = (MemberListRequest, *CLUSTER_CHANGES)
# A member's client URLs hold its ZeroMQ endpoints (tcp://, ipc://) and, when it serves etcd's
# gRPC API, its gRPC ones (http://): each kind of client takes its own.
GRPC_SCHEMES = ("http://", "https://")


def zmq_urls(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(GRPC_SCHEMES)]


def grpc_urls(urls: list[str]) -> list[str]:
    return [u for u in urls if u.startswith(GRPC_SCHEMES)]


# -- inside a node and between raft cores -----------------------------------------------------


@message(330)
@wire
class MemberChange:
    """The context of a conf-change entry: the member's attributes after the change, and the
    id of the request that proposed it (0 when a member publishes itself), so that the member
    whose gateway holds that request answers it once the change is applied."""

    request_id: int
    member: Member
    auto: bool = False  # a promotion the leader decided (counted apart from requested ones)


@message(331)
@wire
class Membership:
    """The member table as of a log index: carried in the data of raft snapshots (on disk and
    sent to followers), so a member restarted or installed from a snapshot knows its peers."""

    members: list[Member] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


@message(332)
@wire
class ClusterCall:
    """A client's Cluster request, forwarded by the gateway to the raft core (which owns the
    member table); answered by a ``ReadResult`` with the same ``read_id``."""

    read_id: int
    request: (
        MemberListRequest
        | MemberAddRequest
        | MemberRemoveRequest
        | MemberUpdateRequest
        | MemberPromoteRequest
        | MoveLeaderRequest
    )


@message(333)
@wire
class PeerBatch:
    """Raft messages from one member to another, sent together. ``cluster_id`` guards against a
    member of another cluster dialling the wrong port (etcd checks X-Etcd-Cluster-ID)."""

    cluster_id: int
    from_: int
    from_urls: list[str] = field(default_factory=list)
    messages: list[RaftMessage] = field(default_factory=list)


@message(334)
@wire
class SnapshotChunk:
    """One piece of a snapshot on its way to a follower. The raft message (with the snapshot's
    metadata and the member table) travels in the last chunk, after all of the backend's data,
    so the follower steps it only once the backend holds the whole snapshot."""

    cluster_id: int
    from_: int
    snap_id: int
    seq: int
    pairs: list[bytes] = field(default_factory=list)  # backend keys and values, alternating
    done: RaftMessage | None = None


@message(335)
@wire
class PeerFaults:
    """Fault injection (tests and the nemesis), replacing the faults in force: drop every raft
    message to or from the ``blocked`` members, as a network partition would; drop
    ``drop_percent`` of the frames received from the others and hold the rest ``delay_ms``
    (a lossy, slow network)."""

    blocked: list[int] = field(default_factory=list)
    drop_percent: int = 0
    delay_ms: int = 0


@message(336)
@wire
class SaveSnapshot:
    """Raft core -> WAL writer: keep this snapshot (metadata + member table) and mark it in the
    WAL, then release the segments it covers."""

    snapshot: Snapshot


@message(337)
@wire
class SnapshotSaved:
    index: int


@message(338)
@wire
class SnapshotPull:
    """Raft core -> backend: the next piece of snapshot ``snap_id`` (the first pull opens a
    point-in-time view of the backend); ``close`` abandons it. Pull-driven, so a large
    backend never sits in a queue as a whole."""

    snap_id: int
    close: bool = False


@message(339)
@wire
class SnapshotPiece:
    snap_id: int
    seq: int
    index: int  # the backend's consistent index in this snapshot
    pairs: list[bytes] = field(default_factory=list)
    last: bool = False


@message(340)
@wire
class SnapshotInstalled:
    """Backend -> raft core: the snapshot's data replaced the backend atomically (or not)."""

    snap_id: int
    index: int = 0
    error: str = ""


@message(341)
@wire
class JoinQuery:
    """A member started with ``--initial-cluster-state existing`` and an empty data dir asks a
    peer which member it is (``member add`` chose the id) and which cluster it joins."""

    peer_urls: list[str]


@message(342)
@wire
class JoinInfo:
    cluster_id: int = 0
    member_id: int = 0
    error: str = ""


@message(348)
@wire
class HashQuery:
    """A member's corruption checker asks another member for its HashKV at ``revision``, on
    that member's peer port: member-to-member calls travel on the peer mesh (encrypted and
    authenticated by its Curve keys when set), never on client ports with a shared secret."""

    cluster_id: int
    from_: int
    query_id: int
    revision: int


@message(349)
@wire
class HashAnswer:
    """The asked member's answer: an encoded ``HashKVResponse`` or ``ErrorResponse`` (a
    compacted or future revision)."""

    query_id: int
    member_id: int
    body: bytes


@message(343)
@wire
class ReadIndexQuery:
    """A follower's gateway asks the leader's peer port for a linearizable read point for one
    batch of its reads, as its raft core would with raft's MsgReadIndex, one process hop less
    on each way: the leader confirms its leadership by a heartbeat round and answers with its
    commit index at the time the query arrived."""

    cluster_id: int
    from_: int
    query_id: int


@message(344)
@wire
class ReadIndexAnswer:
    """The leader's answer to a ``ReadIndexQuery``: the read point, or why there is none
    (``no leader``: its raft core has not started or knows no leader; ``leader changed``)."""

    query_id: int
    member_id: int
    index: int = 0
    code: ErrorCode | None = None
