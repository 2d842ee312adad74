"""Backend snapshots for followers: sending a point-in-time copy, installing one atomically.

Sending: a LevelDB snapshot (a consistent view that later applies do not change) is read in
pieces of about ``PIECE_BYTES``, one per pull, so a large backend is never held in memory or in
a queue as a whole. Its consistent index tells the follower how far the copy reaches.

Installing: pieces are written into ``<db>.incoming``; only the complete copy is renamed to
``<db>.ready`` and swapped in (``<db>`` -> ``<db>.old``, ``<db>.ready`` -> ``<db>``). A crash
at any point leaves either the old backend or the complete new one (``recover`` finishes an
interrupted swap at start); a partial copy is never opened as the backend.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import plyvel

PIECE_BYTES = 1 << 20


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(db_dir: str) -> str | None:
    """Finish or discard an interrupted install; returns what was done (for the log)."""
    ready, old, incoming = db_dir + ".ready", db_dir + ".old", db_dir + ".incoming"
    done = None
    if not os.path.exists(db_dir) and os.path.exists(ready):
        os.rename(ready, db_dir)
        done = "snapshot install completed"
    elif os.path.exists(ready):
        done = "snapshot install discarded"
    for leftover in (ready, old, incoming):
        if os.path.exists(leftover):
            shutil.rmtree(leftover)
    _fsync_dir(os.path.dirname(os.path.abspath(db_dir)))
    return done


class Outgoing:
    """One snapshot being read for a follower."""

    def __init__(self, db: Any, index: int, revision: int = 0, compact_revision: int = 0) -> None:
        self.index = index
        self.revision = revision
        self.compact_revision = compact_revision
        self._snap = db.snapshot()
        self._it = self._snap.iterator()
        self.seq = 0
        self.done = False

    def next_piece(self) -> tuple[int, list[bytes], bool]:
        pairs: list[bytes] = []
        size = 0
        for key, value in self._it:
            pairs += (key, value)
            size += len(key) + len(value)
            if size >= PIECE_BYTES:
                break
        else:
            self.done = True
        seq = self.seq
        self.seq += 1
        if self.done:
            self.close()
        return seq, pairs, self.done

    def close(self) -> None:
        self._it.close()
        self._snap.close()


class ForClients:
    """Copies being read by clients (``snapshot save``), by id; one left unread for
    ``idle_s`` is closed (its LevelDB snapshot pins old data)."""

    def __init__(self, idle_s: float = 30.0) -> None:
        self.idle_s = idle_s
        self._open: dict[int, tuple[Outgoing, float]] = {}

    def piece(
        self, opener: Callable[[], Outgoing], snap_id: int, seq: int, now: float
    ) -> tuple[int, Outgoing, int, list[bytes], bool]:
        """-> (snap_id, the copy, seq, pairs, done); ``snap_id`` 0 opens a new copy with
        ``opener``. Anything but the next piece of an open copy is refused (``KeyError``)."""
        if snap_id == 0:
            snap_id = int.from_bytes(os.urandom(7), "big") or 1
            self._open[snap_id] = (opener(), now)
        copy, _ = self._open[snap_id]
        if seq != copy.seq:
            raise KeyError(snap_id)
        seq, pairs, done = copy.next_piece()
        if done:
            del self._open[snap_id]
        else:
            self._open[snap_id] = (copy, now)
        return snap_id, copy, seq, pairs, done

    def expire(self, now: float) -> None:
        for snap_id, (copy, used) in list(self._open.items()):
            if now - used > self.idle_s:
                copy.close()
                del self._open[snap_id]

    def close(self) -> None:
        """Before the backend is closed (a snapshot install replaces it)."""
        for copy, _ in self._open.values():
            copy.close()
        self._open.clear()


class Incoming:
    """One snapshot being received from the leader (pieces in order, or it is abandoned)."""

    def __init__(self, db_dir: str, snap_id: int) -> None:
        self.db_dir = db_dir
        self.snap_id = snap_id
        self.path = db_dir + ".incoming"
        if os.path.exists(self.path):
            shutil.rmtree(self.path)
        self._db = plyvel.DB(self.path, create_if_missing=True, error_if_exists=True)
        self.next_seq = 0

    def add(self, seq: int, pairs: list[bytes]) -> bool:
        """Write one piece; False if it is not the next one (the copy is then useless)."""
        if seq != self.next_seq or len(pairs) % 2:
            return False
        with self._db.write_batch() as wb:
            for i in range(0, len(pairs), 2):
                wb.put(pairs[i], pairs[i + 1])
        self.next_seq += 1
        return True

    def finish(self) -> str:
        """Make the complete copy durable and mark it ready; the caller swaps it in."""
        self._db.delete(b"\x00", sync=True)  # a synced write makes LevelDB's log durable
        self._db.close()
        ready = self.db_dir + ".ready"
        os.rename(self.path, ready)
        _fsync_dir(os.path.dirname(os.path.abspath(self.db_dir)))
        return ready

    def abandon(self) -> None:
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)


def swap_in(db_dir: str, ready: str) -> None:
    """Replace the (closed) backend at ``db_dir`` with the ready copy."""
    old = db_dir + ".old"
    os.rename(db_dir, old)
    os.rename(ready, db_dir)
    _fsync_dir(os.path.dirname(os.path.abspath(db_dir)))
    shutil.rmtree(old)
