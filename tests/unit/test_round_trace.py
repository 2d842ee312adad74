"""The raft round records and what tools/round_trace.py reads from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.runtime.round_trace import RoundTrace
from tools.round_trace import parse, read_dir, rounds_summary, stages

MS = 1_000_000


def test_records_are_one_line_each_on_the_monotonic_clock(tmp_path: Path) -> None:
    trace = RoundTrace(str(tmp_path), "m1")
    trace.record("appended", 5, 7)
    trace.record("persisted", 7)
    (path,) = tmp_path.glob("m1-*.rounds")
    first, second = (line.split() for line in path.read_text().splitlines())
    assert first[1:] == ["appended", "5", "7"] and second[1:] == ["persisted", "7", "0"]
    assert int(first[0]) <= int(second[0])


def test_each_stage_is_timed_per_entry_from_the_leader_to_each_follower() -> None:
    leader = parse(
        [
            f"{1 * MS} offered 2 0",  # held until the round at 3 ms
            f"{3 * MS} appended 10 11",
            f"{4 * MS} persisted 11 0",
            f"{6 * MS} committed 10 11",
            f"{7 * MS} offered 1 0",  # a round of its own at once
            f"{7 * MS} appended 12 12",
            f"{9 * MS} persisted 12 0",
            f"{10 * MS} committed 12 12",
        ]
    )
    follower = parse(
        [
            f"{4 * MS} appended 10 11",
            f"{5 * MS} persisted 11 0",
            f"{8 * MS} appended 12 12",
            f"{8 * MS} committed 10 11",  # learnt with the next append
            f"{9 * MS} persisted 12 0",
            f"{11 * MS} committed 12 12",
        ]
    )
    got = dict(stages({"m1": leader, "m2": follower}, 0, 20 * MS))
    assert got["hold: proposal at the leader -> its round"] == [2 * MS, 0]
    assert got["leader: append -> own WAL durable"] == [1 * MS, 1 * MS, 2 * MS]
    assert got["leader: append -> commit"] == [3 * MS, 3 * MS, 3 * MS]
    assert got["m2: leader's append -> appended here"] == [1 * MS, 1 * MS, 1 * MS]
    assert got["m2: appended -> WAL durable"] == [1 * MS, 1 * MS, 1 * MS]
    assert got["m2: leader's commit -> committed here"] == [2 * MS, 2 * MS, 1 * MS]
    assert rounds_summary({"m1": leader, "m2": follower}, 0, 20 * MS) == (
        "100 rounds/s on the leader, 1.5 entries per round"
    )


def test_outside_the_window_nothing_counts() -> None:
    leader = parse([f"{1 * MS} offered 1 0", f"{1 * MS} appended 1 1", f"{2 * MS} committed 1 1"])
    got = dict(stages({"m1": leader}, 5 * MS, 10 * MS))
    assert all(values == [] for values in got.values())


def test_a_restarted_core_s_files_make_one_member(tmp_path: Path) -> None:
    (tmp_path / "m1-100.rounds").write_text(f"{1 * MS} appended 1 1\n")
    (tmp_path / "m1-200.rounds").write_text(f"{5 * MS} appended 2 2\n")
    members = read_dir(str(tmp_path))
    assert list(members) == ["m1"] and members["m1"].appended == {1: 1 * MS, 2: 5 * MS}


@pytest.mark.parametrize("persisted", ["3", "2"])
def test_a_persisted_index_that_does_not_move_marks_nothing_again(persisted: str) -> None:
    m = parse([f"{1 * MS} persisted 3 0", f"{2 * MS} persisted {persisted} 0"])
    assert m.persisted == {1: 1 * MS, 2: 1 * MS, 3: 1 * MS}
