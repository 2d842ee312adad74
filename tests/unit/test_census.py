"""The supervisor's census of its actors: restarts and their causes, what is up, what hangs."""

from __future__ import annotations

from actors.metrics.core import MetricsBoard
from actors.supervisor.census import HUNG_AFTER_S, Census
from proto_schemas.internal import MetricsReport


def samples(report: MetricsReport, name: str) -> dict[tuple[str, ...], float]:
    (family,) = [f for f in report.families if f.name == name]
    return {tuple(s.labels): float(s.value) for s in family.samples}


def test_a_start_after_a_death_counts_as_a_restart_with_its_cause() -> None:
    census = Census()
    census.started("raft", 0.0, 1000.0)
    census.started("lease", 0.0, 1000.0)
    census.died("lease", "killed by signal 9")
    census.died("lease", "exit code 1")  # the first cause stands until it starts again
    report = census.report()
    assert samples(report, "etcdz_actor_up") == {("actor", "lease"): 0, ("actor", "raft"): 1}
    census.started("lease", 5.0, 1005.0)
    report = census.report()
    assert samples(report, "etcdz_actor_up")[("actor", "lease")] == 1
    assert samples(report, "etcdz_actor_restarts_total") == {("actor", "lease"): 1, ("actor", "raft"): 0}
    assert samples(report, "etcdz_actor_last_restart_timestamp_seconds") == {
        ("actor", "lease", "cause", "killed by signal 9"): 1005.0
    }


def test_an_actor_is_hung_once_its_heartbeat_is_older_than_the_limit_after_a_grace() -> None:
    census = Census()
    census.started("raft", 0.0, 0.0)
    census.started("wal", 0.0, 0.0)
    early = HUNG_AFTER_S - 1
    assert census.hung(early, {}) == []  # no beat yet, but still within its start's grace
    later = HUNG_AFTER_S + 5
    assert census.hung(later, {"raft": later - 1, "wal": later - HUNG_AFTER_S - 1}) == ["wal"]
    assert census.hung(later, {"raft": later - 1}) == ["wal"]  # no file at all
    census.died("wal", "hung")
    assert census.hung(later, {"raft": later - 1}) == []  # a dead one is not hung


def test_health_says_which_actor_of_the_member_is_down() -> None:
    census = Census()
    for actor in ("wal", "raft", "apply", "watch0"):
        census.started(actor, 0.0, 0.0)
    census.died("watch0", "exit code 2")  # a hub has its own health reason
    board = MetricsBoard()
    board.census = census.report()
    assert board.health(0.0) == (False, "RAFT NOT RUNNING")  # nothing down; no raft report yet
    census.died("apply", "hung (no heartbeat for 10 s)")
    board.census = census.report()
    assert board.health(0.0) == (False, "ACTOR DOWN apply")
    assert "etcdz_actor_restarts_total" in board.exposition(0.0)
