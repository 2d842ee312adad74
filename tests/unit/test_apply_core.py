"""The apply worker core: order, exactly-once, batching."""

from __future__ import annotations

import pytest

from actors.apply.core import APPLIED_REFRESH_S, ApplyCore, ApplyOutbox
from proto_schemas.internal import Applied, ApplyBatch, ApplyDone, ApplyResult, BackendState, Results
from proto_schemas.raft import Entry


def entries(lo: int, hi: int) -> list[Entry]:
    return [Entry(term=1, index=i, data=b"x") for i in range(lo, hi + 1)]


def state(ci: int) -> BackendState:
    return BackendState(
        read_id=0, consistent_index=ci, revision=1, compact_revision=0, db_size=0, db_size_in_use=0
    )


def test_nothing_is_sent_before_the_backend_reports_its_index() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    core.on_committed(entries(1, 3))
    core.next_batch(out)
    assert out.to_mvcc == []


def test_entries_at_or_below_the_consistent_index_are_skipped() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    core.on_committed(entries(1, 5))
    core.on_backend_state(state(3), out)
    core.next_batch(out)
    (batch,) = out.to_mvcc
    assert [e.index for e in batch.entries] == [4, 5]
    # Gateway and raft core learn at once how far the backend is (reads wait on it).
    assert out.to_gateway == [Results(applied_index=3)]
    assert out.to_raft == [Applied(index=3)]


def test_one_batch_in_flight_and_the_rest_batched_behind_it() -> None:
    core, out = ApplyCore(max_batch=100), ApplyOutbox()
    core.on_backend_state(state(0), ApplyOutbox())
    core.on_committed(entries(1, 2))
    core.next_batch(out)
    core.on_committed(entries(3, 6))
    core.next_batch(out)
    assert len(out.to_mvcc) == 1  # still waiting for the first
    core.on_apply_done(
        ApplyDone(applied_index=2, revision=3, results=[ApplyResult(request_id=9, body=b"r")]), out, 0.0
    )
    core.next_batch(out)
    assert isinstance(out.to_mvcc[1], ApplyBatch)
    assert [e.index for e in out.to_mvcc[1].entries] == [3, 4, 5, 6]
    assert out.to_gateway == [
        Results(applied_index=2, results=[ApplyResult(request_id=9, body=b"r")], revision=3)
    ]
    assert out.to_raft == [Applied(index=2)]


def test_replayed_entries_are_ignored() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    core.on_backend_state(state(0), ApplyOutbox())
    core.on_committed(entries(1, 3))
    core.on_committed(entries(1, 4))
    core.next_batch(out)
    assert [e.index for e in out.to_mvcc[0].entries] == [1, 2, 3, 4]


def test_a_gap_in_committed_entries_is_a_bug_not_silence() -> None:
    core = ApplyCore()
    core.on_backend_state(state(0), ApplyOutbox())
    core.on_committed(entries(1, 2))
    with pytest.raises(RuntimeError, match="out of order"):
        core.on_committed(entries(4, 4))


def test_a_restored_snapshot_moves_applied_forward_and_skips_what_it_covers() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    core.on_backend_state(state(0), ApplyOutbox())
    core.on_committed(entries(1, 2))
    core.on_restored(10, out)
    core.on_committed(entries(11, 12))
    core.next_batch(out)
    assert [e.index for e in out.to_mvcc[0].entries] == [11, 12]
    assert out.to_gateway == [Results(applied_index=10)]
    assert out.to_raft == [Applied(index=10)]


def test_the_raft_core_hears_the_applied_index_at_most_every_refresh_under_load() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    core.on_backend_state(state(0), ApplyOutbox())
    core.on_committed(entries(1, 6))
    for index, now in ((2, 1.0), (4, 1.005), (6, 1.01)):
        core.next_batch(out)
        core.on_apply_done(ApplyDone(applied_index=index, revision=index), out, now)
    assert out.to_raft == [Applied(index=2)]  # the first at once, the rest held
    assert [r.applied_index for r in out.to_gateway] == [2, 4, 6]  # the gateway hears every batch
    core.tell_raft(out, 1.01)
    assert out.to_raft == [Applied(index=2)]
    core.tell_raft(out, 1.0 + APPLIED_REFRESH_S)  # the shell's timer
    assert out.to_raft == [Applied(index=2), Applied(index=6)]
    core.tell_raft(out, 5.0)
    assert len(out.to_raft) == 2  # nothing new: nothing sent
