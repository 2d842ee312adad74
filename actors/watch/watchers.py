"""The watch hub's records (cohorts of watches, streams, creates being checked, the outbox), costs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from proto_schemas.errors import TEXTS, ErrorCode
from proto_schemas.kv import EventType
from proto_schemas.watch import Event, WatchCreateRequest, WatchRequest, WatchResponse

SLOW_STREAM = "etcdz: watch stream not read (too many replies queued): its watches were canceled"
TOO_MANY = TEXTS[ErrorCode.TOO_MANY_REQUESTS]
MAX_DEFERRED = 1024  # requests of one stream waiting behind creates being checked
RESPONSE_OVERHEAD = 48


@dataclass(eq=False)  # one record per cohort, known by its identity (the index's reference)
class Cohort:
    """Watches of one stream that asked for the same range with the same filters and need the
    same next revision (``cursor``): one record, matched, filtered, sent and rewound once, and
    one ``SharedWatchResponse`` naming every id. A watch created from the revision a cohort of
    its kind is at joins it (10,000 watches of a key created while nothing was written are a
    handful of cohorts); one whose send failed apart from the others of its cohort leaves it
    (``Delivery.stalled``). A watch asking for progress notifications or fragments keeps a
    cohort of its own (its notifications and fragments are its own)."""

    route: bytes  # its stream's
    ids: dict[int, None]  # the watch ids, in the order they were created
    key: bytes
    range_end: bytes
    cursor: int  # next revision these watches need (while lagging: see ``Stream.lagging``)
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False
    fragment: bool = False
    sent_since_progress: bool = False

    @property
    def kind(self) -> tuple[bytes, bytes, bool, bool, bool] | None:
        """What a watch must have asked to join this cohort; None: it takes no one."""
        if self.progress_notify or self.fragment:
            return None
        return (self.key, self.range_end, self.prev_kv, self.no_put, self.no_delete)

    def wants(self, event: Event) -> bool:
        if (self.no_put and event.type == EventType.PUT) or (
            self.no_delete and event.type == EventType.DELETE
        ):
            return False
        return self.wants_key(event.kv.key)

    def wants_key(self, key: bytes) -> bool:
        if not self.range_end:
            return key == self.key
        if self.range_end == b"\0":
            return key >= self.key
        return self.key <= key < self.range_end


@dataclass
class Stream:
    route: bytes
    last_heard: float
    watchers: dict[int, Cohort] = field(default_factory=dict)  # watch id -> its cohort
    cohorts: dict[Cohort, None] = field(default_factory=dict)  # each once, oldest first
    joinable: dict[tuple[Any, ...], Cohort] = field(default_factory=dict)  # kind -> newest cohort
    control: list[tuple[int, Any]] = field(default_factory=list)  # replies to resend first
    resting_until: float = 0.0
    next_id: int = 1
    control_bytes: int = 0  # the size of ``control``, about
    overflowed: bool = False  # its watches were cancelled for a full queue; unread since
    checking: int = 0  # its creates waiting for a member's word (see Check)
    deferred: list[tuple[int, Any, str]] = field(default_factory=list)  # requests behind a check
    foreign: bool = False  # its client means another cluster (see WatchPing)
    serial: int = 0  # told in every pong: a stream made anew for a connection gets a new one
    shared: bool = False  # its client reads ``SharedWatchResponse`` (see WatchPing)
    # Cohorts that may not have everything up to the hub's ``head``: new, rewound, catching up.
    # The others are *synced*: complete up to ``head`` (their ``cursor`` is not kept up to
    # date), and a revision costs the hub only the synced cohorts it matches.
    lagging: dict[Cohort, None] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """A watch create waiting for a member's word on its token."""

    route: bytes
    request: WatchCreateRequest
    token: str
    asked: float


@dataclass
class Outbox:
    to_client: list[tuple[bytes, int, Any]] = field(default_factory=list)  # route, in_reply_to, body
    to_backend: list[tuple[int, Any]] = field(default_factory=list)  # (request id or 0, request)
    overflowed: list[tuple[bytes, int]] = field(default_factory=list)  # route, watches cancelled


def event_size(e: Event) -> int:
    size = 32 + len(e.kv.key) + len(e.kv.value)
    if e.prev_kv is not None:
        size += len(e.prev_kv.key) + len(e.prev_kv.value)
    return size


def must_wait(stream: Stream, request: Any) -> bool:
    """Whether a newly arrived ``request`` must wait to be served: behind requests already
    waiting, or behind creates being checked (unless it is a create itself: checked alongside
    them, answered in order by the member)."""
    return isinstance(request, WatchRequest) and (bool(stream.deferred) or behind_checks(stream, request))


def behind_checks(stream: Stream, request: WatchRequest) -> bool:
    """Whether ``request`` waits for the creates of ``stream`` being checked."""
    return bool(stream.checking) and not isinstance(request.request, WatchCreateRequest)


def reply_size(body: Any) -> int:
    """About what a queued reply costs (events are never queued: a stall rewinds them). The
    notices of watches cancelled for a full queue are owed and bounded by the watchers a stream
    may have (checks included): they do not count."""
    if isinstance(body, WatchResponse) and body.cancel_reason == SLOW_STREAM:
        return 0
    if isinstance(body, WatchResponse):
        return RESPONSE_OVERHEAD + len(body.cancel_reason) + sum(event_size(e) for e in body.events)
    return RESPONSE_OVERHEAD


def replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)
