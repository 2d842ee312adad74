"""The watch-guarantee checker catches each kind of violation and passes a correct stream."""

from __future__ import annotations

from proto_schemas.kv import EventType, KeyValue, ResponseHeader
from proto_schemas.watch import Event, WatchResponse
from tools.watch_check import Spec, check


def ev(key: str, rev: int) -> Event:
    return Event(type=EventType.PUT, kv=KeyValue(key=key.encode(), mod_revision=rev))


HISTORY = [ev("a", 1), ev("b", 1), ev("a", 2), ev("c", 3), ev("a", 4), ev("b", 4)]
ALL = Spec(key=b"", range_end=b"\0")


def resp(*events: Event, upto: int = 0, fragment: bool = False) -> WatchResponse:
    rev = upto or (events[-1].kv.mod_revision if events else 0)
    return WatchResponse(header=ResponseHeader(revision=rev), events=list(events), fragment=fragment)


def test_a_correct_stream_passes() -> None:
    stream = [
        resp(ev("a", 1), ev("b", 1), ev("a", 2)),
        resp(upto=3 - 1),
        resp(ev("c", 3), ev("a", 4), ev("b", 4)),
    ]
    assert check(ALL, HISTORY, stream) == []
    assert check(Spec(key=b"a"), HISTORY, [resp(ev("a", 1)), resp(ev("a", 2), ev("a", 4), upto=4)]) == []


def test_a_gap_is_caught() -> None:
    assert check(ALL, HISTORY, [resp(ev("a", 1), ev("b", 1)), resp(ev("c", 3))])


def test_a_duplicate_is_caught() -> None:
    assert check(ALL, HISTORY, [resp(ev("a", 1), ev("b", 1)), resp(ev("b", 1), ev("a", 2))])


def test_disorder_is_caught() -> None:
    assert check(ALL, HISTORY, [resp(ev("a", 2)), resp(ev("a", 1), ev("b", 1))])


def test_a_split_revision_is_caught_unless_fragmented() -> None:
    split = [resp(ev("a", 1)), resp(ev("b", 1), ev("a", 2))]
    assert check(ALL, HISTORY[:3], split)
    fragmented = [resp(ev("a", 1), fragment=True), resp(ev("b", 1)), resp(ev("a", 2))]
    assert check(ALL, HISTORY[:3], fragmented) == []


def test_a_bookmark_ahead_of_the_events_is_caught() -> None:
    assert check(ALL, HISTORY, [resp(ev("a", 1), ev("b", 1)), resp(upto=3)])


def test_an_event_the_history_lacks_is_caught() -> None:
    assert check(Spec(key=b"a"), HISTORY, [resp(ev("a", 1)), resp(ev("b", 1))])
