"""Committed entries in, ordered apply batches out.

Rules:
- Entries are applied strictly in log order, each exactly once. The worker starts by asking
  the backend for its consistent index C (``BackendState``), then the raft core for the
  committed entries from C + 1 (``ApplyFrom``): every ``Apply`` before the answer (marked
  ``resync``) is dropped, so a worker started while the raft core runs on -- restarted alone
  after a crash -- neither skips nor repeats an entry; at a node's start the same exchange
  costs one replay of what raft had handed out already. The backend also skips entries at or
  below its consistent index, so a batch the old worker sent still applies once.
- One batch is in flight at a time; whatever commits meanwhile forms the next batch (up to
  ``max_batch`` entries), so under load one LevelDB write batch carries many requests.
- The entries stay as the raft core encoded them (``Committed``): the worker goes by the
  indexes each ``Apply`` names and passes the bytes on, decoding only the rare ``Apply`` that
  overlaps what it holds (a restarted raft core's replay, a snapshot covering part of it).
- A snapshot installed from the leader moves the applied index forward at once (the backend
  already holds everything up to it).
- The backend sends each batch's results to the gateway and its lease events to the lease
  expirer itself; the worker tells the gateway only the applied index it starts from (a
  linearizable read waits for it) and the raft core the applied index (for snapshots and its
  status), under load at most every ``APPLIED_REFRESH_S`` (the shell asks again on a timer):
  a snapshot or a status that far behind is harmless. A start, a restored snapshot or a
  restarted raft core is told at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from proto_schemas.codec import decode, encode
from proto_schemas.internal import (
    Applied,
    Apply,
    ApplyBatch,
    ApplyDone,
    ApplyFrom,
    BackendState,
    Committed,
    Results,
)

APPLIED_REFRESH_S = 0.02


@dataclass(slots=True)
class ApplyOutbox:
    to_mvcc: list[Any] = field(default_factory=list)
    to_gateway: list[Any] = field(default_factory=list)
    to_raft: list[Any] = field(default_factory=list)


class ApplyCore:
    def __init__(self, max_batch: int = 1024) -> None:
        self.max_batch = max_batch
        self.applied: int | None = None  # unknown until the backend reports it
        self.resyncing = True  # until the raft core answered ``ApplyFrom``
        self._queue: deque[tuple[int, int, bytes]] = deque()  # (first, last, encoded Committed)
        self._last_queued = 0
        self._in_flight = False
        self._told = 0  # the applied index the raft core last heard
        self._told_at = float("-inf")

    def on_backend_state(self, state: BackendState, out: ApplyOutbox) -> None:
        if self.applied is not None:
            return
        self.applied = self._last_queued = state.consistent_index
        out.to_raft.append(ApplyFrom(index=self.applied + 1))
        # The gateway serves linearizable reads once applied >= read index: tell it how far
        # the backend already is, or a restarted member waits for the next write.
        out.to_gateway.append(Results(applied_index=self.applied))
        self.tell_raft(out, float("inf"))

    def on_apply(self, msg: Apply, out: ApplyOutbox) -> None:
        """Committed entries from the raft core, in log order (after a snapshot they follow)."""
        if msg.resync:
            self.resyncing = False
        if msg.restored:
            self.on_restored(msg.restored, out)
        if self.resyncing or msg.last <= self._last_queued:
            # Sent before the raft core heard where the backend is (it sends them again), or
            # replayed by a restarted raft core, or already applied.
            return
        chunk = _after(msg.first, msg.last, msg.committed, self._last_queued)
        if chunk[0] != self._last_queued + 1:
            raise RuntimeError(f"committed entries out of order: {chunk[0]} after {self._last_queued}")
        self._queue.append(chunk)
        self._last_queued = msg.last

    def on_restored(self, index: int, out: ApplyOutbox) -> None:
        """A snapshot from the leader replaced the backend up to ``index``: what is queued at
        or below it is covered, and the next committed entry is ``index + 1``."""
        if self.applied is None:
            return  # the backend's state, asked for already, covers it
        while self._queue and self._queue[0][0] <= index:
            first, last, raw = self._queue.popleft()
            if last > index:
                self._queue.appendleft(_after(first, last, raw, index))
                break
        self._last_queued = max(self._last_queued, index)
        self.applied = max(self.applied, index)
        out.to_gateway.append(Results(applied_index=index))
        self.tell_raft(out, float("inf"))

    def on_raft_started(self, out: ApplyOutbox) -> None:
        """A restarted raft core knows no applied index: tell it at once."""
        self._told = 0
        self.tell_raft(out, float("inf"))

    def on_apply_done(self, done: ApplyDone, out: ApplyOutbox, now: float) -> None:
        if self.applied is None:
            return  # the batch a dead predecessor sent: the backend's state, asked for, covers it
        self._in_flight = False
        self.applied = max(self.applied, done.applied_index)
        self.tell_raft(out, now)

    def tell_raft(self, out: ApplyOutbox, now: float) -> None:
        """Tell the raft core the applied index if it moved and the last word is old enough."""
        if self.applied is None or self.applied <= self._told or now - self._told_at < APPLIED_REFRESH_S:
            return
        out.to_raft.append(Applied(index=self.applied))
        self._told, self._told_at = self.applied, now

    def next_batch(self, out: ApplyOutbox) -> None:
        if self._in_flight or self.applied is None or not self._queue:
            return
        first, _, raw = self._queue.popleft()
        batch = [raw]
        while self._queue and self._queue[0][1] - first < self.max_batch:
            batch.append(self._queue.popleft()[2])
        out.to_mvcc.append(ApplyBatch(committed=batch))
        self._in_flight = True


def _after(first: int, last: int, raw: bytes, index: int) -> tuple[int, int, bytes]:
    """The chunk of entries ``first``..``last`` without those at or below ``index``."""
    if first > index:
        return first, last, raw
    kept = [e for e in decode(raw, Committed).entries if e.index > index]
    return kept[0].index, last, encode(Committed(entries=kept))
