"""The WAL writer's logic without I/O: group commit and acknowledgements.

Rules:
- Every ``Persist`` that arrives is added to the open batch; ``take_batch`` closes it and opens
  the next. The shell writes and fsyncs one batch at a time, so whatever arrived while the
  previous fsync ran is committed by the next one (group commit, as etcd's raft node does with
  the entries of several ``Ready``s).
- Within a batch a later ``Persist`` whose entries start at or before the batch's last index
  overwrites that suffix (raft replaced a conflicting suffix), so it is never written at all;
  the hard state of the latest ``Persist`` wins.
- A batch is fsynced only if it holds entries, a snapshot, or a new term or vote (etcd's
  ``MustSync``). A batch that only moves the commit index is written without an fsync: commit is
  knowledge that can be learned again from the leader, never a promise, and the next fsync
  makes it durable anyway. Without this every write cost each member a second fsync.
- The raft messages of a batch (a follower's append response, a vote) are released only in the
  ``Persisted`` built after that batch is durable: nothing is acknowledged before it is on disk
  (Raft thesis 3.8: persist before responding). It names the generation and sequence number
  of the batch's last ``Persist``, so that the raft core knows when none is still on its way
  (actors/raft/persisting.py).
- ``WalLog`` mirrors what a replay of the WAL would find now, so that a raft core restarted
  alone loads its log from the running writer instead of a writer that replays the files. Each
  raft core names itself with a random ``generation`` in ``WalLoad`` and every ``Persist``:
  once a new one loaded, what its dead predecessor sent is dropped (a late vote of the old
  core, written after the new one loaded its hard state, could make it vote twice in a term).
"""

from __future__ import annotations

from typing import NamedTuple

from actors.raft.rawnode import must_sync
from proto_schemas.internal import Persist, Persisted
from proto_schemas.raft import Entry, HardState, RaftMessage, Snapshot

__all__ = ["Batch", "WalLog", "WalWriterCore"]


class Batch(NamedTuple):
    entries: list[Entry]
    hard_state: HardState | None
    messages: list[RaftMessage]
    snapshot: Snapshot | None = None
    must_sync: bool = True
    last: tuple[int, int] = (0, 0)  # (generation, seq) of its last ``Persist``


class WalWriterCore:
    """Accumulates ``Persist`` messages into batches and builds the ``Persisted`` acks.

    ``last_index``/``last_term`` are the end of the durable log when the writer starts (from the
    WAL's replay); the core moves them along with every batch it hands out.
    """

    def __init__(self, last_index: int = 0, last_term: int = 0, hard_state: HardState | None = None) -> None:
        self._entries: list[Entry] = []
        self._hard_state: HardState | None = None
        self._messages: list[RaftMessage] = []
        self._snapshot: Snapshot | None = None
        self._open = False  # something was added since the last take_batch
        self._last = (0, 0)  # (generation, seq) of the last ``Persist`` added to the open batch
        self._term_vote = (hard_state.term, hard_state.vote) if hard_state else (0, 0)  # last handed out
        self._in_flight: Batch | None = None
        self.generation = 0  # the raft core's that loaded last (0: none yet)
        self.last_index = last_index  # the log's end once the taken batches are durable
        self.last_term = last_term

    def add(self, msg: Persist) -> bool:
        """Add one ``Persist`` to the open batch; False if it came from a raft core that is no
        longer the one that loaded last (dropped)."""
        if self.generation and msg.generation != self.generation:
            return False
        if msg.snapshot is not None:
            # A snapshot replaces the whole log before it: what the batch held is superseded.
            self._snapshot = msg.snapshot
            self._entries = [e for e in self._entries if e.index > msg.snapshot.metadata.index]
        entries = msg.entries
        if entries:
            mine = self._entries
            if mine and entries[0].index <= mine[-1].index:
                del mine[max(entries[0].index - mine[0].index, 0) :]
            mine.extend(entries)
        if msg.hard_state is not None:
            self._hard_state = msg.hard_state
        self._messages.extend(msg.messages)
        self._last = (msg.generation, msg.seq)
        self._open = True
        return True

    step = add  # the name every core's entry point has

    def take_batch(self) -> Batch | None:
        """Everything added since the last batch, or ``None`` if nothing was."""
        if not self._open:
            return None
        hs = self._hard_state
        term_vote = (hs.term, hs.vote) if hs is not None else self._term_vote
        sync = must_sync(term_vote, self._term_vote, bool(self._entries), self._snapshot is not None)
        self._term_vote = term_vote
        batch = Batch(self._entries, self._hard_state, self._messages, self._snapshot, sync, self._last)
        self._entries, self._hard_state, self._messages, self._snapshot = [], None, [], None
        self._open = False
        if batch.snapshot is not None:
            meta = batch.snapshot.metadata
            self.last_index, self.last_term = meta.index, meta.term
        if batch.entries:
            self.last_index, self.last_term = batch.entries[-1].index, batch.entries[-1].term
        self._in_flight = batch
        return batch

    def persisted(self, batch: Batch | int | None = None, last_term: int | None = None) -> Persisted:
        """The ack for the batch just made durable, releasing its messages.

        Called as ``persisted(batch)`` the durable end is the one the core tracks; called as
        ``persisted(last_index, last_term)`` (what the WAL reports) those values are used, with
        the messages of the last batch taken.
        """
        if isinstance(batch, int):
            if last_term is None:
                raise TypeError("persisted(last_index, last_term) needs both")
            self.last_index, self.last_term = batch, last_term
            batch = None
        done = batch if batch is not None else self._in_flight
        self._in_flight = None
        return Persisted(
            last_index=self.last_index,
            last_term=self.last_term,
            messages=list(done.messages) if done is not None else [],
            generation=done.last[0] if done is not None else 0,
            seq=done.last[1] if done is not None else 0,
        )


class WalLog:
    """The log as the WAL holds it: the last snapshot, the entries after it, the hard state."""

    def __init__(self, entries: list[Entry], hard_state: HardState, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot
        self.hard_state = hard_state
        self.entries: list[Entry] = []
        self.append(entries)

    def append(self, entries: list[Entry]) -> None:
        """Entries written after the ones held: a conflicting suffix is replaced."""
        if not entries:
            return
        mine = self.entries
        if mine and entries[0].index <= mine[-1].index:
            del mine[max(entries[0].index - mine[0].index, 0) :]
        elif mine and entries[0].index != mine[-1].index + 1:
            mine.clear()  # the log restarts after an installed snapshot
        mine.extend(e for e in entries if self.snapshot is None or e.index > self.snapshot.metadata.index)

    def saved(self, batch: Batch) -> None:
        """A batch was written: its snapshot (installed from the leader), entries, hard state."""
        if batch.snapshot is not None:
            self.snapshot_saved(batch.snapshot)
        self.append(batch.entries)
        if batch.hard_state is not None:
            self.hard_state = batch.hard_state

    def snapshot_saved(self, snapshot: Snapshot) -> None:
        """A snapshot was saved: the entries it covers are no longer needed to restart."""
        if self.snapshot is not None and snapshot.metadata.index <= self.snapshot.metadata.index:
            return
        self.snapshot = snapshot
        self.entries = [e for e in self.entries if e.index > snapshot.metadata.index]
