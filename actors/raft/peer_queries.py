"""Other members' queries on the peer port that wait for this member's answer.

A hash query waits for the backend, a lease query for the lease expirer, a ReadIndex query for
a heartbeat round: each gets a local id (the backend's or expirer's read id, or the ReadIndex
context), and its answer goes back to the asker's connection under the asker's query id.

Bounds, per kind of query: at most ``limit`` wait at once (a hash walks the whole backend: a
few; lease and ReadIndex queries are cheap: many), and one not answered within ``timeout_s``
(its answer was lost with a restarted neighbour) is forgotten when the kind is full, so a lost
answer never holds a place for long. A query refused for lack of room is dropped: the asker's
call times out, as it would with a lost message.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    asker: bytes  # the asker's connection on the peer port
    query_id: int  # the asker's number for it
    kind: type
    deadline: float


class PeerQueries:
    def __init__(self, limits: dict[type, tuple[int, float]]) -> None:
        """``limits``: for each kind of query, (how many may wait at once, seconds to wait)."""
        self._limits = limits
        self._ids = itertools.count(1)
        self._waiting: dict[int, Waiting] = {}
        self._count: Counter[type] = Counter()

    def add(self, asker: bytes, kind: type, query_id: int, now: float) -> int | None:
        """The local id the query waits under, or None if its kind has no room left."""
        limit, timeout_s = self._limits[kind]
        if self._count[kind] >= limit:
            self._forget_expired(kind, now)
            if self._count[kind] >= limit:
                return None
        local_id = next(self._ids)
        self._waiting[local_id] = Waiting(asker, query_id, kind, now + timeout_s)
        self._count[kind] += 1
        return local_id

    def pop(self, local_id: int) -> Waiting | None:
        """The query waiting under ``local_id`` (now answered), if any."""
        return self._take(local_id) if local_id in self._waiting else None

    def pop_all(self, kind: type) -> list[Waiting]:
        """Every query of ``kind`` still waiting (to be answered at once: their answers are lost)."""
        return [self._take(i) for i, w in list(self._waiting.items()) if w.kind is kind]

    def __len__(self) -> int:
        return len(self._waiting)

    def _take(self, local_id: int) -> Waiting:
        waiting = self._waiting.pop(local_id)
        self._count[waiting.kind] -= 1
        return waiting

    def _forget_expired(self, kind: type, now: float) -> None:
        for local_id in [i for i, w in self._waiting.items() if w.kind is kind and w.deadline <= now]:
            self._take(local_id)
