"""Which watchers want an event's key, found without looking at every watcher.

A watcher watches one key (``range_end`` empty), a prefix (``range_end`` is the prefix's end,
as ``--prefix`` makes it), every key from a key on (``range_end`` ``"\\0"``) or any range
``[key, range_end)``; a range that ends at or before its key holds nothing (etcd's rule) and is
never matched. Each kind has its own structure, so that a key is matched in about the time of
the answer, not of the number of watchers:

- single keys: a dict from key to its watchers (one lookup);
- prefixes: a dict from prefix to its watchers, looked up with the key cut at each prefix
  length in use (few: one lookup per distinct length);
- from a key on: the starts sorted, every start at or below the key matches (one bisection);
- other ranges: sorted by start, with a tree of the greatest end over each run of them; a
  search descends only into runs whose greatest end lies past the key (O(log n) per match).

The sorted structures are rebuilt lazily, at the first match after a change. ``WatchIndex``
is pure; ``match`` returns each watcher at most once (the same reference added twice is one).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

R = TypeVar("R", bound=Hashable)


def prefix_end(prefix: bytes) -> bytes:
    """The end of the range of keys starting with ``prefix`` (etcd's GetPrefixRangeEnd)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


class WatchIndex(Generic[R]):
    def __init__(self) -> None:
        self._keys: dict[bytes, dict[R, None]] = {}
        self._prefixes: dict[bytes, dict[R, None]] = {}
        self._prefix_lengths: dict[int, int] = {}  # length -> prefixes of that length
        self._from: dict[R, bytes] = {}
        self._ranges: dict[R, tuple[bytes, bytes]] = {}
        self._where: dict[R, tuple[bytes, bytes]] = {}  # every reference -> its (key, range_end)
        self._from_sorted: tuple[list[bytes], list[R]] | None = None
        self._tree: _RangeTree[R] | None = None

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, ref: object) -> bool:
        return ref in self._where

    def add(self, ref: R, key: bytes, range_end: bytes) -> None:
        if ref in self._where:
            self.remove(ref)
        self._where[ref] = (key, range_end)
        if not range_end:
            self._keys.setdefault(key, {})[ref] = None
        elif range_end == b"\0":
            self._from[ref] = key
            self._from_sorted = None
        elif range_end <= key:
            pass  # holds nothing
        elif range_end == prefix_end(key):
            self._prefixes.setdefault(key, {})[ref] = None
            self._prefix_lengths[len(key)] = self._prefix_lengths.get(len(key), 0) + 1
        else:
            self._ranges[ref] = (key, range_end)
            self._tree = None

    def remove(self, ref: R) -> None:
        where = self._where.pop(ref, None)
        if where is None:
            return
        key, range_end = where
        if not range_end:
            _discard(self._keys, key, ref)
        elif range_end == b"\0":
            del self._from[ref]
            self._from_sorted = None
        elif range_end <= key:
            pass
        elif range_end == prefix_end(key):
            _discard(self._prefixes, key, ref)
            left = self._prefix_lengths[len(key)] - 1
            if left:
                self._prefix_lengths[len(key)] = left
            else:
                del self._prefix_lengths[len(key)]
        else:
            del self._ranges[ref]
            self._tree = None

    def match(self, key: bytes) -> Iterator[R]:
        """Every watcher whose range holds ``key``."""
        yield from self._keys.get(key, ())
        if self._prefix_lengths:
            for length in self._prefix_lengths:
                if length <= len(key):
                    yield from self._prefixes.get(key[:length], ())
        if self._from:
            if self._from_sorted is None:
                pairs = sorted(self._from.items(), key=lambda item: item[1])
                self._from_sorted = ([k for _, k in pairs], [r for r, _ in pairs])
            starts, refs = self._from_sorted
            yield from refs[: bisect.bisect_right(starts, key)]
        if self._ranges:
            if self._tree is None:
                self._tree = _RangeTree(self._ranges)
            yield from self._tree.stab(key)


def _discard(table: dict[bytes, dict[R, None]], key: bytes, ref: R) -> None:
    refs = table.get(key)
    if refs is not None:
        refs.pop(ref, None)
        if not refs:
            del table[key]


class _RangeTree(Generic[R]):
    """Ranges ``[start, end)`` sorted by start, and a segment tree of the greatest end of each
    run: the ranges holding a key are among those starting at or before it, and a run whose
    greatest end is at or before the key holds none of them."""

    def __init__(self, ranges: dict[R, tuple[bytes, bytes]]) -> None:
        ordered = sorted(ranges.items(), key=lambda item: item[1][0])
        self.starts = [start for _, (start, _) in ordered]
        self.ends = [end for _, (_, end) in ordered]
        self.refs = [ref for ref, _ in ordered]
        size = 1
        while size < len(ordered):
            size *= 2
        self.size = size
        self.max_end = [b""] * (2 * size)  # b"": no range (no key is below it)
        self.max_end[size : size + len(ordered)] = self.ends
        for node in range(size - 1, 0, -1):
            self.max_end[node] = max(self.max_end[2 * node], self.max_end[2 * node + 1])

    def stab(self, key: bytes) -> Iterator[R]:
        last = bisect.bisect_right(self.starts, key)  # ranges [0, last) start at or before key
        if not last:
            return
        stack = [(1, 0, self.size)]
        while stack:
            node, lo, hi = stack.pop()
            if lo >= last or self.max_end[node] <= key:
                continue
            if hi - lo == 1:
                yield self.refs[lo]
                continue
            mid = (lo + hi) // 2
            stack.append((2 * node + 1, mid, hi))
            stack.append((2 * node, lo, mid))
