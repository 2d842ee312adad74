"""Snapshots in the raft core's shell: taking them, sending them, receiving them.

Taking (every member): after ``--snapshot-count`` applied entries the shell asks the backend to
sync and report its consistent index J, records a raft snapshot at J (conf state and member
table as of J), keeps the catch-up entries before J in memory for slow followers
(``--experimental-snapshot-catchup-entries``), and has the WAL writer save the snapshot and
release the segments before J. The backend is never
behind J (it reported J after a synced write), so nothing released is needed again.

Sending (the leader): when the core wants to send a snapshot, the backend's current state is
streamed instead, piece by piece as each piece is accepted by the peer's snapshot lane (the
backend reads the next one only when asked: flow control end to end). The raft message goes in
the last chunk with the metadata of the backend's consistent index, as etcd merges its db
snapshot into the raft snapshot message. A stream stuck longer than ``STALL_S`` is abandoned and
reported failed, so the leader probes the follower again later.

Receiving (a follower): chunks go to the backend, which installs the copy atomically; only then
is the raft message stepped, so the core never believes in state the backend does not have.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

from actors.raft.membership import MembershipLog, MemberTable
from actors.raft.rawnode import RawNode
from actors.raft.storage import MemoryStorage
from proto_schemas.cluster import SnapshotChunk, SnapshotInstalled, SnapshotPiece, SnapshotPull
from proto_schemas.raft import MessageType, RaftMessage, Snapshot, SnapshotMetadata

STALL_S = 10.0
ASK_AGAIN_S = 10.0


@dataclass
class _Stream:
    snap_id: int
    msg: RaftMessage
    updated: float
    waiting: SnapshotChunk | None = None  # a chunk the peer's lane did not take yet


class Snapshots:
    def __init__(
        self,
        *,
        cluster_id: int,
        member_id: int,
        snapshot_count: int,
        catch_up_entries: int,
        send_chunk: Callable[[int, SnapshotChunk], bool],
        to_backend: Callable[[object], None],
    ) -> None:
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.snapshot_count = snapshot_count
        self.catch_up_entries = catch_up_entries
        self.send_chunk = send_chunk  # the peer transport's: False when the peer's lane is full
        self.to_backend = to_backend
        self.snap_index = 0
        self.asked_at: float | None = None  # when the backend was asked for a synced index
        self.sending: dict[int, _Stream] = {}  # peer -> stream
        self.receiving: dict[int, RaftMessage] = {}  # snap id -> the message to step once installed
        self._rng = random.Random()

    # -- taking ------------------------------------------------------------------------------------
    def maybe_take(self, applied: int, now: float, request: Callable[[], None]) -> None:
        """Ask the backend for a synced index once ``snapshot_count`` entries were applied
        since the last snapshot; again after ``ASK_AGAIN_S`` if it never answered (a backend
        that restarted meanwhile), or no snapshot would ever be taken again."""
        if self.asked_at is not None and now - self.asked_at < ASK_AGAIN_S:
            return
        if applied - self.snap_index >= self.snapshot_count:
            self.asked_at = now
            request()  # the backend answers with its synced consistent index

    def take(self, index: int, storage: MemoryStorage, history: MembershipLog) -> Snapshot | None:
        """Record a snapshot at the backend's synced ``index``; returns it for the WAL."""
        self.asked_at = None
        if index <= self.snap_index or index > storage.last_index():
            return None
        membership = history.at(index)
        snap = storage.create_snapshot(
            index, MemberTable(membership.members).conf_state(), history.encode_at(index)
        )
        storage.compact(max(storage.first_index() - 1, index - self.catch_up_entries))
        history.forget_before(index)
        self.snap_index = index
        return snap

    # -- sending -----------------------------------------------------------------------------------
    def outgoing(self, messages: list[RaftMessage], now: float) -> list[RaftMessage]:
        """Start a stream for each snapshot message; returns the other messages."""
        rest = []
        for m in messages:
            if m.type is not MessageType.SNAP:
                rest.append(m)
            elif m.to not in self.sending:
                snap_id = self._rng.getrandbits(63) or 1
                self.sending[m.to] = _Stream(snap_id, m, now)
                self.to_backend(SnapshotPull(snap_id=snap_id))
        return rest

    def piece(
        self, piece: SnapshotPiece, node: RawNode, storage: MemoryStorage, history: MembershipLog, now: float
    ) -> None:
        stream = next((s for s in self.sending.values() if s.snap_id == piece.snap_id), None)
        if stream is None:
            self.to_backend(SnapshotPull(snap_id=piece.snap_id, close=True))
            return
        done = None
        if piece.last:
            term = storage.term(piece.index)
            meta = SnapshotMetadata(
                index=piece.index,
                term=term,
                conf_state=MemberTable(history.at(piece.index).members).conf_state(),
            )
            snapshot = Snapshot(metadata=meta, data=history.encode_at(piece.index))
            done = dataclasses.replace(stream.msg, snapshot=snapshot)
        stream.waiting = SnapshotChunk(
            cluster_id=self.cluster_id,
            from_=self.member_id,
            snap_id=piece.snap_id,
            seq=piece.seq,
            pairs=piece.pairs,
            done=done,
        )
        stream.updated = now
        self._push(stream, node)

    def _push(self, stream: _Stream, node: RawNode) -> None:
        chunk = stream.waiting
        if chunk is None or not self.send_chunk(stream.msg.to, chunk):
            return
        stream.waiting = None
        if chunk.done is None:
            self.to_backend(SnapshotPull(snap_id=stream.snap_id))
        else:
            del self.sending[stream.msg.to]
            node.report_snapshot(stream.msg.to, ok=True)

    def tick(self, node: RawNode, now: float) -> None:
        for stream in list(self.sending.values()):
            self._push(stream, node)
            if stream.msg.to in self.sending and now - stream.updated > STALL_S:
                del self.sending[stream.msg.to]
                self.to_backend(SnapshotPull(snap_id=stream.snap_id, close=True))
                node.report_snapshot(stream.msg.to, ok=False)

    # -- receiving ---------------------------------------------------------------------------------
    def chunk(self, chunk: SnapshotChunk) -> None:
        if chunk.seq == 0:
            self.receiving.clear()  # a new snapshot supersedes an unfinished one
        if chunk.done is not None:
            self.receiving[chunk.snap_id] = chunk.done
        self.to_backend(chunk)

    def installed(self, msg: SnapshotInstalled) -> RaftMessage | None:
        """The raft message to step now that the backend holds the snapshot (None if failed)."""
        done = self.receiving.pop(msg.snap_id, None)
        if done is None or msg.error or done.snapshot is None:
            return None
        if msg.index != done.snapshot.metadata.index:
            return None  # the backend holds another copy than the message describes
        return done
