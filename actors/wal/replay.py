"""Reading a WAL back: its segments in order, checked, into what the raft core needs to restart.

Replay (``Wal.open`` on an existing directory, ``files.py``) reads every segment in order (see
``records.decode_segment`` for how a torn tail is told from corruption). A torn tail in the last
segment is reported for the writer to cut off; anything else that is damaged raises
``WalCorruptError``: the member must not start on a WAL that lost durable data. The layout is
described in ``files.py``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from actors.wal.records import (
    CrcRecord,
    DecodedSegment,
    Metadata,
    SnapshotMarker,
    WalCorruptError,
    decode_segment,
)
from proto_schemas.raft import Entry, HardState

SEGMENT_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_HEAD_BYTES = (5 + 4 + 4) + (5 + 4 + 16)  # a segment's CRC record and metadata record
_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


class WalMismatchError(Exception):
    """The WAL belongs to another member or cluster than the one starting on it."""


@dataclass(frozen=True, slots=True)
class WalContents:
    """What replay found: everything the raft core needs to restart."""

    member_id: int
    cluster_id: int
    hard_state: HardState = field(default_factory=HardState)  # HardState() if none was saved
    entries: list[Entry] = field(default_factory=list)  # contiguous, after ``snapshot``
    snapshot: SnapshotMarker | None = None  # the last snapshot marker
    torn_tail: bool = False  # a torn tail was cut off the last segment
    torn_bytes: int = 0  # how many non-zero bytes it held


@dataclass(slots=True)
class Segment:
    seq: int
    first_index: int
    path: str


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replay found, with what the writer needs to go on appending to the last segment."""

    contents: WalContents
    hard_state: HardState | None  # the last one saved, None if none was
    segments: list[Segment]
    good_end: int  # where the last segment's good records end (a torn tail follows)
    crc: int  # the rolling crc they end with
    last_index: int
    last_term: int


def read_written(path: str) -> bytes:
    """A segment's bytes without its trailing all-zero chunks.

    Segments are pre-allocated, so most of the last one is zeros that hold no record; reading
    and then scanning those 64 MB would cost a restarted WAL writer more than decoding its
    records. A chunk is compared with zeros as it is read, and only the chunks up to the last
    one holding a non-zero byte are kept: decoding sees every byte a record or a torn tail can
    occupy, and the end of the data reads as the end of the records.
    """
    out = bytearray()
    buf = bytearray(_CHUNK)  # one buffer read into again and again: fresh ones cost page faults
    zeros = 0  # all-zero chunks read since the last one with data
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            if buf[:n] == _ZEROS[:n] if n < _CHUNK else buf == _ZEROS:
                zeros += 1
                continue
            out += _ZEROS * zeros
            out += buf[:n] if n < _CHUNK else buf
            zeros = 0
    return bytes(out)


def read_identity(dirpath: str) -> tuple[int, int] | None:
    """(member id, cluster id) recorded by the WAL in ``dirpath``, or None if it has none yet.
    A restarted member takes its identity from here, as etcd does, not from its flags."""
    if not os.path.isdir(dirpath):
        return None
    names = sorted(n for n in os.listdir(dirpath) if SEGMENT_RE.match(n))
    if not names:
        return None
    with open(os.path.join(dirpath, names[0]), "rb") as f:
        head = f.read(_HEAD_BYTES)  # the CRC and metadata records only: replay checks the rest
    for rec in decode_segment(head, names[0]).records[:2]:
        if isinstance(rec, Metadata):
            return rec.member_id, rec.cluster_id
    raise WalCorruptError("wal segment has no metadata record", segment=names[0], offset=0)


def replay(dirpath: str, names: list[str], metadata: Metadata) -> Replayed:
    """Read the segments ``names`` (sorted, at least one) of the WAL in ``dirpath`` written by
    ``metadata``'s member. Raises ``WalCorruptError`` if durable records are damaged and
    ``WalMismatchError`` if another member or cluster wrote them."""
    segments: list[Segment] = []
    entries: list[Entry] = []
    hard_state: HardState | None = None
    snapshot: SnapshotMarker | None = None
    prev_crc: int | None = None
    torn_bytes = 0
    decoded: DecodedSegment | None = None
    for i, name in enumerate(names):
        m = SEGMENT_RE.match(name)
        assert m is not None
        seq, first_index = int(m.group(1), 16), int(m.group(2), 16)
        if segments and seq != segments[-1].seq + 1:
            raise WalCorruptError(
                f"wal segment sequence has a gap before {name}: a segment is missing",
                segment=name,
                offset=0,
            )
        path = os.path.join(dirpath, name)
        segments.append(Segment(seq, first_index, path))
        decoded = decode_segment(read_written(path), name)
        last = i == len(names) - 1
        if decoded.first_crc is None:
            raise WalCorruptError("wal segment does not open with a valid CRC record", segment=name, offset=0)
        if prev_crc is not None and decoded.first_crc != prev_crc:
            raise WalCorruptError(
                "wal crc chain broken: segment does not continue the previous one",
                segment=name,
                offset=0,
            )
        if decoded.torn and not last:
            raise WalCorruptError(
                "wal segment that is not the last one ends in damaged records",
                segment=name,
                offset=decoded.good_end,
            )
        prev_crc = decoded.crc
        records = decoded.records
        md = records[1] if len(records) > 1 else None
        if not isinstance(md, Metadata):
            raise WalCorruptError(
                "wal segment has no metadata record after its CRC record",
                segment=name,
                offset=0,
            )
        if md != metadata:
            raise WalMismatchError(
                f"wal in {dirpath} belongs to member {md.member_id:x} of cluster "
                f"{md.cluster_id:x}, not member {metadata.member_id:x} of cluster "
                f"{metadata.cluster_id:x}"
            )
        for rec in records:
            if type(rec) is Entry:
                if entries:
                    prev = entries[-1].index
                    if rec.index <= prev:
                        # Raft overwrote a conflicting suffix: the newer entry wins.
                        del entries[max(rec.index - entries[0].index, 0) :]
                    elif rec.index != prev + 1:
                        if snapshot is None or rec.index != snapshot.index + 1:
                            raise WalCorruptError(
                                f"wal entries skip from index {prev} to {rec.index}",
                                segment=name,
                                offset=-1,
                            )
                        entries.clear()  # the log restarts after a snapshot
                entries.append(rec)
            elif type(rec) is HardState:
                hard_state = rec
            elif type(rec) is SnapshotMarker:
                snapshot = rec
            elif type(rec) is Metadata and rec != metadata:
                raise WalCorruptError("wal metadata changes inside a segment", segment=name)
            else:
                assert type(rec) in (Metadata, CrcRecord)
        if last and decoded.torn:
            torn_bytes = decoded.torn
    assert decoded is not None

    if snapshot is not None and entries and entries[0].index <= snapshot.index:
        del entries[: snapshot.index - entries[0].index + 1]
    last_term = 0  # unknown when neither an entry nor a snapshot says
    if entries:
        last_index, last_term = entries[-1].index, entries[-1].term
    else:
        last_index = max(segments[0].first_index - 1, 0)
        if snapshot is not None and snapshot.index >= last_index:
            last_index, last_term = snapshot.index, snapshot.term
    contents = WalContents(
        member_id=metadata.member_id,
        cluster_id=metadata.cluster_id,
        hard_state=hard_state if hard_state is not None else HardState(),
        entries=entries,
        snapshot=snapshot,
        torn_tail=bool(torn_bytes),
        torn_bytes=torn_bytes,
    )
    return Replayed(contents, hard_state, segments, decoded.good_end, decoded.crc, last_index, last_term)
