"""Short robustness runs (fixed seeds, a few seconds each): faults under a recorded load, then
healed; the history must be linearizable, every acknowledged write present, HashKV equal, watch
guarantees and lease lifetimes kept. Long runs: ``python -m tools.robustness``."""

from __future__ import annotations

import pytest

from tools.robustness import SCENARIOS, run

SECONDS = 6.0


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_short_run_holds(scenario: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    outcome = run(scenario, str(tmp_path_factory.mktemp(scenario)), SECONDS, seed=1)
    assert outcome.ok, "\n".join(outcome.problems)
    assert outcome.operations > 100
    assert outcome.faults


def test_the_checks_catch_reads_served_without_read_index(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A deliberately broken build (linearizable reads answered from the local backend) is
    reported under partitions within a bounded number of short runs."""
    outcomes = []
    for seed in (1, 2, 3):
        root = str(tmp_path_factory.mktemp(f"broken{seed}"))
        outcomes.append(run("partitions", root, SECONDS, seed=seed, broken_reads=True))
        if not outcomes[-1].ok:
            break
    assert not outcomes[-1].ok, "the broken build passed every run"
    assert any("not linearizable" in p for p in outcomes[-1].problems)
