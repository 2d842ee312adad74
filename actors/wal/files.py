"""The WAL on disk: segment files, append, group-commit sync, segment release.

Layout, as etcd's WAL (``wal/wal.go``):

- A directory of segments named ``%016x-%016x.wal`` (sequence, first index): the sequence counts
  from 0 without gaps; the first index is the index the segment's first entry was expected to
  have when it was cut (``last_index + 1``; 0 for the very first segment).
- Every segment opens with a CRC record (the rolling crc the previous segment ended with), then
  METADATA (member_id, cluster_id), then -- if any -- the latest SNAPSHOT marker and HARD_STATE,
  so a segment never depends on the ones before it for anything but entries, and old segments
  can be deleted (``release_to``). Then entries and hard states, in the order appended.
- A segment is pre-allocated to ``segment_bytes`` (zero-filled, ``posix_fallocate``) so that an
  fsync of appended data need not update the file size. When a record would not fit, the writer
  cuts: the current segment is fsynced, and the next one is written to ``<name>.tmp``,
  pre-allocated, fsynced, renamed into place and the directory fsynced. A segment therefore
  appears complete or not at all, and a segment that is not the last one is always fully synced:
  only the last segment may have a torn tail. A record larger than a whole segment is written
  anyway; that segment grows past ``segment_bytes``.

Writes are group commits: ``append`` only encodes records into a memory buffer; ``sync`` writes
the buffer with one ``pwrite`` per segment it touches and one ``fdatasync``. The caller appends
everything that arrived while the previous sync ran, then syncs once.

Replay (``Wal.open`` on an existing directory) is in ``replay.py``: a torn tail in the last
segment is cut off here and the space re-zeroed, with a warning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Self

import structlog

from actors.wal.records import Metadata, RecordEncoder, SnapshotMarker
from actors.wal.replay import SEGMENT_RE, Segment, WalContents, replay
from proto_schemas.raft import Entry, HardState

__all__ = ["Wal", "segment_name"]

_ENTRY_OVERHEAD = 5 + 4 + 17  # frame header + crc + term/index/type
_HARD_STATE_BYTES = 5 + 4 + 24
_SNAPSHOT_BYTES = 5 + 4 + 16


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


@dataclass(slots=True)
class _Pending:
    """Encoded bytes waiting for ``sync``: for the current file (``seq`` None) or a new one."""

    data: bytearray
    seq: int | None = None
    first_index: int = 0


def _preallocate(fd: int, size: int) -> None:
    """Reserve ``size`` zero-filled bytes (never shrinks the file)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except (AttributeError, OSError):  # no posix_fallocate (macOS) or unsupported file system
        pass
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)


_datasync = getattr(os, "fdatasync", os.fsync)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Wal:
    """An open WAL: append, sync, snapshot markers, release of old segments. Single writer."""

    def __init__(
        self,
        dirpath: str,
        metadata: Metadata,
        segment_bytes: int,
        logger: Any,
    ) -> None:
        # Use Wal.open(); this only sets fields.
        self._dir = dirpath
        self._metadata = metadata
        self._segment_bytes = segment_bytes
        self._log = logger
        self._segments: list[Segment] = []
        self._fd = -1
        self._offset = 0  # next write position in the current file
        self._pending: list[_Pending] = [_Pending(bytearray())]
        self._seg_used = 0  # bytes of the last (possibly pending) segment, written or not
        self._seg_header = 0  # of which the opening records
        self._enc = RecordEncoder(0)
        self._hard_state: HardState | None = None
        self._snapshot: SnapshotMarker | None = None
        self._last_index = 0
        self._last_term = 0
        self._synced_index = 0
        self._dirty = False  # something appended since the last sync
        self._failed: BaseException | None = None  # the write error that made this Wal unusable

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        dirpath: str,
        *,
        member_id: int,
        cluster_id: int,
        segment_bytes: int = 64 * 2**20,
        logger: Any = None,
    ) -> tuple[Self, WalContents]:
        """Create a WAL in ``dirpath``, or replay the one there and open it for appending.

        Raises ``WalCorruptError`` if durable records are damaged and ``WalMismatchError`` if
        the WAL was written by another member or cluster.
        """
        log = logger if logger is not None else structlog.get_logger("wal")
        wal = cls(dirpath, Metadata(member_id, cluster_id), segment_bytes, log)
        names = wal._list_segments()
        if not names:
            wal._create_new()
            return wal, WalContents(member_id=member_id, cluster_id=cluster_id)
        contents = wal._replay(names)
        return wal, contents

    def _list_segments(self) -> list[str]:
        if not os.path.isdir(self._dir):
            return []
        names = []
        for name in os.listdir(self._dir):
            if name.endswith(".wal.tmp"):  # a cut that crashed before its rename: never synced
                os.remove(os.path.join(self._dir, name))
            elif SEGMENT_RE.match(name):
                names.append(name)
        return sorted(names)

    def _create_new(self) -> None:
        parent = os.path.dirname(os.path.abspath(self._dir))
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        _fsync_dir(parent)
        head = self._segment_head()
        self._create_segment(0, 0, head)
        self._seg_used = self._seg_header = len(head)

    def _segment_head(self) -> bytearray:
        """The records that open a segment (encoded now, continuing the chain)."""
        out = bytearray()
        self._enc.crc_record(out)
        self._enc.metadata(out, self._metadata)
        if self._snapshot is not None:
            self._enc.snapshot(out, self._snapshot)
        if self._hard_state is not None:
            self._enc.hard_state(out, self._hard_state)
        return out

    def _create_segment(self, seq: int, first_index: int, data: bytes | bytearray) -> None:
        """Write a whole new segment atomically and make it the current one."""
        name = segment_name(seq, first_index)
        path = os.path.join(self._dir, name)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _preallocate(fd, max(self._segment_bytes, len(data)))
            self._pwrite(fd, data, 0)
            os.fsync(fd)
            os.rename(tmp, path)
            _fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._offset = len(data)
        self._segments.append(Segment(seq, first_index, path))

    def _replay(self, names: list[str]) -> WalContents:
        """Replay the segments (``replay.py``), then open the last one for appending, cutting
        off a torn tail first."""
        found = replay(self._dir, names, self._metadata)
        self._segments = found.segments
        torn_bytes = found.contents.torn_bytes
        current = self._segments[-1]
        name = os.path.basename(current.path)
        self._fd = os.open(current.path, os.O_RDWR)
        if torn_bytes:
            os.ftruncate(self._fd, found.good_end)  # the re-allocation below re-zeroes
            self._log.warning(
                "wal torn tail truncated",
                segment=name,
                offset=found.good_end,
                bytes=torn_bytes,
            )
        _preallocate(self._fd, self._segment_bytes)
        if torn_bytes:
            os.fsync(self._fd)
        self._offset = self._seg_used = found.good_end
        self._seg_header = 0  # unknown and irrelevant: the segment may be cut at any time
        self._enc = RecordEncoder(found.crc)
        self._hard_state = found.hard_state
        self._snapshot = found.contents.snapshot
        self._last_index, self._last_term = found.last_index, found.last_term
        self._synced_index = self._last_index
        return found.contents

    # -- writing -------------------------------------------------------------------------------

    def _room(self, size: int) -> bytearray:
        """The buffer the next ``size`` bytes of records go to, cutting a segment if needed."""
        if self._seg_used + size > self._segment_bytes and self._seg_used > self._seg_header:
            newest = self._pending[-1]
            if newest.seq is None:  # no cut pending: the newest segment is the current file
                newest = _Pending(newest.data, self._segments[-1].seq, self._segments[-1].first_index)
            assert newest.seq is not None
            seq = newest.seq + 1
            first = max(self._last_index + 1, newest.first_index)  # names never go backwards
            head = self._segment_head()
            self._pending.append(_Pending(head, seq, first))
            self._seg_used = self._seg_header = len(head)
        self._seg_used += size
        return self._pending[-1].data

    def append(self, entries: list[Entry], hard_state: HardState | None = None) -> None:
        """Buffer ``entries`` then ``hard_state`` (nothing is written until ``sync``).

        An entry whose index is not past ``last_index`` overwrites the log from there on, as
        raft does with a conflicting suffix; replay applies the same rule. Entries must be
        consecutive and may not leave a gap after ``last_index`` (unless they start right after
        the last snapshot marker): such a log could not be replayed, so ``ValueError`` is raised
        and nothing is buffered.
        """
        if entries:
            first = entries[0].index
            if entries[-1].index - first != len(entries) - 1:
                raise ValueError(f"wal append: entries {first}..{entries[-1].index} not consecutive")
            if (
                self._last_index
                and first > self._last_index + 1
                and not (self._snapshot is not None and first == self._snapshot.index + 1)
            ):
                raise ValueError(
                    f"wal append: entry {first} leaves a gap after last index {self._last_index}"
                )
            total = sum(len(e.data) for e in entries) + _ENTRY_OVERHEAD * len(entries)
            if self._seg_used + total <= self._segment_bytes:
                self._enc.entries(self._room(total), entries)  # the usual case: no cut
            else:
                for e in entries:
                    self._enc.entry(self._room(_ENTRY_OVERHEAD + len(e.data)), e)
                    self._last_index = e.index
            self._last_index, self._last_term = entries[-1].index, entries[-1].term
            self._dirty = True
        if hard_state is not None:
            self._enc.hard_state(self._room(_HARD_STATE_BYTES), hard_state)
            self._hard_state = hard_state
            self._dirty = True

    def save_snapshot(self, index: int, term: int) -> None:
        """Record that a snapshot at (index, term) exists, and sync (as etcd's SaveSnapshot)."""
        snap = SnapshotMarker(index, term)
        self._enc.snapshot(self._room(_SNAPSHOT_BYTES), snap)
        self._snapshot = snap
        if index > self._last_index:
            self._last_index, self._last_term = index, term
        self._dirty = True
        self.sync()

    def sync(self) -> None:
        """Write everything appended since the last sync and make it durable.

        An I/O error here is fatal, as in etcd (which panics): what is on disk is unknown, so
        this Wal refuses further use and the member must restart and replay.
        """
        if self._failed is not None:
            raise RuntimeError("wal failed on an earlier write; restart and replay") from self._failed
        if not self._dirty:
            return
        try:
            self._write_out()
        except BaseException as exc:
            self._failed = exc
            raise

    def _write_out(self) -> None:
        pending, self._pending = self._pending, [_Pending(bytearray())]
        head = pending[0].data
        unsynced = bool(head)
        if head:
            self._pwrite(self._fd, head, self._offset)
            self._offset += len(head)
        for cut in pending[1:]:
            if unsynced:  # the old segment is complete on disk before the next one exists
                _datasync(self._fd)
            assert cut.seq is not None
            self._create_segment(cut.seq, cut.first_index, cut.data)  # fsyncs it
            unsynced = False
            self._log.info("wal segment cut", segment=os.path.basename(self._segments[-1].path))
        if unsynced:
            _datasync(self._fd)
        self._dirty = False
        self._synced_index = self._last_index

    def _pwrite(self, fd: int, data: bytes | bytearray, offset: int) -> None:
        """All writes go through here (tests replace it to crash mid-write)."""
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n

    def release_to(self, index: int) -> int:
        """Delete the oldest segments whose entries are all <= ``index`` (never the current
        one); returns how many. The caller guarantees everything up to ``index`` is applied and
        synced elsewhere (DESIGN.md principle 4)."""
        count = 0
        while len(self._segments) > 1 and self._segments[1].first_index - 1 <= index:
            os.remove(self._segments.pop(0).path)
            count += 1
        if count:
            _fsync_dir(self._dir)
        return count

    def close(self) -> None:
        """Sync what is buffered and close the current segment."""
        if self._fd >= 0:
            try:
                if self._failed is None:
                    self.sync()
            finally:
                self._close_fds()

    def _close_fds(self) -> None:
        """Close without syncing (what a crash does; tests use it after an injected crash)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- state ---------------------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        """Index of the last entry appended (buffered or not)."""
        return self._last_index

    @property
    def last_term(self) -> int:
        return self._last_term

    @property
    def synced_index(self) -> int:
        """Index of the last entry known durable (``last_index`` as of the last ``sync``)."""
        return self._synced_index

    @property
    def segments(self) -> list[str]:
        """Names of the segment files on disk, oldest first."""
        return [os.path.basename(s.path) for s in self._segments]

    def __enter__(self) -> Wal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
