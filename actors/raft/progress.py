"""The leader's view of each follower (etcd-raft's ``tracker.Progress`` and ``Inflights``).

Rules:
- ``match`` is the highest index known replicated (durably) on the peer; ``next`` the next
  index to send. ``match < next`` always.
- PROBE: we do not know where the follower's log diverges; send one append per heartbeat
  interval (``probe_sent`` pauses) and walk ``next`` back on rejection (thesis §3.5).
- REPLICATE: the follower is known to match; stream appends optimistically (pipelining,
  thesis §10.2.2), advancing ``next`` on send, bounded by ``Inflights`` (``max_inflight_msgs``
  messages in flight). A rejection falls back to PROBE.
- SNAPSHOT: the follower needs a snapshot; appends pause until it reports back.
- ``recent_active`` is set by any response and cleared by the leader's check-quorum
  (thesis §6.2: a leader steps down without a heartbeat quorum in an election timeout).
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A window of in-flight appends, each known by its last index (and its bytes)."""

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        self.size = size
        self.max_bytes = max_bytes  # 0: unlimited
        self.bytes = 0
        self._q: deque[tuple[int, int]] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, index: int, nbytes: int = 0) -> None:
        if self.full():
            raise AssertionError("cannot add into a full inflights window")
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, index: int) -> None:
        """The peer acknowledged everything up to ``index``: free those slots."""
        while self._q and self._q[0][0] <= index:
            _, nbytes = self._q.popleft()
            self.bytes -= nbytes

    def free_first_one(self) -> None:
        if self._q:
            _, nbytes = self._q.popleft()
            self.bytes -= nbytes

    def full(self) -> bool:
        return len(self._q) >= self.size or (0 < self.max_bytes <= self.bytes)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0


class Progress:
    def __init__(
        self, next_index: int, max_inflight: int, *, match: int = 0, is_learner: bool = False
    ) -> None:
        self.match = match
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)

    def __repr__(self) -> str:
        return f"Progress({self.state.value} match={self.match} next={self.next})"

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """An ack of ``index``: returns whether ``match`` moved (stale acks change nothing)."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append at ``rejected``; ``match_hint`` is the next guess.
        Returns False for stale rejections (thesis §3.5 with etcd's fast back-off)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: we already know it matches there
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the probe we sent last
        self.next = max(min(rejected, match_hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True

    def sent_entries(self, count: int, last_index: int, nbytes: int) -> None:
        """We sent an append carrying ``count`` entries ending at ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index, nbytes)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
