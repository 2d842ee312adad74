"""Reading committed events back from the backend, for watch hubs catching watchers up.

The ``r`` key space lists every stored version in revision order (main, sub) -> key; each
points at its record in the ``k`` space. An event's previous version is one reverse seek in the
key's group. Revisions are read whole: a response never ends in the middle of one.
"""

from __future__ import annotations

from typing import Any

from actors.mvcc import keys as K
from proto_schemas.kv import EventType, KeyValue
from proto_schemas.watch import Event

EVENT_OVERHEAD = 32  # bytes counted per event besides its keys and values


def read(db: Any, start: int, current: int, max_bytes: int) -> tuple[list[Event], int]:
    """Events of revisions ``start..`` (whole revisions, about ``max_bytes`` of them, at least
    one) and the last revision they cover completely."""
    events: list[Event] = []
    size = 0
    revision = start - 1  # the revision being read; complete once the next one begins
    for hkey, key in db.iterator(
        start=K.HISTORY + K.rev_bytes(start, 0), stop=K.HISTORY + K.rev_bytes(current + 1, 0)
    ):
        main, sub = K.split_history_key(hkey)
        if main != revision:
            if size >= max_bytes:
                return events, revision
            revision = main
        raw = db.get(K.index_key(key, main, sub))
        if raw is None:
            continue  # compacted under us: the caller sees compact_revision move
        event = _event(db, key, main, sub, raw)
        events.append(event)
        size += (
            EVENT_OVERHEAD
            + len(key)
            + len(event.kv.value)
            + (len(event.prev_kv.value) if event.prev_kv else 0)
        )
    return events, current


def _event(db: Any, key: bytes, main: int, sub: int, raw: bytes) -> Event:
    create, version, lease, tombstone, value = K.unpack_record(raw)
    prev = _previous(db, key, main, sub)
    if tombstone:
        return Event(type=EventType.DELETE, kv=KeyValue(key=key, mod_revision=main), prev_kv=prev)
    kv = KeyValue(
        key=key, create_revision=create, mod_revision=main, version=version, value=value, lease=lease
    )
    return Event(type=EventType.PUT, kv=kv, prev_kv=prev)


def _previous(db: Any, key: bytes, main: int, sub: int) -> KeyValue | None:
    group = K.INDEX + K.enc(key)
    for ikey, raw in db.iterator(start=group, stop=K.index_key(key, main, sub), reverse=True):
        create, version, lease, tombstone, value = K.unpack_record(raw)
        if tombstone:
            return None
        _, prev_main, _ = K.split_index_key(ikey)
        return KeyValue(
            key=key, create_revision=create, mod_revision=prev_main, version=version, value=value, lease=lease
        )
    return None
