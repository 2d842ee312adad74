"""Stable storage as the raft core sees it (etcd-raft's ``Storage`` / ``MemoryStorage``).

Rules:
- ``Storage`` holds only what is durable: the shell fills it from the WAL at start, and the
  RawNode appends entries to it when the WAL reports them durable (``on_persisted``). Entries
  that are not yet durable live in the log's unstable part (``log.py``), never here.
- Index arithmetic follows etcd: the storage keeps a dummy entry at the snapshot's
  (index, term) so that ``term(first_index - 1)`` is always answerable (the previous entry an
  append to the first stored entry must match, Raft thesis §3.5).
- ``append`` of entries starting at or before the last index replaces that suffix: the WAL
  does the same when a follower's conflicting suffix is overwritten (thesis §3.5, step 3).
- Reading below the first index raises ``CompactedError`` (the leader then sends a snapshot,
  thesis §5.1); reading past the last index raises ``UnavailableError``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from proto_schemas.raft import ConfState, Entry, HardState, Snapshot, SnapshotMetadata


class StorageError(Exception):
    """Base of the errors a Storage raises for indexes it cannot serve."""


class CompactedError(StorageError):
    """The requested index is below the first index: it was compacted into a snapshot."""


class UnavailableError(StorageError):
    """The requested index is beyond the last index."""


def entry_size(entry: Entry) -> int:
    """Bytes an entry counts against ``max_size_per_msg`` (payload plus a small header)."""
    return len(entry.data) + 16


def limit_size(entries: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_size`` bytes, but at least one entry
    (etcd-raft's ``limitSize``: a single oversized entry must still make progress)."""
    if max_size is None or not entries:
        return entries
    total = 0
    for n, entry in enumerate(entries):
        total += entry_size(entry)
        if n > 0 and total > max_size:
            return entries[:n]
    return entries


class Storage(Protocol):
    """What the raft core reads from durable storage."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi), limited to ``max_size`` bytes (at least one)."""
        ...

    def term(self, index: int) -> int: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


class MemoryStorage:
    """An in-memory Storage: the shell's mirror of the WAL, and the tests' disk."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        # _ents[0] is a dummy at the snapshot's (index, term).
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # -- reads (the Storage protocol) ---------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"index {index} compacted (first index {offset + 1})")
        if index - offset >= len(self._ents):
            raise UnavailableError(f"index {index} beyond last index {self.last_index()}")
        return self._ents[index - offset].term

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} compacted (first index {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries [{lo}, {hi}) beyond last index {self.last_index()}")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def all_entries(self) -> list[Entry]:
        """Every stored entry after the snapshot (tests and the shell's diagnostics)."""
        return self._ents[1:]

    # -- writes (the shell and the RawNode, after durability) --------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def append(self, entries: list[Entry]) -> None:
        """Append durable entries; an entry at an existing index replaces that suffix."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return  # entirely compacted already
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise ValueError(
                f"missing log entry: last index {self.last_index()}, appended {entries[0].index}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot (a follower restoring a leader's snapshot)."""
        if snapshot.metadata.index < self._snapshot.metadata.index:
            return  # older than what we have
        self._snapshot = snapshot
        self._ents = [Entry(term=snapshot.metadata.term, index=snapshot.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None = None, data: bytes = b"") -> Snapshot:
        """Record a snapshot of the applied state at ``index`` (compaction hook, §5.1)."""
        if index <= self._snapshot.metadata.index:
            return self._snapshot
        if index > self.last_index():
            raise UnavailableError(f"snapshot index {index} beyond last index {self.last_index()}")
        meta = SnapshotMetadata(
            index=index,
            term=self.term(index),
            conf_state=conf_state or self._snapshot.metadata.conf_state,
        )
        self._snapshot = Snapshot(metadata=meta, data=data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to ``index`` (which must be covered by a snapshot the caller made)."""
        offset = self._ents[0].index
        if index <= offset:
            return
        if index > self.last_index():
            raise UnavailableError(f"compact {index} beyond last index {self.last_index()}")
        keep = self._ents[index - offset :]
        keep[0] = replace(keep[0], data=b"", type=keep[0].type)  # the new dummy
        self._ents = keep
