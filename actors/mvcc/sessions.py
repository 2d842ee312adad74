"""Exactly-once writes: the answered writes of each client session, kept with the data.

A write can reach the log twice: a client whose gateway died sends it again under the same
(client id, sequence number), and a gateway proposes again what a restarted raft core or a
changed leader may have lost. This table, applied with the entries in log order on every
member, makes the second copy a no-op that answers what the first did (the Raft thesis's
client sessions, §6.3):
- a session is a client id; each write names its sequence number (``seq``) and the lowest
  sequence number among its client's writes not yet answered (``acked``). Answers below
  ``acked`` are dropped (the client has them), and a write below it is refused as a late
  duplicate (nobody waits for it);
- a write found in the table is not applied again: its recorded answer is returned, and it
  makes no revision and no event;
- the table lives in the backend's LevelDB (``keys.SESSION``), written in the write batch of
  the entries it records, with the consistent index: a restarted backend, a snapshot, a
  defragmented copy and a replay all agree with the data;
- at most ``max_sessions`` are kept: the least recently used goes first, in log order, so every
  member drops the same ones. A copy arriving after its session was dropped (that many other
  sessions wrote meanwhile) would apply again; copies come within a call's deadline, seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cbor2

from actors.mvcc import keys as K

MAX_SESSIONS = 10_000


class _Stale:
    def __repr__(self) -> str:
        return "STALE"


STALE = _Stale()  # a write below its session's ``acked``: answered long ago


@dataclass(slots=True)
class Session:
    acked: int = 0
    last_index: int = 0
    answers: dict[int, bytes] = field(default_factory=dict)


class SessionTable:
    def __init__(self, db: Any, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        loaded: list[tuple[int, int, Session]] = []
        for skey, raw in db.iterator(start=K.SESSION, stop=K.SESSION_END):
            acked, last_index, answers = cbor2.loads(raw)
            session = Session(acked, last_index, answers)
            loaded.append((last_index, int.from_bytes(skey[1:], "big"), session))
        loaded.sort(key=lambda item: item[:2])
        # least recently used first
        self._sessions: OrderedDict[int, Session] = OrderedDict((cid, s) for _, cid, s in loaded)
        self._dirty: set[int] = set()
        self._dropped: set[int] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    def answered(self, client_id: int, seq: int) -> bytes | _Stale | None:
        """The recorded answer to this write, ``STALE`` for a late duplicate, None if it is new."""
        session = self._sessions.get(client_id)
        if session is None:
            return None
        answer = session.answers.get(seq)
        if answer is not None:
            return answer
        return STALE if seq < session.acked else None

    def record(self, client_id: int, seq: int, acked: int, answer: bytes, index: int) -> None:
        """The answer of a write applied at ``index``."""
        session = self._sessions.get(client_id)
        if session is None:
            session = self._sessions[client_id] = Session()
        else:
            self._sessions.move_to_end(client_id)
        if acked > session.acked:
            session.acked = acked
            session.answers = {s: a for s, a in session.answers.items() if s >= acked}
        if seq >= session.acked:
            session.answers[seq] = answer
        session.last_index = index
        self._dirty.add(client_id)
        self._dropped.discard(client_id)
        while len(self._sessions) > self.max_sessions:
            dropped, _ = self._sessions.popitem(last=False)
            self._dirty.discard(dropped)
            self._dropped.add(dropped)

    def flush(self, wb: Any) -> None:
        """Stage what changed since the last flush into the backend's write batch."""
        for client_id in self._dirty:
            s = self._sessions[client_id]
            wb.put(K.session_key(client_id), cbor2.dumps([s.acked, s.last_index, s.answers]))
        for client_id in self._dropped:
            wb.delete(K.session_key(client_id))
        self._dirty.clear()
        self._dropped.clear()
