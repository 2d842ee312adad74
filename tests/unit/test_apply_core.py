"""The apply worker core: order, exactly-once, batching, and picking up where the backend is
when started while the raft core runs on."""

from __future__ import annotations

import pytest

from actors.apply.core import APPLIED_REFRESH_S, ApplyCore, ApplyOutbox
from proto_schemas.codec import decode
from proto_schemas.internal import (
    Applied,
    Apply,
    ApplyBatch,
    ApplyDone,
    ApplyFrom,
    BackendState,
    Committed,
    Results,
)
from proto_schemas.raft import Entry


def entries(lo: int, hi: int) -> list[Entry]:
    return [Entry(term=1, index=i, data=b"x") for i in range(lo, hi + 1)]


def indexes(batch: object) -> list[int]:
    """The entries a batch to the backend carries, as the backend decodes them."""
    assert isinstance(batch, ApplyBatch)
    return [e.index for raw in batch.committed for e in decode(raw, Committed).entries]


def state(ci: int) -> BackendState:
    return BackendState(
        read_id=0, consistent_index=ci, revision=1, compact_revision=0, db_size=0, db_size_in_use=0
    )


def started(ci: int = 0) -> ApplyCore:
    """A worker that heard the backend's index and the raft core's answer (nothing to resend)."""
    core = ApplyCore()
    core.on_backend_state(state(ci), ApplyOutbox())
    core.on_apply(Apply(resync=True), ApplyOutbox())
    return core


def committed(core: ApplyCore, lo: int, hi: int) -> None:
    core.on_apply(Apply.of(entries(lo, hi)), ApplyOutbox())


def test_it_asks_raft_for_the_entries_after_the_backend_and_drops_those_sent_before() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    committed(core, 1, 5)  # handed out before the worker knew where the backend is
    core.next_batch(out)
    assert out.to_mvcc == []
    core.on_backend_state(state(3), out)
    # Raft core, gateway and raft's applied index learn at once how far the backend is.
    assert out.to_raft == [ApplyFrom(index=4), Applied(index=3)]
    assert out.to_gateway == [Results(applied_index=3)]
    committed(core, 6, 6)  # sent before raft heard the question: dropped, it comes again
    core.on_apply(Apply.of(entries(4, 6), resync=True), out)
    committed(core, 7, 7)
    core.next_batch(out)
    (batch,) = out.to_mvcc
    assert indexes(batch) == [4, 5, 6, 7]


def test_what_a_dead_predecessor_was_owed_does_not_stop_the_resync() -> None:
    """The backend finishes the batch the dead worker sent and answers the new one first."""
    core, out = ApplyCore(), ApplyOutbox()
    core.on_apply_done(ApplyDone(applied_index=7), out, 0.0)
    core.on_apply(Apply(restored=6), out)
    core.on_backend_state(state(7), out)
    assert out.to_raft == [ApplyFrom(index=8), Applied(index=7)]
    core.on_apply(Apply.of(entries(8, 9), resync=True), out)
    core.next_batch(out)
    assert indexes(out.to_mvcc[0]) == [8, 9]


def test_a_resync_from_a_compacted_log_starts_after_its_snapshot() -> None:
    core, out = ApplyCore(), ApplyOutbox()
    core.on_backend_state(state(3), out)
    core.on_apply(Apply.of(entries(11, 12), restored=10, resync=True), out)
    core.next_batch(out)
    assert indexes(out.to_mvcc[0]) == [11, 12]


def test_one_batch_in_flight_and_the_rest_batched_behind_it() -> None:
    core, out = started(), ApplyOutbox()
    committed(core, 1, 2)
    core.next_batch(out)
    committed(core, 3, 6)
    core.next_batch(out)
    assert len(out.to_mvcc) == 1  # still waiting for the first
    core.on_apply_done(ApplyDone(applied_index=2), out, 0.0)
    core.next_batch(out)
    assert isinstance(out.to_mvcc[1], ApplyBatch)
    assert indexes(out.to_mvcc[1]) == [3, 4, 5, 6]
    assert out.to_gateway == []  # the backend sends results to the gateway itself
    assert out.to_raft == [Applied(index=2)]


def test_replayed_entries_are_ignored() -> None:
    core, out = started(), ApplyOutbox()
    committed(core, 1, 3)
    committed(core, 1, 4)  # a restarted raft core hands out what it had again
    core.next_batch(out)
    assert indexes(out.to_mvcc[0]) == [1, 2, 3, 4]


def test_a_gap_in_committed_entries_is_a_bug_not_silence() -> None:
    core = started()
    committed(core, 1, 2)
    with pytest.raises(RuntimeError, match="out of order"):
        committed(core, 4, 4)


def test_a_restored_snapshot_moves_applied_forward_and_skips_what_it_covers() -> None:
    core, out = started(), ApplyOutbox()
    committed(core, 1, 2)
    core.on_apply(Apply(restored=10), out)
    committed(core, 11, 12)
    core.next_batch(out)
    assert indexes(out.to_mvcc[0]) == [11, 12]
    assert out.to_gateway == [Results(applied_index=10)]
    assert out.to_raft == [Applied(index=10)]


def test_a_restarted_raft_core_hears_the_applied_index_at_once() -> None:
    core, out = started(5), ApplyOutbox()
    core.tell_raft(out, 100.0)
    assert out.to_raft == []  # told at the start already
    core.on_raft_started(out)
    assert out.to_raft == [Applied(index=5)]


def test_the_raft_core_hears_the_applied_index_at_most_every_refresh_under_load() -> None:
    core, out = started(), ApplyOutbox()
    committed(core, 1, 6)
    for index, now in ((2, 1.0), (4, 1.005), (6, 1.01)):
        core.next_batch(out)
        core.on_apply_done(ApplyDone(applied_index=index), out, now)
    assert out.to_raft == [Applied(index=2)]  # the first at once, the rest held
    core.tell_raft(out, 1.01)
    assert out.to_raft == [Applied(index=2)]
    core.tell_raft(out, 1.0 + APPLIED_REFRESH_S)  # the shell's timer
    assert out.to_raft == [Applied(index=2), Applied(index=6)]
    core.tell_raft(out, 5.0)
    assert len(out.to_raft) == 2  # nothing new: nothing sent


def test_a_snapshot_covering_part_of_what_is_queued_keeps_the_rest() -> None:
    core, out = started(), ApplyOutbox()
    committed(core, 1, 6)
    core.on_apply(Apply(restored=3), out)
    core.next_batch(out)
    assert indexes(out.to_mvcc[0]) == [4, 5, 6]


def test_a_batch_takes_whole_chunks_up_to_its_bound() -> None:
    core, out = started(), ApplyOutbox()
    core.max_batch = 4
    for lo in (1, 3, 5):
        committed(core, lo, lo + 1)
    core.next_batch(out)
    core.on_apply_done(ApplyDone(applied_index=4), out, 0.0)
    core.next_batch(out)
    assert [indexes(b) for b in out.to_mvcc] == [[1, 2, 3, 4], [5, 6]]
    assert all(len(b.committed) == 2 and isinstance(b, ApplyBatch) for b in out.to_mvcc[:1])
