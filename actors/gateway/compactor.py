"""Auto-compaction (``--auto-compaction-mode``, ``--auto-compaction-retention``), as etcd 3.4's.

Only the leader compacts (the compaction goes through raft to every member); a follower keeps
sampling so that it can take over at once with the right history.

- periodic, retention P: the revision is sampled every P/10 (at most every 6 minutes, for
  P > 1 h); the first compaction happens P after start, then every min(P, 1 h), each to the
  oldest sample kept, i.e. the revision of about P ago.
- revision, retention N: every 5 minutes, compact to the current revision minus N (unless that
  is where the last compaction went).

A failed compaction is tried again after the sampling interval (periodic) or the next
5 minutes (revision). A compaction to an already compacted revision counts as done.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

HOUR_S = 3600.0
WINDOWS = 10
REVISION_INTERVAL_S = 300.0


class AutoCompactor(Protocol):
    def due(self, now: float, revision: int, leader: bool) -> int | None:
        """The revision to compact to now, if any (called often; cheap when not due)."""

    def result(self, now: float, ok: bool) -> None:
        """The outcome of the last compaction ``due`` asked for."""

    def describe(self) -> str:
        """The retention, for the log."""


class Periodic:
    def __init__(self, retention_s: float, now: float) -> None:
        self.retention_s = retention_s
        self.interval_s = min(retention_s, HOUR_S)
        self.sample_s = self.interval_s / WINDOWS
        self.samples: deque[int] = deque(maxlen=int(retention_s / self.sample_s) + 1)
        self._wait_s = retention_s  # the first compaction waits a whole retention period
        self._last_done = now
        self._next_sample = now

    def due(self, now: float, revision: int, leader: bool) -> int | None:
        if now < self._next_sample:
            return None
        self._next_sample = now + self.sample_s
        self.samples.append(revision)
        if not leader or now - self._last_done < self._wait_s or self.samples[0] <= 0:
            return None
        self._wait_s = self.interval_s
        self._last_done = now  # optimistic; ``result`` moves it back on failure
        return self.samples[0]

    def result(self, now: float, ok: bool) -> None:
        if not ok:
            self._last_done = now - self._wait_s  # try again at the next sample

    def describe(self) -> str:
        return f"{self.retention_s:g}s"


class Revision:
    def __init__(self, retention: int, now: float) -> None:
        self.retention = retention
        self._next = now + REVISION_INTERVAL_S
        self._last = 0
        self._asked = 0

    def due(self, now: float, revision: int, leader: bool) -> int | None:
        if now < self._next:
            return None
        self._next = now + REVISION_INTERVAL_S
        target = revision - self.retention
        if not leader or target <= 0 or target == self._last:
            return None
        self._asked = self._last = target
        return target

    def result(self, now: float, ok: bool) -> None:
        if not ok and self._last == self._asked:
            self._last = 0  # not done: the next round asks again

    def describe(self) -> str:
        return f"{self.retention} revisions"


def build(mode: str, retention: float, now: float) -> AutoCompactor | None:
    """``retention``: seconds (periodic) or revisions (revision); 0 turns auto-compaction off."""
    if retention <= 0:
        return None
    if mode == "periodic":
        return Periodic(retention, now)
    if mode == "revision":
        return Revision(int(retention), now)
    raise ValueError(f"unknown auto-compaction mode {mode!r}")
