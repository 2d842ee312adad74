"""The supervisor's rule for side processes (watch hubs, metrics, corruption checker): a side
that cannot start stops the member; later deaths back off and end up reported as failing."""

from __future__ import annotations

from actors.supervisor.sides import BACKOFF_S, GIVE_UP_AFTER, MAX_BACKOFF_S, STABLE_AFTER_S, SideRestarts

FATAL = 3


def test_a_side_that_cannot_start_stops_the_member() -> None:
    sides = SideRestarts()
    sides.started("watch0", 0.0)
    assert sides.died("watch0", FATAL, FATAL, 0.8).fatal


def test_a_side_that_dies_later_is_restarted_with_a_growing_backoff_then_reported() -> None:
    sides = SideRestarts()
    sides.started("watch0", 0.0)
    sides.lived_stable("watch0", STABLE_AFTER_S + 1)  # its first run is over
    now = 100.0
    delays = []
    for i in range(GIVE_UP_AFTER + 2):
        verdict = sides.died("watch0", FATAL, FATAL, now)  # cannot bind any more: not fatal now
        assert not verdict.fatal and sides.waiting("watch0")
        delays.append(verdict.restart_at - now)
        assert verdict.failing == (i + 1 == GIVE_UP_AFTER)  # said once, at error level
        assert sides.due(now) == [] and sides.due(verdict.restart_at) == ["watch0"]
        now = verdict.restart_at
        sides.started("watch0", now)
        now += 0.5
    assert delays[0] == BACKOFF_S and delays == sorted(delays) and max(delays) <= MAX_BACKOFF_S


def test_a_side_that_lived_long_enough_starts_its_backoff_over() -> None:
    sides = SideRestarts()
    sides.started("metrics", 0.0)
    first = sides.died("metrics", -9, FATAL, 1.0)  # killed in its first run: restarted
    assert not first.fatal and first.restart_at == 1.0 + BACKOFF_S
    sides.started("metrics", first.restart_at)
    second = sides.died("metrics", 2, FATAL, first.restart_at + 1.0)
    assert second.restart_at - (first.restart_at + 1.0) == 2 * BACKOFF_S
    sides.started("metrics", second.restart_at)
    third = sides.died("metrics", 2, FATAL, second.restart_at + STABLE_AFTER_S)
    assert third.restart_at - (second.restart_at + STABLE_AFTER_S) == BACKOFF_S
