"""The WAL on real files: replay, segments, pre-allocation, torn tails, corruption, release."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors.wal.core import Batch, WalLog
from actors.wal.files import Wal, segment_name
from actors.wal.records import WalCorruptError, decode_segment
from actors.wal.replay import WalContents, WalMismatchError
from proto_schemas.raft import Entry, HardState, Snapshot, SnapshotMetadata

MEMBER, CLUSTER = 0x8E9E05C52164694D, 0xCDF818194E3A8C32


def ents(first: int, last: int, term: int = 1, size: int = 50) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"%d:" % i + b"v" * size) for i in range(first, last + 1)]


def open_wal(path: Path, segment_bytes: int = 64 * 1024) -> tuple[Wal, WalContents]:
    return Wal.open(str(path), member_id=MEMBER, cluster_id=CLUSTER, segment_bytes=segment_bytes)


def seg_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.wal"))


def test_new_wal_has_one_preallocated_segment(tmp_path: Path) -> None:
    wal, contents = open_wal(tmp_path / "wal", 32 * 1024)
    assert contents == WalContents(member_id=MEMBER, cluster_id=CLUSTER)
    assert contents.hard_state == HardState()
    files = seg_files(tmp_path / "wal")
    assert [f.name for f in files] == ["0000000000000000-0000000000000000.wal"]
    assert files[0].stat().st_size == 32 * 1024
    assert (wal.last_index, wal.synced_index) == (0, 0)
    wal.close()
    # Reopening an empty WAL replays nothing, and keeps the file.
    wal, contents = open_wal(tmp_path / "wal", 32 * 1024)
    assert contents.entries == [] and not contents.torn_tail
    wal.close()


def test_replay_returns_what_was_appended(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 3), HardState(term=1, vote=7, commit=0))
    wal.sync()
    wal.append(ents(4, 6), HardState(term=1, vote=7, commit=3))
    wal.append([], HardState(term=2, vote=0, commit=5))  # the last hard state wins
    assert (wal.last_index, wal.synced_index) == (6, 3)
    wal.sync()
    assert wal.synced_index == 6
    wal.close()

    wal, contents = open_wal(tmp_path)
    assert contents.entries == ents(1, 6)
    assert contents.hard_state == HardState(term=2, vote=0, commit=5)
    assert (contents.member_id, contents.cluster_id) == (MEMBER, CLUSTER)
    assert (wal.last_index, wal.last_term, wal.synced_index) == (6, 1, 6)
    wal.append(ents(7, 7), None)
    wal.close()
    _, contents = open_wal(tmp_path)
    assert contents.entries == ents(1, 7)


def test_conflicting_suffix_is_overwritten(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 10), None)
    wal.sync()
    wal.append(ents(6, 8, term=2), None)  # a new leader replaced 6..10
    wal.append(ents(8, 9, term=3), None)  # and yet another one 8..
    assert wal.last_index == 9
    wal.close()
    _, contents = open_wal(tmp_path)
    assert contents.entries == ents(1, 5) + ents(6, 7, term=2) + ents(8, 9, term=3)


def test_segments_cut_and_replay_across_them(tmp_path: Path) -> None:
    seg = 2048
    wal, _ = open_wal(tmp_path, seg)
    for i in range(1, 201, 10):
        wal.append(ents(i, i + 9), HardState(term=1, vote=1, commit=i))
        wal.sync()
    wal.append([Entry(term=1, index=201, data=b"B" * 5000)], None)  # larger than a segment
    wal.append(ents(202, 205), None)
    wal.close()

    files = seg_files(tmp_path)
    assert len(files) > 10
    assert [f.name for f in files] == wal.segments
    seqs = [int(f.name[:16], 16) for f in files]
    firsts = [int(f.name[17:33], 16) for f in files]
    assert seqs == list(range(len(files)))
    assert firsts == sorted(firsts) and firsts[0] == 0
    for f in files:
        assert f.stat().st_size == seg or f.stat().st_size > 5000  # pre-allocated (or big)

    wal, contents = open_wal(tmp_path, seg)
    assert contents.entries == ents(1, 200) + [Entry(term=1, index=201, data=b"B" * 5000)] + ents(202, 205)
    assert contents.hard_state == HardState(term=1, vote=1, commit=191)
    # Each segment's name is its first entry's index.
    for f, first in zip(files[1:], firsts[1:], strict=True):
        recs = decode_segment(f.read_bytes(), f.name).records
        first_entry = next(r for r in recs if isinstance(r, Entry))
        assert first_entry.index == first
    wal.close()


def test_one_write_and_one_sync_per_group_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path, 1 << 20)
    writes: list[int] = []
    syncs: list[int] = []
    real_pwrite, real_sync = Wal._pwrite, os.fdatasync

    def pwrite(self: Wal, fd: int, data: bytes, offset: int) -> None:
        writes.append(len(data))
        real_pwrite(self, fd, data, offset)

    def fdatasync(fd: int) -> None:
        syncs.append(fd)
        real_sync(fd)

    monkeypatch.setattr(Wal, "_pwrite", pwrite)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    import actors.wal.files as files_mod

    monkeypatch.setattr(files_mod, "_datasync", os.fdatasync)
    for i in range(1, 101):
        wal.append(ents(i, i), HardState(term=1, commit=i - 1))
    wal.sync()
    assert len(writes) == 1 and len(syncs) == 1
    wal.sync()  # nothing new: no syscall
    assert len(writes) == 1 and len(syncs) == 1
    wal.close()


def find_segment_end(path: Path) -> int:
    """Offset just past the last non-zero byte of a segment."""
    return len(path.read_bytes().rstrip(b"\0"))


def test_torn_tail_mid_record_is_truncated_and_logged(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, 8192)
    wal.append(ents(1, 5), HardState(term=1, vote=1, commit=2))
    wal.sync()
    seg = seg_files(tmp_path)[-1]
    good_end = find_segment_end(seg)
    wal.append(ents(6, 6), None)
    wal.close()
    # The crash: the last record reached the disk only in part.
    data = bytearray(seg.read_bytes())
    data[good_end + 20 :] = bytes(len(data) - good_end - 20)
    seg.write_bytes(bytes(data))

    with capture_logs() as logs:
        wal, contents = open_wal(tmp_path, 8192)
    assert contents.entries == ents(1, 5)
    # Bytes up to the last non-zero one (the record's u64 fields end in zero bytes).
    assert contents.torn_tail and 0 < contents.torn_bytes <= 20
    assert contents.hard_state == HardState(term=1, vote=1, commit=2)
    warning = [e for e in logs if e["log_level"] == "warning"]
    assert warning == [
        {
            "event": "wal torn tail truncated",
            "log_level": "warning",
            "segment": seg.name,
            "offset": good_end,
            "bytes": contents.torn_bytes,
        }
    ]
    assert seg.stat().st_size == 8192
    assert seg.read_bytes()[good_end:] == bytes(8192 - good_end)  # re-zeroed
    assert wal.last_index == 5
    # Appends continue where the good records end.
    wal.append(ents(6, 8, term=2), None)
    wal.close()
    wal, contents = open_wal(tmp_path, 8192)
    assert contents.entries == ents(1, 5) + ents(6, 8, term=2) and not contents.torn_tail
    wal.close()


def test_garbage_partial_record_at_tail_is_truncated(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, 8192)
    wal.append(ents(1, 5), None)
    wal.close()
    seg = seg_files(tmp_path)[-1]
    good_end = find_segment_end(seg)
    with open(seg, "r+b") as f:
        f.seek(good_end)
        f.write(os.urandom(77).replace(b"\0", b"\1"))
    with capture_logs() as logs:
        wal, contents = open_wal(tmp_path, 8192)
    assert contents.entries == ents(1, 5) and contents.torn_bytes == 77
    assert any(e["event"] == "wal torn tail truncated" for e in logs)
    wal.append(ents(6, 6), None)
    wal.close()
    _, contents = open_wal(tmp_path, 8192)
    assert contents.entries == ents(1, 6)


def test_flipped_byte_mid_segment_refuses_to_open(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 20), HardState(term=1, commit=3))
    wal.close()
    seg = seg_files(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    at = data.find(b"7:vvv")  # inside entry 7, with entries 8..20 after it
    data[at + 3] ^= 0x10
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match=seg.name) as err:
        open_wal(tmp_path)
    assert err.value.segment == seg.name and 0 < err.value.offset < at
    assert "corrupt" in str(err.value)
    assert seg.read_bytes() == bytes(data)  # nothing was "repaired"


def test_damage_in_an_older_segment_refuses_to_open(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, 1024)
    for i in range(1, 60, 5):
        wal.append(ents(i, i + 4), None)
        wal.sync()
    wal.close()
    first = seg_files(tmp_path)[0]
    end = find_segment_end(first)
    data = bytearray(first.read_bytes())
    data[end - 2] ^= 0xFF  # the last record of a segment that is not the last one
    first.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match=first.name):
        open_wal(tmp_path, 1024)


def test_missing_segment_refuses_to_open(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, 1024)
    for i in range(1, 60, 5):
        wal.append(ents(i, i + 4), None)
        wal.sync()
    wal.close()
    seg_files(tmp_path)[2].unlink()
    with pytest.raises(WalCorruptError, match="missing"):
        open_wal(tmp_path, 1024)


def test_other_member_or_cluster_is_a_mismatch(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.close()
    with pytest.raises(WalMismatchError):
        Wal.open(str(tmp_path), member_id=MEMBER + 1, cluster_id=CLUSTER)
    with pytest.raises(WalMismatchError):
        Wal.open(str(tmp_path), member_id=MEMBER, cluster_id=CLUSTER + 1)


def test_release_to_deletes_old_segments_only(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, 1024)
    for i in range(1, 101, 5):
        wal.append(ents(i, i + 4), HardState(term=1, commit=i))
        wal.sync()
    names = wal.segments
    firsts = [int(n[17:33], 16) for n in names]
    assert len(names) >= 5
    assert wal.release_to(firsts[1] - 2) == 0  # segment 0 still holds an entry > index
    assert wal.release_to(firsts[1] - 1) == 1
    assert wal.segments == names[1:]
    assert wal.release_to(firsts[3] - 1) == 2
    assert [f.name for f in seg_files(tmp_path)] == names[3:]
    assert wal.release_to(10**9) == len(names) - 4  # never the current segment
    assert [f.name for f in seg_files(tmp_path)] == names[-1:]
    wal.append(ents(101, 102), None)
    wal.close()

    wal, contents = open_wal(tmp_path, 1024)
    assert contents.entries == ents(firsts[-1], 102)
    assert contents.hard_state == HardState(term=1, commit=96)  # carried into each segment
    assert wal.last_index == 102
    wal.close()


def test_snapshot_marker(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 10), HardState(term=1, commit=10))
    wal.save_snapshot(8, 1)  # syncs
    assert wal.synced_index == 10
    wal.close()
    wal, contents = open_wal(tmp_path)
    assert contents.snapshot is not None and (contents.snapshot.index, contents.snapshot.term) == (
        8,
        1,
    )
    assert contents.entries == ents(9, 10)
    # A follower given a snapshot past its log continues after it.
    wal.save_snapshot(50, 4)
    assert wal.last_index == 50
    wal.append(ents(51, 52, term=4), None)
    wal.close()
    _, contents = open_wal(tmp_path)
    assert contents.snapshot is not None and contents.snapshot.index == 50
    assert contents.entries == ents(51, 52, term=4)


def test_append_refuses_a_log_that_could_not_be_replayed(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 3), None)
    with pytest.raises(ValueError, match="gap"):
        wal.append(ents(5, 6), None)
    with pytest.raises(ValueError, match="consecutive"):
        wal.append([*ents(4, 5), *ents(7, 7)], None)
    assert wal.last_index == 3
    wal.close()
    _, contents = open_wal(tmp_path)
    assert contents.entries == ents(1, 3)


def test_gap_in_entries_on_disk_is_corruption(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 3), None)
    wal._last_index = 0  # bypass the check, as a buggy writer would
    wal.append(ents(5, 6), None)
    wal.close()
    with pytest.raises(WalCorruptError, match="skip"):
        open_wal(tmp_path)


def test_leftover_tmp_segment_is_removed(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 2), None)
    wal.close()
    stale = tmp_path / (segment_name(1, 3) + ".tmp")
    stale.write_bytes(b"half a segment")
    wal, contents = open_wal(tmp_path)
    assert not stale.exists() and contents.entries == ents(1, 2)
    wal.close()


def test_write_error_is_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path)
    wal.append(ents(1, 2), None)
    wal.sync()

    def no_space(self: Wal, fd: int, data: bytes, offset: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Wal, "_pwrite", no_space)
    wal.append(ents(3, 3), None)
    with pytest.raises(OSError):
        wal.sync()
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="restart and replay"):
        wal.sync()
    wal.close()  # closes the file without writing
    _, contents = open_wal(tmp_path)
    assert contents.entries == ents(1, 2)


def test_the_writers_log_in_memory_is_what_a_replay_finds(tmp_path: Path) -> None:
    """A raft core restarted alone loads ``WalLog`` instead of a replay: after every step the
    two must agree (conflicting suffixes, a snapshot taken here, one installed from a leader)."""
    wal, contents = open_wal(tmp_path)
    held = WalLog(contents.entries, contents.hard_state)

    def write(entries: list[Entry], hs: HardState | None, snap: Snapshot | None = None) -> None:
        if snap is not None:
            wal.save_snapshot(snap.metadata.index, snap.metadata.term)
        wal.append(entries, hs)
        wal.sync()
        held.saved(Batch(entries, hs, [], snap))

    def agree() -> None:
        _, replayed = open_wal(tmp_path)
        assert replayed.entries == held.entries and replayed.hard_state == held.hard_state
        marker = replayed.snapshot
        assert (marker.index if marker else 0) == (held.snapshot.metadata.index if held.snapshot else 0)

    write(ents(1, 10), HardState(term=1, commit=5))
    agree()
    write(ents(8, 12, term=2), HardState(term=2, commit=9))  # a new leader's conflicting suffix
    agree()
    taken = Snapshot(metadata=SnapshotMetadata(index=9, term=2))
    wal.save_snapshot(9, 2)
    held.snapshot_saved(taken)
    agree()
    write(ents(13, 14, term=2), None)
    agree()
    installed = Snapshot(metadata=SnapshotMetadata(index=50, term=4))
    write(ents(51, 52, term=4), HardState(term=4, commit=50), installed)
    agree()
    wal.close()


def test_bytes_far_past_the_records_in_a_big_segment_are_still_seen(tmp_path: Path) -> None:
    """A segment is read without its trailing all-zero chunks: a torn write several chunks
    beyond the last record is still found, and truncated."""
    big = 4 << 20
    wal, _ = open_wal(tmp_path, big)
    wal.append(ents(1, 5), None)
    wal.close()
    seg = seg_files(tmp_path)[-1]
    good_end = find_segment_end(seg)
    with open(seg, "r+b") as f:
        f.seek(good_end + (3 << 20))
        f.write(b"\x07" * 33)
    wal, contents = open_wal(tmp_path, big)
    assert contents.entries == ents(1, 5) and contents.torn_bytes == (3 << 20) + 33
    wal.append(ents(6, 6), None)
    wal.close()
    assert open_wal(tmp_path, big)[1].entries == ents(1, 6)
