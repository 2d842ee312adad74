"""Merge the raft messages one flush sends to a peer, so that a follower answers once.

Under load a leader's flush holds, for each follower, an append with new entries and another
carrying the commit index that the follower's last answer moved (or several appends, one per
proposal batch stepped in that iteration). Each one costs the follower a step, a trip through
its WAL writer and an answer; merged, they cost one. Likewise a follower's flush may hold
several successful append answers for the leader, of which the last says everything.

Rules (only neighbours in one peer's sequence are merged, so no message overtakes another):
- Two appends of one term, the second continuing the first (its ``index`` is the first's last
  entry, its ``log_term`` that entry's term), become one append: the first's ``index`` and
  ``log_term``, both entry lists, the higher commit. The follower commits ``min(commit, last
  new index)`` either way, and the leader's in-flight window frees both on the one answer.
- Two successful append answers of one term, the second not behind the first, become the
  second: an answer for index ``i`` acknowledges everything up to ``i``. Rejections, heartbeats,
  votes and snapshots are never merged.
"""

from __future__ import annotations

import dataclasses

from proto_schemas.raft import MessageType, RaftMessage


def coalesce(messages: list[RaftMessage]) -> list[RaftMessage]:
    """``messages`` with neighbouring appends (and append answers) to one peer merged."""
    out: list[RaftMessage] = []
    last_for: dict[int, int] = {}  # peer -> index in ``out`` of the last message to it
    for m in messages:
        at = last_for.get(m.to)
        if at is not None:
            merged = _merge(out[at], m)
            if merged is not None:
                out[at] = merged
                continue
        last_for[m.to] = len(out)
        out.append(m)
    return out


def _merge(first: RaftMessage, second: RaftMessage) -> RaftMessage | None:
    if first.term != second.term or first.type is not second.type:
        return None
    if first.type is MessageType.APP:
        last_index = first.index + len(first.entries)
        last_term = first.entries[-1].term if first.entries else first.log_term
        if second.index != last_index or second.log_term != last_term:
            return None
        return dataclasses.replace(
            first, entries=[*first.entries, *second.entries], commit=max(first.commit, second.commit)
        )
    if first.type is MessageType.APP_RESP:
        if first.reject or second.reject or second.index < first.index:
            return None
        return second
    return None
