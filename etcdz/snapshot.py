"""Snapshot files: a point-in-time copy of one member's backend, as ``snapshot save`` writes
it and ``snapshot status`` reads it.

Layout: the line ``etcdz-snapshot 1``, then a CBOR sequence — a ``SnapshotFileHeader`` and
one array of records (key, value, key, value, ...) per piece the member sent, then empty
arrays up to a multiple of 512 bytes — and last the 32-byte SHA-256 of everything before it
(the size etcd's clients check for, so ``etcdctl snapshot save`` takes the file too). The
file is written beside its target and renamed into place once complete and fsynced, so a
file with the target's name is always whole; the checksum catches a copy damaged later. It
holds every key and the users' password hashes, so it is created 0600 (as etcd's), whatever
the umask, and never through a file already there.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cbor2

from etcdz._transport import Transport
from etcdz.errors import EtcdzError
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.maintenance import SnapshotFileHeader, SnapshotRequest, SnapshotResponse

MAGIC = b"etcdz-snapshot 1\n"
DIGEST = 32
SECTOR = 512  # etcd's snapshot size rule: a multiple of this, plus the checksum


class SnapshotFileError(EtcdzError):
    """The file is not a complete etcdz snapshot (wrong format, truncated, or damaged)."""


@dataclass(frozen=True)
class SnapshotStatus:
    hash: int  # CRC-32 of every record, in order
    revision: int
    total_keys: int  # backend records, as etcd counts keys over all its buckets
    total_size: int  # bytes of the file
    header: SnapshotFileHeader


class FileBuilder:
    """The bytes of a snapshot file, piece by piece as the member sends them (no I/O: ``save``
    writes them to a file, the gRPC door streams them to etcd's ``Snapshot`` clients)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._size = 0
        self.crc = 0
        self.keys = 0
        self.header = SnapshotFileHeader()

    def _take(self, data: bytes) -> bytes:
        self._digest.update(data)
        self._size += len(data)
        return data

    def first(self, resp: SnapshotResponse) -> bytes:
        """The magic line, the header and the first piece."""
        self.header = SnapshotFileHeader(
            revision=resp.revision,
            compact_revision=resp.compact_revision,
            consistent_index=resp.consistent_index,
            cluster_id=resp.header.cluster_id,
            member_id=resp.header.member_id,
        )
        return self._take(MAGIC) + self._take(encode(self.header)) + self.piece(resp)

    def piece(self, resp: SnapshotResponse) -> bytes:
        self.crc = _crc(self.crc, resp.pairs)
        self.keys += len(resp.pairs) // 2
        return self._take(cbor2.dumps(resp.pairs))

    def end(self) -> bytes:
        """Padding, then the checksum that closes the file. etcd's clients take a snapshot
        whose size is not 32 bytes past a 512-byte boundary for one without its checksum, so
        the file is padded to such a size with empty pieces (``0x80``, an empty CBOR array:
        no records, read and skipped as any piece)."""
        pad = b"\x80" * (-self._size % SECTOR)
        return self._take(pad) + self._digest.digest()


def save(client: Transport, path: str) -> SnapshotStatus:
    """Stream a copy from the member ``client`` talks to into ``path`` (atomically)."""
    part = path + ".part"
    builder = FileBuilder()
    with _private(part) as f:
        resp: SnapshotResponse = client.call(SnapshotRequest())
        f.write(builder.first(resp))
        while not resp.done:
            resp = client.call(SnapshotRequest(snap_id=resp.snap_id, seq=resp.seq + 1))
            f.write(builder.piece(resp))
        f.write(builder.end())
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    _fsync_dir(path)
    size = os.path.getsize(path)
    return SnapshotStatus(builder.crc, builder.header.revision, builder.keys, size, builder.header)


def status(path: str) -> SnapshotStatus:
    header, pieces = read(path)
    crc, keys = 0, 0
    for pairs in pieces:
        crc = _crc(crc, pairs)
        keys += len(pairs) // 2
    return SnapshotStatus(crc, header.revision, keys, os.path.getsize(path), header)


def read(path: str) -> tuple[SnapshotFileHeader, Iterator[list[bytes]]]:
    try:
        size = os.stat(path).st_size
    except OSError as exc:  # worded as etcdctl words it
        raise SnapshotFileError(f"stat {path}: {(exc.strerror or str(exc)).lower()}") from None
    if size < len(MAGIC) + DIGEST:
        raise SnapshotFileError(f"{path}: not an etcdz snapshot (too short)")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise SnapshotFileError(f"{path}: not an etcdz snapshot")
        digest.update(MAGIC)
        remaining = size - len(MAGIC) - DIGEST
        while remaining:
            chunk = f.read(min(remaining, 1 << 20))
            digest.update(chunk)
            remaining -= len(chunk)
        if f.read(DIGEST) != digest.digest():
            raise SnapshotFileError("snapshot file integrity check failed (sha256 mismatch)")
    body = open(path, "rb")  # noqa: SIM115 (closed by the generator)
    body.seek(len(MAGIC))
    stream = io.BufferedReader(_Limited(body, size - len(MAGIC) - DIGEST))
    decoder = cbor2.CBORDecoder(stream)
    try:
        header = decode(cbor2.dumps(decoder.decode()), SnapshotFileHeader)
    except (DecodeError, cbor2.CBORDecodeError) as exc:
        body.close()
        raise SnapshotFileError(f"{path}: bad snapshot header ({exc})") from None

    def pieces() -> Iterator[list[bytes]]:
        try:
            while stream.peek(1):
                pairs = decoder.decode()
                if not isinstance(pairs, list) or len(pairs) % 2 or not all(type(b) is bytes for b in pairs):
                    raise SnapshotFileError(f"{path}: malformed records")
                yield pairs
        finally:
            body.close()

    return header, pieces()


class _Limited(io.RawIOBase):
    """The first ``size`` bytes of a file (the part before the checksum)."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._left)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _crc(crc: int, pairs: list[bytes]) -> int:
    for b in pairs:
        crc = zlib.crc32(b, crc)
    return crc


def _private(path: str) -> io.BufferedWriter:
    """A new file only its owner may read (a stale one, or a link planted there, is replaced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    return os.fdopen(fd, "wb")


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
