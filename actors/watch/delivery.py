"""The watch hub's delivery: the live window, catch-up from history, events to each watcher in order.

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
- Events are matched to watchers through an interval index (``index.py``): the cost of a
  revision is its events' matches, not the number of watchers times its events. The index,
  the cursors and the sending hold cohorts (``cohorts.py``): the watches of a stream that
  asked the same and need the same revision next cost one match and one response together.
- A cohort that has everything up to the hub's ``head`` is *synced*: a new revision reaches
  only the synced cohorts its events match; the others are complete up to it without being
  looked at (their cursor is ``head + 1``). New, rewound and catching-up cohorts are *lagging*
  (``Stream.lagging``), looked at on each delivery until they have everything; a gap in the
  live stream, or a window that moved past ``head``, makes every cohort lagging.
"""

from __future__ import annotations

from typing import Any

from actors.watch import cohorts
from actors.watch.index import WatchIndex
from actors.watch.watchers import Cohort, Outbox, Stream, event_size, replace, reply_size
from proto_schemas.kv import ResponseHeader
from proto_schemas.watch import (
    CANCELED_COMPACTED,
    Event,
    EventBatch,
    SharedWatchResponse,
    WatchHistoryRequest,
    WatchHistoryResponse,
    WatchResponse,
)


class Delivery:
    """The hub's window and sending; ``HubCore`` (``core.py``) builds it with the streams."""

    max_response_bytes: int
    window_revisions: int
    stall_retry_s: float
    max_queued_bytes: int
    cluster_id: int
    member_id: int
    index: WatchIndex[Cohort]
    revision: int | None  # every revision <= this one has been seen
    head: int  # every synced cohort (not in its stream's ``lagging``) has everything up to here
    compact_revision: int
    window: dict[int, list[Event]]  # revision -> its events
    window_start: int
    streams: dict[bytes, Stream]
    out: Outbox
    foreign_batches: int  # event batches of another cluster, dropped
    _overflowing: set[bytes]  # streams whose queued replies passed the bound
    # Streams with lagging cohorts or replies held by a stall: what a delivery walks (with many
    # streams, walking them all on every request and tick made accepting them quadratic)
    _unsettled: dict[bytes, None]
    _history_asked_at: float | None
    _history_not_before: float
    _stripped: dict[int, Event]  # id(event) -> the event without prev_kv
    _headers: dict[int, ResponseHeader]

    def bound(self) -> None:
        """Bound the streams whose queued replies passed ``max_queued_bytes`` (``core.py``)."""
        raise NotImplementedError

    def _create_early(self, now: float) -> None:
        """Create the watches asked for before the first revision was known (``creates.py``)."""
        raise NotImplementedError

    # -- the backend's live stream ------------------------------------------------------------
    def live(self, batch: EventBatch, now: float) -> None:
        if batch.cluster_id and self.cluster_id and batch.cluster_id != self.cluster_id:
            self.foreign_batches += 1  # another cluster's event stream: never served
            return
        self.compact_revision = max(self.compact_revision, batch.compact_revision)
        if self.revision is None:
            self.revision = self.head = batch.first_revision - 1
            self.window_start = batch.first_revision
            self._create_early(now)
        if batch.revision <= self.revision:
            return  # seen already (a replayed or duplicated batch)
        if batch.first_revision > self.revision + 1:
            # A gap (or a heartbeat past what we have): what came in between is read from
            # history by whoever needs it.
            self._unsync_all()
            self.window.clear()
            self.window_start = batch.first_revision
            self.revision = self.head = batch.first_revision - 1
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

    def skip(self, first_revision: int, revision: int, compact_revision: int) -> None:
        """A live batch while nobody watches (see ``watching``): note how far the backend got and
        keep none of its events. An idle hub then costs a member almost nothing per write; a
        watcher created later from an older revision reads those from history."""
        self.compact_revision = max(self.compact_revision, compact_revision)
        if self.revision is not None and revision <= self.revision:
            return
        self.window.clear()
        self.revision = self.head = revision  # no cohort to bring along: nobody watches
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
        for stream in self._unsettled_streams():  # where the lagging cohorts are
            if stream.resting_until > now:
                continue
            for w in list(stream.lagging):  # a synced cohort is past the window's start
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

    # -- delivery -----------------------------------------------------------------------------
    def deliver(self, now: float) -> None:
        """Send every cohort what the window has for it; ask history for those below it. The
        synced cohorts (complete up to ``head``) get the new revisions' events they match, found
        through the index: those it does not match are not looked at, so a revision costs its
        matches, not the number of watches. The lagging ones (``Stream.lagging``: new, rewound,
        catching up) are each looked at until they have everything, and then are synced."""
        self.bound()
        if self.revision is None:
            return
        for stream in self._unsettled_streams():
            if stream.control and stream.resting_until <= now:  # replies held by a stall first
                control, stream.control, stream.control_bytes = stream.control, [], 0
                for reply_to, body in control:
                    self.out.to_client.append((stream.route, reply_to, body))
        if self.head < self.revision:
            if self.head + 1 < self.window_start:
                self._unsync_all()  # the window no longer holds what they need: from history
            else:
                self._deliver_synced()
            self.head = self.revision
        self._deliver_lagging(now)
        self._stripped.clear()

    def _deliver_synced(self) -> None:
        """Revisions ``head + 1`` to ``revision`` to the synced cohorts they match, a stream's
        together (so that alike ones share a response). A stream resting after a stall has no
        synced cohort (``stalled`` made them all lagging, and only a delivery that looks at the
        stream syncs one), so nothing here is sent to a client that is not reading."""
        assert self.revision is not None
        done: dict[tuple[Any, ...], list[tuple[list[Event], int]]] = {}
        by_stream: dict[bytes, list[tuple[Cohort, list[tuple[int, list[Event]]]]]] = {}
        for w, revs in self._matched(self.head + 1).items():
            if w not in self.streams[w.route].lagging:  # a lagging one goes from its own cursor
                by_stream.setdefault(w.route, []).append((w, revs))
        for route, matched in by_stream.items():
            stream = self.streams[route]
            for w, revs in matched:
                self._send_events(stream, w, revs, self.revision, done)

    def _deliver_lagging(self, now: float) -> None:
        """Each lagging cohort: what the window has for it (then it is synced), history for
        those below the window, the end for those below the compaction."""
        assert self.revision is not None
        lowest: int | None = None
        due: list[tuple[Stream, Cohort]] = []  # cohorts the window has something for
        revision, compacted, window_start = self.revision, self.compact_revision, self.window_start
        for stream in self._unsettled_streams():
            if stream.resting_until > now:
                continue
            done_with: list[Cohort] = []
            gone: list[Cohort] = []
            for w in stream.lagging:
                cursor = w.cursor
                if cursor > revision:
                    done_with.append(w)
                elif cursor < compacted:
                    gone.append(w)
                elif cursor >= window_start:
                    due.append((stream, w))
                    done_with.append(w)  # served below, up to ``revision``
                else:
                    lowest = cursor if lowest is None else min(lowest, cursor)
            for w in done_with:
                del stream.lagging[w]
            for w in gone:
                self._cancel_compacted(stream, w)
            if not (stream.lagging or stream.control):
                del self._unsettled[stream.route]
        if due:
            matched = self._matched(min(w.cursor for _, w in due))
            done: dict[tuple[Any, ...], list[tuple[list[Event], int]]] = {}
            for stream, w in due:
                revs = matched.get(w, [])
                mine = revs if not revs or revs[0][0] >= w.cursor else [x for x in revs if x[0] >= w.cursor]
                self._send_events(stream, w, mine, revision, done)
        if lowest is not None and self._history_asked_at is None and now >= self._history_not_before:
            self._history_asked_at = now
            self.out.to_backend.append((0, WatchHistoryRequest(start_revision=lowest)))

    def _unsettled_streams(self) -> list[Stream]:
        """The streams a delivery must look at (those gone meanwhile are forgotten)."""
        streams = []
        for route in list(self._unsettled):
            stream = self.streams.get(route)
            if stream is None:
                del self._unsettled[route]
            else:
                streams.append(stream)
        return streams

    def _unsync_all(self) -> None:
        """Every synced cohort becomes lagging (a gap in the live stream, or a window that
        moved past them)."""
        for stream in self.streams.values():
            self._unsync(stream)

    def _unsync(self, stream: Stream) -> None:
        """The synced cohorts of ``stream`` become lagging; the stream is looked at next time."""
        for w in [w for w in stream.cohorts if w not in stream.lagging]:
            w.cursor = self.head + 1
            stream.lagging[w] = None
        self._unsettled[stream.route] = None

    def _matched(self, first: int) -> dict[Cohort, list[tuple[int, list[Event]]]]:
        """The window's events from revision ``first`` on, per cohort whose range holds their
        key (found through the index), by revision in order. Cohorts that match the same
        events of a revision share one ``(revision, events)`` entry, so that ``_send_events``
        knows them alike by the entries' identity."""
        matched: dict[Cohort, list[tuple[int, list[Event]]]] = {}
        assert self.revision is not None
        for revision in range(first, self.revision + 1):
            events = self.window.get(revision, [])
            if len(events) == 1:  # most revisions: every watcher it matches gets the same entry
                entry = (revision, events)
                for ref in self.index.match(events[0].kv.key):
                    matched.setdefault(ref, []).append(entry)
                continue
            by_ref: dict[Cohort, list[Event]] = {}
            for event in events:
                for ref in self.index.match(event.kv.key):
                    by_ref.setdefault(ref, []).append(event)
            entries: dict[tuple[int, ...], tuple[int, list[Event]]] = {}
            for ref, mine in by_ref.items():
                entry = entries.setdefault(tuple(map(id, mine)), (revision, mine))
                matched.setdefault(ref, []).append(entry)
        return matched

    def _send_events(
        self,
        stream: Stream,
        w: Cohort,
        revisions: list[tuple[int, list[Event]]],
        upto: int,
        done: dict[tuple[Any, ...], list[tuple[list[Event], int]]] | None = None,
    ) -> None:
        """Hand ``w`` its events of ``revisions`` (in order, from its cursor; revisions without
        any of its events may be left out) and move the cursor past ``upto``: whole revisions
        per response, fragments only when asked. ``done`` remembers, within one delivery, what
        was sent for the same events and filters: the next watcher alike gets the same
        responses without filtering and sizing them again (and joins them, see
        ``_events_response``)."""
        key: tuple[Any, ...] = ()
        if done is not None and not w.fragment:
            key = (w.prev_kv, w.no_put, w.no_delete, upto, *map(id, revisions))  # entries: ``_matched``
            sent = done.get(key)
            if sent is not None:
                for events, complete_to in sent:
                    self._events_response(stream, w, events, complete_to)
                w.cursor = upto + 1
                return
        made: list[tuple[list[Event], int]] = []
        pending: list[Event] = []
        size = 0
        for _, events in revisions:
            mine = [self._without_prev(e) if not w.prev_kv else e for e in events if w.wants(e)]
            if not mine:
                continue
            rev_size = sum(event_size(e) for e in mine)
            if pending and size + rev_size > self.max_response_bytes:
                made.append((pending, pending[-1].kv.mod_revision))
                self._events_response(stream, w, pending, pending[-1].kv.mod_revision)
                pending, size = [], 0
            if w.fragment and rev_size > self.max_response_bytes:
                self._fragments(stream, w, mine)
                continue
            pending.extend(mine)
            size += rev_size
        if pending:
            made.append((pending, upto))
            self._events_response(stream, w, pending, upto)
        w.cursor = upto + 1
        if key and done is not None:
            done[key] = made

    def _without_prev(self, e: Event) -> Event:
        if e.prev_kv is None:
            return e
        stripped = self._stripped.get(id(e))
        if stripped is None:
            stripped = self._stripped[id(e)] = replace(e, prev_kv=None)
        return stripped

    def _events_response(self, stream: Stream, w: Cohort, events: list[Event], complete_to: int) -> None:
        """``complete_to``: the header revision, up to which ``w`` has everything once this is
        read. A cohort of several watches gets one ``SharedWatchResponse`` naming them all; when
        the response just made for the cohort before it in this stream holds the same (a put
        seen by cohorts of one key with other filters or cursors that came out alike), ``w``
        joins it: one object and one encoding for the run, whatever its length."""
        w.sent_since_progress = True
        out = self.out.to_client
        if out:
            route, reply_to, last = out[-1]
            if route == stream.route and not reply_to and _alike(last, self._header(complete_to), events):
                if isinstance(last, SharedWatchResponse):
                    last.watch_ids.extend(w.ids)  # made here, not handed out yet
                else:
                    joined = SharedWatchResponse(
                        watch_ids=[last.watch_id, *w.ids], response=replace(last, watch_id=0)
                    )
                    out[-1] = (route, 0, joined)
                return
        if len(w.ids) == 1:
            out.append((stream.route, 0, self._response(next(iter(w.ids)), complete_to, events=events)))
        else:
            body = SharedWatchResponse(
                watch_ids=list(w.ids), response=self._response(0, complete_to, events=events)
            )
            out.append((stream.route, 0, body))

    def _fragments(self, stream: Stream, w: Cohort, events: list[Event]) -> None:
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
        for watch_id in w.ids:  # one: a watch asking for fragments keeps a cohort of its own
            for i, part in enumerate(chunks):
                body = self._response(watch_id, rev, events=part, fragment=i < len(chunks) - 1)
                self.out.to_client.append((stream.route, 0, body))
        w.sent_since_progress = True

    def _cancel_compacted(self, stream: Stream, w: Cohort) -> None:
        for watch_id in list(w.ids):
            self._drop(stream, watch_id)
            body = self._response(watch_id, self.revision or 0, canceled=True)
            body = replace(body, compact_revision=self.compact_revision, cancel_reason=CANCELED_COMPACTED)
            self._reply(stream, 0, body)

    def _response(self, watch_id: int, revision: int, **fields: Any) -> WatchResponse:
        return WatchResponse(header=self._header(revision), watch_id=watch_id, **fields)

    def _header(self, revision: int) -> ResponseHeader:
        header = self._headers.get(revision)
        if header is None:  # one header object per revision: the shell encodes it once
            if len(self._headers) > 64:
                self._headers.clear()
            header = ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id, revision=revision)
            self._headers[revision] = header
        return header

    def _reply(self, stream: Stream, reply_to: int, body: Any) -> None:
        if stream.control:
            stream.control.append((reply_to, body))  # keep replies in order behind a stall
            stream.control_bytes += reply_size(body)
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

    # -- slow clients ---------------------------------------------------------------------------
    def stalled(self, route: bytes, unsent: list[tuple[int, Any]], now: float) -> None:
        """The shell could not send these (the client's queue is full): rewind and rest."""
        stream = self.streams.get(route)
        if stream is None:
            return
        stream.resting_until = now + self.stall_retry_s
        self._unsync(stream)  # all looked at after the rest; the unsent rewound below
        control: list[tuple[int, Any]] = []
        rewound: dict[Cohort, dict[int, int]] = {}  # cohort -> its unsent watches' first revisions
        for reply_to, body in unsent:
            events = _events_of(body) if isinstance(body, SharedWatchResponse | WatchResponse) else []
            if events:
                ids = body.watch_ids if isinstance(body, SharedWatchResponse) else [body.watch_id]
                first = events[0].kv.mod_revision
                for watch_id in ids:
                    w = stream.watchers.get(watch_id)
                    if w is not None:
                        unsent_from = rewound.setdefault(w, {})
                        unsent_from[watch_id] = min(unsent_from.get(watch_id, first), first)
            elif isinstance(body, WatchResponse) and not body.created and not body.canceled:
                continue  # a progress notification: a later one will say as much
            else:
                control.append((reply_to, body))
        for w, unsent_from in rewound.items():
            self._rewind(stream, w, unsent_from)
        stream.control = control + stream.control
        stream.control_bytes += sum(reply_size(b) for _, b in control)
        if stream.control_bytes > self.max_queued_bytes:
            self._overflowing.add(route)

    def reading(self, route: bytes) -> None:
        """A send to ``route`` went out: its client reads again, an overflow later is a new one."""
        stream = self.streams.get(route)
        if stream is not None:
            stream.overflowed = False

    def _rewind(self, stream: Stream, w: Cohort, unsent_from: dict[int, int]) -> None:
        """Send again from ``unsent_from[id]`` on to each of those watches of ``w``: the whole
        cohort when they are all of it and alike, else they leave it (a send that failed part
        way through a cohort's responses, one per watch, for a client that reads no shared)."""
        firsts = set(unsent_from.values())
        if len(unsent_from) == len(w.ids) and len(firsts) == 1:
            w.cursor = min(w.cursor, firsts.pop())
            return
        for first in sorted(firsts):
            ids = [i for i, f in unsent_from.items() if f == first]
            cohorts.split(stream, self.index, w, ids, min(w.cursor, first))

    def _drop(self, stream: Stream, watch_id: int) -> None:
        cohorts.leave(stream, self.index, watch_id)


def _alike(last: Any, header: ResponseHeader, events: list[Event]) -> bool:
    """Whether the events response ``last`` (alone or shared) says what a watcher's response
    with ``header`` and ``events`` would: the same header object and the same event objects."""
    resp = last.response if isinstance(last, SharedWatchResponse) else last
    return (
        isinstance(resp, WatchResponse)
        and resp.header is header
        and not (resp.created or resp.canceled or resp.fragment)
        and (resp.events is events or _same(resp.events, events))  # ``is``: a watcher alike's list
    )


def _events_of(body: WatchResponse | SharedWatchResponse) -> list[Event]:
    return body.response.events if isinstance(body, SharedWatchResponse) else body.events


def _same(these: list[Event], those: list[Event]) -> bool:
    return len(these) == len(those) and all(a is b for a, b in zip(these, those, strict=True))
