"""The corruption checks' judgement: only hashes of the same revision over the same compacted
range are compared; the initial check suspects the member itself, the leader trusts itself
unless its own hash moved."""

from __future__ import annotations

from actors.corruption.core import HashAt, initial_mismatch, periodic_mismatch
from actors.supervisor.flags import resolve


def at(member: int, hash_: int, revision: int = 10, compact: int = 4) -> HashAt:
    return HashAt(member, revision, compact, hash_)


def test_initial_check_names_the_peers_that_disagree() -> None:
    assert initial_mismatch(at(1, 7), [at(2, 7), at(3, 7)]) == []
    assert initial_mismatch(at(1, 7), [at(2, 8), at(3, 8)]) == [2, 3]


def test_hashes_over_other_ranges_prove_nothing() -> None:
    own = at(1, 7)
    others = [at(2, 9, compact=6), at(3, 9, revision=11)]
    assert initial_mismatch(own, others) == []
    assert periodic_mismatch(own, others, own) == []


def test_the_leader_flags_each_disagreeing_peer() -> None:
    assert periodic_mismatch(at(1, 7), [at(2, 7), at(3, 8)], at(1, 7)) == [3]


def test_the_leader_flags_itself_when_its_own_hash_moves_at_the_same_revision() -> None:
    assert periodic_mismatch(at(1, 7), [at(2, 7), at(3, 7)], at(1, 9)) == [1]
    assert periodic_mismatch(at(1, 7), [at(2, 7)], at(1, 9, compact=8)) == []  # compacted meanwhile


def test_corrupt_check_flags_as_etcd_spells_them() -> None:
    plain = resolve(["--name", "a"], environ={})
    assert not plain.initial_corrupt_check and plain.corrupt_check_ms == 0
    bare = resolve(["--name", "a", "--experimental-initial-corrupt-check"], environ={})
    assert bare.initial_corrupt_check
    given = resolve(
        [
            "--name",
            "a",
            "--experimental-initial-corrupt-check=false",
            "--experimental-corrupt-check-time",
            "5m",
        ],
        environ={"ETCDZ_EXPERIMENTAL_INITIAL_CORRUPT_CHECK": "true"},
    )
    assert not given.initial_corrupt_check and given.corrupt_check_ms == 300_000
    assert resolve(
        ["--name", "a"], environ={"ETCDZ_EXPERIMENTAL_INITIAL_CORRUPT_CHECK": "1"}
    ).initial_corrupt_check
