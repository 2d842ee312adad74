"""Raft snapshot files: ``member/snap/<term>-<index>.snap``, as etcd's snap directory.

A snapshot file holds the raft snapshot's metadata (index, term, conf state) and its data (the
member table as of that index); the key-value state itself is the backend, which is never behind
a saved snapshot. The WAL only records a marker (index, term); on start the WAL writer loads the
file named by the last marker. Files are written whole (temp file, fsync, rename, directory
fsync) and carry a CRC, so a torn or damaged file is detected, never half-read. The newest
``KEEP`` files are kept, as etcd's ``--max-snapshots``.
"""

from __future__ import annotations

import os
import re
import zlib

from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.raft import Snapshot

KEEP = 5
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


class SnapshotFileError(Exception):
    """The snapshot the WAL names is missing or damaged: the member needs an operator."""


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}.snap"


def save(dirpath: str, snapshot: Snapshot) -> str:
    os.makedirs(dirpath, mode=0o700, exist_ok=True)
    body = encode(snapshot)
    meta = snapshot.metadata
    path = os.path.join(dirpath, snap_name(meta.term, meta.index))
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, zlib.crc32(body).to_bytes(4, "big") + body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(dirpath, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    _purge(dirpath)
    return path


def load(dirpath: str, term: int, index: int) -> Snapshot:
    path = os.path.join(dirpath, snap_name(term, index))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise SnapshotFileError(f"snapshot file {path} named by the WAL is missing") from None
    if len(raw) < 4 or zlib.crc32(raw[4:]) != int.from_bytes(raw[:4], "big"):
        raise SnapshotFileError(f"snapshot file {path} is damaged (crc mismatch)")
    try:
        snap = decode(raw[4:], expect=Snapshot)
    except DecodeError as exc:
        raise SnapshotFileError(f"snapshot file {path} does not decode: {exc}") from None
    if (snap.metadata.term, snap.metadata.index) != (term, index):
        raise SnapshotFileError(f"snapshot file {path} holds another snapshot")
    return snap


def _purge(dirpath: str) -> None:
    names = sorted((n for n in os.listdir(dirpath) if _NAME.match(n)), key=lambda n: int(n[17:33], 16))
    for name in names[:-KEEP]:
        os.remove(os.path.join(dirpath, name))
    for name in os.listdir(dirpath):
        if name.endswith(".snap.tmp"):
            os.remove(os.path.join(dirpath, name))
