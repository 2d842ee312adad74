"""The watch hub's logic, without sockets or a clock: watchers, the live window, catch-up.

Rules (etcd's watch guarantees):
- Every watcher has a cursor: the next revision it needs. Revisions are contiguous (every
  revision carries at least one event), so a watcher's stream is ordered, unique and gap-free
  as long as the cursor only ever moves to just past what was handed to it.
- The hub keeps a *window* of recent revisions, contiguous from ``window_start`` to
  ``revision``, filled from the backend's live stream. A live batch that does not continue the
  window (a PUB/SUB drop, a backend restart, a snapshot install) restarts the window at the
  batch; a heartbeat past ``revision`` empties it. Watchers whose cursor is below the window
  catch up from history (``WatchHistoryRequest``, one in flight, from the lowest cursor) before
  anything newer is sent to them: the gap is resynced, never skipped.
- All events of one revision go in one response, unless the watcher asked for fragments and
  the revision is larger than ``max_response_bytes``. A response's header revision is the
  revision the watcher is complete up to, so a progress notification never runs ahead.
- A slow client: when its connection's queue is full the shell hands back what it could not
  send (``stalled``); the watchers' cursors go back to the first undelivered revision and the
  stream rests for ``stall_retry_s``. Nothing is buffered per watcher beyond that queue; a
  watcher that fell behind the window reads history like a late starter.
- A watcher whose cursor is below the compacted revision is cancelled with
  ``compact_revision`` and etcd's reason.
- Bounds, so that no client grows the hub without limit: at most ``max_streams`` streams (a
  new one beyond gets ``etcdserver: too many requests``) and ``max_watchers_per_stream``
  watchers per stream (a create beyond is answered created + canceled with that reason). The
  replies a stalled stream holds (``control``) are kept under ``max_queued_bytes``, a ping's
  answer replacing the one before, and creates being checked count as watchers. A client that
  never reads yet keeps pinging or creating overflows its stream: the queued replies give way
  to one notice per watch (those created and those being checked), cancelled with
  ``SLOW_STREAM`` as the reason, which it reads once it reads at all; until then it is
  *overflowed* and its requests go unanswered (but pings), so the queue cannot grow again.
  (etcd keeps a slow watcher "unsynced" and resends later, and stops reading a stream whose
  replies are not read; so does this hub while the client reads at all: its cursors rewind,
  nothing is buffered per watcher.)
- Events are matched to watchers through an interval index (``index.py``): the cost of a
  revision is its events' matches, not the number of watchers times its events.
- An idle hub (no watcher, no create being checked) unsubscribes from the live stream. The
  member's answer to a create's check carries its revision, which is then "now" for the watch;
  the live stream, subscribed again from the check on, continues it or (a gap) starts a new
  window above it.
- A stream is answered in the order it asked, as etcd answers one: creates are checked
  alongside one another (the member answers them in order), a cancel or progress request
  behind creates being checked waits for them, and so does whatever comes after it (at most
  ``MAX_DEFERRED`` requests; beyond, ``too many requests``).
- Auth: a watch is created only once a member said its token may read the watched range
  (``AuthCheckRequest``, sent whether or not auth is enabled: the hub cannot know). A refusal
  answers created + canceled with the member's error as the reason, as etcd does; a check
  unanswered for ``history_timeout_s`` (a member restarting) is asked again, for as long as
  the client's stream lives.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.watch.index import WatchIndex
from proto_schemas.auth import AuthCheckRequest, AuthCheckResponse
from proto_schemas.errors import TEXTS, ErrorCode, ErrorResponse, error_response
from proto_schemas.kv import EventType, ResponseHeader
from proto_schemas.watch import (
    AUTO_WATCH_ID,
    CANCELED_COMPACTED,
    DUPLICATE_WATCH_ID,
    PROGRESS_ALL,
    Event,
    EventBatch,
    FilterType,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchHistoryRequest,
    WatchHistoryResponse,
    WatchPing,
    WatchPong,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

SLOW_STREAM = "etcdz: watch stream not read (too many replies queued): its watches were canceled"
TOO_MANY = TEXTS[ErrorCode.TOO_MANY_REQUESTS]
MAX_DEFERRED = 1024  # requests of one stream waiting behind creates being checked


@dataclass
class Watcher:
    id: int
    key: bytes
    range_end: bytes
    cursor: int  # next revision this watcher needs
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False
    fragment: bool = False
    sent_since_progress: bool = False

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
    watchers: dict[int, Watcher] = field(default_factory=dict)
    control: list[tuple[int, Any]] = field(default_factory=list)  # replies to resend first
    resting_until: float = 0.0
    next_id: int = 1
    control_bytes: int = 0  # the size of ``control``, about
    overflowed: bool = False  # its watches were cancelled for a full queue; unread since
    checking: int = 0  # its creates waiting for a member's word (see _Check)
    deferred: list[tuple[int, Any, str]] = field(default_factory=list)  # requests behind a check
    foreign: bool = False  # its client means another cluster (see WatchPing)


@dataclass(frozen=True)
class _Check:
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


class HubCore:
    def __init__(
        self,
        *,
        max_response_bytes: int = 1 << 20,
        window_revisions: int = 20_000,
        progress_interval_s: float = 600.0,
        stream_idle_s: float = 10.0,
        stall_retry_s: float = 0.05,
        history_timeout_s: float = 5.0,
        cluster_id: int = 0,
        member_id: int = 0,
        hub_id: str = "",
        max_streams: int = 10_000,
        max_watchers_per_stream: int = 10_000,
        max_queued_bytes: int = 4 << 20,
    ) -> None:
        self.hub_id = hub_id
        self.max_streams = max_streams
        self.max_watchers_per_stream = max_watchers_per_stream
        self.max_queued_bytes = max_queued_bytes
        self.index: WatchIndex[tuple[bytes, int]] = WatchIndex()  # (route, watch id)
        self._overflowing: set[bytes] = set()  # streams whose queued replies passed the bound
        self.overflows = 0  # streams whose watches were cancelled for an unread, full queue
        self.max_response_bytes = max_response_bytes
        self.window_revisions = window_revisions
        self.progress_interval_s = progress_interval_s
        self.stream_idle_s = stream_idle_s
        self.stall_retry_s = stall_retry_s
        self.history_timeout_s = history_timeout_s
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.revision: int | None = None  # every revision <= this one has been seen
        self.compact_revision = 0
        self.window: dict[int, list[Event]] = {}  # revision -> its events
        self.window_start = 1
        self.streams: dict[bytes, Stream] = {}
        self._early: list[tuple[bytes, int, WatchCreateRequest]] = []  # before the revision is known
        self._history_asked_at: float | None = None
        self._history_not_before = 0.0
        self._stripped: dict[int, Event] = {}  # id(event) -> the event without prev_kv
        self._next_progress: float | None = None
        self._headers: dict[int, ResponseHeader] = {}
        self._checks: dict[int, _Check] = {}
        self._check_ids = itertools.count(1)
        self.out = Outbox()
        self.foreign_batches = 0  # event batches of another cluster, dropped

    # -- the backend's live stream ------------------------------------------------------------
    def live(self, batch: EventBatch, now: float) -> None:
        if batch.cluster_id and self.cluster_id and batch.cluster_id != self.cluster_id:
            self.foreign_batches += 1  # another cluster's event stream: never served
            return
        self.compact_revision = max(self.compact_revision, batch.compact_revision)
        if self.revision is None:
            self.revision = batch.first_revision - 1
            self.window_start = batch.first_revision
            self._create_early(now)
        if batch.revision <= self.revision:
            return  # seen already (a replayed or duplicated batch)
        if batch.first_revision > self.revision + 1:
            # A gap (or a heartbeat past what we have): what came in between is read from
            # history by whoever needs it.
            self.window.clear()
            self.window_start = batch.first_revision
            self.revision = batch.first_revision - 1
        by_revision: dict[int, list[Event]] = {}
        for event in batch.events:
            if event.kv.mod_revision > self.revision:
                by_revision.setdefault(event.kv.mod_revision, []).append(event)
        self.window.update(by_revision)
        self.revision = batch.revision
        while len(self.window) > self.window_revisions:
            self.window.pop(self.window_start, None)
            self.window_start += 1
        self.deliver(now)

    @property
    def watching(self) -> bool:
        """Whether the live events are needed: by a watcher, or to learn the first revision."""
        return self.revision is None or any(stream.watchers for stream in self.streams.values())

    @property
    def listening(self) -> bool:
        """Whether the hub should receive the live stream at all: while watching, and from the
        moment a watch is asked for (so the stream flows by the time it is created). An idle
        hub drops its subscription and costs its member nothing per write."""
        return self.watching or bool(self._checks) or bool(self._early)

    def skip(self, first_revision: int, revision: int, compact_revision: int) -> None:
        """A live batch while nobody watches (see ``watching``): note how far the backend got and
        keep none of its events. An idle hub then costs a member almost nothing per write; a
        watcher created later from an older revision reads those from history."""
        self.compact_revision = max(self.compact_revision, compact_revision)
        if self.revision is not None and revision <= self.revision:
            return
        self.window.clear()
        self.revision = revision
        self.window_start = revision + 1

    def history(self, resp: WatchHistoryResponse, now: float) -> None:
        """Events ``resp.start_revision..resp.revision`` for the watchers catching up."""
        self._history_asked_at = None
        if resp.revision < resp.start_revision:  # the backend has nothing newer yet
            self._history_not_before = now + self.stall_retry_s
        self.compact_revision = max(self.compact_revision, resp.compact_revision)
        by_revision: dict[int, list[Event]] = {}
        for event in resp.events:
            by_revision.setdefault(event.kv.mod_revision, []).append(event)
        for stream in self.streams.values():
            if stream.resting_until > now:
                continue
            for w in list(stream.watchers.values()):
                if w.cursor < self.compact_revision:
                    self._cancel_compacted(stream, w)
                elif resp.start_revision <= w.cursor <= resp.revision and w.cursor < self.window_start:
                    revs = range(w.cursor, resp.revision + 1)
                    self._send_events(stream, w, [(r, by_revision.get(r, [])) for r in revs], resp.revision)
        self.deliver(now)

    def ask_history_again(self, now: float) -> None:
        """The hub just logged in: a history read refused for want of a token is asked again
        now rather than after ``history_timeout_s`` (an answer to the old one is harmless:
        events only go to watchers whose cursor is in the answer's range)."""
        self._history_asked_at = None
        self._history_not_before = now
        self.deliver(now)

    # -- clients ------------------------------------------------------------------------------
    def client(self, route: bytes, msg_id: int, request: Any, now: float, token: str = "") -> None:
        stream = self.streams.get(route)
        if stream is None:
            if len(self.streams) >= self.max_streams:
                self.out.to_client.append((route, msg_id, error_response(ErrorCode.TOO_MANY_REQUESTS)))
                return
            stream = self.streams[route] = Stream(route, now)
        stream.last_heard = now
        if isinstance(request, WatchPing) and request.cluster_id and self.cluster_id:
            stream.foreign = request.cluster_id != self.cluster_id
        if stream.foreign:  # a client of another cluster: refused, every time it asks
            detail = f"watch hub serves cluster {self.cluster_id:x}"
            self._reply(stream, msg_id, error_response(ErrorCode.CLUSTER_ID_MISMATCH, detail))
            return
        if isinstance(request, WatchPing):
            if stream.control:  # stalled: only the latest answer is worth keeping
                kept = [(r, b) for r, b in stream.control if not isinstance(b, WatchPong)]
                stream.control, stream.control_bytes = kept, sum(_reply_size(b) for _, b in kept)
            pong = WatchPong(revision=self.revision or 0, hub_id=self.hub_id, cluster_id=self.cluster_id)
            self._reply(stream, msg_id, pong)
            return
        if stream.overflowed:
            return  # not read since its watches were cancelled: it is told so once it reads
        if _must_wait(stream, request):
            # Answered in order, as etcd answers a stream: after the creates being checked.
            if len(stream.deferred) >= MAX_DEFERRED:
                self._reply(stream, msg_id, error_response(ErrorCode.TOO_MANY_REQUESTS))
            else:
                stream.deferred.append((msg_id, request, token))
            return
        self._serve(stream, msg_id, request, now, token)

    def _serve(self, stream: Stream, msg_id: int, request: Any, now: float, token: str) -> None:
        route = stream.route
        if not isinstance(request, WatchRequest):
            self._reply(stream, msg_id, error_response(ErrorCode.UNKNOWN_OP, type(request).__name__))
            return
        inner = request.request
        if isinstance(inner, WatchCreateRequest):
            if len(stream.watchers) + stream.checking >= self.max_watchers_per_stream:
                self._refuse(stream, inner, TOO_MANY)
            else:
                self._ask(_Check(route, inner, token, now))
        elif isinstance(inner, WatchCancelRequest):
            self._drop(stream, inner.watch_id)  # (a create being checked: the cancel waited for it)
            self._reply(stream, 0, self._response(inner.watch_id, self.revision or 0, canceled=True))
        elif isinstance(inner, WatchProgressRequest):
            done = [w.cursor - 1 for w in stream.watchers.values()]
            at = min([*done, self.revision or 0])
            self._reply(stream, 0, self._response(PROGRESS_ALL, at))
        self.deliver(now)

    def checked(self, check_id: int, answer: Any, now: float) -> None:
        """A member's answer to the auth check of a watch create."""
        held = self._checks.pop(check_id, None)
        if held is None:
            return
        route, req = held.route, held.request
        stream = self.streams.get(route)
        if stream is None:
            return
        stream.checking -= 1
        if isinstance(answer, AuthCheckResponse) and self.revision is None and self.foreign_batches:
            self._refuse(stream, req, "etcdz: the watch hub's event stream belongs to another cluster")
        elif isinstance(answer, AuthCheckResponse):
            if not self.watching and self.revision is not None:
                # Idle, the hub heard no live stream: the member's revision as it answered is
                # "now" for this watch (a heartbeat from the gateway); what the stream later
                # brings beyond a gap is read from history.
                self.skip(0, answer.header.revision, 0)
            if self.revision is None:
                self._early.append((route, 0, req))
            else:
                self._create(stream, req, now)
        else:
            reason = answer.message if isinstance(answer, ErrorResponse) else TEXTS[ErrorCode.INTERNAL]
            self._refuse(stream, req, reason)
        while stream.deferred and not stream.overflowed and not _behind_checks(stream, stream.deferred[0][1]):
            msg_id, request, token = stream.deferred.pop(0)
            self._serve(stream, msg_id, request, now, token)
        self.deliver(now)

    def _ask(self, check: _Check) -> None:
        check_id = next(self._check_ids)
        self._checks[check_id] = check
        stream = self.streams.get(check.route)
        if stream is not None:
            stream.checking += 1
        req = check.request
        self.out.to_backend.append(
            (check_id, AuthCheckRequest(token=check.token, key=req.key, range_end=req.range_end))
        )

    def is_check(self, request_id: int) -> bool:
        return request_id in self._checks

    def _forget_checks(self, which: Callable[[_Check], bool]) -> list[_Check]:
        """Drop the checks ``which`` picks (their answers will be ignored); the dropped ones."""
        dropped = [c for c in self._checks.values() if which(c)]
        if dropped:
            self._checks = {i: c for i, c in self._checks.items() if not which(c)}
            for check in dropped:
                stream = self.streams.get(check.route)
                if stream is not None:
                    stream.checking -= 1
        return dropped

    def _refuse(self, stream: Stream, req: WatchCreateRequest, reason: str) -> None:
        refused = self._response(req.watch_id, self.revision or 0, created=True, canceled=True)
        self._reply(stream, 0, _replace(refused, cancel_reason=reason))

    def _create(self, stream: Stream, req: WatchCreateRequest, now: float) -> None:
        assert self.revision is not None
        watch_id = req.watch_id
        if watch_id == AUTO_WATCH_ID:
            while stream.next_id in stream.watchers:
                stream.next_id += 1
            watch_id = stream.next_id
            stream.next_id += 1
        elif watch_id in stream.watchers:
            dup = self._response(watch_id, self.revision, created=True, canceled=True)
            self._reply(stream, 0, _replace(dup, cancel_reason=DUPLICATE_WATCH_ID))
            return
        if len(stream.watchers) >= self.max_watchers_per_stream:
            self._refuse(stream, req, TOO_MANY)
            return
        filters = set(req.filters)
        w = Watcher(
            id=watch_id,
            key=req.key,
            range_end=req.range_end,
            cursor=req.start_revision if req.start_revision > 0 else self.revision + 1,
            prev_kv=req.prev_kv,
            no_put=FilterType.NOPUT in filters,
            no_delete=FilterType.NODELETE in filters,
            progress_notify=req.progress_notify,
            fragment=req.fragment,
        )
        self._reply(stream, 0, self._response(watch_id, self.revision, created=True))
        if w.cursor < self.compact_revision:
            self._cancel_compacted(stream, w)
            return
        stream.watchers[watch_id] = w
        self.index.add((stream.route, watch_id), w.key, w.range_end)

    def _create_early(self, now: float) -> None:
        early, self._early = self._early, []
        for route, _, req in early:
            stream = self.streams.get(route)
            if stream is not None:
                self._create(stream, req, now)

    def stalled(self, route: bytes, unsent: list[tuple[int, Any]], now: float) -> None:
        """The shell could not send these (the client's queue is full): rewind and rest."""
        stream = self.streams.get(route)
        if stream is None:
            return
        stream.resting_until = now + self.stall_retry_s
        control: list[tuple[int, Any]] = []
        for reply_to, body in unsent:
            if isinstance(body, WatchResponse) and body.events:
                w = stream.watchers.get(body.watch_id)
                if w is not None:
                    w.cursor = min(w.cursor, body.events[0].kv.mod_revision)
            elif isinstance(body, WatchResponse) and not body.created and not body.canceled:
                continue  # a progress notification: a later one will say as much
            else:
                control.append((reply_to, body))
        stream.control = control + stream.control
        stream.control_bytes += sum(_reply_size(b) for _, b in control)
        if stream.control_bytes > self.max_queued_bytes:
            self._overflowing.add(route)

    def gone(self, route: bytes) -> None:
        stream = self.streams.pop(route, None)
        if stream is not None:
            for watch_id in stream.watchers:
                self.index.remove((route, watch_id))
            self._forget_checks(lambda c: c.route == route)

    def reading(self, route: bytes) -> None:
        """A send to ``route`` went out: its client reads again, an overflow later is a new one."""
        stream = self.streams.get(route)
        if stream is not None:
            stream.overflowed = False

    def _drop(self, stream: Stream, watch_id: int) -> None:
        if stream.watchers.pop(watch_id, None) is not None:
            self.index.remove((stream.route, watch_id))

    def bound(self) -> None:
        """Bound the streams whose queued replies passed ``max_queued_bytes`` (see ``_bound``)."""
        while self._overflowing:
            stream = self.streams.get(self._overflowing.pop())
            if stream is not None:
                self._bound(stream)

    def _bound(self, stream: Stream) -> None:
        """Keep a stalled stream's queued replies under ``max_queued_bytes``: past it, they give
        way to one ``SLOW_STREAM`` cancel notice per watch (``created`` too where the client was
        not yet told of it) and the stream is overflowed until its client reads (``reading``)."""
        if stream.control_bytes <= self.max_queued_bytes:
            return
        self.overflows += 1
        stream.overflowed = True
        untold = {  # watches whose "created" is still queued: said together with the end
            b.watch_id
            for _, b in stream.control
            if isinstance(b, WatchResponse) and b.created and not b.canceled
        }
        ends = [(watch_id, watch_id in untold) for watch_id in stream.watchers]
        for watch_id, _ in ends:
            self._drop(stream, watch_id)
        checking = self._forget_checks(lambda c: c.route == stream.route)
        stream.deferred.clear()  # asked while it was not reading: unanswered, as what follows
        early = [req for route, _, req in self._early if route == stream.route]
        self._early = [e for e in self._early if e[0] != stream.route]
        ends += [(req.watch_id, True) for req in [*(c.request for c in checking), *early]]
        notices = []
        for watch_id, created in ends:
            body = self._response(watch_id, self.revision or 0, created=created, canceled=True)
            notices.append((0, _replace(body, cancel_reason=SLOW_STREAM)))
        stream.control = notices
        stream.control_bytes = 0  # see _reply_size
        self.out.overflowed.append((stream.route, len(notices)))

    # -- time ---------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for route in [r for r, s in self.streams.items() if now - s.last_heard > self.stream_idle_s]:
            self.gone(route)
        if self._history_asked_at is not None and now - self._history_asked_at > self.history_timeout_s:
            self._history_asked_at = None  # lost: ask again
        for check_id in [i for i, c in self._checks.items() if now - c.asked > self.history_timeout_s]:
            check = self._checks.pop(check_id)
            stream = self.streams.get(check.route)
            if stream is not None:
                stream.checking -= 1
                self._ask(dataclasses.replace(check, asked=now))
        if self._next_progress is None:
            self._next_progress = now + self.progress_interval_s
        elif now >= self._next_progress and self.revision is not None:
            self._next_progress = now + self.progress_interval_s
            for stream in self.streams.values():
                for w in stream.watchers.values():
                    if w.progress_notify and w.cursor == self.revision + 1 and not w.sent_since_progress:
                        self._reply(stream, 0, self._response(w.id, self.revision))
                    w.sent_since_progress = False
        self.deliver(now)

    # -- delivery -----------------------------------------------------------------------------
    def deliver(self, now: float) -> None:
        """Send every watcher what the window has for it; ask history for those below it."""
        self.bound()
        if self.revision is None:
            return
        lowest: int | None = None
        due: list[tuple[Stream, Watcher]] = []  # watchers the window has something for
        for stream in self.streams.values():
            if stream.resting_until > now:
                continue
            if stream.control:
                control, stream.control, stream.control_bytes = stream.control, [], 0
                for reply_to, body in control:
                    self.out.to_client.append((stream.route, reply_to, body))
            for w in list(stream.watchers.values()):
                if w.cursor > self.revision:
                    continue
                if w.cursor < self.compact_revision:
                    self._cancel_compacted(stream, w)
                elif w.cursor >= self.window_start:
                    due.append((stream, w))
                else:
                    lowest = w.cursor if lowest is None else min(lowest, w.cursor)
        if due:
            matched = self._matched(min(w.cursor for _, w in due))
            for stream, w in due:
                mine = [(r, events) for r, events in matched.get((stream.route, w.id), []) if r >= w.cursor]
                self._send_events(stream, w, mine, self.revision)
        self._stripped.clear()
        if lowest is not None and self._history_asked_at is None and now >= self._history_not_before:
            self._history_asked_at = now
            self.out.to_backend.append((0, WatchHistoryRequest(start_revision=lowest)))

    def _matched(self, first: int) -> dict[tuple[bytes, int], list[tuple[int, list[Event]]]]:
        """The window's events from revision ``first`` on, per watcher whose range holds their
        key (found through the index), by revision in order."""
        matched: dict[tuple[bytes, int], list[tuple[int, list[Event]]]] = {}
        assert self.revision is not None
        for revision in range(first, self.revision + 1):
            by_ref: dict[tuple[bytes, int], list[Event]] = {}
            for event in self.window.get(revision, ()):
                for ref in self.index.match(event.kv.key):
                    by_ref.setdefault(ref, []).append(event)
            for ref, events in by_ref.items():
                matched.setdefault(ref, []).append((revision, events))
        return matched

    def _send_events(
        self, stream: Stream, w: Watcher, revisions: list[tuple[int, list[Event]]], upto: int
    ) -> None:
        """Hand ``w`` its events of ``revisions`` (in order, from its cursor; revisions without
        any of its events may be left out) and move the cursor past ``upto``: whole revisions
        per response, fragments only when asked."""
        pending: list[Event] = []
        size = 0
        for _, events in revisions:
            mine = [self._without_prev(e) if not w.prev_kv else e for e in events if w.wants(e)]
            if not mine:
                continue
            rev_size = sum(event_size(e) for e in mine)
            if pending and size + rev_size > self.max_response_bytes:
                self._events_response(stream, w, pending, pending[-1].kv.mod_revision)
                pending, size = [], 0
            if w.fragment and rev_size > self.max_response_bytes:
                self._fragments(stream, w, mine)
                continue
            pending.extend(mine)
            size += rev_size
        if pending:
            self._events_response(stream, w, pending, upto)
        w.cursor = upto + 1

    def _without_prev(self, e: Event) -> Event:
        if e.prev_kv is None:
            return e
        stripped = self._stripped.get(id(e))
        if stripped is None:
            stripped = self._stripped[id(e)] = _replace(e, prev_kv=None)
        return stripped

    def _events_response(self, stream: Stream, w: Watcher, events: list[Event], complete_to: int) -> None:
        """``complete_to``: the header revision, up to which ``w`` has everything once this is read."""
        w.sent_since_progress = True
        self.out.to_client.append((stream.route, 0, self._response(w.id, complete_to, events=events)))

    def _fragments(self, stream: Stream, w: Watcher, events: list[Event]) -> None:
        chunk: list[Event] = []
        size = 0
        chunks: list[list[Event]] = []
        for e in events:
            if chunk and size + event_size(e) > self.max_response_bytes:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(e)
            size += event_size(e)
        chunks.append(chunk)
        rev = events[-1].kv.mod_revision
        for i, part in enumerate(chunks):
            body = self._response(w.id, rev, events=part, fragment=i < len(chunks) - 1)
            self.out.to_client.append((stream.route, 0, body))
        w.sent_since_progress = True

    def _cancel_compacted(self, stream: Stream, w: Watcher) -> None:
        self._drop(stream, w.id)
        body = self._response(w.id, self.revision or 0, canceled=True)
        body = _replace(body, compact_revision=self.compact_revision, cancel_reason=CANCELED_COMPACTED)
        self._reply(stream, 0, body)

    def _response(self, watch_id: int, revision: int, **fields: Any) -> WatchResponse:
        header = self._headers.get(revision)
        if header is None:  # one header object per revision: the shell encodes it once
            if len(self._headers) > 64:
                self._headers.clear()
            header = ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id, revision=revision)
            self._headers[revision] = header
        return WatchResponse(header=header, watch_id=watch_id, **fields)

    def _reply(self, stream: Stream, reply_to: int, body: Any) -> None:
        if stream.control:
            stream.control.append((reply_to, body))  # keep replies in order behind a stall
            stream.control_bytes += _reply_size(body)
            if stream.control_bytes > self.max_queued_bytes:
                self._overflowing.add(stream.route)  # bounded at the next delivery, not mid-loop
        else:
            self.out.to_client.append((stream.route, reply_to, body))

    def take_outbox(self) -> Outbox:
        out, self.out = self.out, Outbox()
        return out

    @property
    def watcher_count(self) -> int:
        return sum(len(s.watchers) for s in self.streams.values())


@dataclass
class Batch:
    """One send to one client: ``body`` carries ``items`` (what goes back to ``stalled`` if the
    send fails)."""

    route: bytes
    reply_to: int
    body: Any
    items: list[tuple[int, Any]]


RESPONSE_OVERHEAD = 48


def batched(to_client: list[tuple[bytes, int, Any]], max_bytes: int) -> list[Batch]:
    """The outbox as sends: per route, consecutive responses (``in_reply_to`` 0) share one
    ``WatchResponses`` of about ``max_bytes`` at most (a larger response goes alone); replies
    to a request go alone. Order within a route is kept; routes are independent."""
    by_route: dict[bytes, list[tuple[int, Any]]] = {}
    for route, reply_to, body in to_client:
        by_route.setdefault(route, []).append((reply_to, body))
    sends: list[Batch] = []
    for route, items in by_route.items():
        run: list[tuple[int, Any]] = []
        size = 0
        for reply_to, body in items:
            if reply_to or not isinstance(body, WatchResponse):
                sends += _send_of(route, run)
                sends.append(Batch(route, reply_to, body, [(reply_to, body)]))
                size = 0
                continue
            n = RESPONSE_OVERHEAD + sum(event_size(e) for e in body.events)
            if run and size + n > max_bytes:
                sends += _send_of(route, run)
                size = 0
            run.append((reply_to, body))
            size += n
        sends += _send_of(route, run)
    return sends


def _send_of(route: bytes, run: list[tuple[int, Any]]) -> list[Batch]:
    """The send for a run of responses (emptied): alone if it is one, else together."""
    items = list(run)
    run.clear()
    if not items:
        return []
    if len(items) == 1:
        return [Batch(route, items[0][0], items[0][1], items)]
    return [Batch(route, 0, WatchResponses(responses=[b for _, b in items]), items)]


def event_size(e: Event) -> int:
    size = 32 + len(e.kv.key) + len(e.kv.value)
    if e.prev_kv is not None:
        size += len(e.prev_kv.key) + len(e.prev_kv.value)
    return size


def _must_wait(stream: Stream, request: Any) -> bool:
    """Whether a newly arrived ``request`` must wait to be served: behind requests already
    waiting, or behind creates being checked (unless it is a create itself: checked alongside
    them, answered in order by the member)."""
    return isinstance(request, WatchRequest) and (bool(stream.deferred) or _behind_checks(stream, request))


def _behind_checks(stream: Stream, request: WatchRequest) -> bool:
    """Whether ``request`` waits for the creates of ``stream`` being checked."""
    return bool(stream.checking) and not isinstance(request.request, WatchCreateRequest)


def _reply_size(body: Any) -> int:
    """About what a queued reply costs (events are never queued: a stall rewinds them). The
    notices of watches cancelled for a full queue are owed and bounded by the watchers a stream
    may have (checks included): they do not count."""
    if isinstance(body, WatchResponse) and body.cancel_reason == SLOW_STREAM:
        return 0
    if isinstance(body, WatchResponse):
        return RESPONSE_OVERHEAD + len(body.cancel_reason) + sum(event_size(e) for e in body.events)
    return RESPONSE_OVERHEAD


def _replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)
