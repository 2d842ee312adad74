"""The WAL writer core: group commit batches and the acks that release raft messages."""

from __future__ import annotations

from pathlib import Path

from actors.raft.rawnode import must_sync
from actors.wal.core import Batch, WalWriterCore
from proto_schemas.internal import Persist, Persisted
from proto_schemas.raft import Entry, HardState, MessageType, RaftMessage, Snapshot, SnapshotMetadata


def ents(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"%d" % i) for i in range(first, last + 1)]


def resp(to: int, index: int) -> RaftMessage:
    return RaftMessage(type=MessageType.APP_RESP, to=to, from_=1, term=1, index=index)


def test_nothing_added_means_no_batch() -> None:
    core = WalWriterCore()
    assert core.take_batch() is None


def test_everything_since_the_last_batch_is_one_batch() -> None:
    core = WalWriterCore()
    core.add(Persist(entries=ents(1, 2), hard_state=HardState(term=1, vote=1), messages=[resp(2, 2)], seq=1))
    core.add(Persist(entries=ents(3, 3), hard_state=HardState(term=1, vote=1, commit=2), seq=2))
    core.add(Persist(messages=[resp(3, 3)], seq=3))
    batch = core.take_batch()
    assert batch == Batch(
        ents(1, 3), HardState(term=1, vote=1, commit=2), [resp(2, 2), resp(3, 3)], last=(0, 3)
    )
    entries, hard_state, messages, snapshot, must_sync, last = batch  # also a plain tuple
    assert snapshot is None and must_sync
    assert core.take_batch() is None
    # What arrives while that batch is being synced goes into the next one.
    core.add(Persist(entries=ents(4, 4), messages=[resp(2, 4)], seq=4))
    ack = core.persisted(batch)
    assert ack == Persisted(last_index=3, last_term=1, messages=[resp(2, 2), resp(3, 3)], seq=3)
    nxt = core.take_batch()
    assert nxt is not None and nxt.entries == ents(4, 4) and nxt.hard_state is None
    assert core.persisted(nxt) == Persisted(last_index=4, last_term=1, messages=[resp(2, 4)], seq=4)


def test_an_ack_names_the_generation_and_sequence_number_of_its_batchs_last_persist() -> None:
    """What the raft core counts its writes still on their way by (actors/raft/persisting.py)."""
    core = WalWriterCore()
    core.add(Persist(entries=ents(1, 1), generation=5, seq=8))
    core.add(Persist(entries=ents(2, 2), generation=5, seq=9))
    ack = core.persisted(core.take_batch())
    assert (ack.generation, ack.seq) == (5, 9)
    core.generation = 7  # a new raft core loaded: its writes count from 1 again
    assert not core.add(Persist(entries=ents(3, 3), generation=5, seq=10))
    core.add(Persist(entries=ents(3, 3), generation=7, seq=1))
    ack = core.persisted(core.take_batch())
    assert (ack.generation, ack.seq) == (7, 1)


def test_conflicting_suffix_within_a_batch_is_never_written() -> None:
    core = WalWriterCore()
    core.add(Persist(entries=ents(1, 5)))
    core.add(Persist(entries=ents(3, 4, term=2)))
    batch = core.take_batch()
    assert batch is not None
    assert batch.entries == ents(1, 2) + ents(3, 4, term=2)


def test_hard_state_only_batch_keeps_the_log_end() -> None:
    core = WalWriterCore(last_index=10, last_term=3)
    core.add(Persist(hard_state=HardState(term=4, vote=2)))
    batch = core.take_batch()
    assert batch is not None and batch.entries == []
    assert core.persisted(batch) == Persisted(last_index=10, last_term=3)


def test_persisted_with_explicit_index_releases_the_last_batch() -> None:
    core = WalWriterCore()
    core.add(Persist(entries=ents(1, 1), messages=[resp(2, 1)]))
    core.take_batch()
    assert core.persisted(1, 1) == Persisted(last_index=1, last_term=1, messages=[resp(2, 1)])
    assert core.persisted(1, 1).messages == []  # released once only


def test_core_drives_a_real_wal_as_the_shell_does(tmp_path: Path) -> None:
    from actors.wal.files import Wal

    wal, contents = Wal.open(str(tmp_path), member_id=1, cluster_id=2)
    core = WalWriterCore(last_index=wal.last_index, last_term=wal.last_term)
    core.add(Persist(entries=ents(1, 2), hard_state=HardState(term=1, vote=1), messages=[resp(2, 2)]))
    core.add(Persist(entries=ents(2, 3, term=2), hard_state=HardState(term=2, vote=1)))
    batch = core.take_batch()
    assert batch is not None
    wal.append(batch.entries, batch.hard_state)
    wal.sync()
    ack = core.persisted(batch)
    assert (ack.last_index, ack.last_term) == (wal.synced_index, wal.last_term) == (3, 2)
    wal.close()
    _, contents = Wal.open(str(tmp_path), member_id=1, cluster_id=2)
    assert contents.entries == ents(1, 1) + ents(2, 3, term=2)
    assert contents.hard_state == HardState(term=2, vote=1)


def test_an_installed_snapshot_supersedes_the_entries_it_covers() -> None:
    core = WalWriterCore(last_index=3, last_term=1)
    core.add(Persist(entries=ents(4, 6)))
    snap = Snapshot(metadata=SnapshotMetadata(index=10, term=2))
    core.add(Persist(snapshot=snap, hard_state=HardState(term=2, commit=10)))
    core.add(Persist(entries=[Entry(term=2, index=11)]))
    batch = core.take_batch()
    assert batch is not None and batch.snapshot == snap
    assert [e.index for e in batch.entries] == [11]  # 4..6 are covered by the snapshot
    assert core.persisted(batch) == Persisted(last_index=11, last_term=2, messages=[])
    core.add(Persist(snapshot=Snapshot(metadata=SnapshotMetadata(index=20, term=3))))
    batch = core.take_batch()
    assert batch is not None and not batch.entries
    assert core.persisted(batch).last_index == 20


def test_only_entries_snapshots_and_term_or_vote_changes_need_an_fsync() -> None:
    core = WalWriterCore(hard_state=HardState(term=2, vote=1, commit=5))
    core.add(Persist(hard_state=HardState(term=2, vote=1, commit=6)))
    batch = core.take_batch()
    assert batch is not None and not batch.must_sync  # commit only: learned again if lost
    core.add(Persist(entries=ents(7, 7)))
    assert core.take_batch().must_sync  # type: ignore[union-attr]
    core.add(Persist(hard_state=HardState(term=3, vote=0, commit=6)))
    assert core.take_batch().must_sync  # type: ignore[union-attr]  # a new term is a promise
    core.add(Persist(hard_state=HardState(term=3, vote=2, commit=6)))
    assert core.take_batch().must_sync  # type: ignore[union-attr]  # so is a vote
    core.add(Persist(messages=[resp(2, 7)]))
    assert not core.take_batch().must_sync  # type: ignore[union-attr]


def test_once_a_new_raft_core_loaded_what_its_dead_predecessor_sent_is_dropped() -> None:
    """A vote the old core wrote after the new one loaded its hard state could make the new
    core vote twice in one term: only the core that loaded last is written for."""
    core = WalWriterCore()
    assert core.add(Persist(entries=ents(1, 1), generation=7))  # before any load: the first start
    core.generation = 9  # a new core loaded
    late_vote = Persist(hard_state=HardState(term=3, vote=2), messages=[resp(2, 0)], generation=7)
    assert not core.add(late_vote)
    assert core.add(Persist(entries=ents(2, 2), generation=9))
    batch = core.take_batch()
    assert batch is not None and [e.index for e in batch.entries] == [1, 2]
    assert batch.hard_state is None and batch.messages == []


def test_must_sync_is_etcds_rule() -> None:
    """Entries, a snapshot, or a new term or vote must be durable; a moved commit need not."""
    assert not must_sync((3, 1), (3, 1), entries=False, snapshot=False)
    assert must_sync((3, 1), (3, 1), entries=True, snapshot=False)
    assert must_sync((3, 1), (3, 1), entries=False, snapshot=True)
    assert must_sync((4, 0), (3, 1), entries=False, snapshot=False)
    assert must_sync((3, 2), (3, 0), entries=False, snapshot=False)
