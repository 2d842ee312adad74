"""WAL record framing: round trips, and how a damaged segment is read (torn vs corrupt)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from actors.wal.records import (
    CrcRecord,
    Metadata,
    Record,
    RecordEncoder,
    SnapshotMarker,
    WalCorruptError,
    decode_segment,
    encode_records,
)
from proto_schemas.raft import Entry, EntryType, HardState

HEAD: list[Record] = [CrcRecord(0), Metadata(0x1234, 0xABCD)]


def entries(n: int, start: int = 1, size: int = 40) -> list[Entry]:
    return [Entry(term=3, index=i, data=bytes([i % 251]) * size) for i in range(start, start + n)]


def offsets(records: list) -> list[int]:
    """Byte offset of each record in ``encode_records(records)``."""
    out, pos = [], 0
    for i in range(len(records)):
        out.append(pos)
        pos = len(encode_records(records[: i + 1])[0])
    return out


def test_round_trip_every_record_type() -> None:
    records = [
        *HEAD,
        SnapshotMarker(index=7, term=2),
        HardState(term=2, vote=5, commit=6),
        Entry(term=2, index=8, data=b""),
        Entry(term=2, index=9, type=EntryType.CONF_CHANGE, data=b"\x00conf\xff"),
        Entry(term=2, index=10, data=bytes(range(256)) * 100),
        HardState(term=3, vote=0, commit=10),
    ]
    buf, crc = encode_records(records)
    seg = decode_segment(buf + bytes(1000), "s.wal")
    assert seg.records == records
    assert seg.good_end == len(buf)
    assert seg.crc == crc
    assert seg.first_crc == 0
    assert seg.torn == 0


def test_crc_chains_across_segments() -> None:
    first, crc = encode_records([*HEAD, *entries(3)])
    second, crc2 = encode_records([CrcRecord(crc), HEAD[1], *entries(3, start=4)], crc)
    a, b = decode_segment(first), decode_segment(second)
    assert b.first_crc == a.crc == crc
    assert b.crc == crc2


def test_encoder_batch_equals_one_by_one() -> None:
    ents = entries(50, size=7)
    one, many = bytearray(), bytearray()
    e1, e2 = RecordEncoder(99), RecordEncoder(99)
    for e in ents:
        e1.entry(one, e)
    e2.entries(many, ents)
    assert one == many and e1.crc == e2.crc


def test_frame_layout_is_length_type_payload_crc() -> None:
    buf, crc = encode_records([HardState(term=1, vote=2, commit=3)], crc=5)
    length, rtype = struct.unpack_from("<IB", buf)
    assert (length, rtype) == (24, 3)
    assert struct.unpack_from("<QQQ", buf, 5) == (1, 2, 3)
    assert struct.unpack_from("<I", buf, 29)[0] == crc == zlib.crc32(buf[:29], 5)


@pytest.mark.parametrize("cut", [1, 4, 5, 20, 40, 60])
def test_truncated_last_record_is_a_torn_tail(cut: int) -> None:
    records = [*HEAD, *entries(5)]
    buf, _ = encode_records(records)
    last = offsets(records)[-1]
    torn = buf[: last + cut] + bytes(500)  # the rest of a pre-allocated segment
    seg = decode_segment(torn, "s.wal")
    assert seg.records == records[:-1]
    assert seg.good_end == last
    assert seg.torn == len(torn[last:].rstrip(b"\0"))
    # A plain end of data (no pre-allocation) reads the same way.
    assert decode_segment(buf[: last + cut]).records == records[:-1]


def test_garbage_partial_record_is_a_torn_tail() -> None:
    records = [*HEAD, *entries(5)]
    buf, _ = encode_records(records)
    garbage = bytes((i * 37 + 11) % 256 or 1 for i in range(300))
    seg = decode_segment(buf + garbage + bytes(100), "s.wal")
    assert seg.records == records
    assert seg.good_end == len(buf)
    assert seg.torn == 300


def test_bad_crc_on_the_final_record_is_a_torn_tail() -> None:
    records = [*HEAD, *entries(5)]
    buf = bytearray(encode_records(records)[0])
    buf[-10] ^= 0x01
    seg = decode_segment(bytes(buf) + bytes(64))
    assert seg.records == records[:-1] and seg.torn > 0


@pytest.mark.parametrize("where", ["payload", "length", "type", "crc", "first_crc"])
def test_flipped_byte_with_valid_records_after_is_corruption(where: str) -> None:
    records = [*HEAD, *entries(8)]
    buf = bytearray(encode_records(records)[0] + bytes(200))
    at = {
        "payload": offsets(records)[4] + 30,
        "length": offsets(records)[4] + 1,
        "type": offsets(records)[4] + 4,
        "crc": offsets(records)[5] - 2,
        "first_crc": 6,
    }[where]
    buf[at] ^= 0x40
    with pytest.raises(WalCorruptError) as err:
        decode_segment(bytes(buf), "0000000000000002-0000000000000010.wal")
    assert "0000000000000002-0000000000000010.wal" in str(err.value)
    assert err.value.segment == "0000000000000002-0000000000000010.wal"
    assert err.value.offset <= at


def test_zero_hole_before_valid_records_is_corruption() -> None:
    records = [*HEAD, *entries(8)]
    buf = bytearray(encode_records(records)[0])
    start, end = offsets(records)[3], offsets(records)[4]
    buf[start:end] = bytes(end - start)
    with pytest.raises(WalCorruptError):
        decode_segment(bytes(buf))


def test_segment_must_open_with_crc_record() -> None:
    buf, _ = encode_records([Metadata(1, 2)])
    seg = decode_segment(buf)
    assert seg.first_crc is None and seg.records == []
    buf, _ = encode_records([Metadata(1, 2), *entries(2)])
    with pytest.raises(WalCorruptError):
        decode_segment(buf)


def test_empty_and_zero_segments() -> None:
    for buf in (b"", bytes(4096)):
        seg = decode_segment(buf)
        assert (seg.records, seg.good_end, seg.torn, seg.first_crc) == ([], 0, 0, None)


record_strategy = st.one_of(
    st.builds(
        Entry,
        term=st.integers(0, 2**64 - 1),
        index=st.integers(0, 2**64 - 1),
        type=st.sampled_from(EntryType),
        data=st.binary(max_size=300),
    ),
    st.builds(
        HardState,
        term=st.integers(0, 2**64 - 1),
        vote=st.integers(0, 2**64 - 1),
        commit=st.integers(0, 2**64 - 1),
    ),
    st.builds(SnapshotMarker, index=st.integers(0, 2**64 - 1), term=st.integers(0, 2**64 - 1)),
)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    records=st.lists(record_strategy, max_size=12),
    cut=st.integers(0, 10_000),
    pad=st.integers(0, 64),
)
@example(  # the zero pad completes the last record, whose final byte is a zero
    seed=3628800,
    records=[
        HardState(term=67733000328535, vote=1520841963987, commit=9007199254740991),
        SnapshotMarker(index=290395868, term=851999616231581),
        Entry(
            term=381,
            index=11952,
            data=bytes.fromhex("7f1e2dd188ce0d511fdfd999e430a487f77500b2b076506790f854ca"),
        ),
        SnapshotMarker(index=290395868, term=851999616231581),
        SnapshotMarker(index=255, term=3879),
        SnapshotMarker(index=56182888350, term=3110831),
        SnapshotMarker(index=23026, term=177878),
    ],
    cut=249,
    pad=1,
)
def test_any_prefix_decodes_to_a_record_prefix(seed: int, records: list, cut: int, pad: int) -> None:
    records = [CrcRecord(seed), HEAD[1], *records]
    buf, crc = encode_records(records, seed)
    whole = decode_segment(buf)
    assert whole.records == records and whole.crc == crc
    prefix = buf[: min(cut, len(buf))]
    torn = prefix + bytes(pad)  # zeroed preallocation after a torn write
    seg = decode_segment(torn)
    assert seg.records == records[: len(seg.records)]
    # The zeros may complete a record whose own last bytes are zeros: what was decoded is
    # exactly what is on disk up to good_end, never more.
    assert encode_records(seg.records, seed)[0] == torn[: seg.good_end] == buf[: seg.good_end]
