"""The backend's LevelDB with every read checked against the block checksums LevelDB keeps.

LevelDB checks checksums only when asked; unasked, a flipped bit on disk comes back as data.
Reading through this wrapper turns it into ``plyvel.CorruptionError`` instead, which the backend
reports as corruption (an error to the reader, the CORRUPT alarm, or a stop on apply): a member
never serves what its disk garbled.
"""

from __future__ import annotations

from typing import Any


class Verified:
    def __init__(self, db: Any) -> None:
        self._db = db

    def get(self, key: bytes, default: Any = None) -> Any:
        return self._db.get(key, default, verify_checksums=True)

    def iterator(self, **options: Any) -> Any:
        return self._db.iterator(verify_checksums=True, **options)

    def raw_iterator(self, **options: Any) -> Any:
        return self._db.raw_iterator(verify_checksums=True, **options)

    def snapshot(self) -> Verified:
        return Verified(self._db.snapshot())

    def __getattr__(self, name: str) -> Any:  # writes, sizes, close: as LevelDB has them
        return getattr(self._db, name)
