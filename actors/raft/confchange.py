"""Single-step membership changes (etcd-raft's ``confchange``, without joint consensus).

Rules and why:
- One voter is added or removed at a time (thesis §4.1): every majority of the old voters and
  every majority of the new ones share a member, so two leaders cannot be elected in one term
  from the two configurations. The leader accepts a new change only once the previous one is
  applied (``Raft.pending_conf_index``), so live configurations differ by one voter at most.
- A change takes effect when its entry is *applied*, as in etcd (the thesis switches on
  append), so an entry that is never committed never changes anybody's configuration. A new
  leader treats its whole log as possibly holding an unapplied change (``pending_conf_index``
  starts at its last index), so it proposes no change before it has applied its predecessors'.
- Applying is idempotent: a restarted node replays its committed entries (bootstrap entries
  too) and re-applies their changes on top of the snapshot's configuration.
- Learners (thesis §4.2.1) receive the log but never vote and never count in a quorum.
  ``ADD_NODE`` on a learner promotes it. A voter is never demoted to a learner (etcd refuses
  it): applying such a change does nothing, proposing it is refused.
- The last voter cannot be removed: nobody could elect a leader or commit anything again.
- ``UPDATE_NODE`` changes only the member's metadata (the shell's member table), never the
  configuration.
"""

from __future__ import annotations

from proto_schemas.raft import ConfChange, ConfChangeType

#: (voters, learners): disjoint sets of node ids.
Members = tuple[frozenset[int], frozenset[int]]


def apply_change(voters: frozenset[int], learners: frozenset[int], cc: ConfChange) -> Members:
    """The configuration after ``cc``. Changes that make no sense here are no-ops, never errors:
    every node must reach the same configuration from the same committed entries."""
    nid = cc.node_id
    if cc.type is ConfChangeType.ADD_NODE:
        return voters | {nid}, learners - {nid}
    if cc.type is ConfChangeType.ADD_LEARNER_NODE:
        if nid in voters:
            return voters, learners  # no demotion
        return voters, learners | {nid}
    if cc.type is ConfChangeType.REMOVE_NODE:
        if voters == {nid}:
            return voters, learners  # never leave a cluster without voters
        return voters - {nid}, learners - {nid}
    return voters, learners  # UPDATE_NODE: metadata only


def refusal(voters: frozenset[int], learners: frozenset[int], cc: ConfChange) -> str | None:
    """Why the leader must not propose ``cc`` on top of this configuration, or None."""
    nid = cc.node_id
    if nid <= 0:
        return f"membership change names an invalid node id {nid}"
    if cc.type is ConfChangeType.REMOVE_NODE and voters == {nid}:
        return f"cannot remove {nid:x}: it is the last voter"
    if cc.type is ConfChangeType.ADD_LEARNER_NODE and nid in voters:
        return f"cannot demote voter {nid:x} to a learner"
    return None
