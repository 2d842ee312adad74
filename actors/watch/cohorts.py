"""A stream's watches kept as cohorts (``watchers.Cohort``): joining, leaving and splitting one,
with the index of ranges kept in step (one entry per cohort, not per watch).

A stream holds each watch id's cohort (``Stream.watchers``), each cohort once
(``Stream.cohorts``, oldest first: the order responses are made in), per kind of watch the
newest cohort a watch of that kind may join (``Stream.joinable``), and the cohorts that are
not known to be complete up to the hub's ``head`` (``Stream.lagging``: a cohort starts there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from actors.watch.index import WatchIndex
from actors.watch.watchers import Cohort, Stream


def cursor(stream: Stream, cohort: Cohort, head: int) -> int:
    """The next revision ``cohort`` needs: ``head + 1`` for a synced one."""
    return cohort.cursor if cohort in stream.lagging else head + 1


def join(stream: Stream, index: WatchIndex[Cohort], watch_id: int, new: Cohort, head: int) -> None:
    """Add watch ``watch_id`` (``new``: a cohort of it alone) to ``stream``: to the newest cohort
    of its kind if that one needs the same revision next, else as a cohort of its own."""
    kind = new.kind
    cohort = stream.joinable.get(kind) if kind is not None else None
    if cohort is not None and cursor(stream, cohort, head) == new.cursor:
        cohort.ids[watch_id] = None
        stream.watchers[watch_id] = cohort
        return
    _add(stream, index, new)


def leave(stream: Stream, index: WatchIndex[Cohort], watch_id: int) -> None:
    """Take ``watch_id`` out of its cohort, if the stream holds it (the cohort ends with its
    last watch)."""
    cohort = stream.watchers.pop(watch_id, None)
    if cohort is not None:
        del cohort.ids[watch_id]
        if not cohort.ids:
            _remove(stream, index, cohort)


def split(stream: Stream, index: WatchIndex[Cohort], cohort: Cohort, ids: Iterable[int], needs: int) -> None:
    """Move ``ids`` of ``cohort`` to a cohort of their own that needs revision ``needs`` next
    (their send failed while the others' went out)."""
    moved = dataclasses.replace(cohort, ids=dict.fromkeys(ids), cursor=needs)
    for watch_id in moved.ids:
        del cohort.ids[watch_id]
    if not cohort.ids:
        _remove(stream, index, cohort)
    _add(stream, index, moved)


def forget(stream: Stream, index: WatchIndex[Cohort]) -> None:
    """The stream is gone: its cohorts leave the index."""
    for cohort in stream.cohorts:
        index.remove(cohort)


def _add(stream: Stream, index: WatchIndex[Cohort], cohort: Cohort) -> None:
    for watch_id in cohort.ids:
        stream.watchers[watch_id] = cohort
    stream.cohorts[cohort] = None
    stream.lagging[cohort] = None  # the next delivery looks at it
    index.add(cohort, cohort.key, cohort.range_end)
    if cohort.kind is not None:
        stream.joinable[cohort.kind] = cohort


def _remove(stream: Stream, index: WatchIndex[Cohort], cohort: Cohort) -> None:
    del stream.cohorts[cohort]
    stream.lagging.pop(cohort, None)
    index.remove(cohort)
    if cohort.kind is not None and stream.joinable.get(cohort.kind) is cohort:
        del stream.joinable[cohort.kind]
