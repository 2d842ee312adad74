"""Auto-compaction schedules (etcd 3.4's periodic and revision compactors), on a fake clock.
The gateway proposing what they decide is in test_gateway_core."""

from __future__ import annotations

import pytest

from actors.gateway.compactor import Periodic, Revision, build
from actors.supervisor.flags import parse_retention


def run(
    compactor: Periodic | Revision, until: float, step: float, leader: bool = True
) -> list[tuple[float, int]]:  # noqa: E501
    """Tick every ``step`` seconds with revision = 100 × time + 1; the compactions asked for."""
    asked = []
    t = 0.0
    while t <= until + 1e-9:
        target = compactor.due(t, int(100 * t) + 1, leader)
        if target is not None:
            asked.append((round(t, 3), target))
        t += step
    return asked


def test_periodic_waits_one_retention_then_compacts_every_retention_to_a_retention_ago() -> None:
    asked = run(Periodic(10.0, 0.0), until=35, step=0.5)
    assert [t for t, _ in asked] == [10.0, 20.0, 30.0]
    assert all(abs(rev - 100 * (t - 10)) <= 100 for t, rev in asked)


def test_periodic_over_an_hour_compacts_hourly_keeping_the_whole_retention() -> None:
    asked = run(Periodic(3 * 3600.0, 0.0), until=5 * 3600, step=60)
    assert [t / 3600 for t, _ in asked] == [3.0, 4.0, 5.0]
    assert all(abs(rev - 100 * (t - 3 * 3600)) <= 100 * 360 for t, rev in asked)


def test_periodic_on_a_follower_samples_but_does_not_compact() -> None:
    compactor = Periodic(10.0, 0.0)
    assert run(compactor, until=20, step=0.5, leader=False) == []
    assert compactor.due(21.0, 2100, True) == pytest.approx(1100, abs=100)  # history kept meanwhile


def test_periodic_retries_a_failed_compaction_at_the_next_sample() -> None:
    compactor = Periodic(10.0, 0.0)
    asked = run(compactor, until=10, step=0.5)
    assert [t for t, _ in asked] == [10.0]
    compactor.result(10.0, ok=False)
    assert compactor.due(11.0, 1100, True) is not None


def test_revision_mode_keeps_the_last_n_revisions_every_five_minutes() -> None:
    compactor = Revision(1000, 0.0)
    assert compactor.due(299.0, 5000, True) is None
    assert compactor.due(300.0, 5000, True) == 4000
    assert compactor.due(600.0, 5000, True) is None  # nothing new since
    assert compactor.due(900.0, 800, True) is None  # fewer revisions than the retention
    assert compactor.due(1200.0, 7000, False) is None  # not the leader
    assert compactor.due(1500.0, 7000, True) == 6000
    compactor.result(1500.0, ok=False)
    assert compactor.due(1800.0, 7000, True) == 6000  # asked again after a failure


def test_retention_flag_is_read_as_etcd_reads_it() -> None:
    assert parse_retention("periodic", "1") == 3600
    assert parse_retention("periodic", "0.5") == 1800
    assert parse_retention("periodic", "30m") == 1800
    assert parse_retention("periodic", "0") == 0 and build("periodic", 0, 0.0) is None
    assert parse_retention("revision", "1000") == 1000
    for mode, value in [("revision", "1h"), ("revision", "1.5"), ("periodic", "-1"), ("daily", "1")]:
        with pytest.raises(ValueError):
            parse_retention(mode, value)
