"""Alarms in the MVCC store, on a real LevelDB: raised and cleared through apply, kept across
restarts, and the writes each one stops (etcd's capped and corrupt appliers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_mvcc_rules import Harness

from actors.mvcc.alarms import KV_OVERHEAD, quota_cost
from etcdz import ops
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.kv import CompactionRequest
from proto_schemas.lease import LeaseGrantRequest, LeaseRevokeRequest
from proto_schemas.maintenance import AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "db")
    yield harness
    harness.db.close()


def alarm(action: AlarmAction, member: int = 0, kind: AlarmType = AlarmType.NONE) -> AlarmRequest:
    return AlarmRequest(action=action, member_id=member, alarm=kind)


def code(resp: object) -> ErrorCode | None:
    return resp.code if isinstance(resp, ErrorResponse) else None


def test_alarms_are_raised_listed_cleared_and_kept_across_restarts(h: Harness) -> None:
    raised = h.one(alarm(AlarmAction.ACTIVATE, 7, AlarmType.NOSPACE))
    assert isinstance(raised, AlarmResponse) and raised.alarms == [
        AlarmMember(member_id=7, alarm=AlarmType.NOSPACE)
    ]
    h.one(alarm(AlarmAction.ACTIVATE, 7, AlarmType.NOSPACE))  # twice: still one
    h.one(alarm(AlarmAction.ACTIVATE, 3, AlarmType.CORRUPT))
    h.reopen()
    listed = h.one(alarm(AlarmAction.GET))
    assert [(m.member_id, m.alarm) for m in listed.alarms] == [(3, AlarmType.CORRUPT), (7, AlarmType.NOSPACE)]
    only = h.one(alarm(AlarmAction.GET, kind=AlarmType.NOSPACE))
    assert [m.member_id for m in only.alarms] == [7]
    assert h.one(alarm(AlarmAction.DEACTIVATE, 7, AlarmType.NOSPACE)).alarms == [
        AlarmMember(member_id=7, alarm=AlarmType.NOSPACE)
    ]
    assert h.one(alarm(AlarmAction.DEACTIVATE, 7, AlarmType.NOSPACE)).alarms == []  # not raised any more
    assert code(h.one(alarm(AlarmAction.ACTIVATE, 7))) == ErrorCode.BAD_REQUEST  # which alarm?
    assert h.store.current_revision == 1  # alarms take no revision


def test_nospace_stops_what_grows_the_backend_only(h: Harness) -> None:
    h.apply(ops.put("k", "v"), LeaseGrantRequest(id=5, ttl=60))
    h.one(alarm(AlarmAction.ACTIVATE, 1, AlarmType.NOSPACE))
    refused = [
        ops.put("k", "w"),
        ops.txn([], [ops.get("k")], [ops.put("x", "y")]),  # a put in either branch
        ops.txn([], [ops.txn([], [ops.put("x", "y")], [])], []),
        LeaseGrantRequest(id=6, ttl=60),
    ]
    for request in refused:
        assert code(h.one(request)) == ErrorCode.NO_SPACE, request
    assert h.get("k").kvs[0].value == b"v"
    allowed = [ops.txn([], [ops.get("k")], []), ops.delete("k"), LeaseRevokeRequest(id=5)]
    for request in allowed:
        assert code(h.one(request)) is None, request
    assert code(h.one(CompactionRequest(revision=h.store.current_revision))) is None
    h.one(alarm(AlarmAction.DEACTIVATE, 1, AlarmType.NOSPACE))
    assert code(h.one(ops.put("k", "again"))) is None


def test_corrupt_stops_every_write(h: Harness) -> None:
    h.apply(ops.put("k", "v"), LeaseGrantRequest(id=5, ttl=60))
    h.one(alarm(AlarmAction.ACTIVATE, 2, AlarmType.CORRUPT))
    for request in (
        ops.put("k", "w"),
        ops.delete("k"),
        ops.txn([], [ops.get("k")], []),
        CompactionRequest(revision=1),
        LeaseGrantRequest(id=6, ttl=60),
        LeaseRevokeRequest(id=5),
    ):
        resp = h.one(request)
        assert code(resp) == ErrorCode.CORRUPT and resp.message == "etcdserver: corrupt cluster", request
    assert h.get("k").kvs[0].value == b"v"  # reads are served


def test_quota_cost_is_etcds_estimate() -> None:
    assert quota_cost(ops.put("key", "value")) == KV_OVERHEAD + 8
    assert quota_cost(ops.get("k")) == quota_cost(ops.delete("k")) == 0
    txn = ops.txn([], [ops.put("a", "1")], [ops.put("b", "22"), ops.put("c", "3")])
    assert quota_cost(txn) == 2 * KV_OVERHEAD + 5  # the larger branch
    assert quota_cost(LeaseGrantRequest(ttl=5)) > 0
