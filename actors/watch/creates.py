"""The watch hub's creates: each waits for a member's word on its token, then becomes a watcher.

Rules:
- Auth: a watch is created only once a member said its token may read the watched range
  (``AuthCheckRequest``, sent whether or not auth is enabled: the hub cannot know). A refusal
  answers created + canceled with the member's error as the reason, as etcd does; a check
  unanswered for ``history_timeout_s`` (a member restarting) is asked again (``core.py``'s
  tick), for as long as the client's stream lives.
- Creates are checked alongside one another (the member answers them in order); whatever the
  stream asked behind them waits, and is served once they are answered.
- The member's answer to a create's check carries its revision, which is then "now" for the
  watch when the hub is idle (it heard no live stream); the live stream, subscribed again from
  the check on, continues it or (a gap) starts a new window above it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from actors.watch import cohorts
from actors.watch.delivery import Delivery
from actors.watch.watchers import TOO_MANY, Check, Cohort, Stream, behind_checks, replace
from proto_schemas.auth import AuthCheckRequest, AuthCheckResponse
from proto_schemas.errors import TEXTS, ErrorCode, ErrorResponse
from proto_schemas.watch import AUTO_WATCH_ID, DUPLICATE_WATCH_ID, FilterType, WatchCreateRequest


class Creates(Delivery):
    """The checks of creates in flight and the creating of watchers."""

    max_watchers_per_stream: int
    _early: list[tuple[bytes, int, WatchCreateRequest]]  # before the revision is known
    _checks: dict[int, Check]
    _check_ids: itertools.count[int]

    def _serve(self, stream: Stream, msg_id: int, request: Any, now: float, token: str) -> None:
        """Serve one request of ``stream`` (``core.py``): here, those that waited for a check."""
        raise NotImplementedError

    @property
    def listening(self) -> bool:
        """Whether the hub should receive the live stream at all: while watching, and from the
        moment a watch is asked for (so the stream flows by the time it is created). An idle
        hub drops its subscription and costs its member nothing per write."""
        return self.watching or bool(self._checks) or bool(self._early)

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
        while stream.deferred and not stream.overflowed and not behind_checks(stream, stream.deferred[0][1]):
            msg_id, request, token = stream.deferred.pop(0)
            self._serve(stream, msg_id, request, now, token)
        self.deliver(now)

    def _ask(self, check: Check) -> None:
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

    def _forget_checks(self, which: Callable[[Check], bool]) -> list[Check]:
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
        self._reply(stream, 0, replace(refused, cancel_reason=reason))

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
            self._reply(stream, 0, replace(dup, cancel_reason=DUPLICATE_WATCH_ID))
            return
        if len(stream.watchers) >= self.max_watchers_per_stream:
            self._refuse(stream, req, TOO_MANY)
            return
        filters = set(req.filters)
        new = Cohort(
            route=stream.route,
            ids={watch_id: None},
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
        if new.cursor < self.compact_revision:
            self._cancel_compacted(stream, new)
            return
        cohorts.join(stream, self.index, watch_id, new, self.head)
        self._unsettled[stream.route] = None  # the new watch is looked at in the next delivery

    def _create_early(self, now: float) -> None:
        early, self._early = self._early, []
        for route, _, req in early:
            stream = self.streams.get(route)
            if stream is not None:
                self._create(stream, req, now)
