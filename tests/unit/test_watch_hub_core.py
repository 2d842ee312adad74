"""The watch hub's core without sockets: live delivery, gaps resynced from history, compaction,
fragments, slow clients, progress."""

from __future__ import annotations

from dataclasses import replace as dataclass_replace
from typing import Any

from actors.watch.batching import batched, encode_sharing
from actors.watch.core import HubCore
from actors.watch.watchers import MAX_DEFERRED, SLOW_STREAM, TOO_MANY
from proto_schemas.auth import AuthCheckRequest, AuthCheckResponse
from proto_schemas.codec import decode
from proto_schemas.errors import ErrorCode, ErrorResponse, error_response
from proto_schemas.kv import EventType, KeyValue, ResponseHeader
from proto_schemas.watch import (
    CANCELED_COMPACTED,
    PROGRESS_ALL,
    Event,
    EventBatch,
    FilterType,
    SharedWatchResponse,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchHistoryRequest,
    WatchHistoryResponse,
    WatchPing,
    WatchPong,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

C = b"client"


def put(key: str, rev: int, value: str = "v", prev: str | None = None) -> Event:
    kv = KeyValue(key=key.encode(), create_revision=rev, mod_revision=rev, version=1, value=value.encode())
    prev_kv = None if prev is None else KeyValue(key=key.encode(), mod_revision=rev - 1, value=prev.encode())
    return Event(type=EventType.PUT, kv=kv, prev_kv=prev_kv)


def delete(key: str, rev: int) -> Event:
    return Event(type=EventType.DELETE, kv=KeyValue(key=key.encode(), mod_revision=rev))


def batch(*events: Event, compact: int = 0) -> EventBatch:
    revs = [e.kv.mod_revision for e in events]
    return EventBatch(
        first_revision=min(revs), revision=max(revs), compact_revision=compact, events=list(events)
    )


def heartbeat(rev: int, compact: int = 0) -> EventBatch:
    return EventBatch(first_revision=rev + 1, revision=rev, compact_revision=compact)


def started(at: int = 10, **kw: Any) -> HubCore:
    hub = HubCore(**kw)
    hub.live(heartbeat(at), 0.0)
    return hub


def create(hub: HubCore, key: str = "a", now: float = 0.0, route: bytes = C, **kw: Any) -> None:
    hub.client(route, 1, WatchRequest(request=WatchCreateRequest(key=key.encode(), **kw)), now, token="t")
    answer_checks(hub, AuthCheckResponse(header=ResponseHeader()), now)


def answer_checks(hub: HubCore, answer: Any, now: float = 0.0) -> list[AuthCheckRequest]:
    """Answer the auth checks the hub asked of its member (taken out of its outbox)."""
    checks = [(i, r) for i, r in hub.out.to_backend if isinstance(r, AuthCheckRequest)]
    hub.out.to_backend = [x for x in hub.out.to_backend if not isinstance(x[1], AuthCheckRequest)]
    for check_id, _ in checks:
        hub.checked(check_id, answer, now)
    return [r for _, r in checks]


def responses(hub: HubCore) -> list[WatchResponse]:
    """What the watchers get, in order: a shared response once for each of its watchers."""
    bodies = [
        b for _, _, b in hub.take_outbox().to_client if isinstance(b, WatchResponse | SharedWatchResponse)
    ]
    return WatchResponses(responses=bodies).each()


def events_of(resps: list[WatchResponse]) -> list[tuple[int, bytes]]:
    return [(e.kv.mod_revision, e.kv.key) for r in resps for e in r.events]


def test_a_watch_from_now_gets_later_events_of_its_key_only() -> None:
    hub = started(10)
    create(hub, "a", watch_id=7)
    (created,) = responses(hub)
    assert created.created and created.watch_id == 7 and created.header.revision == 10
    hub.live(batch(put("b", 11)), 0.1)
    hub.live(batch(put("a", 12)), 0.2)
    (got,) = responses(hub)
    assert got.watch_id == 7 and events_of([got]) == [(12, b"a")] and got.header.revision == 12


def test_ranges_prefixes_from_key_and_filters() -> None:
    hub = started(0)
    create(hub, "b", range_end=b"d", watch_id=1)
    create(hub, "c", range_end=b"\0", watch_id=2)
    create(hub, "", range_end=b"\0", watch_id=3, filters=[FilterType.NOPUT])
    create(hub, "a", range_end=b"\0", watch_id=4, filters=[FilterType.NODELETE])
    responses(hub)
    hub.live(batch(put("a", 1), put("b", 2), put("c", 3), delete("d", 4), put("z", 5)), 0.1)
    by_id: dict[int, list[tuple[int, bytes]]] = {}
    for r in responses(hub):
        by_id.setdefault(r.watch_id, []).extend(events_of([r]))
    assert by_id[1] == [(2, b"b"), (3, b"c")]
    assert by_id[2] == [(3, b"c"), (4, b"d"), (5, b"z")]
    assert by_id[3] == [(4, b"d")]
    assert by_id[4] == [(1, b"a"), (2, b"b"), (3, b"c"), (5, b"z")]


def test_prev_kv_only_for_watchers_that_asked() -> None:
    hub = started(0)
    create(hub, "a", watch_id=1, prev_kv=True)
    create(hub, "a", watch_id=2)
    responses(hub)
    hub.live(batch(put("a", 1, "new", prev="old")), 0.1)
    got = {r.watch_id: r.events[0] for r in responses(hub)}
    assert got[1].prev_kv is not None and got[1].prev_kv.value == b"old"
    assert got[2].prev_kv is None and got[2].kv.value == b"new"


def test_the_events_of_one_revision_arrive_in_one_response() -> None:
    hub = started(0)
    create(hub, "", range_end=b"\0")
    responses(hub)
    hub.live(batch(put("a", 1), put("b", 1), put("c", 1)), 0.1)
    (got,) = responses(hub)
    assert events_of([got]) == [(1, b"a"), (1, b"b"), (1, b"c")]


def test_a_gap_in_the_live_stream_is_filled_from_history_before_anything_newer() -> None:
    hub = started(0)
    create(hub, "", range_end=b"\0")
    responses(hub)
    hub.live(batch(put("a", 1)), 0.1)
    assert events_of(responses(hub)) == [(1, b"a")]
    hub.live(batch(put("d", 4)), 0.2)  # 2 and 3 were dropped on the way
    out = hub.take_outbox()
    assert [b for _, _, b in out.to_client] == []  # nothing newer before the gap is filled
    assert out.to_backend == [(0, WatchHistoryRequest(start_revision=2))]
    hub.history(
        WatchHistoryResponse(
            header=ResponseHeader(), start_revision=2, revision=3, events=[put("b", 2), put("c", 3)]
        ),
        0.3,
    )
    assert events_of(responses(hub)) == [(2, b"b"), (3, b"c"), (4, b"d")]


def test_a_heartbeat_ahead_of_the_hub_is_a_gap_too() -> None:
    hub = started(0)
    create(hub, "a")
    responses(hub)
    hub.live(heartbeat(5), 0.1)
    assert hub.take_outbox().to_backend == [(0, WatchHistoryRequest(start_revision=1))]
    hub.history(
        WatchHistoryResponse(header=ResponseHeader(), start_revision=1, revision=5, events=[put("a", 3)]), 0.2
    )
    assert events_of(responses(hub)) == [(3, b"a")]
    hub.live(batch(put("a", 6)), 0.3)  # continues the window the heartbeat restarted
    assert events_of(responses(hub)) == [(6, b"a")]


def test_duplicated_and_replayed_batches_are_ignored() -> None:
    hub = started(0)
    create(hub, "a")
    responses(hub)
    hub.live(batch(put("a", 1)), 0.1)
    hub.live(batch(put("a", 1)), 0.2)
    hub.live(batch(put("a", 1), put("a", 2)), 0.3)
    assert events_of(responses(hub)) == [(1, b"a"), (2, b"a")]


def test_a_watch_in_the_past_catches_up_from_history_then_goes_live() -> None:
    hub = started(100)
    create(hub, "a", start_revision=98)
    out = hub.take_outbox()
    assert out.to_backend == [(0, WatchHistoryRequest(start_revision=98))]
    hub.live(batch(put("a", 101)), 0.1)
    assert events_of(responses(hub)) == []  # history first
    hub.history(
        WatchHistoryResponse(header=ResponseHeader(), start_revision=98, revision=100, events=[put("a", 99)]),
        0.2,
    )
    got = responses(hub)
    assert events_of(got) == [(99, b"a"), (101, b"a")]
    assert got[0].header.revision == 100  # complete up to the history's end, not beyond


def test_a_history_read_refused_before_the_hub_logged_in_is_asked_again_at_login() -> None:
    hub = started(100)
    create(hub, "a", start_revision=98)
    assert hub.take_outbox().to_backend == [(0, WatchHistoryRequest(start_revision=98))]
    hub.tick(1.0)  # refused (no token): nothing comes back, and nothing is asked yet
    assert hub.take_outbox().to_backend == []
    hub.ask_history_again(1.2)
    assert hub.take_outbox().to_backend == [(0, WatchHistoryRequest(start_revision=98))]
    answer = WatchHistoryResponse(
        header=ResponseHeader(), start_revision=98, revision=100, events=[put("a", 99)]
    )
    hub.history(answer, 1.3)
    hub.history(answer, 1.4)  # the first read answered after all: nothing twice
    assert events_of(responses(hub)) == [(99, b"a")]


def test_a_compacted_start_revision_is_cancelled_with_etcds_reason() -> None:
    hub = HubCore()
    hub.live(heartbeat(50, compact=40), 0.0)
    create(hub, "a", start_revision=30, watch_id=3)
    created, cancelled = responses(hub)
    assert created.created
    assert cancelled.canceled and cancelled.compact_revision == 40
    assert cancelled.cancel_reason == CANCELED_COMPACTED
    # compaction learned from history cancels a catching-up watcher too
    create(hub, "a", start_revision=45, watch_id=4)
    responses(hub)
    hub.history(WatchHistoryResponse(header=ResponseHeader(), start_revision=45, compact_revision=48), 0.1)
    (late,) = responses(hub)
    assert late.watch_id == 4 and late.canceled and late.compact_revision == 48


def test_large_revisions_are_fragmented_only_for_watchers_that_asked() -> None:
    hub = started(0, max_response_bytes=1000)
    create(hub, "", range_end=b"\0", watch_id=1, fragment=True)
    create(hub, "", range_end=b"\0", watch_id=2)
    responses(hub)
    big = [put(f"k{i}", 1, "x" * 300) for i in range(10)]
    hub.live(batch(*big), 0.1)
    got = responses(hub)
    frags = [r for r in got if r.watch_id == 1]
    whole = [r for r in got if r.watch_id == 2]
    assert len(frags) > 1 and all(r.fragment for r in frags[:-1]) and not frags[-1].fragment
    assert events_of(frags) == events_of(whole) and len(whole) == 1


def test_several_revisions_share_a_response_up_to_the_size_limit() -> None:
    hub = started(0, max_response_bytes=1000)
    create(hub, "", range_end=b"\0", start_revision=1)
    responses(hub)
    hub.live(batch(*[put(f"k{i}", i, "x" * 300) for i in range(1, 7)]), 0.1)
    got = responses(hub)
    assert len(got) == 3 and [len(r.events) for r in got] == [2, 2, 2]
    assert events_of(got) == [(i, f"k{i}".encode()) for i in range(1, 7)]


def test_a_slow_client_is_rewound_and_served_again_without_gap_or_duplicate() -> None:
    hub = started(0, stall_retry_s=0.5)
    create(hub, "a")
    responses(hub)
    hub.live(batch(put("a", 1)), 0.1)
    first = hub.take_outbox().to_client
    hub.live(batch(put("a", 2)), 0.2)
    second = hub.take_outbox().to_client
    hub.stalled(C, [(r, b) for _, r, b in second], 0.2)  # the first went, the second did not
    hub.live(batch(put("a", 3)), 0.3)
    assert hub.take_outbox().to_client == []  # resting
    hub.tick(0.8)
    got = [b for _, _, b in first] + responses(hub)
    assert events_of(got) == [(1, b"a"), (2, b"a"), (3, b"a")]


def test_a_shared_response_that_could_not_be_sent_is_sent_again_to_each_of_its_watchers() -> None:
    hub = started(0, stall_retry_s=0.5)
    for _ in range(3):
        create(hub, "a")
    hub.take_outbox()
    hub.live(batch(put("a", 1)), 0.1)
    (unsent,) = hub.take_outbox().to_client
    assert isinstance(unsent[2], SharedWatchResponse) and unsent[2].watch_ids == [1, 2, 3]
    hub.stalled(C, [(0, unsent[2])], 0.1)
    hub.live(batch(put("a", 2)), 0.2)
    assert hub.take_outbox().to_client == []  # resting
    hub.tick(0.7)
    got = responses(hub)
    assert sorted((r.watch_id, e.kv.mod_revision) for r in got for e in r.events) == [
        (w, rev) for w in (1, 2, 3) for rev in (1, 2)
    ]


def test_a_synced_cohort_is_looked_at_again_when_new_or_rewound() -> None:
    """A cohort that has everything is not looked at until a revision it matches comes: a
    watch created from an older revision still gets that revision, and so does one rewound."""
    hub = started(0, stall_retry_s=0.5)
    create(hub, "a")
    hub.take_outbox()
    hub.live(batch(put("a", 1)), 0.1)
    assert events_of(responses(hub)) == [(1, b"a")]
    hub.tick(0.15)
    assert hub.streams[C].lagging == {} and responses(hub) == []
    create(hub, "a", start_revision=1, now=0.2)  # the window still holds revision 1
    hub.tick(0.25)
    assert events_of(responses(hub)) == [(1, b"a")]
    hub.live(batch(put("a", 2)), 0.3)
    sent = hub.take_outbox().to_client
    hub.stalled(C, [(0, b) for _, _, b in sent], 0.3)
    hub.tick(0.9)
    assert sorted((r.watch_id, e.kv.mod_revision) for r in responses(hub) for e in r.events) == [
        (1, 2),
        (2, 2),
    ]


def test_a_watcher_that_fell_out_of_the_window_reads_history() -> None:
    hub = started(0, window_revisions=3, stall_retry_s=0.5)
    create(hub, "a", start_revision=1)
    responses(hub)
    hub.live(batch(put("a", 1)), 0.1)
    hub.stalled(C, [(0, b) for _, _, b in hub.take_outbox().to_client], 0.1)  # not sent
    for rev in range(2, 8):
        hub.live(batch(put("a", rev)), 0.2)  # the window now holds 5..7 only
    assert hub.take_outbox().to_client == []
    hub.tick(0.7)
    assert hub.take_outbox().to_backend == [(0, WatchHistoryRequest(start_revision=1))]
    history = [put("a", rev) for rev in range(1, 5)]
    hub.history(
        WatchHistoryResponse(header=ResponseHeader(), start_revision=1, revision=4, events=history), 0.8
    )
    assert events_of(responses(hub)) == [(rev, b"a") for rev in range(1, 8)]


def test_progress_on_request_never_runs_ahead_of_any_watcher_on_the_stream() -> None:
    hub = started(10)
    create(hub, "a", watch_id=1)
    create(hub, "b", watch_id=2, start_revision=5)  # catching up: complete only to 4
    responses(hub)
    hub.client(C, 2, WatchRequest(request=WatchProgressRequest()), 0.1)
    (progress,) = [r for r in responses(hub) if r.watch_id == PROGRESS_ALL]
    assert progress.header.revision == 4


def test_periodic_progress_goes_to_idle_synced_watchers_that_asked() -> None:
    hub = started(10, progress_interval_s=1.0)
    create(hub, "a", watch_id=1, progress_notify=True)
    create(hub, "b", watch_id=2, progress_notify=True)
    create(hub, "c", watch_id=3)
    responses(hub)
    hub.tick(0.0)
    hub.live(batch(put("b", 11)), 0.5)
    responses(hub)
    for now in (0.6, 1.0):  # a ping keeps the stream
        hub.client(C, 9, WatchPing(), now)
    hub.take_outbox()
    hub.tick(1.1)
    got = responses(hub)
    assert [(r.watch_id, r.header.revision, r.events) for r in got] == [(1, 11, [])]


def test_ping_cancel_idle_streams_and_bad_requests() -> None:
    hub = started(10, stream_idle_s=5.0)
    hub.client(C, 4, WatchPing(), 0.0)
    ((_, reply_to, pong),) = hub.take_outbox().to_client
    assert reply_to == 4 and pong == WatchPong(revision=10, stream=1)
    create(hub, "a", watch_id=1)
    hub.client(C, 5, WatchRequest(request=WatchCancelRequest(watch_id=1)), 0.1)
    assert [(r.watch_id, r.canceled) for r in responses(hub)] == [(1, False), (1, True)]
    hub.client(C, 6, WatchCreateRequest(key=b"not wrapped"), 0.2)
    ((_, _, err),) = hub.take_outbox().to_client
    assert isinstance(err, ErrorResponse)
    hub.tick(10.0)
    assert hub.streams == {}


def test_every_pong_numbers_the_stream_and_a_stream_made_anew_gets_a_new_number() -> None:
    """A connection ZeroMQ made again under the client's socket, or a stream dropped for
    silence, is a new stream without watchers: its new number tells the client so."""
    hub = started(10, stream_idle_s=5.0)

    def pong(route: bytes, now: float) -> int:
        hub.client(route, 1, WatchPing(), now)
        ((_, _, answer),) = hub.take_outbox().to_client
        assert isinstance(answer, WatchPong)
        return answer.stream

    first = pong(C, 0.0)
    assert pong(C, 1.0) == first and pong(b"other", 1.0) != first  # same stream; another one
    hub.tick(7.0)  # C silent since 1.0: dropped
    assert pong(C, 7.5) not in (first, 0)


def test_streams_and_watchers_per_stream_are_capped_with_etcds_error() -> None:
    hub = started(10, max_streams=2, max_watchers_per_stream=2)
    for watch_id in (1, 2, 3):
        create(hub, "a", watch_id=watch_id)
    refused = responses(hub)[-1]
    assert (refused.watch_id, refused.created, refused.canceled) == (3, True, True)
    assert refused.cancel_reason == TOO_MANY == "etcdserver: too many requests"
    hub.client(C, 5, WatchRequest(request=WatchCancelRequest(watch_id=1)), 0.1)
    create(hub, "a", watch_id=3)  # room again
    assert not responses(hub)[-1].canceled
    hub.client(b"second", 1, WatchPing(), 0.2)
    hub.client(b"third", 9, WatchPing(), 0.2)
    out = hub.take_outbox().to_client
    assert out[-1][:2] == (b"third", 9) and out[-1][2].code == ErrorCode.TOO_MANY_REQUESTS
    assert set(hub.streams) == {C, b"second"}
    hub.live(batch(put("a", 11)), 0.3)
    assert sorted(r.watch_id for r in responses(hub)) == [2, 3]  # the index follows cancels


def test_a_client_that_never_reads_loses_its_watches_and_is_told_why() -> None:
    """Pings refresh a stream, so idle cleanup never ends one whose client sends but never
    reads: its queued replies are bounded instead (a ping's answer replaces the one before)."""
    hub = started(10, max_queued_bytes=2000, stall_retry_s=100.0)
    create(hub, "a", watch_id=1)
    create(hub, "b", watch_id=2)
    hub.stalled(C, [(r, b) for _, r, b in hub.take_outbox().to_client], 0.1)  # never sent
    for i in range(1000):  # pongs do not pile up
        hub.client(C, 100 + i, WatchPing(), 0.2 + i * 0.001)
    assert sum(isinstance(b, WatchPong) for _, b in hub.streams[C].control) == 1
    assert set(hub.streams[C].watchers) == {1, 2}
    hub.client(C, 1, WatchRequest(request=WatchCreateRequest(key=b"c", watch_id=3)), 1.4)  # being checked
    for _ in range(MAX_DEFERRED + 100):  # replies that do pile up: requests never read, beyond those waiting
        hub.client(C, 0, WatchRequest(request=WatchProgressRequest()), 1.5)
    hub.bound()  # as the shell does after every batch
    assert hub.streams[C].watchers == {} and len(hub.index) == 0  # cancelled...
    assert hub.take_outbox().overflowed == [(C, 3)]
    notices = [(b.watch_id, b.created, b.canceled, b.cancel_reason) for _, b in hub.streams[C].control]
    assert notices == [
        (1, True, True, SLOW_STREAM),  # its create answer was still queued: "created" with it
        (2, True, True, SLOW_STREAM),
        (3, True, True, SLOW_STREAM),  # the one being checked ends too
    ]  # ...and told why, once it reads
    answer_checks(hub, AuthCheckResponse(header=ResponseHeader()), 1.55)  # too late: ignored
    for i in range(1000):  # nothing it asks for now is queued: it is not reading
        hub.client(C, 0, WatchRequest(request=WatchProgressRequest()), 1.6)
        create(hub, "d", watch_id=10 + i, now=1.6)
        hub.client(C, 7, WatchPing(), 1.6)
    assert [b.watch_id for _, b in hub.streams[C].control if isinstance(b, WatchResponse)] == [1, 2, 3]
    assert isinstance(hub.streams[C].control[-1][1], WatchPong) and hub.overflows == 1
    assert hub.streams[C].watchers == {} and hub.streams[C].checking == 0
    hub.reading(C)  # a client that reads again starts afresh
    create(hub, "a", watch_id=1, now=2.0)
    assert not hub.streams[C].overflowed and set(hub.streams[C].watchers) == {1}


def test_creates_being_checked_count_against_the_watchers_a_stream_may_have() -> None:
    hub = started(10, max_watchers_per_stream=2)
    for watch_id in (1, 2, 3):  # checked alongside one another
        hub.client(C, watch_id, WatchRequest(request=WatchCreateRequest(key=b"a", watch_id=watch_id)), 0.1)
    hub.client(C, 4, WatchRequest(request=WatchCancelRequest(watch_id=2)), 0.2)  # waits for them
    assert [b.watch_id for _, _, b in hub.out.to_client] == [3]  # refused at once: 2 being checked
    answer_checks(hub, AuthCheckResponse(header=ResponseHeader()), 0.3)
    got = [(b.watch_id, b.created, b.canceled, b.cancel_reason) for _, _, b in hub.out.to_client]
    assert got == [
        (3, True, True, TOO_MANY),
        (1, True, False, ""),
        (2, True, False, ""),
        (2, False, True, ""),
    ]
    assert set(hub.streams[C].watchers) == {1} and hub.streams[C].checking == 0
    hub.client(C, 10, WatchRequest(request=WatchCreateRequest(key=b"b", watch_id=10)), 0.4)
    for i in range(MAX_DEFERRED + 1):  # behind a create being checked: waiting requests are bounded
        hub.client(C, 11 + i, WatchRequest(request=WatchProgressRequest()), 0.4)
    assert len(hub.streams[C].deferred) == MAX_DEFERRED
    assert hub.out.to_client[-1][2].code == ErrorCode.TOO_MANY_REQUESTS


def test_creates_before_the_first_revision_is_known_wait_for_it() -> None:
    hub = HubCore()
    create(hub, "a", watch_id=1)
    assert responses(hub) == []
    hub.live(heartbeat(20), 0.1)
    (created,) = responses(hub)
    assert created.created and created.header.revision == 20


def test_a_duplicate_watch_id_is_refused_on_that_stream_only() -> None:
    hub = started(10)
    create(hub, "a", watch_id=1)
    create(hub, "a", watch_id=1)
    create(hub, "a", watch_id=1, route=b"other")
    got = responses(hub)
    assert [(r.created, r.canceled) for r in got] == [(True, False), (True, True), (True, False)]
    create(hub, "a")  # a server-chosen id skips the taken one
    (auto,) = responses(hub)
    assert auto.watch_id == 2


def test_responses_for_one_client_go_out_together_in_order_replies_alone() -> None:
    hub = started(0)
    for _ in range(5):
        create(hub, "a", route=C)
    create(hub, "a", route=b"other")
    hub.client(C, 7, WatchPing(), 0.0)
    hub.take_outbox()
    hub.live(batch(put("a", 1)), 0.1)
    hub.client(C, 8, WatchPing(), 0.1)
    hub.live(batch(put("a", 2)), 0.2)
    sends = batched(hub.take_outbox().to_client, max_bytes=1 << 20)
    mine = [s for s in sends if s.route == C]
    assert [type(s.body).__name__ for s in mine] == ["WatchResponses", "WatchPong", "WatchResponses"]
    assert [s.reply_to for s in mine] == [0, 8, 0]
    first = mine[0].body.responses  # the core's one shared response, one per watcher again
    assert [(r.watch_id, r.events[0].kv.mod_revision) for r in first] == [(n, 1) for n in range(1, 6)]
    assert [b for _, b in mine[0].items] == first  # what goes back to ``stalled`` if unsent
    other = [s for s in sends if s.route == b"other"]
    assert [type(s.body).__name__ for s in other] == ["WatchResponses"]
    assert [len(s.items) for s in other] == [2]


def test_a_batch_stays_near_its_byte_limit() -> None:
    hub = started(0)
    for n in range(10):
        create(hub, f"k{n}")
    hub.take_outbox()
    hub.live(batch(*(put(f"k{n}", 1, "x" * 1000) for n in range(10))), 0.1)
    sends = batched(hub.take_outbox().to_client, max_bytes=3000)
    assert [len(s.items) for s in sends] == [2, 2, 2, 2, 2]


def test_shared_encoding_is_the_plain_encoding() -> None:
    hub = started(0)
    for n in range(3):
        create(hub, "a", prev_kv=n == 0)
    hub.take_outbox()
    hub.live(batch(put("a", 1, prev="old"), put("b", 1)), 0.1)
    hub.client(C, 9, WatchRequest(request=WatchProgressRequest()), 0.1)
    (send,) = batched(hub.take_outbox().to_client, max_bytes=1 << 20)
    shared: dict[Any, Any] = {}
    got = decode(encode_sharing(send.body, shared))  # a client that reads no shared responses
    assert isinstance(got, WatchResponses) and got == send.body and len(got.responses) == 4
    assert got.each()[-1].watch_id == PROGRESS_ALL
    assert len(shared) == 3  # with and without prev_kv, and the progress: 3 encodings for 4


def test_a_run_of_watchers_that_get_the_same_share_one_response() -> None:
    """A stream's watches that asked the same from the same revision are one cohort, and a run
    of cohorts that get the same response (header and events) share one
    ``SharedWatchResponse``, sent as it is to a client whose pings say it reads them and as
    one response per watcher, in the same order, to any other."""
    hub = started(0)
    hub.client(C, 1, WatchPing(shared=True), 0.0)
    for n in range(5):
        create(hub, "a", prev_kv=n == 3)
    hub.take_outbox()
    hub.live(batch(put("a", 1, prev="old")), 0.1)
    hub.live(batch(put("a", 2)), 0.1)
    out = hub.take_outbox().to_client
    assert hub.streams[C].shared
    (send,) = batched(out, max_bytes=1 << 20, grouped=frozenset({C}))
    got = decode(encode_sharing(send.body, {}))
    assert isinstance(got, WatchResponses) and got == send.body
    wire = [r.watch_ids if isinstance(r, SharedWatchResponse) else r.watch_id for r in got.responses]
    # 5 asked what 1-3 asked and joined their cohort; 4 wants prev_kv, which revision 1 has
    assert wire == [[1, 2, 3, 5], 4, [1, 2, 3, 5, 4]]
    (plain_send,) = batched(out, max_bytes=1 << 20)  # a client that did not say so: one per watcher
    plain = decode(encode_sharing(plain_send.body, {}))
    assert isinstance(plain, WatchResponses) and plain.responses == got.each()
    assert [(r.watch_id, r.header.revision) for r in plain.each()] == [
        *((n, 1) for n in (1, 2, 3, 5, 4)),
        *((n, 2) for n in (1, 2, 3, 5, 4)),
    ]
    assert [b for _, b in plain_send.items] == plain.responses  # rewound one by one if unsent


def test_a_watch_is_created_only_once_a_member_allowed_its_token_and_refused_as_etcd_otherwise() -> None:
    hub = started(10)
    hub.client(C, 1, WatchRequest(request=WatchCreateRequest(key=b"/a/x", watch_id=3)), 0.0, token="tok")
    assert hub.out.to_client == []  # nothing before the member's answer
    (check,) = answer_checks(hub, error_response(ErrorCode.PERMISSION_DENIED))
    assert check == AuthCheckRequest(token="tok", key=b"/a/x", range_end=b"")
    (refused,) = responses(hub)
    assert refused.created and refused.canceled and refused.watch_id == 3
    assert refused.cancel_reason == "etcdserver: permission denied"
    hub.live(batch(put("/a/x", 11)), 0.1)
    assert responses(hub) == [] and hub.watcher_count == 0


def test_an_unanswered_auth_check_is_asked_again_and_a_cancel_behind_it_waits() -> None:
    hub = started(10, history_timeout_s=1.0)
    hub.client(C, 1, WatchRequest(request=WatchCreateRequest(key=b"a", watch_id=1)), 0.0, token="t")
    hub.client(C, 2, WatchRequest(request=WatchCreateRequest(key=b"b", watch_id=2)), 0.0, token="t")
    hub.client(C, 3, WatchRequest(request=WatchCancelRequest(watch_id=2)), 0.1)
    hub.take_outbox()  # both checks lost (say, the member's gateway restarted)
    hub.tick(0.5)
    assert hub.out.to_backend == []
    hub.tick(2.0)
    again = answer_checks(hub, AuthCheckResponse(header=ResponseHeader()), 2.0)
    assert again == [AuthCheckRequest(token="t", key=b"a"), AuthCheckRequest(token="t", key=b"b")]
    got = [(r.watch_id, r.created, r.canceled) for r in responses(hub)]
    assert got == [(1, True, False), (2, True, False), (2, False, True)]  # in the order asked
    assert hub.watcher_count == 1


def test_an_unwatched_hub_keeps_no_events_and_later_watchers_read_history() -> None:
    hub = started(10)
    assert not hub.watching
    hub.skip(11, 12, 3)  # what the shell passes for a batch nobody watches
    hub.skip(11, 12, 3)  # replayed: ignored
    assert (hub.revision, hub.compact_revision, hub.window) == (12, 3, {})
    create(hub, "a", start_revision=11)
    create(hub, "b", watch_id=5)  # from now: 13 on
    assert hub.watching
    out = hub.take_outbox()
    assert out.to_backend == [(0, WatchHistoryRequest(start_revision=11))]
    assert [r.header.revision for _, _, r in out.to_client if isinstance(r, WatchResponse)] == [12, 12]
    hub.live(batch(put("b", 13)), 0.1)
    (got,) = responses(hub)
    assert got.watch_id == 5 and events_of([got]) == [(13, b"b")]


def test_an_idle_hub_stops_listening_and_takes_now_from_the_members_answer_to_a_create() -> None:
    hub = started(10)
    assert not hub.listening  # no watcher: the shell unsubscribes, the hub's revision goes stale
    hub.client(C, 1, WatchRequest(request=WatchCreateRequest(key=b"a", watch_id=1)), 0.0, token="t")
    assert hub.listening  # listening again while the create is checked
    answer_checks(hub, AuthCheckResponse(header=ResponseHeader(revision=50)))
    (created,) = responses(hub)
    assert created.created and created.header.revision == 50  # now is the member's revision
    hub.live(batch(put("a", 50)), 0.1)  # published before the watch existed: not for it
    assert responses(hub) == []
    hub.live(batch(put("a", 53)), 0.2)  # 51 and 52 went by before the subscription took
    out = hub.take_outbox()
    assert [b for _, _, b in out.to_client] == [] and out.to_backend == [
        (0, WatchHistoryRequest(start_revision=51))
    ]
    hub.history(
        WatchHistoryResponse(
            header=ResponseHeader(), start_revision=51, revision=52, events=[put("a", 51), put("b", 52)]
        ),
        0.3,
    )
    assert events_of(responses(hub)) == [(51, b"a"), (53, b"a")]
    answer = AuthCheckResponse(header=ResponseHeader(revision=99))  # a member ahead of the stream
    hub.client(C, 2, WatchRequest(request=WatchCreateRequest(key=b"b", watch_id=2)), 0.4, token="t")
    answer_checks(hub, answer, 0.4)
    (created,) = responses(hub)
    assert created.header.revision == 53  # while watching, the live stream says what now is
    hub.client(C, 3, WatchRequest(request=WatchCancelRequest(watch_id=1)), 0.5)
    hub.client(C, 4, WatchRequest(request=WatchCancelRequest(watch_id=2)), 0.5)
    assert not hub.listening


def test_the_hub_names_its_cluster_and_refuses_a_client_of_another() -> None:
    hub = started(cluster_id=0xA)
    hub.client(C, 7, WatchPing(cluster_id=0xA), 0.0)
    ((_, reply_to, pong),) = hub.take_outbox().to_client
    assert reply_to == 7 and isinstance(pong, WatchPong) and pong.cluster_id == 0xA
    other = b"other"
    hub.client(other, 8, WatchPing(cluster_id=0xB), 0.0)
    hub.client(other, 9, WatchRequest(request=WatchCreateRequest(key=b"a")), 0.0, token="t")
    answers = hub.take_outbox().to_client
    assert [a[1] for a in answers] == [8, 9]
    for _, _, refused in answers:
        assert isinstance(refused, ErrorResponse) and refused.code == ErrorCode.CLUSTER_ID_MISMATCH
        assert "cluster ID mismatch" in refused.message and "serves cluster a" in refused.message
    assert hub.out.to_backend == []  # nothing asked of the member for it
    assert not hub.streams[other].watchers


def test_the_hub_drops_another_clusters_event_stream_and_says_so_to_a_watcher() -> None:
    hub = HubCore(cluster_id=0xA)
    hub.live(dataclass_replace(heartbeat(10), cluster_id=0xB), 0.0)
    assert hub.revision is None and hub.foreign_batches == 1
    hub.client(C, 1, WatchRequest(request=WatchCreateRequest(key=b"a")), 0.0, token="t")
    answer_checks(hub, AuthCheckResponse(header=ResponseHeader(cluster_id=0xA)))
    (refused,) = responses(hub)
    assert refused.created and refused.canceled and "another cluster" in refused.cancel_reason
    hub.live(dataclass_replace(heartbeat(10), cluster_id=0xA), 0.0)  # its own stream is served
    assert hub.revision == 10


def test_a_stream_is_answered_in_the_order_it_asked() -> None:
    """As etcd: a cancel and a progress request behind a create being checked are answered
    after that create, not before."""
    hub = started(10)
    create(hub, "a", watch_id=1)
    hub.take_outbox()
    hub.client(C, 2, WatchRequest(request=WatchCreateRequest(key=b"b", watch_id=2)), 0.1, token="t")
    hub.client(C, 3, WatchRequest(request=WatchCancelRequest(watch_id=1)), 0.1)
    hub.client(C, 4, WatchRequest(request=WatchProgressRequest()), 0.1)
    assert hub.out.to_client == []  # all wait for the member's word on watch 2
    answer_checks(hub, AuthCheckResponse(header=ResponseHeader()), 0.2)
    got = [(b.watch_id, b.created, b.canceled) for _, _, b in hub.take_outbox().to_client]
    assert got == [(2, True, False), (1, False, True), (PROGRESS_ALL, False, False)]


def test_watches_asking_the_same_from_the_same_revision_are_one_cohort() -> None:
    """One cohort is matched, sent and rewound once: watches of a key created at one revision
    with the same filters share it; another revision, other filters, a progress or fragment
    watch each make one of their own."""
    hub = started(10)
    for _ in range(3):
        create(hub, "a")
    create(hub, "a", prev_kv=True)
    create(hub, "a", progress_notify=True)
    create(hub, "a", start_revision=12)
    assert [list(c.ids) for c in hub.streams[C].cohorts] == [[1, 2, 3], [4], [5], [6]]
    assert len(hub.index) == 4
    hub.live(batch(put("a", 11)), 0.1)
    hub.take_outbox()
    hub.live(batch(put("a", 12)), 0.2)
    (shared,) = [b for _, _, b in hub.take_outbox().to_client]  # all six alike at revision 12
    assert isinstance(shared, SharedWatchResponse) and shared.watch_ids == [1, 2, 3, 4, 5, 6]
    create(hub, "a")  # from now: joins the newest cohort of its kind, which needs 13 next too
    assert [list(c.ids) for c in hub.streams[C].cohorts] == [[1, 2, 3], [4], [5], [6, 7]]


def test_a_watch_cancelled_leaves_its_cohort_and_the_last_one_ends_it() -> None:
    hub = started(10)
    for _ in range(3):
        create(hub, "a")
    hub.take_outbox()
    hub.client(C, 2, WatchRequest(request=WatchCancelRequest(watch_id=2)), 0.1)
    hub.live(batch(put("a", 11)), 0.2)
    got = responses(hub)
    assert [(r.watch_id, r.canceled, events_of([r])) for r in got] == [
        (2, True, []),
        (1, False, [(11, b"a")]),
        (3, False, [(11, b"a")]),
    ]
    for watch_id in (1, 3):
        hub.client(C, 3, WatchRequest(request=WatchCancelRequest(watch_id=watch_id)), 0.3)
    assert hub.streams[C].cohorts == {} and len(hub.index) == 0 and hub.watcher_count == 0


def test_watches_whose_send_failed_apart_from_their_cohort_leave_it_and_get_it_again() -> None:
    """A client that reads no shared responses gets one per watch, sent in batches: when the
    first batch went out and the next did not, the watches of that one are sent the revision
    again, the others are not (nothing doubled, nothing lost), and the cohort splits."""
    hub = started(0, stall_retry_s=0.5)
    for _ in range(4):
        create(hub, "a")
    hub.take_outbox()
    hub.live(batch(put("a", 1)), 0.1)
    first, second = batched(hub.take_outbox().to_client, max_bytes=200)  # 2 watches each
    assert [b.watch_id for _, b in first.items] == [1, 2]
    hub.stalled(C, second.items, 0.1)
    assert [list(c.ids) for c in hub.streams[C].cohorts] == [[1, 2], [3, 4]]
    hub.live(batch(put("a", 2)), 0.2)
    assert hub.take_outbox().to_client == []  # resting
    hub.tick(0.7)
    got = sorted((r.watch_id, e.kv.mod_revision) for r in responses(hub) for e in r.events)
    assert got == [(1, 2), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2)]


def test_a_cohort_behind_the_compaction_ends_every_watch_of_it() -> None:
    hub = started(0, window_revisions=2)
    for _ in range(2):
        create(hub, "a", start_revision=1)
    hub.live(batch(put("a", 5), compact=4), 0.1)  # a gap: 1..4 come from history, compacted
    got = [r for r in responses(hub) if r.canceled]
    assert [(r.watch_id, r.compact_revision, r.cancel_reason) for r in got] == [
        (1, 4, CANCELED_COMPACTED),
        (2, 4, CANCELED_COMPACTED),
    ]
    assert hub.streams[C].cohorts == {} and len(hub.index) == 0


def test_a_watch_its_revisions_passed_by_still_gets_the_next_of_its_key_and_a_gap_for_it() -> None:
    """A cohort that has everything is not looked at for revisions it does not match; it is
    still complete up to each of them (progress says so), gets the next event of its key, and
    across a gap in the live stream reads what it missed from history."""
    hub = started(0, window_revisions=3)
    create(hub, "a")
    create(hub, "b")
    hub.take_outbox()
    for rev in range(1, 6):
        hub.live(batch(put("a", rev)), 0.1)
    assert {r.watch_id for r in responses(hub)} == {1}
    hub.client(C, 2, WatchRequest(request=WatchProgressRequest()), 0.2)
    (progress,) = responses(hub)
    assert progress.watch_id == PROGRESS_ALL and progress.header.revision == 5
    hub.live(batch(put("b", 6)), 0.3)
    (got,) = responses(hub)
    assert (got.watch_id, events_of([got]), got.header.revision) == (2, [(6, b"b")], 6)
    hub.live(batch(put("a", 9)), 0.4)  # 7 and 8 dropped on the way
    out = hub.take_outbox()
    assert out.to_client == [] and out.to_backend == [(0, WatchHistoryRequest(start_revision=7))]
    missed = WatchHistoryResponse(
        header=ResponseHeader(), start_revision=7, revision=8, events=[put("b", 7), put("a", 8)]
    )
    hub.history(missed, 0.5)
    got_by_watch = {(r.watch_id, e.kv.mod_revision) for r in responses(hub) for e in r.events}
    assert got_by_watch == {(2, 7), (1, 8), (1, 9)}
    assert hub.streams[C].lagging == {}
