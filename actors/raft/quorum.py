"""Majority arithmetic (etcd-raft's ``quorum`` package, majority configurations only).

Rules:
- The commit index is the largest index acknowledged by a majority of voters: sort the voters'
  acknowledged indexes descending and take the one at position ``n // 2`` (thesis §3.6).
  A voter with no acknowledgement counts as 0. Learners never count (thesis §4.2.1).
- An election is WON once a majority granted, LOST once a majority can no longer be reached,
  PENDING otherwise (a candidate waits; thesis §3.4).
- An empty voter set commits everything and wins every vote, as in etcd (a joint config's
  empty half must not block); the core never builds one for a live cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority(n: int) -> int:
    """Votes needed among ``n`` voters."""
    return n // 2 + 1


def committed_index(voters: Collection[int], acked: Mapping[int, int]) -> int:
    """Largest index that a majority of ``voters`` has acknowledged."""
    if not voters:
        return 1 << 63
    matched = sorted((acked.get(v, 0) for v in voters), reverse=True)
    return matched[majority(len(voters)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Tally ``votes`` (voter -> granted) among ``voters``; other ids are ignored."""
    if not voters:
        return VoteResult.WON
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[int], members: Collection[int]) -> bool:
    """``members`` (e.g. the recently active, or the read acks) contain a majority of voters."""
    present = set(members)
    return sum(1 for v in voters if v in present) >= majority(len(voters)) if voters else True
