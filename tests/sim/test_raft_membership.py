"""Membership changes as stories: single-step changes and learners (thesis §4, etcd's
``confchange``), on a bootstrapped cluster driven step by step and checked against the
invariants of ``raft_cluster`` after every event (including: every node has the same
configuration after the same conf change, and a leader is always a voter)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from raft_cluster import Cluster

from actors.raft.rawnode import Config, ProposalDropped, RawNode, Role
from actors.raft.storage import MemoryStorage
from proto_schemas.codec import decode, encode
from proto_schemas.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    RaftMessage,
    Snapshot,
    SnapshotMetadata,
)

MT = MessageType
ADD = ConfChangeType.ADD_NODE
ADD_LEARNER = ConfChangeType.ADD_LEARNER_NODE
REMOVE = ConfChangeType.REMOVE_NODE
UPDATE = ConfChangeType.UPDATE_NODE


def elect(c: Cluster, i: int) -> None:
    c.stabilize()  # a node campaigns only once its bootstrap entries are durable and applied
    c.campaign(i)
    c.stabilize()
    assert c.leader() == i


def change(c: Cluster, leader: int, type_: ConfChangeType, node_id: int) -> None:
    """Propose a change through ``leader`` and let the cluster commit and apply it."""
    assert c.propose_conf_change(leader, type_, node_id)
    c.stabilize()
    c.tick(leader)  # a heartbeat round tells the followers the commit index
    c.stabilize()


def conf(c: Cluster, i: int) -> ConfState:
    return c.node(i).conf_state


def no_appends_to(i: int) -> Callable[[RaftMessage], bool]:
    return lambda m: not (m.type is MT.APP and m.to == i)


# -- bootstrap ----------------------------------------------------------------------------------


def test_bootstrap_commits_the_initial_members_at_term_one() -> None:
    node = RawNode(Config(id=1, voters=[], rng=random.Random(0)), MemoryStorage())
    assert node.status.voters == [] and node.conf_state == ConfState()
    changes = [ConfChange(type=ADD, node_id=i) for i in (1, 2, 3)]
    node.bootstrap(changes)
    # The configuration is known at once, before anything is durable ...
    assert node.conf_state == ConfState(voters=[1, 2, 3])
    rd = node.ready()
    # ... and the first Ready persists entries 1..3 at term 1, committed.
    assert [(e.index, e.term, e.type) for e in rd.entries] == [
        (i, 1, EntryType.CONF_CHANGE) for i in (1, 2, 3)
    ]
    assert [decode(e.data, expect=ConfChange) for e in rd.entries] == changes
    assert rd.hard_state == HardState(term=1, vote=0, commit=3)
    assert rd.committed_entries == []  # applied only once durable
    node.advance(rd)
    node.on_persisted(3, 1)
    rd = node.ready()
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]
    # The shell applies them again: nothing changes.
    for e in rd.committed_entries:
        assert node.apply_conf_change(decode(e.data, expect=ConfChange)) == ConfState(voters=[1, 2, 3])
    node.advance(rd)
    with pytest.raises(ValueError, match="empty log"):
        node.bootstrap(changes)


def test_bootstrap_refuses_no_members() -> None:
    node = RawNode(Config(id=1, voters=[]), MemoryStorage())
    with pytest.raises(ValueError, match="at least one member"):
        node.bootstrap([])


def test_a_bootstrapped_cluster_elects_and_commits() -> None:
    c = Cluster(3, bootstrap=True)
    for _ in range(25):
        c.tick()
        c.stabilize()
    lead = c.leader()
    assert lead is not None
    assert c.propose(lead, b"x")
    c.stabilize()
    for i in c.ids:
        assert conf(c, i) == ConfState(voters=[1, 2, 3])
        assert [e.type for e in c.nodes[i].applied[:3]] == [EntryType.CONF_CHANGE] * 3
        assert c.applied_data(i)[-1] == b"x"
    # A restart rebuilds the configuration from the disk alone (the replayed entries).
    c.crash(2)
    c.restart(2)
    assert conf(c, 2) == ConfState(voters=[1, 2, 3])


def test_a_restarted_node_does_not_campaign_before_replaying_its_changes() -> None:
    # Node 1 of a bootstrapped {1, 2, 3} restarts; its configuration comes back one applied
    # entry at a time. Having applied only "add 1", it must not elect itself alone (etcd).
    disk = MemoryStorage()
    disk.append(
        [
            Entry(term=1, index=i, type=EntryType.CONF_CHANGE, data=encode(ConfChange(type=ADD, node_id=i)))
            for i in (1, 2, 3)
        ]
    )
    disk.set_hard_state(HardState(term=1, commit=3))
    node = RawNode(Config(id=1, voters=[], max_committed_size_per_ready=1), disk)
    rd = node.ready()
    [entry] = rd.committed_entries
    assert node.apply_conf_change(decode(entry.data, expect=ConfChange)) == ConfState(voters=[1])
    node.advance(rd)
    node.campaign()
    assert node.status.role is Role.FOLLOWER and node.status.term == 1
    while node.has_ready():
        rd = node.ready()
        for e in rd.committed_entries:
            node.apply_conf_change(decode(e.data, expect=ConfChange))
        node.advance(rd)
    assert node.conf_state == ConfState(voters=[1, 2, 3])
    node.campaign()
    assert node.status.role is Role.PRE_CANDIDATE


def test_a_node_waiting_to_join_never_campaigns() -> None:
    node = RawNode(Config(id=4, voters=[], rng=random.Random(0)), MemoryStorage())
    node.campaign()
    for _ in range(100):
        node.tick()
    assert node.status.role is Role.FOLLOWER and node.status.term == 0
    assert not node.has_ready()
    with pytest.raises(ProposalDropped):
        node.propose(b"x")  # no leader known yet


# -- adding -------------------------------------------------------------------------------------


def test_an_added_voter_catches_up_by_log_and_counts_in_the_quorum() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    for k in range(3):
        c.propose(1, b"v%d" % k)
    c.stabilize()
    c.add_node(4)
    assert conf(c, 4) == ConfState()
    change(c, 1, ADD, 4)
    assert all(conf(c, i) == ConfState(voters=[1, 2, 3, 4]) for i in c.ids)
    # Node 4 received the whole log from index 1, bootstrap entries included.
    assert c.applied_data(4)[-3:] == [b"v0", b"v1", b"v2"]
    assert c.nodes[4].applied == c.nodes[1].applied
    # Four voters: a quorum is three. With 2 and 3 down, 1 and 4 cannot commit.
    c.crash(2)
    c.crash(3)
    commit = c.node(1).status.commit
    c.propose(1, b"needs three")
    c.stabilize()
    assert c.node(1).status.commit == commit
    c.restart(2)
    c.tick(1)
    c.stabilize()
    assert c.applied_data(4)[-1] == b"needs three"


def test_a_learner_receives_the_log_but_is_not_counted() -> None:
    c = Cluster(2, bootstrap=True)
    elect(c, 1)
    c.add_node(3)
    change(c, 1, ADD_LEARNER, 3)
    assert all(conf(c, i) == ConfState(voters=[1, 2], learners=[3]) for i in c.ids)
    c.propose(1, b"a")
    c.stabilize()
    assert c.applied_data(3)[-1] == b"a"
    # With voter 2 cut off, the learner's acknowledgement does not make a quorum.
    c.isolate(2)
    commit = c.node(1).status.commit
    c.propose(1, b"b")
    c.stabilize()
    assert c.node(3).status.last_index == c.node(1).status.last_index  # 3 has it ...
    assert c.node(1).status.commit == commit  # ... but it does not count
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.applied_data(3)[-1] == b"b"


def test_a_one_voter_cluster_with_a_learner_commits_alone() -> None:
    c = Cluster(1, bootstrap=True)
    elect(c, 1)
    c.add_node(2)
    change(c, 1, ADD_LEARNER, 2)
    c.isolate(2)
    assert c.propose(1, b"alone")
    c.stabilize()
    assert c.applied_data(1)[-1] == b"alone"


def test_a_learner_never_campaigns_and_is_never_asked_to_vote() -> None:
    c = Cluster(2, bootstrap=True)
    elect(c, 1)
    c.add_node(3)
    change(c, 1, ADD_LEARNER, 3)
    term = c.node(3).status.term
    asked: list[RaftMessage] = []

    def record_vote_requests_to_3(m: RaftMessage) -> bool:
        if m.to == 3 and m.type in (MT.VOTE, MT.PRE_VOTE):
            asked.append(m)
        return True

    c.msg_filter = record_vote_requests_to_3
    c.crash(1)
    for _ in range(60):
        c.tick()
        c.stabilize()
    # 2 campaigns among the voters only, and without 1 there is no majority of {1, 2};
    # the learner, however long it hears nothing, never campaigns.
    assert asked == []
    assert c.leader() is None
    assert c.node(3).status.role is Role.FOLLOWER and c.node(3).status.term == term


def test_a_promoted_learner_votes_and_can_lead() -> None:
    c = Cluster(1, bootstrap=True)
    elect(c, 1)
    c.add_node(2)
    change(c, 1, ADD_LEARNER, 2)
    change(c, 1, ADD, 2)
    assert all(conf(c, i) == ConfState(voters=[1, 2]) for i in c.ids)
    # Two voters now: 1 alone cannot commit.
    c.isolate(2)
    commit = c.node(1).status.commit
    c.propose(1, b"needs both")
    c.stabilize()
    assert c.node(1).status.commit == commit
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.applied_data(2)[-1] == b"needs both"
    # And 2 may lead.
    c.node(1).transfer_leader(2)
    c.process(1)
    c.stabilize()
    assert c.leader() == 2


# -- removing -----------------------------------------------------------------------------------


def test_removing_a_follower_shrinks_the_quorum() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    change(c, 1, REMOVE, 3)
    assert conf(c, 1) == conf(c, 2) == ConfState(voters=[1, 2])
    assert 3 not in c.node(1).raft.prs  # the leader stopped replicating to 3
    c.isolate(3)
    assert c.propose(1, b"with 1 and 2")
    c.stabilize()
    assert c.applied_data(2)[-1] == b"with 1 and 2"
    # Two voters: one more down and nothing commits.
    c.crash(2)
    commit = c.node(1).status.commit
    c.propose(1, b"stuck")
    c.stabilize()
    assert c.node(1).status.commit == commit


def test_the_leader_commits_more_once_a_slow_voter_is_removed() -> None:
    # etcd's TestCommitAfterRemoveNode: entries behind the removal wait for the removed
    # voter's acknowledgement until the removal is applied; then the quorum is smaller.
    c = Cluster(2, bootstrap=True)
    elect(c, 1)
    c.msg_filter = lambda m: not (m.type is MT.APP and m.to == 2 and any(e.data == b"x" for e in m.entries))
    assert c.propose_conf_change(1, REMOVE, 2)
    assert c.propose(1, b"x")
    c.stabilize()
    assert conf(c, 1) == ConfState(voters=[1])
    assert c.applied_data(1)[-1] == b"x"
    assert b"x" not in c.applied_data(2)


def test_a_removed_leader_steps_down_and_never_campaigns() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    term = c.node(1).status.term
    assert c.propose_conf_change(1, REMOVE, 1)
    c.stabilize()
    st = c.node(1).status
    assert st.role is Role.FOLLOWER and st.leader == 0 and st.voters == [2, 3]
    campaigns_by_1: list[RaftMessage] = []

    def record_campaigns_by_1(m: RaftMessage) -> bool:
        if m.from_ == 1 and m.type in (MT.VOTE, MT.PRE_VOTE):
            campaigns_by_1.append(m)
        return True

    c.msg_filter = record_campaigns_by_1
    for _ in range(60):
        c.tick()
        c.stabilize()
    lead = c.leader()
    assert lead in (2, 3) and c.node(lead).status.term > term
    assert campaigns_by_1 == [] and c.node(1).status.role is Role.FOLLOWER
    c.isolate(1)
    assert c.propose(lead, b"without 1")
    c.stabilize()
    assert c.applied_data(2)[-1] == c.applied_data(3)[-1] == b"without 1"


def test_a_campaigning_node_that_is_removed_gives_up() -> None:
    node = RawNode(Config(id=1, voters=[1, 2, 3], rng=random.Random(0)), MemoryStorage())
    node.campaign()
    assert node.status.role is Role.PRE_CANDIDATE
    node.apply_conf_change(ConfChange(type=REMOVE, node_id=1))
    assert node.status.role is Role.FOLLOWER
    # Votes still in flight elect nobody.
    for voter in (2, 3):
        node.step(RaftMessage(type=MT.PRE_VOTE_RESP, to=1, from_=voter, term=1))
    assert node.status.role is Role.FOLLOWER


def test_removing_the_lead_transferee_aborts_the_transfer() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    c.msg_filter = lambda m: m.type is not MT.APP
    assert c.propose_conf_change(1, REMOVE, 3)  # appended, not committed yet
    c.node(1).transfer_leader(3)
    c.process(1)
    assert not c.propose(1, b"during transfer")
    c.msg_filter = no_appends_to(3)
    c.tick(1)  # the heartbeat round brings 2 the removal, which commits and applies
    c.stabilize()
    assert conf(c, 1) == ConfState(voters=[1, 2])
    assert c.leader() == 1 and c.node(1).raft.lead_transferee == 0
    assert c.propose(1, b"after")


def test_the_last_voter_can_be_neither_removed_nor_demoted() -> None:
    c = Cluster(1, bootstrap=True)
    elect(c, 1)
    with pytest.raises(ProposalDropped, match="last voter"):
        c.node(1).propose_conf_change(ConfChange(type=REMOVE, node_id=1))
    with pytest.raises(ProposalDropped, match="demote"):
        c.node(1).propose_conf_change(ConfChange(type=ADD_LEARNER, node_id=1))
    # Applied anyway (a change that bypassed the check): ignored, the same on every node.
    assert c.node(1).apply_conf_change(ConfChange(type=REMOVE, node_id=1)) == ConfState(voters=[1])
    assert c.node(1).apply_conf_change(ConfChange(type=ADD_LEARNER, node_id=1)) == ConfState(voters=[1])


# -- one change at a time -----------------------------------------------------------------------


def test_a_second_change_is_refused_while_one_is_pending() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    c.isolate(1)
    assert c.propose_conf_change(1, ADD, 4)  # appended, cannot commit
    with pytest.raises(ProposalDropped, match="not applied yet"):
        c.node(1).propose_conf_change(ConfChange(type=ADD, node_id=5))
    assert c.propose(1, b"normal entries still go")
    c.heal()
    c.tick(1)
    c.stabilize()
    assert conf(c, 1) == ConfState(voters=[1, 2, 3, 4])
    assert c.propose_conf_change(1, REMOVE, 4)


def test_a_metadata_update_neither_waits_for_nor_holds_back_a_change() -> None:
    """A member publishing its client URLs (``UPDATE_NODE``) while a member is being added:
    neither is refused, since an update does not change who votes."""
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    c.isolate(1)
    assert c.propose_conf_change(1, UPDATE, 2)  # appended, cannot commit
    assert c.propose_conf_change(1, ADD_LEARNER, 4)  # not held back by the update
    assert c.propose_conf_change(1, UPDATE, 3)  # nor does the pending addition hold this back
    with pytest.raises(ProposalDropped, match="not applied yet"):
        c.node(1).propose_conf_change(ConfChange(type=ADD, node_id=5))
    c.heal()
    c.tick(1)
    c.stabilize()
    assert conf(c, 1) == conf(c, 2) == ConfState(voters=[1, 2, 3], learners=[4])


def test_a_new_leader_waits_until_its_predecessors_change_is_applied() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    # 1 replicates ADD 4 to 2 only, and never learns that 2 has it.
    c.cut.update({(1, 3), (2, 1)})
    assert c.propose_conf_change(1, ADD, 4)
    c.stabilize()
    assert c.node(2).status.last_index == c.node(1).status.last_index
    c.crash(1)
    c.heal()
    c.msg_filter = lambda m: m.type is not MT.APP  # 2 wins but cannot commit yet
    for _ in range(40):
        c.tick(2, 3)
        c.stabilize()
    assert c.leader() == 2  # 3 lacks the change: it cannot win
    with pytest.raises(ProposalDropped, match="not applied yet"):
        c.node(2).propose_conf_change(ConfChange(type=ADD, node_id=5))
    c.msg_filter = None
    c.tick(2)
    c.stabilize()
    assert conf(c, 2) == conf(c, 3) == ConfState(voters=[1, 2, 3, 4])
    assert c.propose_conf_change(2, ADD, 5)


def test_a_follower_forwards_a_change_and_the_leader_checks_it() -> None:
    c = Cluster(1, bootstrap=True)
    elect(c, 1)
    c.add_node(2)
    change(c, 1, ADD_LEARNER, 2)
    # A change that would leave no voter is refused where it is asked, follower or not.
    with pytest.raises(ProposalDropped, match="last voter"):
        c.node(2).propose_conf_change(ConfChange(type=REMOVE, node_id=1))
    # A forwarded change the leader cannot take now is dropped there (the asker times out).
    c.isolate(1)
    assert c.propose_conf_change(1, ADD, 2)  # 1 alone commits it, but 2 does not hear of it
    c.stabilize()
    assert conf(c, 1) == ConfState(voters=[1, 2])
    c.cut = {(1, 2)}  # 1 hears 2, not the other way: 1 cannot replicate, so nothing applies
    assert c.propose_conf_change(1, ADD_LEARNER, 3)
    assert c.propose_conf_change(2, ADD_LEARNER, 4)  # forwarded; refused by 1: pending change
    c.stabilize()
    assert [e.data for e in c.entries(1)].count(encode(ConfChange(type=ADD_LEARNER, node_id=4))) == 0
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.propose_conf_change(2, ADD_LEARNER, 4)  # nothing pending any more: accepted
    c.stabilize()
    c.tick(1)
    c.stabilize()
    assert conf(c, 1) == conf(c, 2) == ConfState(voters=[1, 2], learners=[3, 4])


# -- snapshots ----------------------------------------------------------------------------------


def test_a_member_joining_after_compaction_adopts_the_snapshots_configuration() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    for k in range(4):
        c.propose(1, b"v%d" % k)
    c.stabilize()
    change(c, 1, ADD, 4)  # committed while node 4 does not run yet
    change(c, 1, REMOVE, 3)
    index = c.compact(1)
    assert c.node(1).raft.log.first_index() == index + 1
    c.add_node(4)
    c.tick(1, times=2)
    c.stabilize()
    node4 = c.node(4)
    snap = node4.raft.log.storage.snapshot()
    assert snap.metadata.index == index
    assert snap.metadata.conf_state == ConfState(voters=[1, 2, 4])
    # Node 4 applied no conf change itself: its configuration is the snapshot's.
    assert all(e.type != EntryType.CONF_CHANGE for e in c.nodes[4].applied[index:])
    assert node4.conf_state == ConfState(voters=[1, 2, 4])
    assert c.propose(1, b"after")
    c.stabilize()
    assert c.applied_data(4)[-1] == b"after"
    # It remembers across a restart (the snapshot is on its disk).
    c.crash(4)
    c.restart(4)
    assert c.node(4).conf_state == ConfState(voters=[1, 2, 4])


def test_a_snapshot_that_predates_the_joiner_is_followed_by_its_addition() -> None:
    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    c.propose(1, b"v")
    c.stabilize()
    index = c.compact(1)
    c.add_node(4)
    change(c, 1, ADD_LEARNER, 4)
    c.tick(1, times=2)
    c.stabilize()
    node4 = c.node(4)
    assert node4.raft.log.storage.snapshot().metadata.conf_state == ConfState(voters=[1, 2, 3])
    assert node4.status.applied > index
    assert node4.conf_state == ConfState(voters=[1, 2, 3], learners=[4])


def test_a_waiting_node_accepts_a_snapshot_and_adopts_its_configuration() -> None:
    node = RawNode(Config(id=4, voters=[], rng=random.Random(0)), MemoryStorage())
    snap = Snapshot(metadata=SnapshotMetadata(index=7, term=2, conf_state=ConfState(voters=[1, 4])))
    node.step(RaftMessage(type=MT.SNAP, to=4, from_=1, term=2, snapshot=snap))
    assert node.conf_state == ConfState(voters=[1, 4]) and node.status.leader == 1


def test_the_leader_promotes_a_learner_only_once_it_has_caught_up() -> None:
    """The automatic promotion (actors/raft/promotion.py) on real raft cores: a learner cut
    off while the log grows is never proposed; healed, it catches up, stays close for the
    whole period, and the leader proposes it; the promotion commits and applies like a
    requested one, and the new voter counts in the quorum."""
    from actors.raft.promotion import AutoPromoter, PromotionRules, observe

    c = Cluster(3, bootstrap=True)
    elect(c, 1)
    c.add_node(4)
    change(c, 1, ADD_LEARNER, 4)
    promoter = AutoPromoter(PromotionRules(max_lag=5, stable_ticks=4, election_ticks=10))

    def tick_leader() -> int | None:
        c.tick(1)
        c.stabilize()
        return promoter.tick(observe(c.node(1).raft, {4}))

    c.isolate(4)
    for k in range(20):
        for j in range(6):
            c.propose(1, b"w%d-%d" % (k, j))
        c.stabilize()
        assert tick_leader() is None  # 4 falls behind and goes silent: never proposed
    c.heal()
    chosen = [tick_leader() for _ in range(8)]
    assert chosen.count(4) == 1 and chosen[:4] == [None] * 4  # close for the whole period first
    match = c.node(1).match_of(4)
    assert match is not None and c.node(1).status.last_index - match <= 5
    change(c, 1, ADD, 4)
    assert all(conf(c, i) == ConfState(voters=[1, 2, 3, 4]) for i in c.ids)
    assert tick_leader() is None  # no learner left


def test_a_joining_member_gets_its_read_index_before_it_knows_the_configuration() -> None:
    """A member that joined with an empty log knows its leader from the first heartbeat but no
    configuration until it applies the log's conf changes; the leader's answer to its
    ReadIndex must not be dropped as coming from an unknown peer (the read would time out)."""
    node = RawNode(Config(id=4, voters=[]), MemoryStorage())
    node.step(RaftMessage(type=MT.HEARTBEAT, to=4, from_=1, term=2, commit=0))
    node.advance(node.ready())
    node.read_index(b"r1")
    rd = node.ready()
    assert [(m.type, m.to) for m in rd.messages] == [(MT.READ_INDEX, 1)]
    node.advance(rd)
    node.step(RaftMessage(type=MT.READ_INDEX_RESP, to=4, from_=1, term=2, index=7, context=b"r1"))
    assert [(s.index, s.request_ctx) for s in node.ready().read_states] == [(7, b"r1")]
    # A response from a peer that is neither known nor the leader is still ignored.
    node.step(RaftMessage(type=MT.READ_INDEX_RESP, to=4, from_=3, term=2, index=9, context=b"r2"))
    assert [s.request_ctx for s in node.ready().read_states] == [b"r1"]
