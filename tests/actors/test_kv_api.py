"""etcd's KV API through the SDK against one real node (five actor processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from etcdz import Client, ModRevision, Value, Version, ops
from etcdz.errors import (
    Compacted,
    DuplicateKey,
    EmptyKey,
    FutureRevision,
    RequestTooLarge,
    TooManyOperations,
)
from proto_schemas.kv import RangeResponse, SortOrder, SortTarget, TxnResponse
from tools.cluster import LocalCluster


@pytest.fixture(scope="module")
def c(shared_node: LocalCluster) -> Iterator[Client]:
    client = shared_node.client()
    yield client
    client.close()


def test_put_get_delete_and_revisions(c: Client) -> None:
    first = c.put("/kv/a", "1")
    rev = first.header.revision
    assert first.header.cluster_id and first.header.member_id and first.header.raft_term
    second = c.put("/kv/a", "2", prev_kv=True)
    assert second.header.revision == rev + 1
    assert second.prev_kv is not None and second.prev_kv.value == b"1"
    kv = c.get("/kv/a").kvs[0]
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"2", rev, rev + 1, 2)
    old = c.get("/kv/a", revision=rev).kvs[0]
    assert old.value == b"1" and old.version == 1
    deleted = c.delete("/kv/a", prev_kv=True)
    assert deleted.deleted == 1 and deleted.prev_kvs[0].value == b"2"
    assert deleted.header.revision == rev + 2
    assert c.get("/kv/a").kvs == []
    nothing = c.delete("/kv/a")
    assert nothing.deleted == 0 and nothing.header.revision == rev + 2  # no new revision
    again = c.put("/kv/a", "3")
    kv = c.get("/kv/a").kvs[0]
    assert kv.version == 1 and kv.create_revision == again.header.revision


def test_ranges_prefix_limit_sort_and_counts(c: Client) -> None:
    for i in range(5):
        c.put(f"/range/{i}", f"v{4 - i}")
    c.put("/rangeX", "outside")
    resp = c.get("/range/", prefix=True, limit=2)
    assert [kv.key for kv in resp.kvs] == [b"/range/0", b"/range/1"]
    assert resp.more and resp.count == 5
    desc = c.get("/range/", prefix=True, sort_order=SortOrder.DESCEND, sort_target=SortTarget.VALUE)
    assert [kv.value for kv in desc.kvs] == [b"v4", b"v3", b"v2", b"v1", b"v0"]
    assert c.get("/range/", prefix=True, count_only=True).count == 5
    assert c.get("/range/", prefix=True, count_only=True).kvs == []
    keys = c.get("/range/", prefix=True, keys_only=True).kvs
    assert keys[0].value == b"" and keys[0].key == b"/range/0"
    assert len(c.get("/range/3", from_key=True).kvs) >= 3  # /range/3, /range/4, /rangeX, ...
    assert [kv.key for kv in c.get("/range/1", range_end="/range/3").kvs] == [b"/range/1", b"/range/2"]
    serial = c.get("/range/", prefix=True, serializable=True)
    assert serial.count == 5


def test_txn_compare_and_swap(c: Client) -> None:
    c.put("/txn/k", "v1")
    ok = (
        c.transaction()
        .when(Value("/txn/k") == "v1")
        .then(ops.put("/txn/k", "v2"), ops.get("/txn/k"))
        .otherwise(ops.get("/txn/k"))
        .commit()
    )
    assert ok.succeeded and isinstance(read := ok.responses[1], RangeResponse)
    assert read.kvs[0].value == b"v2"
    lost = (
        c.transaction()
        .when(Value("/txn/k") == "v1")
        .then(ops.put("/txn/k", "v3"))
        .otherwise(ops.get("/txn/k"))
        .commit()
    )
    assert not lost.succeeded and isinstance(read := lost.responses[0], RangeResponse)
    assert read.kvs[0].value == b"v2"
    rev = c.get("/txn/k").kvs[0].mod_revision
    assert c.txn([ModRevision("/txn/k") == rev, Version("/txn/k") > 1], [ops.delete("/txn/k")]).succeeded
    assert c.get("/txn/k").kvs == []
    nested = c.txn([], [ops.txn([Version("/txn/none") == 0], [ops.put("/txn/n", "x")])])
    assert isinstance(inner := nested.responses[0], TxnResponse) and inner.succeeded
    assert c.get("/txn/n").kvs[0].value == b"x"


def test_txn_shares_one_revision(c: Client) -> None:
    resp = c.txn([], [ops.put("/one/a", "1"), ops.put("/one/b", "2")])
    a, b = c.get("/one/a").kvs[0], c.get("/one/b").kvs[0]
    assert a.mod_revision == b.mod_revision == resp.header.revision


def test_etcd_errors(c: Client) -> None:
    with pytest.raises(EmptyKey, match="etcdserver: key is not provided"):
        c.put("", "v")
    with pytest.raises(RequestTooLarge, match="etcdserver: request is too large"):
        c.put("/big", b"x" * (2 * 1024 * 1024))
    with pytest.raises(TooManyOperations, match="etcdserver: too many operations in txn request"):
        c.txn([], [ops.put(f"/many/{i}", "v") for i in range(129)])
    with pytest.raises(DuplicateKey, match="etcdserver: duplicate key given in txn request"):
        c.txn([], [ops.put("/dup", "1"), ops.put("/dup", "2")])
    head = c.get("/nothing").header.revision
    with pytest.raises(FutureRevision, match="required revision is a future revision"):
        c.get("/nothing", revision=head + 1000)


def test_compaction(c: Client) -> None:
    first = c.put("/compact/k", "1").header.revision
    c.put("/compact/k", "2")
    c.put("/compact/k", "3")
    assert c.get("/compact/k", revision=first).kvs[0].value == b"1"
    c.compact(first + 1, physical=True)
    with pytest.raises(Compacted, match="etcdserver: mvcc: required revision has been compacted"):
        c.get("/compact/k", revision=first)
    assert c.get("/compact/k", revision=first + 1).kvs[0].value == b"2"
    assert c.get("/compact/k").kvs[0].value == b"3"
    with pytest.raises(Compacted):
        c.compact(first)


def test_streamed_range_arrives_in_bounded_chunks(c: Client) -> None:
    value = b"v" * 1000
    for start in range(0, 300, 100):
        c.txn([], [ops.put(f"/stream/{i:04d}", value) for i in range(start, start + 100)])
    chunks = list(c.range_stream("/stream/", prefix=True, chunk_bytes=20_000))
    assert len(chunks) > 10
    assert all(sum(len(kv.value) + len(kv.key) for kv in ch.kvs) <= 20_000 + 1100 for ch in chunks)
    keys = [kv.key for ch in chunks for kv in ch.kvs]
    assert keys == [b"/stream/%04d" % i for i in range(300)]
    pinned = chunks[0].header.revision
    assert all(kv.mod_revision <= pinned for ch in chunks for kv in ch.kvs)


def test_status(c: Client) -> None:
    st = c.status()
    assert st.leader == st.header.member_id
    assert st.raft_index >= st.raft_applied_index > 0
    assert st.db_size > 0 and st.version
