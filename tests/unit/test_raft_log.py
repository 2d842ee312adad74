"""Unit tests of the raft log, storage, quorum arithmetic and per-follower progress."""

from __future__ import annotations

import pytest

from actors.raft import quorum
from actors.raft.log import RaftLog
from actors.raft.progress import Inflights, Progress, ProgressState
from actors.raft.storage import CompactedError, MemoryStorage, UnavailableError
from proto_schemas.raft import Entry, Snapshot, SnapshotMetadata


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(term=t, index=start + k, data=b"%d" % (start + k)) for k, t in enumerate(terms)]


def stored_log(*terms: int) -> RaftLog:
    s = MemoryStorage()
    s.append(ents(*terms))
    return RaftLog(s)


# -- storage --------------------------------------------------------------------------------


def test_storage_append_replaces_suffix_and_reads_ranges() -> None:
    s = MemoryStorage()
    s.append(ents(1, 1, 2))
    s.append(ents(3, start=2))
    assert [e.term for e in s.all_entries()] == [1, 3]
    assert s.first_index() == 1 and s.last_index() == 2
    with pytest.raises(UnavailableError):
        s.term(3)
    with pytest.raises(ValueError):
        s.append(ents(3, start=5))  # gap


def test_storage_compaction_and_snapshot() -> None:
    s = MemoryStorage()
    s.append(ents(1, 1, 2, 2))
    s.create_snapshot(3, data=b"x")
    s.compact(3)
    assert s.first_index() == 4 and s.term(3) == 2
    with pytest.raises(CompactedError):
        s.entries(2, 4)
    s.apply_snapshot(Snapshot(metadata=SnapshotMetadata(index=10, term=5)))
    assert s.first_index() == 11 and s.last_index() == 10 and s.term(10) == 5


def test_entries_respect_max_size_but_return_at_least_one() -> None:
    log = stored_log(1, 1, 1)
    assert len(log.slice(1, 4, max_size=1)) == 1
    assert len(log.slice(1, 4, max_size=40)) == 2
    assert len(log.slice(1, 4)) == 3


# -- log --------------------------------------------------------------------------------------


def test_maybe_append_checks_the_previous_entry() -> None:
    log = stored_log(1, 1, 2)
    assert log.maybe_append(3, 1, 0, ents(3, start=4)) is None  # term mismatch at 3
    assert log.maybe_append(5, 2, 0, []) is None  # beyond the log
    assert log.maybe_append(3, 2, 4, ents(3, start=4)) == 4
    assert log.committed == 4 and log.last_index() == 4


def test_maybe_append_truncates_a_conflicting_suffix_but_ignores_duplicates() -> None:
    log = stored_log(1, 1, 2, 2)
    assert log.maybe_append(1, 1, 0, ents(1, 2, start=2)) == 3  # matching prefix: no-op
    assert log.last_index() == 4 and log.unstable.entries == []
    assert log.maybe_append(2, 1, 0, ents(3, start=3)) == 3
    assert [log.term(i) for i in range(1, 5)] == [1, 1, 3, None]
    assert log.persisted == 2  # index 3 is not durable; the stale stored 3..4 are shadowed


def test_conflict_with_committed_entries_is_a_bug() -> None:
    log = stored_log(1, 1)
    log.commit_to(2)
    with pytest.raises(AssertionError):
        log.maybe_append(1, 1, 2, ents(2, start=2))


def test_find_conflict_by_term_skips_whole_terms() -> None:
    log = stored_log(1, 1, 1, 2, 2, 2, 3, 3)
    assert log.find_conflict_by_term(8, 3) == (8, 3)
    assert log.find_conflict_by_term(8, 2) == (6, 2)
    assert log.find_conflict_by_term(8, 1) == (3, 1)
    assert log.find_conflict_by_term(8, 0) == (0, 0)
    assert log.find_conflict_by_term(5, 4) == (5, 2)


def test_is_up_to_date_compares_last_term_then_length() -> None:
    log = stored_log(1, 2, 2)
    assert log.is_up_to_date(1, 3)
    assert log.is_up_to_date(3, 2)
    assert not log.is_up_to_date(2, 2)
    assert not log.is_up_to_date(9, 1)


def test_unstable_entries_move_to_storage_on_stable_to() -> None:
    log = stored_log(1)
    log.append(ents(1, 2, start=2))
    assert [e.index for e in log.unstable.next_entries()] == [2, 3]
    log.unstable.accept_in_progress(3, snapshot=False)
    assert log.unstable.next_entries() == []
    assert log.unstable.stable_to(3, 1) == []  # stale: term mismatch
    stable = log.unstable.stable_to(2, 1)
    log.storage.append(stable)  # type: ignore[attr-defined]
    assert log.persisted == 2 and log.storage.last_index() == 2


def test_committed_entries_never_pass_the_durable_prefix() -> None:
    log = stored_log(1, 1)
    log.append(ents(1, start=3))
    log.commit_to(3)
    assert [e.index for e in log.next_committed_entries()] == [1, 2]
    log.accept_applying(2)
    assert not log.has_next_committed_entries()
    log.unstable.accept_in_progress(3, snapshot=False)
    log.storage.append(log.unstable.stable_to(3, 1))  # type: ignore[attr-defined]
    assert [e.index for e in log.next_committed_entries()] == [3]


def test_commit_requires_an_entry_of_the_current_term() -> None:
    log = stored_log(1, 2)
    assert not log.maybe_commit(2, 3)
    assert log.maybe_commit(2, 2) and log.committed == 2


def test_restore_from_snapshot() -> None:
    log = stored_log(1, 1)
    log.restore(Snapshot(metadata=SnapshotMetadata(index=9, term=4)))
    assert log.first_index() == 10 and log.last_index() == 9 and log.term(9) == 4
    assert log.committed == 9 and log.term(2) is None


# -- quorum -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acked", "want"),
    [
        ({1: 5, 2: 5, 3: 5}, 5),
        ({1: 9, 2: 5, 3: 1}, 5),
        ({1: 9}, 0),
        ({1: 9, 2: 7, 4: 100}, 7),  # 4 is not a voter
    ],
)
def test_committed_index_is_the_majority_median(acked: dict[int, int], want: int) -> None:
    assert quorum.committed_index([1, 2, 3], acked) == want


def test_committed_index_five_voters() -> None:
    assert quorum.committed_index([1, 2, 3, 4, 5], {1: 10, 2: 8, 3: 6, 4: 4, 5: 2}) == 6


def test_vote_tally() -> None:
    v = [1, 2, 3, 4, 5]
    assert quorum.vote_result(v, {1: True, 2: True}) is quorum.VoteResult.PENDING
    assert quorum.vote_result(v, {1: True, 2: True, 3: True}) is quorum.VoteResult.WON
    assert quorum.vote_result(v, {1: True, 2: False, 3: False, 4: False}) is quorum.VoteResult.LOST
    assert quorum.vote_result([1], {1: True}) is quorum.VoteResult.WON
    assert quorum.has_quorum([1, 2, 3], {1, 3}) and not quorum.has_quorum([1, 2, 3], {1, 9})


# -- progress -----------------------------------------------------------------------------------


def test_inflights_window() -> None:
    f = Inflights(3)
    for i in (5, 7, 9):
        f.add(i, 10)
    assert f.full()
    f.free_le(7)
    assert len(f) == 1 and f.bytes == 10 and not f.full()
    f.free_first_one()
    assert len(f) == 0


def test_probe_sends_one_message_until_a_response() -> None:
    pr = Progress(next_index=11, max_inflight=4)
    assert not pr.is_paused()
    pr.sent_entries(2, 12, 10)
    assert pr.is_paused() and pr.next == 11  # probing does not advance next
    assert pr.maybe_update(12)
    assert not pr.is_paused()


def test_replicate_pipelines_up_to_the_window() -> None:
    pr = Progress(next_index=1, max_inflight=2, match=0)
    pr.become_replicate()
    pr.sent_entries(1, 1, 1)
    pr.sent_entries(1, 2, 1)
    assert pr.next == 3 and pr.is_paused()
    pr.maybe_update(1)
    pr.inflights.free_le(1)
    assert not pr.is_paused()


def test_rejections_back_off_and_stale_ones_are_ignored() -> None:
    pr = Progress(next_index=11, max_inflight=4, match=3)
    assert not pr.maybe_decr_to(9, 5)  # not the probe we sent (next - 1 == 10)
    assert pr.maybe_decr_to(10, 5)
    assert pr.next == 6
    pr.become_replicate()
    assert not pr.maybe_decr_to(2, 0)  # <= match: stale
    pr.next = 9
    assert pr.maybe_decr_to(8, 0) and pr.next == pr.match + 1
    assert pr.state is ProgressState.REPLICATE  # the leader switches it to probe


def test_snapshot_state_pauses_and_resumes_after_it() -> None:
    pr = Progress(next_index=2, max_inflight=4)
    pr.become_snapshot(50)
    assert pr.is_paused()
    pr.maybe_update(50)
    pr.become_probe()
    assert pr.next == 51 and not pr.is_paused()
