"""Group commit on the leader: proposals share a round under load, never wait alone."""

from __future__ import annotations

import pytest

from actors.raft.group_commit import GroupCommit

DELAY = 0.005


def test_under_a_light_load_every_proposal_goes_at_once() -> None:
    gc: GroupCommit[str] = GroupCommit(DELAY, siblings=4)
    for i, now in enumerate((0.0, 0.001, 0.002)):  # three requests in 5 ms: fewer than four
        assert gc.offer(f"p{i}", 1, now) == [f"p{i}"]
    assert gc.due is None


def test_under_load_proposals_wait_for_one_round_a_delay_after_the_last() -> None:
    gc: GroupCommit[str] = GroupCommit(DELAY, siblings=4)
    assert gc.offer("a", 4, 1.000) == ["a"]  # four requests just started a round
    assert gc.offer("b", 1, 1.001) == []
    assert gc.offer("c", 3, 1.003) == []
    assert gc.due == pytest.approx(1.005)
    assert gc.release(1.004) == []  # not yet
    assert gc.release(1.005) == ["b", "c"]  # in arrival order, as one round
    assert gc.due is None
    # That round carried four requests: the load goes on, so does the holding.
    assert gc.offer("d", 1, 1.006) == []
    assert gc.due == pytest.approx(1.010)
    assert gc.release(1.0101) == ["d"]
    # A round of one: the 5 ms before the next proposal saw fewer than four, it goes at once.
    assert gc.offer("e", 1, 1.0102) == ["e"]


def test_a_proposal_arriving_after_the_delay_goes_at_once() -> None:
    gc: GroupCommit[str] = GroupCommit(DELAY, siblings=4)
    assert gc.offer("a", 8, 1.000) == ["a"]
    assert gc.offer("b", 1, 1.005) == ["b"]  # the last round is a whole delay ago
    assert gc.offer("c", 1, 1.011) == ["c"]  # the load is gone: nothing is held


def test_while_something_is_held_every_newcomer_waits_with_it() -> None:
    """Order is kept: nothing overtakes a held proposal, even once the load looks light."""
    gc: GroupCommit[str] = GroupCommit(DELAY, siblings=2)
    gc.offer("a", 2, 0.0)
    assert gc.offer("b", 1, 0.001) == []
    assert gc.offer("c", 1, 0.0049) == []
    assert gc.release(0.1) == ["b", "c"]


def test_a_delay_of_zero_holds_nothing() -> None:
    gc: GroupCommit[str] = GroupCommit(0.0, siblings=1)
    for i in range(5):
        assert gc.offer(str(i), 100, 1.0) == [str(i)]
    assert gc.due is None


def test_a_leader_alone_holds_nothing_under_any_load() -> None:
    """Its round is a WAL write that batches by itself: a hold would only add latency."""
    gc: GroupCommit[str] = GroupCommit(DELAY, siblings=1)
    for i in range(5):
        assert gc.offer(str(i), 100, 1.0 + i / 1000, alone=True) == [str(i)]
    assert gc.due is None


def test_proposals_held_before_the_peers_left_go_first_once_alone() -> None:
    gc: GroupCommit[str] = GroupCommit(DELAY, siblings=2)
    gc.offer("a", 2, 0.0)
    assert gc.offer("b", 1, 0.001) == []
    assert gc.offer("c", 1, 0.002, alone=True) == ["b", "c"]
    assert gc.due is None
    assert gc.release(0.1) == []  # the armed timer finds nothing left
