"""WAL records: how they are framed on disk, and how a segment's bytes are read back.

Pure: no I/O. ``files.py`` owns the files; this module only turns records into bytes and bytes
into records.

Framing (little endian), one record after another with no padding::

    length: u32 | type: u8 | payload: `length` bytes | crc: u32

``crc`` is zlib's CRC-32 of ``length|type|payload`` seeded with the previous record's crc, so
the whole log is one rolling checksum, as etcd's WAL does. Every segment begins with a ``CRC``
record whose payload is the chain value the previous segment ended with; that record's own crc is
seeded with that value, so a segment can be verified alone and checked against its predecessor.
Type 0 is never used: pre-allocated space is zero-filled, and a zero header means "no more
records".

Payloads (fixed layouts; an entry's data is stored raw, the hot path needs no CBOR)::

    METADATA    member_id: u64, cluster_id: u64
    ENTRY       term: u64, index: u64, entry_type: u8, data: the rest
    HARD_STATE  term: u64, vote: u64, commit: u64
    CRC         crc: u32 (the chain value carried into this segment)
    SNAPSHOT    index: u64, term: u64 (a marker: a snapshot at (index, term) exists)

Reading a segment stops at the first record that is not well formed (short, bad type, bad crc,
bad payload size). What follows decides what that means:

- only zeros (pre-allocated space) or the end of the data: the clean end of the segment;
- no valid record anywhere after it, but some non-zero bytes: a *torn tail* -- a write the crash
  interrupted (a partial record, or a garbage sector). The caller truncates it, and may only do so
  in the last segment, where unsynced writes can be;
- a valid record after it (a record whose crc checks when seeded with the 4 bytes just before it,
  which are its predecessor's crc): *corruption in the middle* -- synced data was damaged, and
  silently dropping what follows would lose acknowledged writes. ``WalCorruptError`` is raised and
  the member must refuse to start.

The search for valid records after a bad one is what tells a torn tail from a flipped byte; its
one blind spot is an entry whose data itself embeds a complete, valid record frame, which could
make a torn tail look like corruption (the safe direction: refuse to start, never lose data).
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from dataclasses import dataclass

from proto_schemas.raft import Entry, EntryType, HardState

__all__ = [
    "HEADER_SIZE",
    "TRAILER_SIZE",
    "RecordType",
    "Metadata",
    "SnapshotMarker",
    "CrcRecord",
    "DecodedSegment",
    "WalCorruptError",
    "RecordEncoder",
    "decode_segment",
    "encode_records",
]


class WalCorruptError(Exception):
    """The WAL holds damaged records that were once durable; the member must not start on it."""

    def __init__(self, message: str, *, segment: str = "", offset: int = -1) -> None:
        where = f" (segment {segment}, offset {offset})" if segment else ""
        super().__init__(message + where)
        self.segment = segment
        self.offset = offset


class RecordType(enum.IntEnum):
    METADATA = 1
    ENTRY = 2
    HARD_STATE = 3
    CRC = 4
    SNAPSHOT = 5


@dataclass(frozen=True, slots=True)
class Metadata:
    member_id: int
    cluster_id: int


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    """A snapshot at (index, term) was saved; entries up to ``index`` are covered by it."""

    index: int
    term: int


@dataclass(frozen=True, slots=True)
class CrcRecord:
    crc: int


Record = Entry | HardState | Metadata | SnapshotMarker | CrcRecord

_HEADER = struct.Struct("<IB")
_CRC = struct.Struct("<I")
_ENTRY_HEAD = struct.Struct("<IBQQB")  # frame header + entry's fixed fields, packed in one call
_ENTRY_FIXED = struct.Struct("<QQB")
_U64X2 = struct.Struct("<QQ")
_U64X3 = struct.Struct("<QQQ")

HEADER_SIZE = _HEADER.size  # 5
TRAILER_SIZE = _CRC.size  # 4
_OVERHEAD = HEADER_SIZE + TRAILER_SIZE
_MAX_TYPE = max(RecordType)
_ENTRY_TYPES = {t.value: t for t in EntryType}
# A position whose 5th byte is a record type is a candidate record start (see _find_valid_after).
_CANDIDATE = re.compile(b"(?=[\\s\\S]{4}[\\x01-\\x%02x])" % _MAX_TYPE)


class RecordEncoder:
    """Appends framed records to a bytearray, carrying the rolling crc between calls."""

    __slots__ = ("crc",)

    def __init__(self, crc: int = 0) -> None:
        self.crc = crc

    def _frame(self, out: bytearray, rtype: RecordType, payload: bytes) -> None:
        head = _HEADER.pack(len(payload), rtype)
        crc = zlib.crc32(payload, zlib.crc32(head, self.crc))
        out += head
        out += payload
        out += _CRC.pack(crc)
        self.crc = crc

    def entry(self, out: bytearray, e: Entry) -> None:
        data = e.data
        head = _ENTRY_HEAD.pack(_ENTRY_FIXED.size + len(data), RecordType.ENTRY, e.term, e.index, e.type)
        crc = zlib.crc32(data, zlib.crc32(head, self.crc))
        out += head
        out += data
        out += _CRC.pack(crc)
        self.crc = crc

    def entries(self, out: bytearray, entries: list[Entry]) -> None:
        # The loop of ``entry`` inlined: this is the hot path of every write.
        pack_head, pack_crc, crc32, etype = (
            _ENTRY_HEAD.pack,
            _CRC.pack,
            zlib.crc32,
            RecordType.ENTRY,
        )
        fixed = _ENTRY_FIXED.size
        crc = self.crc
        for e in entries:
            data = e.data
            head = pack_head(fixed + len(data), etype, e.term, e.index, e.type)
            crc = crc32(data, crc32(head, crc))
            out += head
            out += data
            out += pack_crc(crc)
        self.crc = crc

    def hard_state(self, out: bytearray, hs: HardState) -> None:
        self._frame(out, RecordType.HARD_STATE, _U64X3.pack(hs.term, hs.vote, hs.commit))

    def metadata(self, out: bytearray, md: Metadata) -> None:
        self._frame(out, RecordType.METADATA, _U64X2.pack(md.member_id, md.cluster_id))

    def snapshot(self, out: bytearray, snap: SnapshotMarker) -> None:
        self._frame(out, RecordType.SNAPSHOT, _U64X2.pack(snap.index, snap.term))

    def crc_record(self, out: bytearray) -> None:
        """Open a segment: record the chain value, and seed this record's crc with it."""
        self._frame(out, RecordType.CRC, _CRC.pack(self.crc))


def encode_records(records: list[Record], crc: int = 0) -> tuple[bytes, int]:
    """Frame ``records`` after a chain value ``crc``; returns the bytes and the new chain value.
    (Convenience for tests and tools; the writer uses ``RecordEncoder`` directly.)"""
    enc = RecordEncoder(crc)
    out = bytearray()
    for rec in records:
        if isinstance(rec, Entry):
            enc.entry(out, rec)
        elif isinstance(rec, HardState):
            enc.hard_state(out, rec)
        elif isinstance(rec, Metadata):
            enc.metadata(out, rec)
        elif isinstance(rec, SnapshotMarker):
            enc.snapshot(out, rec)
        elif isinstance(rec, CrcRecord):
            enc.crc = rec.crc
            enc.crc_record(out)
        else:
            raise TypeError(f"not a WAL record: {type(rec).__name__}")
    return bytes(out), enc.crc


@dataclass(slots=True)
class DecodedSegment:
    """What one segment holds, and how it ends.

    ``records`` are in order; ``good_end`` is the offset just past the last good record (where
    the next one is written); ``crc`` the chain value there, ``first_crc`` the value the segment's
    opening CRC record carries (``None`` if it has no records at all). ``torn`` is the number of
    bytes, up to the last non-zero one, that follow ``good_end`` and hold no valid record: a torn
    tail (0 if the segment ends cleanly in zeros or at the end of the data).
    """

    records: list[Record]
    good_end: int
    crc: int
    first_crc: int | None
    torn: int


def _frame_at(buf: bytes | memoryview, pos: int, limit: int, seed: int) -> int:
    """End offset of a well-framed record at ``pos`` whose crc checks with ``seed``, else -1."""
    if pos + _OVERHEAD > limit:
        return -1
    length, rtype = _HEADER.unpack_from(buf, pos)
    end = pos + HEADER_SIZE + length + TRAILER_SIZE
    if not 1 <= rtype <= _MAX_TYPE or end > limit:
        return -1
    (stored,) = _CRC.unpack_from(buf, end - TRAILER_SIZE)
    if zlib.crc32(memoryview(buf)[pos : end - TRAILER_SIZE], seed) != stored:
        return -1
    return end


def _find_valid_after(buf: bytes, pos: int, limit: int) -> int:
    """Offset of a valid record starting after ``pos`` (before ``limit``), or -1.

    A record at q is valid if its crc checks when seeded with the 4 bytes before q: those are
    its predecessor's crc in an intact log. A CRC record opens with its own seed instead.
    """
    for m in _CANDIDATE.finditer(buf, pos + 1, limit):
        q = m.start()
        if q < TRAILER_SIZE:
            continue
        (seed,) = _CRC.unpack_from(buf, q - TRAILER_SIZE)
        if _frame_at(buf, q, limit, seed) >= 0:
            return q
        if buf[q + 4] == RecordType.CRC and q + _OVERHEAD + 4 <= limit:
            (own,) = _CRC.unpack_from(buf, q + HEADER_SIZE)
            if _frame_at(buf, q, limit, own) >= 0:
                return q
    return -1


def _payload(rtype: int, body: memoryview) -> Record | None:
    """Decode a payload whose crc checked; ``None`` if its size does not fit its type."""
    n = len(body)
    if rtype == RecordType.HARD_STATE:
        if n != _U64X3.size:
            return None
        term, vote, commit = _U64X3.unpack(body)
        return HardState(term=term, vote=vote, commit=commit)
    if rtype == RecordType.METADATA:
        return Metadata(*_U64X2.unpack(body)) if n == _U64X2.size else None
    if rtype == RecordType.SNAPSHOT:
        return SnapshotMarker(*_U64X2.unpack(body)) if n == _U64X2.size else None
    if rtype == RecordType.CRC:
        return CrcRecord(_CRC.unpack(body)[0]) if n == _CRC.size else None
    return None


def decode_segment(buf: bytes, name: str = "") -> DecodedSegment:
    """Read every record of one segment (see the module docstring for how it may end).

    The first record must be the CRC record that opens the segment. Raises ``WalCorruptError``
    (naming ``name`` and the offset) when a bad record is followed by valid ones.
    """
    mv = memoryview(buf)
    n = len(buf)
    records: list[Record] = []
    append = records.append
    unpack_head, unpack_crc, unpack_fixed = (
        _HEADER.unpack_from,
        _CRC.unpack_from,
        _ENTRY_FIXED.unpack_from,
    )
    crc32 = zlib.crc32
    entry_types = _ENTRY_TYPES
    entry_t, crc_t = int(RecordType.ENTRY), int(RecordType.CRC)
    fixed = _ENTRY_FIXED.size
    first_crc: int | None = None
    crc = 0
    pos = 0
    while pos + _OVERHEAD <= n:
        length, rtype = unpack_head(buf, pos)
        end = pos + HEADER_SIZE + length + TRAILER_SIZE
        if end > n:
            break
        body_start = pos + HEADER_SIZE
        body_end = end - TRAILER_SIZE
        (stored,) = unpack_crc(buf, body_end)
        if rtype == entry_t:  # the hot path
            if length < fixed or crc32(mv[pos:body_end], crc) != stored:
                break
            term, index, etype = unpack_fixed(buf, body_start)
            kind = entry_types.get(etype)
            if kind is None:
                break
            append(Entry(term=term, index=index, type=kind, data=buf[body_start + fixed : body_end]))
        elif rtype == crc_t and first_crc is None:
            if length != _CRC.size:
                break
            (seed,) = unpack_crc(buf, body_start)
            if crc32(mv[pos:body_end], seed) != stored:
                break
            first_crc = seed
            append(CrcRecord(seed))
        elif first_crc is None or not 1 <= rtype <= _MAX_TYPE:
            break  # a segment must open with its CRC record; type 0 is the zero-filled end
        else:
            if crc32(mv[pos:body_end], crc) != stored:
                break
            rec = _payload(rtype, mv[body_start:body_end])
            if rec is None or (isinstance(rec, CrcRecord) and rec.crc != crc):
                break
            append(rec)
        crc = stored
        pos = end

    # ``pos`` is the end of the good records. Classify whatever follows.
    torn = 0
    if pos < n:
        # Pre-allocated zeros are the usual tail; counting them is cheaper than stripping.
        tail_end = pos if buf.count(b"\x00", pos) == n - pos else len(buf.rstrip(b"\x00"))
        if tail_end > pos:
            if _find_valid_after(buf, pos, tail_end) >= 0:
                raise WalCorruptError(
                    "wal record is corrupt and valid records follow it: refusing to drop durable data",
                    segment=name,
                    offset=pos,
                )
            torn = tail_end - pos
    return DecodedSegment(records, pos, crc, first_crc, torn)
