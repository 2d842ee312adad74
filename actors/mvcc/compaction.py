"""Compaction: every version below a revision goes, but each key's latest one at it (unless a tombstone)."""

from __future__ import annotations

from typing import Any

from actors.mvcc import keys as K


def compact(db: Any, wb: Any, revision: int) -> None:
    """Drop into the write batch ``wb`` every version in ``db`` below ``revision`` except each
    key's latest one at it (which goes too when it is a tombstone), with its history entry."""
    group: bytes | None = None
    keep: tuple[bytes, bytes] | None = None  # latest version <= revision of the group
    for ikey, raw in db.iterator(start=K.INDEX, stop=K.INDEX_END):
        ekey, main, sub = K.split_index_key(ikey)
        if ekey != group:
            _drop_if_tombstone(wb, keep)
            group, keep = ekey, None
        if main > revision:
            continue
        if keep is not None:
            _drop(wb, *keep)
        keep = (ikey, raw)
    _drop_if_tombstone(wb, keep)


def _drop(wb: Any, ikey: bytes, raw: bytes) -> None:
    _, main, sub = K.split_index_key(ikey)
    wb.delete(ikey)
    wb.delete(K.history_key(main, sub))


def _drop_if_tombstone(wb: Any, keep: tuple[bytes, bytes] | None) -> None:
    if keep is not None and K.unpack_record(keep[1])[3]:
        _drop(wb, *keep)
