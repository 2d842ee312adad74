"""The watch hub's logic, without sockets or a clock: clients' streams and their requests, bounds, time.

Its parts: ``watchers.py`` (the records), ``cohorts.py`` (watches kept as cohorts),
``delivery.py`` (the live window, catch-up and sending, with etcd's ordering guarantees),
``creates.py`` (auth checks of creates, creating watchers), ``batching.py`` (the outbox as
sends); this module puts them together.

Rules:
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
- An idle hub (no watcher, no create being checked) unsubscribes from the live stream.
- A stream is answered in the order it asked, as etcd answers one: creates are checked
  alongside one another (the member answers them in order), a cancel or progress request
  behind creates being checked waits for them, and so does whatever comes after it (at most
  ``MAX_DEFERRED`` requests; beyond, ``too many requests``).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from actors.watch import cohorts
from actors.watch.creates import Creates
from actors.watch.index import WatchIndex
from actors.watch.watchers import (
    MAX_DEFERRED,
    SLOW_STREAM,
    TOO_MANY,
    Check,
    Outbox,
    Stream,
    must_wait,
    replace,
    reply_size,
)
from proto_schemas.errors import ErrorCode, error_response
from proto_schemas.watch import (
    PROGRESS_ALL,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchPing,
    WatchPong,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
)


class HubCore(Creates):
    """The hub: its knobs, its clients' streams and requests, and time."""

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
        self.index = WatchIndex()
        self._overflowing = set()
        self._unsettled = {}
        self.overflows = 0  # streams whose watches were cancelled for an unread, full queue
        self.max_response_bytes = max_response_bytes
        self.window_revisions = window_revisions
        self.progress_interval_s = progress_interval_s
        self.stream_idle_s = stream_idle_s
        self.stall_retry_s = stall_retry_s
        self.history_timeout_s = history_timeout_s
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.revision = None
        self.head = 0  # every synced cohort has everything up to this revision
        self.compact_revision = 0
        self.window = {}
        self.window_start = 1
        self.streams = {}
        self._early = []
        self._history_asked_at = None
        self._history_not_before = 0.0
        self._stripped = {}
        self._next_progress: float | None = None
        self._headers = {}
        self._checks = {}
        self._check_ids = itertools.count(1)
        self._serials = itertools.count(1)
        self.out = Outbox()
        self.foreign_batches = 0

    # -- clients ------------------------------------------------------------------------------
    def client(self, route: bytes, msg_id: int, request: Any, now: float, token: str = "") -> None:
        stream = self.streams.get(route)
        if stream is None:
            if len(self.streams) >= self.max_streams:
                self.out.to_client.append((route, msg_id, error_response(ErrorCode.TOO_MANY_REQUESTS)))
                return
            stream = self.streams[route] = Stream(route, now, serial=next(self._serials))
        stream.last_heard = now
        if isinstance(request, WatchPing) and request.cluster_id and self.cluster_id:
            stream.foreign = request.cluster_id != self.cluster_id
        if stream.foreign:  # a client of another cluster: refused, every time it asks
            detail = f"watch hub serves cluster {self.cluster_id:x}"
            self._reply(stream, msg_id, error_response(ErrorCode.CLUSTER_ID_MISMATCH, detail))
            return
        if isinstance(request, WatchPing):
            stream.shared = request.shared
            if stream.control:  # stalled: only the latest answer is worth keeping
                kept = [(r, b) for r, b in stream.control if not isinstance(b, WatchPong)]
                stream.control, stream.control_bytes = kept, sum(reply_size(b) for _, b in kept)
            pong = WatchPong(
                revision=self.revision or 0,
                hub_id=self.hub_id,
                cluster_id=self.cluster_id,
                stream=stream.serial,
            )
            self._reply(stream, msg_id, pong)
            return
        if stream.overflowed:
            return  # not read since its watches were cancelled: it is told so once it reads
        if must_wait(stream, request):
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
                self._ask(Check(route, inner, token, now))
        elif isinstance(inner, WatchCancelRequest):
            self._drop(stream, inner.watch_id)  # (a create being checked: the cancel waited for it)
            self._reply(stream, 0, self._response(inner.watch_id, self.revision or 0, canceled=True))
        elif isinstance(inner, WatchProgressRequest):
            done = [cohorts.cursor(stream, w, self.head) - 1 for w in stream.cohorts]
            at = min([*done, self.revision or 0])
            self._reply(stream, 0, self._response(PROGRESS_ALL, at))
        self.deliver(now)

    def gone(self, route: bytes) -> None:
        stream = self.streams.pop(route, None)
        self._unsettled.pop(route, None)
        if stream is not None:
            cohorts.forget(stream, self.index)
            self._forget_checks(lambda c: c.route == route)

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
            notices.append((0, replace(body, cancel_reason=SLOW_STREAM)))
        stream.control = notices
        stream.control_bytes = 0  # see _reply_size
        self._unsettled[stream.route] = None  # the notices go out at the next delivery
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
                for w in stream.cohorts:
                    at = cohorts.cursor(stream, w, self.head)
                    if w.progress_notify and at == self.revision + 1 and not w.sent_since_progress:
                        for watch_id in w.ids:  # one: such a watch keeps a cohort of its own
                            self._reply(stream, 0, self._response(watch_id, self.revision))
                    w.sent_since_progress = False
        self.deliver(now)
