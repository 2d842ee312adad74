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

An append that carries only a commit index (the leader's commit moved, nothing new to send)
goes out at once, as in etcd. It used to be held back for the next append to carry; now that a
follower answers it without a trip through its WAL writer (persisting.py) it costs little, and
under load the leader's rounds come a group-commit delay apart (group_commit.py), so holding it
mostly delayed the followers' applies, and with them the answers to their clients.
"""

from __future__ import annotations

import dataclasses

from proto_schemas.raft import MessageType, RaftMessage


def coalesce(messages: list[RaftMessage]) -> list[RaftMessage]:
    """``messages`` with neighbouring appends (and append answers) to one peer merged. A run of
    appends becomes one message at the end, built once: a flush under load may hold a dozen."""
    runs: list[list[RaftMessage]] = []
    last_for: dict[int, int] = {}  # peer -> index in ``runs`` of the last run to it
    for m in messages:
        at = last_for.get(m.to)
        if at is not None:
            run = runs[at]
            if _continues(run[-1], m):
                if m.type is MessageType.APP:
                    run.append(m)
                else:
                    run[-1] = m  # an answer acknowledges everything its predecessor did
                continue
        last_for[m.to] = len(runs)
        runs.append([m])
    return [run[0] if len(run) == 1 else _joined(run) for run in runs]


def _continues(first: RaftMessage, second: RaftMessage) -> bool:
    """Whether ``second`` may be merged into ``first`` (the last of a run)."""
    if first.term != second.term or first.type is not second.type:
        return False
    if first.type is MessageType.APP:
        last_index = first.index + len(first.entries)
        last_term = first.entries[-1].term if first.entries else first.log_term
        return second.index == last_index and second.log_term == last_term
    if first.type is MessageType.APP_RESP:
        return not (first.reject or second.reject or second.index < first.index)
    return False


def _joined(run: list[RaftMessage]) -> RaftMessage:
    """One append for a run of appends that continue each other."""
    entries = [e for m in run for e in m.entries]
    return dataclasses.replace(run[0], entries=entries, commit=max(m.commit for m in run))
