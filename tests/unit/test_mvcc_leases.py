"""Leases in the MVCC store (the applied half of etcd's lessor), on a real LevelDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mvcc_rules import Harness

from etcdz import ops
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.lease import (
    LeaseCheckpoint,
    LeaseCheckpointRequest,
    LeaseEvent,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "db")
    yield harness
    harness.db.close()


def code(resp: object) -> ErrorCode:
    assert isinstance(resp, ErrorResponse), resp
    return resp.code


def test_a_put_with_an_unknown_lease_fails_and_writes_nothing(h: Harness) -> None:
    assert code(h.one(ops.put("k", "v", lease=7))) == ErrorCode.LEASE_NOT_FOUND
    txn = ops.txn([], [ops.put("a", "1"), ops.put("b", "2", lease=7)], [])
    assert code(h.one(txn)) == ErrorCode.LEASE_NOT_FOUND  # checked before the txn writes
    assert h.get("a").count == 0 and h.store.current_revision == 1


def test_grant_attach_move_and_revoke_in_one_revision(h: Harness) -> None:
    h.apply(LeaseGrantRequest(id=1, ttl=10), LeaseGrantRequest(id=2, ttl=20))
    assert code(h.one(LeaseGrantRequest(id=1, ttl=5))) == ErrorCode.LEASE_EXIST
    h.apply(ops.put("a", "1", lease=1), ops.put("b", "2", lease=1), ops.put("c", "3", lease=2))
    h.one(ops.put("b", "2b", lease=2))  # moves b to lease 2
    h.one(ops.put("c", "3", ignore_lease=True))  # keeps lease 2
    ttl = h.store.lease_time_to_live(LeaseTimeToLiveRequest(id=2, keys=True), None)
    assert (ttl.granted_ttl, ttl.keys) == (20, [b"b", b"c"])
    before = h.store.current_revision
    h.one(LeaseRevokeRequest(id=2))
    assert h.store.current_revision == before + 1  # b and c go together
    assert [kv.key for kv in h.get("", from_key=True).kvs] == [b"a"]
    assert h.store.lease_time_to_live(LeaseTimeToLiveRequest(id=2), None).ttl == -1
    assert code(h.one(LeaseRevokeRequest(id=2))) == ErrorCode.LEASE_NOT_FOUND


def test_a_deleted_or_overwritten_key_leaves_its_lease(h: Harness) -> None:
    h.one(LeaseGrantRequest(id=1, ttl=10))
    h.apply(ops.put("a", "1", lease=1), ops.put("b", "2", lease=1))
    h.one(ops.delete("a"))
    h.one(ops.put("b", "plain"))
    assert h.store.lease_time_to_live(LeaseTimeToLiveRequest(id=1, keys=True), None).keys == []
    rev = h.store.current_revision
    h.one(LeaseRevokeRequest(id=1))
    assert h.store.current_revision == rev  # nothing attached: no new revision
    assert h.get("b").kvs[0].value == b"plain"


def test_leases_and_attachments_survive_a_reopen_and_report_events(h: Harness) -> None:
    h.one(LeaseGrantRequest(id=9, ttl=600))
    h.one(ops.put("k", "v", lease=9))
    h.one(LeaseCheckpointRequest(checkpoints=[LeaseCheckpoint(id=9, remaining_ttl=300)]))
    assert h.store.leases.take_events() == [
        LeaseEvent(id=9, ttl=600),
        LeaseEvent(id=9, ttl=600, remaining=300, checkpointed=True),
    ]
    h.reopen()
    assert h.store.leases.leases == {9: (600, 300)}
    resp = h.store.lease_time_to_live(LeaseTimeToLiveRequest(id=9, keys=True), None)
    assert (resp.ttl, resp.granted_ttl, resp.keys) == (300, 600, [b"k"])
    assert [le.id for le in h.store.lease_leases().leases] == [9]
    h.one(LeaseRevokeRequest(id=9))
    assert h.store.leases.take_events() == [LeaseEvent(id=9, revoked=True)]
    assert h.get("k").count == 0
