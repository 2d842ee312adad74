"""The raft log: durable entries (``Storage``) followed by unstable ones (etcd-raft's
``raftLog`` + ``unstable``).

Rules:
- Entries the core created or received but the WAL has not yet made durable are *unstable*.
  Once handed to the shell in a Ready they are *in progress*; the WAL's acknowledgement
  (``stable_to``) moves them into Storage. The durable prefix that agrees with the current log
  (``persisted``) is what a node may count as its own acknowledgement and what it may apply:
  Raft only lets an entry count towards a quorum once it is on stable storage (thesis §3.5,
  §10.2.1 on writing to disk in parallel).
- A conflicting append truncates the unstable suffix (and, logically, the stable one: the
  unstable entries shadow Storage from ``unstable.offset`` on; the WAL overwrites that suffix).
- ``committed`` only grows; ``applying`` marks what was handed out to be applied, ``applied``
  what the shell acknowledged. An entry is applied only when committed *and* persisted.
- ``term(i)`` answers ``None`` when the index is compacted or beyond the log, never raises:
  the callers (append matching, elections) treat an unknown term as a mismatch.
"""

from __future__ import annotations

from actors.raft.storage import Storage, StorageError, limit_size
from proto_schemas.raft import Entry, Snapshot


class Unstable:
    """Entries (and possibly a snapshot) not yet durable; ``entries[i]`` has index offset+i."""

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.snapshot_in_progress = False
        self.offset_in_progress = offset  # entries below this were handed out in a Ready

    def maybe_first_index(self) -> int | None:
        return self.snapshot.metadata.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == index:
                return snap.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed out in a Ready."""
        return self.entries[self.offset_in_progress - self.offset :]

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self, last_index: int, snapshot: bool) -> None:
        """The shell took entries up to ``last_index`` (and the snapshot) to persist."""
        self.offset_in_progress = max(self.offset_in_progress, last_index + 1)
        if snapshot:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> list[Entry]:
        """Entries up to ``index`` are durable: drop and return them (for Storage)."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset or self.snapshot is not None:
            # Stale ack (truncated since), already stable, or a pending snapshot must be
            # acknowledged first (it precedes the entries in the WAL).
            return []
        n = index + 1 - self.offset
        stable = self.entries[:n]
        del self.entries[:n]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)
        return stable

    def stable_snap_to(self, index: int) -> Snapshot | None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            snap = self.snapshot
            self.snapshot = None
            self.snapshot_in_progress = False
            return snap
        return None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snapshot
        self.snapshot_in_progress = False

    def truncate_and_append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        if first == self.offset + len(self.entries):
            self.entries.extend(entries)  # plain append
        elif first <= self.offset:
            # Replace everything unstable (and shadow the stable suffix from `first` on).
            self.offset = first
            self.offset_in_progress = first
            self.entries = list(entries)
        else:
            del self.entries[first - self.offset :]
            self.entries.extend(entries)
            self.offset_in_progress = min(self.offset_in_progress, first)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """Storage + Unstable, with the commit and apply cursors."""

    def __init__(self, storage: Storage, max_applying_size: int = 1 << 20) -> None:
        self.storage = storage
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        first = storage.first_index()
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_size = max_applying_size

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len={len(self.unstable.entries)})"
        )

    # -- indexes and terms ----------------------------------------------------------------------

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, index: int) -> int | None:
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        if index >= self.unstable.offset or self.unstable.snapshot is not None:
            return None  # beyond the log, or below a pending snapshot (compacted)
        try:
            return self.storage.term(index)
        except StorageError:
            return None

    def last_term(self) -> int:
        t = self.term(self.last_index())
        assert t is not None, "the last entry's term is always known"
        return t

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    @property
    def persisted(self) -> int:
        """Highest index durable *and* part of the current log."""
        return self.unstable.offset - 1

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """A candidate's log is at least as up to date as ours (thesis §3.6.1)."""
        my_term = self.last_term()
        return term > my_term or (term == my_term and last_index >= self.last_index())

    # -- appending ------------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> int:
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise AssertionError(f"append at {entries[0].index} would overwrite committed {self.committed}")
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def find_conflict(self, entries: list[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or is new); 0 if none."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, t) with i <= index and t <= term in our log (etcd's fast back-off,
        thesis §3.5 "the leader can decrement nextIndex to bypass all conflicting entries").

        A follower uses it on the leader's (index, log_term) to hint where to probe next; the
        leader uses it on the follower's (reject_hint, log_term) to skip its own entries that
        cannot match.
        """
        while index > 0:
            t = self.term(index)
            if t is None:
                # Compacted or unknown: the best we can say is this index with an unknown term.
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def maybe_append(self, index: int, log_term: int, committed: int, entries: list[Entry]) -> int | None:
        """The AppendEntries consistency check and append (thesis Figure 3.1). Returns the
        index of the last new entry, or None when (index, log_term) does not match."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(f"entry {conflict} conflicts with committed {self.committed}")
            self.append(entries[conflict - entries[0].index :])
        self.commit_to(min(committed, last_new))
        return last_new

    # -- commit and apply -----------------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit ``index`` only if it is from ``term`` (thesis §3.6.2, Figure 3.7)."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def _apply_limit(self) -> int:
        if self.unstable.snapshot is not None:
            return self.applying  # the snapshot must be applied (and durable) first
        return min(self.committed, self.persisted)

    def has_next_committed_entries(self) -> bool:
        return self._apply_limit() > self.applying

    def next_committed_entries(self) -> list[Entry]:
        hi = self._apply_limit()
        if hi <= self.applying:
            return []
        return self.slice(self.applying + 1, hi + 1, self.max_applying_size)

    def accept_applying(self, index: int) -> None:
        self.applying = max(self.applying, index)

    def applied_to(self, index: int) -> None:
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, index)

    # -- reading --------------------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); raises StorageError when lo is compacted."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            from actors.raft.storage import CompactedError

            raise CompactedError(f"index {lo} compacted")
        out: list[Entry] = []
        off = self.unstable.offset
        if lo < off:
            out = self.storage.entries(lo, min(hi, off), max_size)
            if len(out) < min(hi, off) - lo:
                return out  # size limit reached inside storage
        if hi > off:
            out = out + self.unstable.slice(max(lo, off), hi)
        return limit_size(out, max_size)

    def entries_from(self, lo: int, max_size: int | None = None) -> list[Entry]:
        if lo > self.last_index():
            return []
        return self.slice(lo, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        """Every entry from the first index (tests and the simulation's invariant checks)."""
        return self.entries_from(self.first_index())

    # -- snapshots ------------------------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.metadata.index
        self.unstable.restore(snapshot)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()
