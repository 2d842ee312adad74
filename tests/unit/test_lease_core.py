"""The lease expirer's core on a fake clock: expiry order, leader changes, checkpoints, batches."""

from __future__ import annotations

import pytest

from actors.lease.core import EXPIRED, Held, Lessor, Wait

MIN_TTL = 2


def primary(**kw: float) -> Lessor:
    lessor = Lessor(min_ttl=MIN_TTL, **kw)  # type: ignore[arg-type]
    lessor.promote(0.0, 0.0)
    return lessor


def drain(lessor: Lessor, now: float) -> list[int]:
    return lessor.expired(now, budget=1_000_000)


def test_a_ttl_below_the_minimum_is_raised_to_it() -> None:
    lessor = primary()
    lessor.granted(1, 1, now=0.0)
    assert lessor.keep_alive(1, now=0.0) == MIN_TTL
    assert drain(lessor, 1.5) == []
    assert drain(lessor, 2.0) == [1]


def test_leases_expire_earliest_deadline_first_and_not_before() -> None:
    lessor = primary()
    for lease_id, ttl in [(1, 5), (2, 3), (3, 4)]:
        lessor.granted(lease_id, ttl, now=0.0)
    assert drain(lessor, 2.9) == []
    assert lessor.remaining(2, 2.1) == 1
    assert drain(lessor, 3.0) == [2]
    lessor.revoked(2)
    assert drain(lessor, 10.0) == [3, 1]


def test_a_handed_out_lease_is_handed_out_again_only_if_its_revoke_never_applied() -> None:
    lessor = primary(retry_revoke_after_s=3.0)
    lessor.granted(1, 5, now=0.0)
    lessor.granted(2, 5, now=0.0)
    assert drain(lessor, 5.0) == [1, 2]
    lessor.revoked(1)  # lease 2's revoke was lost (say, with a leader change)
    assert drain(lessor, 7.9) == []
    assert drain(lessor, 8.0) == [2]
    lessor.revoked(2)
    assert drain(lessor, 100.0) == []


def test_a_keep_alive_renews_to_the_full_ttl_but_never_past_the_deadline() -> None:
    lessor = primary()
    lessor.granted(1, 10, now=0.0)
    assert lessor.keep_alive(1, now=8.0) == 10
    assert drain(lessor, 17.9) == []
    assert lessor.remaining(1, 17.0) == 1
    assert drain(lessor, 18.0) == [1]  # its revoke is on its way through raft
    # A renewal now would be undone by that revoke: the client would count on 10 s it has not.
    assert lessor.keep_alive(1, now=18.5) == EXPIRED
    assert lessor.keep_alive(1, now=18.0) == EXPIRED  # due, even before it was handed out
    assert lessor.remaining(1, 18.5) == 0
    lessor.revoked(1)
    assert lessor.keep_alive(1, now=18.6) is None
    assert lessor.keep_alive(99, now=0.0) is None


def test_a_lease_whose_revoke_was_lost_with_the_leader_is_renewable_on_the_next() -> None:
    old, new = primary(), Lessor(min_ttl=MIN_TTL)
    for lessor in (old, new):
        lessor.granted(1, 10, now=0.0)
    assert drain(old, 10.0) == [1] and old.keep_alive(1, now=10.1) == EXPIRED
    old.demote()  # the revoke never committed
    new.promote(10.5, extend_s=1.0)
    assert new.keep_alive(1, now=11.0) == 10
    assert drain(new, 20.9) == [] and drain(new, 21.0) == [1]


def test_only_the_primary_expires_and_renews() -> None:
    lessor = Lessor(min_ttl=MIN_TTL)
    lessor.granted(1, 5, now=0.0)
    assert drain(lessor, 100.0) == []
    assert lessor.keep_alive(1, now=1.0) is None
    assert lessor.remaining(1, 100.0) == 5  # a follower only knows the TTL
    assert lessor.checkpoints(1000.0) == []
    lessor.promote(100.0, 0.0)
    lessor.demote()
    assert drain(lessor, 1000.0) == []


def test_promotion_gives_every_lease_its_full_time_plus_an_election_timeout() -> None:
    lessor = Lessor(min_ttl=MIN_TTL)
    lessor.granted(1, 10, now=0.0)  # granted long ago under another leader
    lessor.promote(100.0, extend_s=1.0)
    assert drain(lessor, 110.9) == []
    assert lessor.remaining(1, 100.0) == 11
    assert drain(lessor, 111.0) == [1]


def test_a_second_promotion_forgets_old_deadlines_and_handouts() -> None:
    lessor = primary()
    lessor.granted(1, 5, now=0.0)
    assert drain(lessor, 5.0) == [1]
    lessor.demote()
    lessor.promote(6.0, extend_s=1.0)  # leader again: the revoke from last term may be lost
    assert drain(lessor, 11.9) == []
    assert drain(lessor, 12.0) == [1]


def test_a_checkpointed_lease_resumes_from_its_remaining_ttl_after_a_leader_change() -> None:
    lessor = Lessor(min_ttl=MIN_TTL, checkpoint_interval_s=300.0)
    lessor.granted(1, 3600, now=0.0)
    lessor.checkpointed(1, 400)
    lessor.promote(1000.0, extend_s=1.0)
    assert lessor.remaining(1, 1000.0) == 401
    assert drain(lessor, 1400.9) == []
    assert drain(lessor, 1401.0) == [1]


def test_only_long_leases_are_checkpointed_once_per_interval() -> None:
    lessor = primary(checkpoint_interval_s=300.0)
    lessor.granted(1, 3600, now=0.0)
    lessor.granted(2, 60, now=0.0)
    assert lessor.checkpoints(299.0) == []
    assert lessor.checkpoints(300.0) == [(1, 3300)]
    assert lessor.checkpoints(301.0) == []
    assert lessor.checkpoints(600.0) == [(1, 3000)]


def test_a_keep_alive_clears_a_checkpoint_so_a_new_leader_does_not_cut_the_lease_short() -> None:
    lessor = primary(checkpoint_interval_s=300.0)
    lessor.granted(1, 3600, now=0.0)
    assert lessor.checkpoints(300.0) == [(1, 3300)]
    lessor.checkpointed(1, 3300)  # applied
    lessor.keep_alive(1, now=310.0)
    assert lessor.checkpoints(310.1) == [(1, 0)]
    lessor.checkpointed(1, 0)
    assert lessor.checkpoints(310.2) == []
    lessor.demote()
    lessor.promote(400.0, extend_s=0.0)
    assert lessor.remaining(1, 400.0) == 3600


def test_a_keep_alive_while_a_checkpoint_is_in_flight_clears_it_once_applied() -> None:
    lessor = primary(checkpoint_interval_s=300.0)
    lessor.granted(1, 3600, now=0.0)
    assert lessor.checkpoints(300.0) == [(1, 3300)]
    lessor.keep_alive(1, now=300.5)  # before the checkpoint applied: nothing to clear yet
    assert lessor.checkpoints(300.6) == []
    lessor.checkpointed(1, 3300)
    assert lessor.checkpoints(300.7) == [(1, 0)]


def test_a_mass_expiry_is_handed_out_in_rate_limited_batches_earliest_first() -> None:
    lessor = primary(max_revokes_per_s=10_000)
    for lease_id in range(1, 25_001):
        lessor.granted(lease_id, 10, now=lease_id * 1e-6)
    handed: list[int] = []
    now, tick = 10.1, 0.1
    for _ in range(40):  # 4 s of ticks
        batch = lessor.expired(now, lessor.revoke_budget(tick))
        assert len(batch) <= 10_000
        handed += batch
        now += tick
        if len(handed) == 25_000:
            break
    assert handed == list(range(1, 25_001))  # each once, in deadline order
    assert now - 10.1 >= 1.4  # a second's budget, then 1,000 per tick: not all at once


def test_the_revoke_budget_refills_over_time_up_to_one_seconds_worth() -> None:
    lessor = primary(max_revokes_per_s=1000)
    assert lessor.revoke_budget(0.0) == 1000
    lessor.expired(0.0, 1000)  # nothing due: no tokens spent
    assert lessor.revoke_budget(60.0) == 1000
    for lease_id in range(1, 2001):
        lessor.granted(lease_id, 5, now=0.0)
    assert len(lessor.expired(5.0, lessor.revoke_budget(0.0))) == 1000
    assert lessor.revoke_budget(0.0) == 0
    assert lessor.revoke_budget(0.25) == 250


def test_loading_the_table_replaces_it_and_keeps_a_primary_primary() -> None:
    lessor = primary()
    lessor.granted(7, 5, now=0.0)
    lessor.load([(1, 10, 0), (2, 3600, 100)], now=50.0)
    assert lessor.ids() == [1, 2]
    assert lessor.remaining(1, 50.0) == 10
    assert lessor.remaining(2, 50.0) == 100
    assert drain(lessor, 60.0) == [1]


@pytest.mark.parametrize("event", ["revoked", "checkpointed"])
def test_events_for_unknown_leases_are_ignored(event: str) -> None:
    lessor = primary()
    if event == "revoked":
        lessor.revoked(5)
    else:
        lessor.checkpointed(5, 10)
    assert lessor.ids() == [] and lessor.remaining(5, 0.0) is None


def test_a_keep_alive_for_an_unknown_lease_waits_for_its_grant_then_gives_up() -> None:
    held = Held(wait_s=0.2, revoke_wait_s=7.0)
    known: set[str] = set()
    answered: list[str] = []

    def answer(call: str) -> Wait:
        if call in known:
            answered.append(call)
            return Wait.DONE
        return Wait.GRANT

    held.hold("granted later", 0.0)
    held.hold("never granted", 0.05)
    assert held.retry(answer, 0.1) == [] and answered == []  # both still waiting
    known.add("granted later")  # its grant's event arrives
    assert held.retry(answer, 0.15) == [] and answered == ["granted later"]
    assert held.retry(answer, 0.24) == []  # 0.19 s held: not yet
    assert held.retry(answer, 0.25) == ["never granted"] and not held


def test_a_keep_alive_for_an_expired_lease_waits_for_its_revoke_then_is_refused() -> None:
    held = Held(wait_s=0.2, revoke_wait_s=7.0)
    expired = {"revoked soon", "revoke never applies"}

    def answer(call: str) -> Wait:
        return Wait.REVOKE if call in expired else Wait.GRANT

    held.hold("revoked soon", 0.0)
    held.hold("revoke never applies", 0.0)
    assert held.retry(answer, 1.0) == []  # long past the wait for a grant: still waiting
    expired.discard("revoked soon")  # the revoke applied: the lease is unknown now
    assert held.retry(answer, 1.1) == ["revoked soon"]
    assert held.retry(answer, 6.9) == []
    assert held.retry(answer, 7.0) == ["revoke never applies"] and not held
