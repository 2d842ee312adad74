"""The backend's events for watch hubs: made while applying, and read back from history."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mvcc_rules import Harness

from etcdz import ops
from proto_schemas.kv import CompactionRequest, EventType
from proto_schemas.lease import LeaseGrantRequest, LeaseRevokeRequest
from proto_schemas.watch import Event


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "db")
    yield harness
    harness.db.close()


def brief(events: list[Event]) -> list[tuple[str, int, bytes, bytes | None]]:
    return [
        (e.type.name, e.kv.mod_revision, e.kv.key, e.prev_kv.value if e.prev_kv else None) for e in events
    ]


def test_puts_deletes_and_txns_make_events_with_previous_versions(h: Harness) -> None:
    h.apply(ops.put("a", "1"), ops.put("a", "2"), ops.put("b", "x"), ops.put("c", "y"))
    h.one(ops.delete("b", range_end="d"))
    h.one(ops.txn([], [ops.put("d", "1"), ops.put("e", "1"), ops.delete("a")], []))
    assert brief(h.store.take_events()) == [
        ("PUT", 2, b"a", None),
        ("PUT", 3, b"a", b"1"),
        ("PUT", 4, b"b", None),
        ("PUT", 5, b"c", None),
        ("DELETE", 6, b"b", b"x"),
        ("DELETE", 6, b"c", b"y"),
        ("PUT", 7, b"d", None),
        ("PUT", 7, b"e", None),
        ("DELETE", 7, b"a", b"2"),
    ]
    assert h.store.take_events() == []


def test_a_lease_revoke_deletes_its_keys_as_events_of_one_revision(h: Harness) -> None:
    h.one(LeaseGrantRequest(id=5, ttl=60))
    h.apply(ops.put("k1", "v", lease=5), ops.put("k2", "v", lease=5))
    h.store.take_events()
    h.one(LeaseRevokeRequest(id=5))
    assert brief(h.store.take_events()) == [("DELETE", 4, b"k1", b"v"), ("DELETE", 4, b"k2", b"v")]


def test_failed_requests_compaction_and_deleting_nothing_make_no_events(h: Harness) -> None:
    h.one(ops.put("a", "1"))
    h.store.take_events()
    h.one(ops.put("b", "1", lease=99))  # unknown lease
    h.one(ops.txn([], [ops.put("c", "1"), ops.put("d", "1", lease=99)], []))
    h.one(ops.delete("nothing"))
    h.one(CompactionRequest(revision=2))
    assert h.store.take_events() == []


def test_history_reads_back_exactly_the_events_made_live(h: Harness) -> None:
    rng = random.Random(7)
    live: list[Event] = []
    for _ in range(200):
        key = f"k{rng.randrange(12)}"
        pick = rng.random()
        if pick < 0.6:
            h.one(ops.put(key, str(rng.random())))
        elif pick < 0.8:
            h.one(ops.delete(key))
        else:
            h.one(ops.txn([], [ops.put(key, "t"), ops.delete(f"k{rng.randrange(12, 20)}")], []))
        live += h.store.take_events()
    read = h.store.history(1, 1 << 30)
    assert read.events == live
    assert read.revision == h.store.current_revision
    middle = live[len(live) // 2].kv.mod_revision
    tail = h.store.history(middle, 1 << 30)
    assert tail.events == [e for e in live if e.kv.mod_revision >= middle]


def test_history_stops_at_a_revision_boundary_but_returns_at_least_one(h: Harness) -> None:
    h.one(ops.txn([], [ops.put(f"big{i}", "x" * 1000) for i in range(5)], []))  # revision 2
    h.apply(*[ops.put(f"k{i}", "x" * 100) for i in range(10)])  # revisions 3..12
    first = h.store.history(1, 1)
    assert first.revision == 2 and len(first.events) == 5  # one whole (large) revision
    some = h.store.history(3, 300)
    assert some.revision < h.store.current_revision
    assert {e.kv.mod_revision for e in some.events} == set(range(3, some.revision + 1))


def test_history_past_the_end_and_below_the_compaction(h: Harness) -> None:
    h.apply(ops.put("a", "1"), ops.put("a", "2"), ops.put("a", "3"))
    ahead = h.store.history(10, 1 << 20)
    assert ahead.events == [] and ahead.revision == h.store.current_revision
    h.one(CompactionRequest(revision=3))
    gone = h.store.history(2, 1 << 20)
    assert gone.events == [] and gone.compact_revision == 3
    kept = h.store.history(4, 1 << 20)
    assert brief(kept.events) == [("PUT", 4, b"a", b"2")]  # its previous version survived
    h.one(ops.put("b", "1"))
    h.one(CompactionRequest(revision=5))
    (after,) = h.store.history(5, 1 << 20).events
    assert after.type == EventType.PUT and after.kv.key == b"b"


def test_no_event_is_made_while_nobody_listens(h: Harness) -> None:
    """The shell turns events off while no hub subscribes; the writes are the same."""
    h.store.events_wanted = False
    h.apply(ops.put("a", "1"), ops.put("b", "1"))
    h.one(ops.delete("a"))
    assert h.store.take_events() == [] and h.store.current_revision == 4
    h.store.events_wanted = True
    h.one(ops.put("a", "2"))
    assert brief(h.store.take_events()) == [("PUT", 5, b"a", None)]
    assert h.get("a").kvs[0].create_revision == 5  # created again after its delete
