"""The MVCC store's revision rules, one story each, on a real LevelDB."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from actors.mvcc.store import MvccStore
from etcdz import ops
from etcdz.ops import Value, Version
from proto_schemas.codec import decode
from proto_schemas.errors import ErrorCode, ErrorResponse, EtcdzError
from proto_schemas.internal import InternalRequest
from proto_schemas.kv import (
    CompactionRequest,
    RangeRequest,
    RangeStreamRequest,
    SortOrder,
    SortTarget,
)


class Harness:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = plyvel.DB(str(path), create_if_missing=True)
        self.store = MvccStore(self.db, cluster_id=1, member_id=2)
        self.index = itertools.count(self.store.consistent_index + 1)

    def apply(self, *requests: Any) -> list[Any]:
        batch = [
            (next(self.index), 1, InternalRequest(request_id=i, request=r)) for i, r in enumerate(requests)
        ]
        return [decode(r.body) for r in self.store.apply(batch)]

    def one(self, request: Any) -> Any:
        (resp,) = self.apply(request)
        return resp

    def get(self, key: str | bytes, **options: Any) -> Any:
        return self.store.range(ops.get(key, **options), 1)

    def reopen(self) -> None:
        self.db.close()
        self.__init__(self.path)  # type: ignore[misc]


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "db")
    yield harness
    harness.db.close()


def test_revisions_versions_and_tombstones(h: Harness) -> None:
    assert h.store.current_revision == 1
    assert h.one(ops.put("k", "1")).header.revision == 2
    h.one(ops.put("k", "2"))
    kv = h.get("k").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version, kv.value) == (2, 3, 2, b"2")
    assert h.one(ops.delete("k")).deleted == 1
    assert h.store.current_revision == 4
    assert h.one(ops.delete("k")).header.revision == 4  # deleting nothing takes no revision
    h.one(ops.put("k", "3"))
    kv = h.get("k").kvs[0]
    assert (kv.create_revision, kv.version) == (5, 1)
    assert h.get("k", revision=3).kvs[0].value == b"2"
    assert h.get("k", revision=4).kvs == []


def test_prev_kv_ignore_value_and_lease(h: Harness) -> None:
    h.one(ops.put("k", "1"))
    assert h.one(ops.put("k", "2", prev_kv=True)).prev_kv.value == b"1"
    assert h.one(ops.put("k", "", ignore_value=True)).header.revision == 4
    assert h.get("k").kvs[0].value == b"2"
    missing = h.one(ops.put("nope", "", ignore_value=True))
    assert isinstance(missing, ErrorResponse) and missing.code == ErrorCode.KEY_NOT_FOUND
    leased = h.one(ops.put("k", "v", lease=7))
    assert isinstance(leased, ErrorResponse) and leased.code == ErrorCode.LEASE_NOT_FOUND
    assert h.store.current_revision == 4  # failed requests take no revision
    deleted = h.one(ops.delete("k", prev_kv=True))
    assert deleted.prev_kvs[0].value == b"2"


def test_txn_one_revision_and_reads_see_earlier_writes(h: Harness) -> None:
    resp = h.one(ops.txn([], [ops.put("a", "1"), ops.put("b", "2"), ops.get("a"), ops.delete("b")]))
    assert resp.succeeded and resp.header.revision == 2
    assert resp.responses[2].kvs[0].value == b"1"
    assert resp.responses[3].deleted == 1
    assert all(r.header.revision == 2 for r in resp.responses)
    a = h.get("a").kvs[0]
    assert (a.mod_revision, a.create_revision) == (2, 2)
    read_only = h.one(ops.txn([], [ops.get("a")]))
    assert read_only.header.revision == 2


@pytest.mark.parametrize(
    "compare, holds",
    [
        (Value("k") == "v", True),
        (Value("k") != "v", False),
        (Value("k") > "u", True),
        (Value("k") < "u", False),
        (Version("k") == 1, True),
        (Version("missing") == 0, True),
        (Value("missing") == "", False),  # a value compare on a missing key is false
        (Version("k", prefix=True) > 0, True),
        (Version("", "\0") > 0, True),
        (ops.CreateRevision("k") == 2, True),
        (ops.ModRevision("k") < 2, False),
        (ops.LeaseId("k") == 0, True),
    ],
)
def test_compares(h: Harness, compare: Any, holds: bool) -> None:
    h.one(ops.put("k", "v"))
    h.one(ops.put("k2", "w"))
    assert h.one(ops.txn([compare], [ops.get("k")], [])).succeeded is holds


def test_nested_txn(h: Harness) -> None:
    resp = h.one(ops.txn([], [ops.txn([Version("x") == 0], [ops.put("x", "1")], [ops.put("y", "1")])]))
    assert resp.responses[0].succeeded and h.get("x").kvs[0].value == b"1"


def test_range_options(h: Harness) -> None:
    h.apply(*[ops.put(f"r/{i}", f"{9 - i}") for i in range(5)])
    resp = h.get("r/", prefix=True, limit=2)
    assert [kv.key for kv in resp.kvs] == [b"r/0", b"r/1"] and resp.more and resp.count == 5
    by_value = h.get("r/", prefix=True, sort_target=SortTarget.VALUE)
    assert [kv.value for kv in by_value.kvs] == [b"5", b"6", b"7", b"8", b"9"]
    desc = h.get("r/", prefix=True, sort_order=SortOrder.DESCEND)
    assert desc.kvs[0].key == b"r/4"
    assert h.get("r/", prefix=True, count_only=True).kvs == []
    assert h.get("r/", prefix=True, keys_only=True).kvs[0].value == b""
    assert [kv.key for kv in h.get("r/3", from_key=True).kvs] == [b"r/3", b"r/4"]
    filtered = h.get("r/", prefix=True, min_mod_revision=4, max_mod_revision=5)
    assert [kv.key for kv in filtered.kvs] == [b"r/2", b"r/3"]


def test_keys_with_zero_and_ff_bytes_keep_byte_order(h: Harness) -> None:
    keys = [b"a", b"a\x00", b"a\x00\x00", b"a\x01", b"a\xff", b"a\xff\x00", b"b"]
    h.apply(*[ops.put(k, b"v") for k in reversed(keys)])
    assert [kv.key for kv in h.get(b"a", range_end=b"c").kvs] == keys
    assert [kv.key for kv in h.get(b"a\x00", prefix=True).kvs] == [b"a\x00", b"a\x00\x00"]
    assert h.get(b"a\x00").kvs[0].key == b"a\x00"


def test_compaction(h: Harness) -> None:
    h.one(ops.put("k", "1"))  # 2
    h.one(ops.put("gone", "x"))  # 3
    h.one(ops.put("k", "2"))  # 4
    h.one(ops.delete("gone"))  # 5
    h.one(CompactionRequest(revision=4))
    with pytest.raises(EtcdzError) as err:
        h.get("k", revision=3)
    assert err.value.code == ErrorCode.COMPACTED
    assert h.get("k", revision=4).kvs[0].value == b"2"
    assert h.get("gone", revision=4).kvs[0].value == b"x"
    h.one(CompactionRequest(revision=5))
    assert not any(b"gone" in k for k, _ in h.db.iterator())  # deleted at or before 5: gone entirely
    assert h.one(CompactionRequest(revision=5)).code == ErrorCode.COMPACTED
    assert h.one(CompactionRequest(revision=99)).code == ErrorCode.FUTURE_REV
    with pytest.raises(EtcdzError) as err:
        h.get("k", revision=99)
    assert err.value.code == ErrorCode.FUTURE_REV


def test_replay_is_idempotent_and_durable(h: Harness) -> None:
    batch = [
        (1, 1, InternalRequest(request_id=1, request=ops.put("k", "1"))),
        (2, 1, InternalRequest(request_id=2, request=ops.put("k", "2"))),
    ]
    assert len(h.store.apply(batch)) == 2
    assert h.store.apply(batch) == []  # both at or below the consistent index
    h.reopen()
    assert (h.store.consistent_index, h.store.current_revision) == (2, 3)
    assert h.store.apply(batch) == []
    assert h.get("k").kvs[0].version == 2
    h.store.apply([], last_index=5)  # entries without requests still advance the index
    assert h.store.consistent_index == 5


def test_range_stream_is_pinned_to_one_revision(h: Harness) -> None:
    h.apply(*[ops.put(f"s/{i:03d}", "v" * 100) for i in range(50)])
    request = RangeStreamRequest(range=ops.get("s/", prefix=True), chunk_bytes=1000)
    first = h.store.range_stream(request, 1)
    pinned = RangeRequest(key=b"s/", range_end=b"s0", revision=first.header.revision)
    h.apply(ops.put("s/000", "changed"), ops.delete("s/049"))
    chunks, resume = [first], first.resume_key
    while resume:
        chunk = h.store.range_stream(RangeStreamRequest(range=pinned, chunk_bytes=1000, resume_key=resume), 1)
        chunks.append(chunk)
        resume = chunk.resume_key
    kvs = [kv for c in chunks for kv in c.kvs]
    assert len(chunks) > 5 and [kv.key for kv in kvs] == [b"s/%03d" % i for i in range(50)]
    assert kvs[0].value == b"v" * 100


def test_range_stream_never_reads_outside_its_range_whatever_the_resume_key(h: Harness) -> None:
    h.apply(ops.put("a/secret", "s"), ops.put("b/public", "p"), ops.put("b/q", "q"), ops.put("c", "c"))
    one = ops.get("b/public")
    prefix = ops.get("b/", prefix=True)
    for request, resume, keys in (
        (one, b"\x00", [b"b/public"]),  # before the range: clamped to its start
        (prefix, b"\x00", [b"b/public", b"b/q"]),
        (prefix, b"b/q", [b"b/q"]),  # inside: resumed there
        (prefix, b"c", []),  # at or past the end: nothing
        (one, b"b/q", []),
        (ops.get("b/q", from_key=True), b"a", [b"b/q", b"c"]),
    ):
        chunk = h.store.range_stream(RangeStreamRequest(range=request, resume_key=resume), 1)
        assert [kv.key for kv in chunk.kvs] == keys, (request, resume)
        assert chunk.resume_key == b""


def test_hash_kv_follows_history(tmp_path: Path) -> None:
    a, b = Harness(tmp_path / "a"), Harness(tmp_path / "b")
    for h in (a, b):
        h.apply(ops.put("k", "1"), ops.put("j", "2"))
    assert a.store.hash_kv(0)[0] == b.store.hash_kv(0)[0]
    b.apply(ops.put("k", "other"))
    a.apply(ops.put("k", "3"))
    assert a.store.hash_kv(0)[0] != b.store.hash_kv(0)[0]
    assert a.store.hash_kv(3)[0] == b.store.hash_kv(3)[0]
