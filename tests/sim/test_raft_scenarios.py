"""Raft scenarios as stories: a small cluster driven step by step (no time, no randomness
except each node's seeded election timeout), checked against the invariants of
``raft_cluster`` after every event."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from raft_cluster import Cluster, fresh_storage

from actors.raft.rawnode import Config, ProposalDropped, RawNode, Role
from actors.raft.storage import MemoryStorage
from proto_schemas.raft import (
    Entry,
    HardState,
    MessageType,
    RaftMessage,
    Snapshot,
    SnapshotMetadata,
)

MT = MessageType


def recording(
    sent: list[RaftMessage], which: Callable[[RaftMessage], bool] = lambda m: True
) -> Callable[[RaftMessage], bool]:
    """A message filter that lets everything through and keeps a copy of ``which`` ones."""

    def keep(m: RaftMessage) -> bool:
        if which(m):
            sent.append(m)
        return True

    return keep


def elect(c: Cluster, i: int) -> None:
    c.campaign(i)
    c.stabilize()
    assert c.leader() == i


def roles(c: Cluster) -> dict[int, Role]:
    return {i: c.node(i).status.role for i in c.ids if c.nodes[i].up}


def seed_log(c: Cluster, i: int, terms: list[int], term: int) -> None:
    """Give node ``i`` a durable log with the given entry terms (index 1..) and current term."""
    disk = c.nodes[i].disk
    disk.append([Entry(term=t, index=k + 1, data=b"old%d" % (k + 1)) for k, t in enumerate(terms)])
    disk.set_hard_state(HardState(term=term))
    c.start(i)


# -- elections ----------------------------------------------------------------------------------


def test_a_follower_that_hears_nothing_campaigns_and_wins() -> None:
    c = Cluster(3)
    # Nobody campaigns before the election timeout (at least election_tick ticks) ...
    c.tick(times=9)
    assert all(r is Role.FOLLOWER for r in roles(c).values())
    # ... and within 2 * election_tick someone has (randomized timeouts, thesis §3.4).
    for _ in range(11):
        c.tick()
        c.stabilize()
    lead = c.leader()
    assert lead is not None
    assert all(c.node(i).status.leader == lead for i in c.ids)
    # The new leader's first entry is an empty entry of its own term (thesis §6.4).
    first = c.entries(lead)[-1]
    assert first.data == b"" and first.term == c.node(lead).status.term


def test_single_voter_leads_alone_and_commits_only_after_fsync() -> None:
    node = RawNode(Config(id=1, voters=[1], rng=random.Random(3)), MemoryStorage())
    for _ in range(20):
        node.tick()
    assert node.status.role is Role.LEADER
    rd = node.ready()
    node.advance(rd)
    node.propose(b"x")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    node.advance(rd)
    assert node.status.commit == 0  # the leader's own vote for its entries needs the WAL
    node.on_persisted(2, 1)
    assert node.status.commit == 2
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"", b"x"]
    node.advance(rd)
    assert not node.has_ready()


def test_single_voter_campaign_is_immediate() -> None:
    node = RawNode(Config(id=7, voters=[7], rng=random.Random(0)), MemoryStorage())
    node.campaign()
    assert node.status.role is Role.LEADER and node.status.leader == 7


def test_vote_requests_wait_for_the_durable_vote() -> None:
    # Our term and self-vote must be on disk before anyone can vote for us (thesis §3.8).
    c = Cluster(3, pre_vote=False)
    node = c.node(1)
    node.campaign()
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert not any(m.type is MT.VOTE for m in rd.messages)
    assert sorted(m.to for m in rd.messages_after_persist if m.type is MT.VOTE) == [2, 3]
    node.advance(rd)


def test_a_stale_log_cannot_win() -> None:
    c = Cluster(3)
    seed_log(c, 1, [1], term=2)
    seed_log(c, 2, [1, 2], term=2)
    seed_log(c, 3, [1, 2], term=2)
    c.campaign(1)
    c.stabilize()
    assert c.node(1).status.role is not Role.LEADER
    c.campaign(2)
    c.stabilize()
    assert c.leader() == 2


# -- replication ------------------------------------------------------------------------------


def test_proposals_replicate_and_apply_everywhere_in_order() -> None:
    c = Cluster(5)
    elect(c, 1)
    for k in range(20):
        assert c.propose(1, b"v%d" % k)
    c.stabilize()
    for i in c.ids:
        assert c.applied_data(i) == [b"v%d" % k for k in range(20)]


def test_follower_forwards_proposals_and_drops_them_without_leader() -> None:
    c = Cluster(3)
    with pytest.raises(ProposalDropped):
        c.node(2).propose(b"nobody leads")
    elect(c, 1)
    assert c.propose(3, b"via follower")
    c.stabilize()
    assert c.applied_data(1) == [b"via follower"]


def test_a_batch_of_proposals_costs_one_append_per_follower_even_via_a_follower() -> None:
    c = Cluster(3)
    elect(c, 1)
    sent: list[RaftMessage] = []
    c.msg_filter = recording(sent)
    c.node(1).propose(b"a", b"b", b"c")
    c.process(1)
    assert sorted((m.to, len(m.entries)) for m in sent if m.type is MT.APP) == [(2, 3), (3, 3)]
    sent.clear()
    c.node(3).propose(b"d", b"e")
    c.process(3)
    assert [(m.to, len(m.entries)) for m in sent if m.type is MT.PROP] == [(1, 2)]
    c.stabilize()
    assert c.applied_data(2) == [b"a", b"b", b"c", b"d", b"e"]


def test_batching_and_pipelining_limits() -> None:
    c = Cluster(3, max_size_per_msg=100, max_inflight_msgs=2)
    elect(c, 1)
    sent: list[RaftMessage] = []
    c.msg_filter = recording(sent)
    node = c.node(1)
    for _ in range(10):
        node.propose(bytes(60))  # 76 bytes with the header: one entry per message
    c.process(1)
    apps = [m for m in sent if m.type is MT.APP and m.to == 2]
    assert [len(m.entries) for m in apps] == [1, 1]  # two in flight, then paused
    c.stabilize()
    assert len(c.applied_data(3)) == 10


def test_conflicting_follower_log_is_found_fast() -> None:
    # Follower 3 has a long divergent tail from terms 2 and 3; the leader's log has term 4 there.
    c = Cluster(3)
    seed_log(c, 1, [1, 1, 1, 4, 4, 4, 4], term=4)
    seed_log(c, 2, [1, 1, 1, 4, 4, 4, 4], term=4)
    seed_log(c, 3, [1, 1, 1] + [2] * 30 + [3] * 30, term=4)
    rejections: list[RaftMessage] = []
    c.msg_filter = recording(rejections, lambda m: m.type is MT.APP_RESP and m.reject)
    elect(c, 1)
    assert [e.term for e in c.entries(3)] == [1, 1, 1, 4, 4, 4, 4, 5]
    # One rejection skips the whole term-3 run, a second the term-2 run (not 60 round trips).
    assert len([m for m in rejections if m.from_ == 3]) <= 2


def test_figure_8_leader_does_not_commit_old_term_entries_by_counting() -> None:
    # Node 1 leads term 3 holding an uncommitted entry of term 2 at index 2. Followers learn
    # index 2, but every acknowledgement of the term-3 entry is lost in transit: a majority
    # has index 2, yet it must not commit (thesis §3.6.2, Figure 3.7).
    c = Cluster(3, max_size_per_msg=1)
    seed_log(c, 1, [1, 2], term=2)
    seed_log(c, 2, [1], term=2)
    seed_log(c, 3, [1], term=2)
    c.msg_filter = lambda m: not (m.type is MT.APP_RESP and not m.reject and m.index >= 3)
    elect(c, 1)
    c.tick(times=3)
    c.stabilize()
    pr = c.node(1).raft.prs
    assert pr[2].match == 2 and pr[3].match == 2
    assert c.node(1).status.commit < 2
    # Once the leader's own-term entry reaches a majority, both commit together.
    c.msg_filter = None
    c.tick(1)
    c.stabilize()
    assert c.node(1).status.commit == 3
    assert [e.data for e in c.nodes[2].applied] == [b"old1", b"old2", b""]


def test_follower_lost_unsynced_entries_catches_up_after_restart() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.propose(1, b"a")
    c.stabilize()
    # Node 3 receives b, c but crashes before its WAL fsync completes.
    c.propose(1, b"b")
    c.propose(1, b"c")
    for m in list(c.net):
        c.net.remove(m)
        c.deliver(m)
    c.crash(3)
    c.stabilize()
    c.restart(3)
    c.tick(1, times=2)
    c.stabilize()
    assert c.applied_data(3) == [b"a", b"b", b"c"]


# -- check quorum, pre-vote, leases ------------------------------------------------------------


def test_leader_without_quorum_steps_down() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.isolate(1)
    # The first check (after one election timeout) still counts the responses from before
    # the cut; the second finds no quorum: a leader steps down within two timeouts.
    c.tick(1, times=10)
    assert c.node(1).status.role is Role.LEADER
    c.tick(1, times=10)
    assert c.node(1).status.role is Role.FOLLOWER
    assert c.node(1).status.leader == 0


def test_pre_vote_keeps_a_partitioned_node_from_inflating_terms() -> None:
    c = Cluster(3)
    elect(c, 1)
    term = c.node(1).status.term
    c.isolate(3)
    for _ in range(100):
        c.tick(3)
        c.stabilize()
    assert c.node(3).status.term == term  # pre-votes never won, so the term never moved
    c.heal()
    for _ in range(3):
        c.tick()
        c.stabilize()
    assert c.leader() == 1 and c.node(1).status.term == term  # rejoined without disruption


def test_without_pre_vote_a_partitioned_node_disrupts_on_return() -> None:
    c = Cluster(3, pre_vote=False, check_quorum=False)
    elect(c, 1)
    term = c.node(1).status.term
    c.isolate(3)
    for _ in range(60):
        c.tick(3)
        c.stabilize()
    assert c.node(3).status.term > term + 2
    c.heal()
    for _ in range(30):
        c.tick()
        c.stabilize()
    assert c.node(c.leader() or 1).status.term > term  # the cluster had to move on


def test_follower_with_a_live_leader_ignores_vote_requests() -> None:
    c = Cluster(3)
    elect(c, 1)
    term = c.node(2).status.term
    vote = RaftMessage(type=MT.VOTE, to=2, from_=3, term=term + 5, index=99, log_term=term)
    c.node(2).step(vote)
    c.process(2)
    assert c.node(2).status.term == term  # lease: it heard from leader 1 within the timeout
    assert not c.net


# -- ReadIndex ----------------------------------------------------------------------------------


def test_reads_arriving_together_share_one_heartbeat_round() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.propose(1, b"x")
    c.stabilize()
    sent: list[RaftMessage] = []
    c.msg_filter = recording(sent)
    node = c.node(1)
    for k in range(3):
        c.read_asked[b"r%d" % k] = c.max_commit
        node.read_index(b"r%d" % k)
    c.process(1)
    beats = [m for m in sent if m.type is MT.HEARTBEAT]
    assert len(beats) == 2 and len({m.context for m in beats}) == 1 and beats[0].context
    c.stabilize()
    assert c.nodes[1].reads == [(b"r0", 2), (b"r1", 2), (b"r2", 2)]


def test_new_leader_defers_reads_until_it_commits_in_its_term() -> None:
    c = Cluster(3)
    c.msg_filter = lambda m: m.type is not MT.APP
    c.campaign(1)
    c.stabilize()
    assert c.leader() == 1 and c.node(1).status.commit == 0
    c.read_index(1, b"early")
    c.stabilize()
    assert c.nodes[1].reads == []  # its commit index might be stale (thesis §6.4 step 1)
    c.msg_filter = None
    c.tick(1)
    c.stabilize()
    assert c.nodes[1].reads == [(b"early", 1)]


def test_follower_read_index_is_answered_by_the_leader() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.propose(2, b"x")
    c.stabilize()
    c.read_index(3, b"from-3")
    c.stabilize()
    assert c.nodes[3].reads == [(b"from-3", 2)]


def test_partitioned_leader_cannot_serve_reads() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.isolate(1)
    c.read_index(1, b"stale?")
    c.tick(1, times=3)
    c.stabilize()
    assert c.nodes[1].reads == []


# -- leader transfer ----------------------------------------------------------------------------


def test_leader_transfer_hands_over_and_refuses_proposals_meanwhile() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.msg_filter = lambda m: not (m.type is MT.APP and m.to == 3)
    c.propose(1, b"x")
    c.stabilize()
    c.node(1).transfer_leader(3)
    c.process(1)
    with pytest.raises(ProposalDropped):
        c.node(1).propose(b"during transfer")
    c.msg_filter = None
    c.tick(1)
    c.stabilize()
    assert c.leader() == 3
    assert c.propose(3, b"after")
    c.stabilize()
    assert c.applied_data(1) == [b"x", b"after"]


# -- snapshots ------------------------------------------------------------------------------------


def test_follower_restores_from_a_snapshot_message() -> None:
    disk = MemoryStorage()
    node = RawNode(Config(id=2, voters=[1, 2, 3], rng=random.Random(0)), fresh_storage(disk))
    snap = Snapshot(metadata=SnapshotMetadata(index=10, term=3), data=b"state")
    node.step(RaftMessage(type=MT.SNAP, to=2, from_=1, term=3, snapshot=snap))
    rd = node.ready()
    assert rd.snapshot == snap and rd.committed_entries == []
    assert [m.index for m in rd.messages_after_persist if m.type is MT.APP_RESP] == [10]
    node.advance(rd)
    node.on_persisted(10, 3)
    assert node.raft.log.storage.snapshot() == snap
    node.step(
        RaftMessage(
            type=MT.APP,
            to=2,
            from_=1,
            term=3,
            index=10,
            log_term=3,
            entries=[Entry(term=3, index=11, data=b"y")],
            commit=11,
        )
    )
    rd = node.ready()
    node.advance(rd)
    node.on_persisted(11, 3)
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"y"]


def test_leader_sends_a_snapshot_to_a_follower_behind_compaction() -> None:
    c = Cluster(3)
    elect(c, 1)
    c.isolate(3)
    for k in range(5):
        c.propose(1, b"v%d" % k)
    c.stabilize()
    storage = c.node(1).raft.log.storage
    assert isinstance(storage, MemoryStorage)
    storage.create_snapshot(4, data=b"app state at 4")
    storage.compact(4)
    c.heal()
    c.tick(1, times=2)
    c.stabilize()
    st = c.node(3).status
    assert st.commit == 6 and c.node(3).raft.log.storage.snapshot().data == b"app state at 4"
