"""Committed entries in, ordered apply batches out, results back to the proposers.

Rules:
- Entries are applied strictly in log order, each exactly once: an entry at or below the
  backend's consistent index (learned from the backend before the first batch) is skipped,
  so a replay after a crash applies nothing twice.
- One batch is in flight at a time; whatever commits meanwhile forms the next batch (up to
  ``max_batch`` entries), so under load one LevelDB write batch carries many requests.
- A snapshot installed from the leader moves the applied index forward at once (the backend
  already holds everything up to it).
- Results go to the gateway (which drops ids it did not mint) together with the applied index;
  the lease expirer hears of every lease granted, revoked or checkpointed. The raft core hears
  the applied index too (for snapshots and its status), but under load at most every
  ``APPLIED_REFRESH_S`` (the shell asks again on a timer): one message less per batch, and a
  snapshot or a status that far behind is harmless. A restart or a restored snapshot is told
  at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from proto_schemas.internal import Applied, ApplyBatch, ApplyDone, BackendState, Results
from proto_schemas.lease import LeaseEvents
from proto_schemas.raft import Entry

APPLIED_REFRESH_S = 0.02


@dataclass(slots=True)
class ApplyOutbox:
    to_mvcc: list[Any] = field(default_factory=list)
    to_gateway: list[Any] = field(default_factory=list)
    to_raft: list[Any] = field(default_factory=list)
    to_lease: list[Any] = field(default_factory=list)


class ApplyCore:
    def __init__(self, max_batch: int = 1024) -> None:
        self.max_batch = max_batch
        self.applied: int | None = None  # unknown until the backend reports it
        self._queue: deque[Entry] = deque()
        self._last_queued = 0
        self._in_flight = False
        self._told = 0  # the applied index the raft core last heard
        self._told_at = float("-inf")

    def on_backend_state(self, state: BackendState, out: ApplyOutbox) -> None:
        if self.applied is None:
            self.applied = state.consistent_index
            self._last_queued = max(self._last_queued, state.consistent_index)
            while self._queue and self._queue[0].index <= self.applied:
                self._queue.popleft()
            # The gateway serves linearizable reads once applied >= read index: tell it how
            # far the backend already is, or a restarted member waits for the next write.
            out.to_gateway.append(Results(applied_index=self.applied))
            self.tell_raft(out, float("inf"))

    def on_committed(self, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.index <= self._last_queued:
                continue  # replayed by a restarted raft core, or already applied
            if entry.index != self._last_queued + 1 and self._last_queued:
                raise RuntimeError(f"committed entries out of order: {entry.index} after {self._last_queued}")
            self._queue.append(entry)
            self._last_queued = entry.index

    def on_restored(self, index: int, out: ApplyOutbox) -> None:
        """A snapshot from the leader replaced the backend up to ``index``: what is queued at
        or below it is covered, and the next committed entry is ``index + 1``."""
        while self._queue and self._queue[0].index <= index:
            self._queue.popleft()
        self._last_queued = max(self._last_queued, index)
        self.applied = max(self.applied or 0, index)
        out.to_gateway.append(Results(applied_index=index))
        self.tell_raft(out, float("inf"))

    def on_apply_done(self, done: ApplyDone, out: ApplyOutbox, now: float) -> None:
        self._in_flight = False
        self.applied = max(self.applied or 0, done.applied_index)
        out.to_gateway.append(
            Results(
                applied_index=done.applied_index,
                results=done.results,
                db_size=done.db_size,
                revision=done.revision,
                auth=done.auth,
                tokens=done.tokens,
            )
        )
        self.tell_raft(out, now)
        if done.lease_events:
            out.to_lease.append(LeaseEvents(index=done.applied_index, events=done.lease_events))

    def tell_raft(self, out: ApplyOutbox, now: float) -> None:
        """Tell the raft core the applied index if it moved and the last word is old enough."""
        if self.applied is None or self.applied <= self._told or now - self._told_at < APPLIED_REFRESH_S:
            return
        out.to_raft.append(Applied(index=self.applied))
        self._told, self._told_at = self.applied, now

    def next_batch(self, out: ApplyOutbox) -> None:
        if self._in_flight or self.applied is None or not self._queue:
            return
        n = min(self.max_batch, len(self._queue))
        batch = [self._queue.popleft() for _ in range(n)]
        out.to_mvcc.append(ApplyBatch(entries=batch))
        self._in_flight = True
