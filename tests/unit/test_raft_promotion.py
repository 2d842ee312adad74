"""The leader's automatic learner promotion (actors/raft/promotion.py), tick by tick: a learner
is promoted only after staying within the distance for the whole period, never while behind,
silent, or while another voter is unhealthy or a membership change is pending."""

from __future__ import annotations

import pytest

from actors.raft.promotion import AutoPromoter, Observation, PeerView, PromotionRules

LEADER, V2, V3, LEARNER = 1, 2, 3, 4
RULES = PromotionRules(max_lag=10, stable_ticks=5, election_ticks=3)


def view(match: int, active: bool = True, replicating: bool = True) -> PeerView:
    return PeerView(match=match, recent_active=active, replicating=replicating)


def obs(
    learner_match: int,
    *,
    last: int = 100,
    learner_active: bool = True,
    v3: PeerView | None = None,
    pending: bool = False,
    leader: bool = True,
) -> Observation:
    return Observation(
        is_leader=leader,
        leader_id=LEADER,
        last_index=last,
        conf_pending=pending,
        voters={LEADER: view(last), V2: view(last), V3: v3 or view(last)},
        learners={LEARNER: view(learner_match, learner_active)},
    )


def run(p: AutoPromoter, *observations: Observation) -> list[int | None]:
    return [p.tick(o) for o in observations]


def test_promoted_once_close_for_the_whole_period() -> None:
    p = AutoPromoter(RULES)
    assert run(p, *[obs(95)] * 5) == [None] * 5
    assert p.tick(obs(95)) == LEARNER


def test_never_while_behind_and_falling_behind_restarts_the_count() -> None:
    p = AutoPromoter(RULES)
    assert run(p, *[obs(50)] * 20) == [None] * 20  # 50 entries behind: never
    assert run(p, *[obs(95)] * 4, obs(80), *[obs(95)] * 5) == [None] * 10  # one slip: start again
    assert p.tick(obs(95)) == LEARNER


def test_a_learner_that_never_answered_is_not_close_even_with_a_short_log() -> None:
    p = AutoPromoter(RULES)
    new_peer = Observation(
        is_leader=True,
        leader_id=LEADER,
        last_index=5,  # within the distance of its match of 0
        conf_pending=False,
        voters={LEADER: view(5), V2: view(5), V3: view(5)},
        learners={LEARNER: view(0, active=True, replicating=False)},  # probing, never answered
    )
    assert run(p, *[new_peer] * 20) == [None] * 20


def test_a_silent_learner_is_not_close_even_if_its_match_was() -> None:
    p = AutoPromoter(RULES)
    silent = [obs(95, learner_active=False)] * 10
    assert run(p, obs(95), *silent) == [None] * 11  # heard once, then silent beyond the timeout
    assert p.tick(obs(95)) is None  # heard again: the count starts from here


def test_not_while_another_voter_is_unhealthy_or_a_change_is_pending() -> None:
    p = AutoPromoter(RULES)
    lagging = view(40)
    probing = view(100, replicating=False)
    assert run(p, *[obs(95, v3=lagging)] * 8) == [None] * 8
    assert run(p, *[obs(95, v3=probing)] * 2) == [None] * 2
    assert run(p, *[obs(95, pending=True)] * 2) == [None] * 2
    assert p.tick(obs(95)) == LEARNER  # it stayed close all along: promoted once it is safe


def test_a_voter_that_went_silent_blocks_promotion() -> None:
    p = AutoPromoter(RULES)
    gone = view(100, active=False)
    assert run(p, obs(95), *[obs(95, v3=gone)] * 10) == [None] * 11


def test_only_the_leader_decides_and_a_new_leader_counts_afresh() -> None:
    p = AutoPromoter(RULES)
    assert run(p, *[obs(95)] * 4, obs(95, leader=False), *[obs(95)] * 5) == [None] * 10
    assert p.tick(obs(95)) == LEARNER


def test_one_proposal_per_period() -> None:
    p = AutoPromoter(RULES)
    assert run(p, *[obs(95)] * 6)[-1] == LEARNER
    assert run(p, *[obs(95)] * 4) == [None] * 4  # the proposal was lost: wait a period again
    assert p.tick(obs(95)) == LEARNER


def test_the_member_table_says_which_learners_the_leader_may_promote() -> None:
    from actors.raft.membership import MemberTable
    from proto_schemas.cluster import Member, MemberAddRequest, MemberPromoteRequest
    from proto_schemas.errors import ErrorCode, EtcdzError

    table = MemberTable([Member(id=1, name="a", peer_urls=["tcp://h:1"])])
    auto = table.plan_add(MemberAddRequest(peer_urls=["tcp://h:2"], is_learner=True), 2, None, 7)
    table.apply(auto)
    assert table.auto_learners() == {2}
    table.apply(table.plan_promote(MemberPromoteRequest(id=2), 8, auto=True))
    assert table.auto_learners() == set() and not table.members[2].is_learner
    manual = MemberAddRequest(peer_urls=["tcp://h:3"], is_learner=True, auto_promote=False)
    table.apply(table.plan_add(manual, 3, None, 9))
    assert table.members[3].is_learner and table.auto_learners() == set()
    with pytest.raises(EtcdzError) as refused:
        table.plan_add(MemberAddRequest(peer_urls=["tcp://h:4"], name="a"), 4, None, 10)
    assert refused.value.code is ErrorCode.MEMBER_NAME_EXIST
