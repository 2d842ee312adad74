"""What of each Ready goes to the WAL writer, and which answers may leave without it.

Rules (Raft thesis §3.8: persist before responding):
- Entries, a snapshot, or a new term or vote go to the WAL writer (``Persist``), with the
  messages that vouch for them (append answers, votes); the writer releases those messages only
  once the write is durable (``Persisted``).
- A Ready in which only the commit index moved sends nothing: commit is knowledge a restarted
  member learns again, so its hard state rides along with the next write.
- A Ready with nothing to make durable but with such messages (the answer to an append that
  carried no entries, only a commit index; a vote request answered "no", or "yes" again for the
  vote already cast): if no ``Persist`` is on its way to disk, everything those messages vouch
  for is durable already, and they go out at once instead of through the WAL writer. Each
  ``Persist`` carries a sequence number the writer echoes in ``Persisted`` (the highest of the
  batch it made durable), so "nothing on its way" is exact. Under a steady write load a
  follower answers every commit-only append this way: a round trip through its WAL writer
  less, which at a few writes a second was half of each follower's WAL and raft wake-ups.

The raft core and its WAL writer restart together, so a ``Persist`` lost with a dead writer
never leaves a count behind.
"""

from __future__ import annotations

from actors.raft.rawnode import Ready, must_sync
from proto_schemas.internal import Persist
from proto_schemas.raft import HardState, RaftMessage


class Persisting:
    def __init__(self, hard_state: HardState | None = None) -> None:
        self._term_vote = (hard_state.term, hard_state.vote) if hard_state else (0, 0)  # last sent
        self._hard_state: HardState | None = None  # newer than the WAL's, not sent yet
        self._sent = 0  # sequence number of the last Persist
        self._done = 0  # the highest one the WAL writer made durable

    def loaded(self, hard_state: HardState) -> None:
        """The WAL writer's hard state at the raft core's start."""
        self._term_vote = (hard_state.term, hard_state.vote)

    def take(self, rd: Ready, generation: int) -> tuple[Persist | None, list[RaftMessage]]:
        """The ``Persist`` for the WAL writer (None: nothing to write now), and the messages
        that may go to the peers at once."""
        hs = rd.hard_state
        if hs is not None:
            self._hard_state = hs
        term_vote = (hs.term, hs.vote) if hs is not None else self._term_vote
        if not must_sync(term_vote, self._term_vote, bool(rd.entries), rd.snapshot is not None):
            if not rd.messages_after_persist:
                return None, []
            if self._done == self._sent:
                return None, list(rd.messages_after_persist)
        self._term_vote = term_vote
        self._sent += 1
        persist = Persist(
            entries=list(rd.entries),
            hard_state=self._hard_state,
            messages=list(rd.messages_after_persist),
            snapshot=rd.snapshot,
            generation=generation,
            seq=self._sent,
        )
        self._hard_state = None
        return persist, []

    def persisted(self, seq: int) -> None:
        """The WAL writer made every ``Persist`` up to ``seq`` durable."""
        self._done = max(self._done, seq)
