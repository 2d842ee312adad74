"""etcd's Watch API (rpc.proto) as etcdz messages (type ids 160-179), and the event stream that
feeds the watch hubs (type ids 360-379).

A client talks to a watch hub, not to the gateway: it sends ``WatchRequest`` messages on one
connection (the stream) and receives ``WatchResponse`` messages whenever the hub has something
for one of the stream's watchers (``in_reply_to`` 0), plus ``WatchPong`` to its pings. Responses
that are ready together go out as one ``WatchResponses`` (a revision for 50 watchers of one
stream is one frame, not 50).

The MVCC backend publishes every committed revision in order as ``EventBatch`` on a PUB socket;
a hub subscribes, and reads what it missed (a gap, a late start) as ``WatchHistoryRequest``
through a member's gateway, like any serializable read.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import field

from proto_schemas.codec import message, wire
from proto_schemas.kv import EventType, KeyValue, ResponseHeader

AUTO_WATCH_ID = 0  # a create request with watch_id 0 lets the hub choose one
PROGRESS_ALL = -1  # etcd's watch id for a progress answer covering the whole stream
CANCELED_COMPACTED = "mvcc: required revision has been compacted"
DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"


class FilterType(enum.IntEnum):
    NOPUT = 0
    NODELETE = 1


@message(160)
@wire
class Event:
    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@message(161)
@wire
class WatchCreateRequest:
    key: bytes
    range_end: bytes = b""
    start_revision: int = 0  # 0: from the hub's current revision + 1
    progress_notify: bool = False
    filters: list[FilterType] = field(default_factory=list)
    prev_kv: bool = False
    watch_id: int = AUTO_WATCH_ID
    fragment: bool = False


@message(162)
@wire
class WatchCancelRequest:
    watch_id: int


@message(163)
@wire
class WatchProgressRequest:
    """Ask for a progress notification on every watcher of this stream."""


@message(164)
@wire
class WatchRequest:
    request: WatchCreateRequest | WatchCancelRequest | WatchProgressRequest


@message(165)
@wire
class WatchResponse:
    header: ResponseHeader
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False  # more fragments of this revision follow
    events: list[Event] = field(default_factory=list)


@message(171)
@wire
class SharedWatchResponse:
    """One response for several watchers of a stream: each of ``watch_ids`` gets ``response``
    (whose own ``watch_id`` is 0) as if it came alone. A put that many watchers of one stream
    see is then encoded, sent and decoded once, not once per watcher; only a client that said
    in its pings that it reads these gets them (``WatchPing.shared``)."""

    watch_ids: list[int]
    response: WatchResponse

    def each(self) -> list[WatchResponse]:
        """Each watcher's response, with a list of events of its own, as if it had come alone.
        Made by setting the slots (``_SLOT``), as the decoder builds messages: the frozen
        dataclass's ``__init__`` was most of a receiver's cost per watcher."""
        source = self.response
        fixed = [(_SLOT[f], getattr(source, f)) for f in _RESPONSE_FIELDS]  # once, not per watcher
        set_id, set_events, events, new = _SLOT["watch_id"], _SLOT["events"], source.events, object.__new__
        out = []
        for watch_id in self.watch_ids:
            resp = new(WatchResponse)
            for set_field, value in fixed:
                set_field(resp, value)
            set_id(resp, watch_id)
            set_events(resp, list(events))
            out.append(resp)
        return out


@message(170)
@wire
class WatchResponses:
    """Hub -> client: responses for the stream's watchers, in the order they were made."""

    responses: list[WatchResponse | SharedWatchResponse] = field(default_factory=list)

    def each(self) -> list[WatchResponse]:
        """Every watcher's response, a shared one given to each of its watchers in turn (each
        with a list of events of its own, as if it had come alone)."""
        out: list[WatchResponse] = []
        for r in self.responses:
            if isinstance(r, SharedWatchResponse):
                out.extend(r.each())
            else:
                out.append(r)
        return out


# A shared response's fields that each of its watchers' responses takes as they are
_RESPONSE_FIELDS = tuple(
    f.name for f in dataclasses.fields(WatchResponse) if f.name not in {"watch_id", "events"}
)
_SLOT = {f.name: WatchResponse.__dict__[f.name].__set__ for f in dataclasses.fields(WatchResponse)}


@message(166)
@wire
class WatchPing:
    """Client -> hub when the stream is idle: keeps the stream and proves the hub alive. The
    first one is the handshake: ``cluster_id`` (0: not known) is the cluster the client means;
    a hub of another cluster refuses the stream (``cluster ID mismatch``). ``shared``: the
    client reads ``SharedWatchResponse`` (every ping of a stream says the same)."""

    cluster_id: int = 0
    shared: bool = False


@message(167)
@wire
class WatchPong:
    """``hub_id`` changes when the hub restarts, ``stream`` when the hub no longer knows this
    connection (ZeroMQ connected again under the socket, or the hub dropped the stream for
    silence): either way its watchers are gone, and the client creates them again.
    ``cluster_id`` is the cluster the hub serves (0: not known yet), checked by the client."""

    revision: int = 0
    hub_id: str = ""
    cluster_id: int = 0
    stream: int = 0  # the hub's number for this connection's stream (0: a hub that has none)


@message(168)
@wire
class WatchHubsRequest:
    """Client -> gateway: which watch hubs serve this member's events?"""


@message(169)
@wire
class WatchHubsResponse:
    """The hubs that announced themselves to this member lately, and where this member
    publishes its events (for a hub on another host to subscribe)."""

    header: ResponseHeader
    urls: list[str] = field(default_factory=list)
    events_urls: list[str] = field(default_factory=list)


# -- feeding the hubs -------------------------------------------------------------------------
@message(360)
@wire
class EventBatch:
    """Backend -> hubs (PUB): every event of revisions ``first_revision..revision``, in order.
    With no events (``first_revision`` = ``revision`` + 1) it is a heartbeat saying which
    revision is current, so that an idle hub still notices what it missed."""

    first_revision: int
    revision: int
    compact_revision: int = 0
    events: list[Event] = field(default_factory=list)
    cluster_id: int = 0  # whose events these are: a hub drops another cluster's


@message(361)
@wire
class WatchHistoryRequest:
    """Hub -> gateway -> backend: committed events from ``start_revision`` on (whole revisions,
    about ``max_bytes`` of them, at least one revision)."""

    start_revision: int
    max_bytes: int = 1 << 20


@message(362)
@wire
class WatchHistoryResponse:
    """``events`` cover ``start_revision..revision`` completely (``revision`` < start: nothing
    new). A start below ``compact_revision`` gets no events: those revisions are gone."""

    header: ResponseHeader
    start_revision: int = 0
    revision: int = 0
    compact_revision: int = 0
    events: list[Event] = field(default_factory=list)


@message(363)
@wire
class HubAnnounce:
    """Hub -> gateway, every second: this hub serves watches at ``urls`` (as bound: never a
    port 0). ``name`` is a member's own hub's slot (``watch0``...), by which its member tells
    a hub that stopped announcing; ``cluster_id`` the cluster the hub believes it serves."""

    hub_id: str
    urls: list[str] = field(default_factory=list)
    name: str = ""
    cluster_id: int = 0
