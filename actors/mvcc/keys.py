"""The on-disk layout of the MVCC backend in LevelDB.

Key spaces (leases and alarms at the end of this file):
- ``k`` + enc(user key) + main(8 BE) + sub(8 BE) -> record: every version of every key, grouped
  by key and ordered by revision inside the group, so a range at any revision is one forward
  scan and a single-key read at revision R is one reverse seek.
- ``r`` + main(8 BE) + sub(8 BE) -> user key: the same versions in revision order (history for
  watch catch-up, compaction and HashKV walk this).
- ``m`` + name -> 8-byte BE integer: consistent_index, revision, compact_revision. Written in
  the same write batch as the data they describe.

The auth store (actors/auth/store.py) keeps users under ``U``, roles under ``P`` and
``m`` + ``auth_enabled``/``auth_revision`` in the same database; the write sessions of
exactly-once writes (sessions.py) live under ``s``.

``enc`` escapes 0x00 as 00 FF and terminates with 00 01, which keeps byte order (a key sorts
before every longer key it prefixes), so LevelDB's order over ``k`` keys is user-key order.
A record is ``>QQQB`` (create_revision, version, lease, flags) followed by the value; flag bit 0
marks a tombstone (the key's deletion at that revision).
"""

from __future__ import annotations

import struct

INDEX = b"k"
INDEX_END = b"l"
HISTORY = b"r"
META = b"m"
META_CONSISTENT_INDEX = META + b"consistent_index"
META_REVISION = META + b"revision"
META_COMPACT = META + b"compact_revision"

_REV = struct.Struct(">QQ")
_RECORD = struct.Struct(">QQQB")
TOMBSTONE = 1


def enc(key: bytes) -> bytes:
    return key.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def dec(encoded: bytes) -> bytes:
    return encoded[:-2].replace(b"\x00\xff", b"\x00")


def rev_bytes(main: int, sub: int) -> bytes:
    return _REV.pack(main, sub)


def index_key(key: bytes, main: int, sub: int) -> bytes:
    return INDEX + enc(key) + _REV.pack(main, sub)


def split_index_key(ikey: bytes) -> tuple[bytes, int, int]:
    """-> (encoded user key, main, sub)"""
    main, sub = _REV.unpack_from(ikey, len(ikey) - 16)
    return ikey[1:-16], main, sub


def history_key(main: int, sub: int) -> bytes:
    return HISTORY + _REV.pack(main, sub)


def split_history_key(hkey: bytes) -> tuple[int, int]:
    return _REV.unpack_from(hkey, 1)


def pack_record(create: int, version: int, lease: int, value: bytes, tombstone: bool = False) -> bytes:
    return _RECORD.pack(create, version, lease, TOMBSTONE if tombstone else 0) + value


def unpack_record(raw: bytes) -> tuple[int, int, int, bool, bytes]:
    """-> (create_revision, version, lease, tombstone, value)"""
    create, version, lease, flags = _RECORD.unpack_from(raw)
    return create, version, lease, bool(flags & TOMBSTONE), raw[_RECORD.size :]


def int_bytes(n: int) -> bytes:
    return n.to_bytes(8, "big")


def bytes_int(raw: bytes | None) -> int:
    return int.from_bytes(raw, "big") if raw else 0


# -- leases: ``L`` + id -> (ttl, remaining ttl); ``A`` + id + key -> b"" for each attached key --
LEASE = b"L"
LEASE_END = b"M"
ATTACH = b"A"
ATTACH_END = b"B"
_LEASE = struct.Struct(">QQ")


def lease_key(lease_id: int) -> bytes:
    return LEASE + int_bytes(lease_id)


def pack_lease(ttl: int, remaining: int) -> bytes:
    return _LEASE.pack(ttl, remaining)


def unpack_lease(raw: bytes) -> tuple[int, int]:
    return _LEASE.unpack(raw)


def attach_key(lease_id: int, key: bytes) -> bytes:
    return ATTACH + int_bytes(lease_id) + key


def split_attach_key(akey: bytes) -> tuple[int, bytes]:
    return int.from_bytes(akey[1:9], "big"), akey[9:]


# -- alarms: ``a`` + member id + alarm type -> b"" for each raised alarm --
ALARM = b"a"
ALARM_END = b"b"


def alarm_key(member_id: int, alarm: int) -> bytes:
    return ALARM + int_bytes(member_id) + bytes([alarm])


def split_alarm_key(akey: bytes) -> tuple[int, int]:
    return int.from_bytes(akey[1:9], "big"), akey[9]


# Write sessions (sessions.py): ``s`` + client id (8 BE) -> CBOR [acked, last index, {seq: answer}].
SESSION = b"s"
SESSION_END = b"t"


def session_key(client_id: int) -> bytes:
    return SESSION + client_id.to_bytes(8, "big")
