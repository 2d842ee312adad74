"""Which members hold data that disagrees with the others' (etcd's corruption checks).

HashKV(R) is a hash of every version at or below revision R still stored; two members that
applied the same log and compacted to the same revision have the same hash at every R. So a
hash is only compared with one taken at the same revision over the same compacted range (equal
compact revisions); anything else (a peer behind R, or compacted past it) proves nothing.

- Initial check (a member at start): its own hash at its current revision against each peer's
  at that revision. Any difference: this member's data is suspect (etcd refuses to start it;
  etcdz raises CORRUPT for it, which stops every write in the cluster until an operator acts).
- Periodic check (the leader): its own hash, then each peer's at the same revision, then its
  own again. The leader trusts itself unless its own hash changed at an unchanged revision
  and compaction (its storage is failing); otherwise a peer that disagrees is corrupt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HashAt:
    member_id: int
    revision: int  # the revision hashed
    compact_revision: int
    hash: int


def comparable(a: HashAt, b: HashAt) -> bool:
    return a.revision == b.revision and a.compact_revision == b.compact_revision


def initial_mismatch(own: HashAt, peers: list[HashAt]) -> list[int]:
    """The peers whose hash differs from ours (non-empty: we are the suspect)."""
    return [p.member_id for p in peers if comparable(own, p) and p.hash != own.hash]


def periodic_mismatch(first: HashAt, peers: list[HashAt], second: HashAt) -> list[int]:
    """The members to raise CORRUPT for, as the leader judges: itself if its own hash moved
    while nothing else did, else every peer that disagrees with it."""
    if comparable(first, second) and first.hash != second.hash:
        return [first.member_id]
    return [p.member_id for p in peers if comparable(first, p) and p.hash != first.hash]
