"""The SDK's side of a watch without sockets: what a stream of hub responses becomes for the
user when streams move, hubs resend, and revisions come in fragments."""

from __future__ import annotations

from typing import Any, cast

import pytest

from actors.watch.watchers import SLOW_STREAM
from etcdz._watch_core import STOP, StreamCore, WatchState
from etcdz.errors import (
    ClusterIdMismatch,
    Compacted,
    EtcdzError,
    PermissionDenied,
    Unavailable,
    WatchCanceled,
)
from etcdz.watcher import Watch, WatchStream
from proto_schemas.envelope import pack
from proto_schemas.errors import TEXTS, ErrorCode
from proto_schemas.kv import EventType, KeyValue, ResponseHeader
from proto_schemas.watch import (
    CANCELED_COMPACTED,
    DUPLICATE_WATCH_ID,
    Event,
    SharedWatchResponse,
    WatchCreateRequest,
    WatchPing,
    WatchPong,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)


def ev(key: str, rev: int) -> Event:
    return Event(type=EventType.PUT, kv=KeyValue(key=key.encode(), mod_revision=rev, value=b"v"))


def resp(rev: int, *events: Event, **kw: Any) -> WatchResponse:
    return WatchResponse(header=ResponseHeader(revision=rev), events=list(events), **{"watch_id": 1, **kw})


def watch(start: int = 0) -> tuple[Watch, list[Any]]:
    got: list[Any] = []
    w = Watch(cast(WatchStream, None), 1, WatchCreateRequest(key=b"k", start_revision=start), sink=got.append)
    return w, got


def keys(got: list[Any]) -> list[tuple[int, bytes]]:
    return [(e.kv.mod_revision, e.kv.key) for r in got for e in r.events]


def test_created_sets_the_revision_of_a_watch_from_now_only() -> None:
    w, _ = watch()
    w._feed(resp(9, created=True))
    assert w.revision == 9 and w.confirmed and w._resume_request().start_revision == 10
    past, _ = watch(start=3)
    past._feed(resp(9, created=True))
    assert past.revision == 2 and past._resume_request().start_revision == 3


def test_events_already_delivered_before_a_move_are_dropped() -> None:
    w, got = watch(start=1)
    w._feed(resp(5, ev("a", 4), ev("a", 5)))
    w._feed(resp(5, ev("a", 5)))  # the new hub resent what the old one had delivered
    w._feed(resp(7, ev("a", 5), ev("a", 7)))
    assert keys(got) == [(4, b"a"), (5, b"a"), (7, b"a")]
    assert w.revision == 7


def test_fragments_are_joined_and_a_resent_revision_is_not_doubled() -> None:
    w, got = watch(start=1)
    w._feed(resp(3, ev("a", 3), ev("b", 3), fragment=True))
    w._feed(resp(3, ev("a", 3), ev("b", 3), fragment=True))  # resent from the first fragment
    w._feed(resp(3, ev("c", 3), fragment=True))
    w._feed(resp(3, ev("d", 3)))
    assert len(got) == 1 and not got[0].fragment
    assert keys(got) == [(3, b"a"), (3, b"b"), (3, b"c"), (3, b"d")]


def test_progress_moves_the_revision_without_events() -> None:
    w, got = watch(start=1)
    w._feed(resp(12))
    assert w.revision == 12 and got[0].events == []
    w._feed(resp(11, ev("a", 11)))  # late: already covered
    assert len(got) == 1


def test_compaction_ends_the_watch_with_the_compact_revision_and_a_duplicate_id_does_not() -> None:
    w, got = watch(start=1)
    assert w._feed(resp(9, created=True, canceled=True, cancel_reason=DUPLICATE_WATCH_ID))
    assert not w._feed(resp(9, canceled=True, compact_revision=6, cancel_reason=CANCELED_COMPACTED))
    (error,) = got
    assert isinstance(error, Compacted) and error.compact_revision == 6  # type: ignore[attr-defined]
    with pytest.raises(Compacted):
        w._take(error)


def test_a_watch_the_server_ends_raises_why_and_one_the_client_cancels_just_ends() -> None:
    w, got = watch(start=1)
    assert not w._feed(resp(9, created=True, canceled=True, cancel_reason=SLOW_STREAM))
    assert not w._feed(resp(9, canceled=True, cancel_reason=TEXTS[ErrorCode.PERMISSION_DENIED]))
    assert not w._feed(resp(9, canceled=True))
    slow, denied, ended = got
    assert isinstance(slow, WatchCanceled) and slow.message == SLOW_STREAM
    assert isinstance(denied, PermissionDenied) and not isinstance(ended, Exception)
    with pytest.raises(WatchCanceled, match="not read"):
        w._take(slow)


# -- the stream's rules (etcdz._watch_core), shared by the thread and the asyncio task ----------
def stream(user: bool = False) -> tuple[StreamCore, WatchState, list[Any]]:
    core = StreamCore(has_user=user, now=0.0)
    got: list[Any] = []
    w = WatchState(1, WatchCreateRequest(key=b"k", start_revision=5), sink=got.append)
    core.create(w)
    return core, w, got


def hub_says(core: StreamCore, msg: Any, now: float = 1.0, cluster_id: int = 7) -> list[Any]:
    core.receive(pack(msg, in_reply_to=1), now, cluster_id)
    return core.after_receive()


def starts(bodies: list[Any]) -> list[int]:
    creates = [getattr(b, "request", None) for b in bodies]
    return [r.start_revision for r in creates if isinstance(r, WatchCreateRequest)]


def test_a_new_hub_gets_the_handshake_then_every_watch_from_where_it_is() -> None:
    core, w, _ = stream()
    assert starts(core.opened("tcp://h1", 7)) == [5]
    w._feed(resp(8, ev("k", 8)))
    ping, again = core.opened("tcp://h2", 7)
    assert ping == WatchPing(cluster_id=7, shared=True) and starts([again]) == [9] and not w.confirmed


def test_a_hub_that_restarted_behind_the_same_address_gets_every_watch_again() -> None:
    core, w, _ = stream()
    core.opened("tcp://h1", 7)
    assert hub_says(core, WatchPong(hub_id="a", cluster_id=7)) == []
    w._feed(resp(6, ev("k", 6)))
    assert starts(hub_says(core, WatchPong(hub_id="b", cluster_id=7))) == [7]


def test_a_hub_that_no_longer_knows_the_stream_gets_every_watch_again() -> None:
    """Same hub, new stream number: ZeroMQ connected again under the socket (the hub holds
    the watches under the old connection, and events for it go nowhere) or the hub dropped
    the stream; silence would follow, so every watch is created again from where it is."""
    core, w, _ = stream()
    core.opened("tcp://h1", 7)
    assert hub_says(core, WatchPong(hub_id="a", cluster_id=7, stream=3)) == []
    w._feed(resp(6, ev("k", 6)))
    assert hub_says(core, WatchPong(hub_id="a", cluster_id=7, stream=3)) == []
    assert starts(hub_says(core, WatchPong(hub_id="a", cluster_id=7, stream=4))) == [7]


def test_a_hub_of_another_cluster_is_left_for_good_and_a_silent_one_for_a_while() -> None:
    core, _, _ = stream()
    core.opened("tcp://other", 7)
    hub_says(core, WatchPong(hub_id="a", cluster_id=9))
    assert core.left(now=1.0, heard=1.0) and core.candidates(["tcp://other"], 1e9) == []
    assert isinstance(core.no_hub_error(["tcp://other"]), ClusterIdMismatch)
    core.opened("tcp://quiet", 7)
    assert not core.left(now=2.0, heard=0.0)
    assert core.left(now=10.0, heard=0.0)  # DEAD_AFTER_S of silence
    assert core.candidates(["tcp://quiet"], 10.0) == [] and core.candidates(["tcp://quiet"], 20.0)
    assert core.gave_up(now=100.0, timeout=5.0) and not core.gave_up(now=1.0, timeout=5.0)


def test_a_message_the_sdk_cannot_read_moves_the_stream_and_loses_no_event() -> None:
    """An unreadable message may have held events: it is not skipped (a silent gap) but the
    stream moves, and the next connection creates every watch from its last revision."""
    core, w, got = stream()
    core.opened("tcp://h1", 7)
    w._feed(resp(6, ev("k", 6)))
    core.receive([b"", b"\xff not cbor"], 1.0, 7)
    assert core.left(now=1.0, heard=1.0)
    assert core.candidates(["tcp://h1"], 1.0) == [] and core.candidates(["tcp://h1"], 1.0 + 5)
    assert "unreadable" in str(core.no_hub_error(["tcp://h1"]))
    assert starts(core.opened("tcp://h1", 7)[1:]) == [7] and len(got) == 1


def test_a_watch_cancelled_while_no_hub_has_it_ends_at_the_next_hub() -> None:
    core, w, got = stream()
    core.opened("tcp://h1", 7)
    assert isinstance(core.cancel(w), WatchRequest)
    assert starts(core.opened("tcp://h2", 7)) == [] and got == [STOP] and core.watches == {}
    assert core.cancel(w) is None


def test_a_create_refused_for_the_token_is_sent_again_after_one_login() -> None:
    core, w, got = stream(user=True)
    core.opened("tcp://h1", 7)
    denied = resp(1, canceled=True, cancel_reason=TEXTS[ErrorCode.INVALID_AUTH_TOKEN])
    assert starts(hub_says(core, denied)) == [5] and core.relogin_wanted and got == []
    assert hub_says(core, denied) == [] and core.watches == {}  # twice: the reason is the answer
    assert isinstance(got[0], EtcdzError)


def test_a_stream_that_ends_ends_every_watch_with_its_error() -> None:
    core, _, got = stream()
    core.error = Unavailable("no watch hub is serving this cluster")
    core.end_all()
    assert got == [core.error] and core.watches == {}


def test_a_shared_response_reaches_each_of_its_watchers_as_their_own() -> None:
    core, first, got_first = stream()
    got_second: list[Any] = []
    second = WatchState(2, WatchCreateRequest(key=b"k", start_revision=5), sink=got_second.append)
    core.create(second)
    core.opened("tcp://h1", 7)
    shared = SharedWatchResponse(watch_ids=[1, 2], response=resp(6, ev("k", 6), watch_id=0))
    hub_says(core, WatchResponses(responses=[shared, resp(7, ev("k", 7))]))
    assert keys(got_first) == [(6, b"k"), (7, b"k")]
    assert keys(got_second) == [(6, b"k")]
    assert [r.watch_id for r in got_first] == [1, 1] and got_second[0].watch_id == 2
    assert got_first[0].events is not got_second[0].events  # each watcher's own, as if it came alone
