"""The SDK's pure cores, without sockets or clocks: the call rules both clients share
(failover, endpoint moves, login retries), lease renewal, the STM's commit conditions, and a
lock recipe driven step by step as its drivers drive it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from etcdz import _recipes as r
from etcdz._calls import (
    LOST,
    NO_REPLY,
    NOT_SENT,
    RETRY_LIMIT,
    Endpoints,
    Failover,
    WriteSession,
    login_retry,
)
from etcdz.errors import (
    AuthFailed,
    AuthNotEnabled,
    EtcdzError,
    LeaseNotFound,
    NoLeader,
    NotSupportedForLearner,
    RequestTimedOut,
    TooManyRequests,
    Unavailable,
)
from etcdz.lease import Renewal
from proto_schemas.envelope import unpack_header
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.kv import (
    CompareResult,
    CompareTarget,
    KeyValue,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    TxnResponse,
)
from proto_schemas.watch import Event, EventType

THREE = ["tcp://a:1", "tcp://b:1", "tcp://c:1"]


def test_a_read_moves_on_until_every_endpoint_was_tried() -> None:
    attempts = Failover(Endpoints(THREE), write=False)
    assert attempts.step(NO_REPLY, expired=False).move
    assert attempts.step(NOT_SENT, expired=False).error is None
    last = attempts.step(NO_REPLY, expired=False)
    assert last.move and isinstance(last.error, Unavailable)


def test_a_write_without_a_reply_is_never_retried_and_is_indefinite() -> None:
    step = Failover(Endpoints(THREE), write=True).step(NO_REPLY, expired=False)
    assert isinstance(step.error, RequestTimedOut) and step.error.definite is False
    unsent = Failover(Endpoints(THREE), write=True).step(NOT_SENT, expired=False)
    assert unsent.move and unsent.error is None  # never sent: safe to send elsewhere


def test_no_leader_is_retried_elsewhere_then_again_after_a_pause_until_the_deadline() -> None:
    """As clientv3 retries Unavailable: every member is without a leader during an election."""
    attempts = Failover(Endpoints(THREE), write=True)
    no_leader = ErrorResponse(code=ErrorCode.NO_LEADER, message="etcdserver: no leader")
    delays = []
    for _ in range(9):
        step = attempts.step(no_leader, expired=False)
        assert step.move and step.error is None
        delays.append(step.delay)
    assert delays == [0.0, 0.0, 0.05, 0.05, 0.05, 0.1, 0.1, 0.1, 0.2]  # a pause after each round
    last = attempts.step(no_leader, expired=True)
    assert isinstance(last.error, NoLeader) and last.error.definite
    attempts = Failover(Endpoints(THREE[:1]), write=True)
    assert attempts.step(no_leader, expired=False).error is None
    cut = attempts.step(NOT_SENT, expired=True)  # the deadline cut the last dial short
    assert isinstance(cut.error, NoLeader)  # what the member said, not "unreachable"
    changed = ErrorResponse(code=ErrorCode.LEADER_CHANGED, message="etcdserver: leader changed")
    assert Failover(Endpoints(THREE[:1]), write=False).step(changed, expired=False).error is None
    learner = ErrorResponse(code=ErrorCode.NOT_SUPPORTED_FOR_LEARNER, message="x")
    refused = Failover(Endpoints(THREE[:1]), write=True).step(learner, expired=False)
    assert isinstance(refused.error, NotSupportedForLearner)  # a learner refuses until promoted


def test_other_errors_are_raised() -> None:
    attempts = Failover(Endpoints(THREE), write=True)
    denied = attempts.step(ErrorResponse(code=ErrorCode.LEASE_NOT_FOUND, message="x"), expired=False)
    assert isinstance(denied.error, LeaseNotFound) and not denied.move
    answer = PutResponse(header=ResponseHeader())
    assert Failover(Endpoints(THREE), write=True).step(answer, expired=False).response is answer


def test_a_call_lost_with_its_connection_is_sent_again_until_its_deadline_writes_too() -> None:
    for write in (False, True):
        attempts = Failover(Endpoints(["tcp://only:1"]), write=write)
        step = attempts.step(LOST, expired=False)
        assert step.move and step.error is None  # the same endpoint again: it is the only one
        # an earlier attempt left: a later one refused or never sent says nothing of the call
        assert attempts.step(NOT_SENT, expired=False).error is None
        busy = ErrorResponse(code=ErrorCode.TOO_MANY_REQUESTS, message="etcdserver: too many requests")
        assert attempts.step(busy, expired=False).error is None
        last = attempts.step(NOT_SENT, expired=True)
        assert isinstance(last.error, RequestTimedOut) and last.error.definite is (not write)
    attempts = Failover(Endpoints(THREE), write=True)
    for _ in range(RETRY_LIMIT - 1):
        assert attempts.step(LOST, expired=False).error is None
    assert isinstance(attempts.step(LOST, expired=False).error, RequestTimedOut)  # bounded in count too


def test_a_write_sent_back_indefinitely_goes_elsewhere_and_ends_indefinite() -> None:
    attempts = Failover(Endpoints(THREE), write=True)
    back = ErrorResponse(code=ErrorCode.UNAVAILABLE, message="etcdserver: unavailable", definite=False)
    assert attempts.step(back, expired=False).move
    last = attempts.step(NOT_SENT, expired=True)  # its first copy may be in the log
    assert isinstance(last.error, RequestTimedOut) and last.error.definite is False


def test_a_write_keeps_its_number_on_every_attempt_and_names_the_oldest_open_one() -> None:
    session = WriteSession(itertools.count(1))
    first, second = session.open(), session.open()
    read_id, _ = session.attempt(b"r", 0, "")
    assert read_id == 3  # reads and writes share the numbers; a read has no session
    for _ in range(2):
        msg_id, frames = session.attempt(b"w", second, "t")
        header, body = unpack_header(frames)
        assert (msg_id, header.msg_id, header.client_id, header.acked, body) == (
            second,
            second,
            session.client_id,
            first,
            b"w",
        )
    session.close(first)
    assert unpack_header(session.attempt(b"w", second, "t")[1])[0].acked == second
    assert WriteSession(itertools.count(1)).client_id != session.client_id


def test_many_calls_that_saw_one_connection_fail_move_the_client_once() -> None:
    endpoints = Endpoints(THREE)
    seen = endpoints.generation
    assert endpoints.move(seen) and not endpoints.move(seen) and not endpoints.move(seen)
    assert endpoints.current == THREE[1]


def test_login_retries_only_what_a_retry_can_cure() -> None:
    assert login_retry(AuthNotEnabled(), 0, False) == -1.0  # go on without a token
    assert login_retry(AuthFailed(), 0, False) is None
    assert login_retry(TooManyRequests(), 1, False) == pytest.approx(0.2)
    assert login_retry(TooManyRequests(), 4, False) is None
    assert login_retry(TooManyRequests(), 0, True) is None


def test_a_lease_is_lost_when_the_cluster_says_so_or_no_renewal_worked_for_a_ttl() -> None:
    renewal = Renewal(ttl=6, now=0.0)
    assert renewal.renewed(6, now=2.0) == 2.0
    assert renewal.failed(RequestTimedOut(), now=3.0) == 0.5
    assert renewal.failed(RequestTimedOut(), now=8.0) is None  # 6 s since the last renewal
    assert Renewal(6, 0.0).failed(LeaseNotFound(), now=0.1) is None
    assert Renewal(6, 0.0).renewed(0, now=1.0) is None  # TTL 0: the lease is gone


@pytest.mark.parametrize(
    ("isolation", "read_compares", "write_compares"),
    [
        (r.SERIALIZABLE_SNAPSHOT, 1, 1),
        (r.SERIALIZABLE, 1, 0),
        (r.REPEATABLE_READS, 1, 0),
        (r.READ_COMMITTED, 0, 0),
    ],
)
def test_stm_commits_under_the_conditions_of_its_isolation(
    isolation: str, read_compares: int, write_compares: int
) -> None:
    state = r.StmState(isolation)
    kv = KeyValue(key=b"a", value=b"1", create_revision=3, mod_revision=7, version=2)
    assert state.read_request(b"a").revision == 0
    state.record(b"a", RangeResponse(header=ResponseHeader(revision=9), kvs=[kv], count=1))
    pinned = isolation in (r.SERIALIZABLE, r.SERIALIZABLE_SNAPSHOT)
    assert state.read_request(b"b").revision == (9 if pinned else 0)
    state.put(b"a", b"2")
    state.put(b"w", b"x")
    assert state.cached(b"a") == (True, b"2")  # a transaction reads its own writes
    txn = state.commit_request()
    mods = [c for c in txn.compare if c.target == CompareTarget.MOD]
    assert len([c for c in mods if c.result == CompareResult.EQUAL and c.key == b"a"]) == read_compares
    assert len([c for c in mods if c.result == CompareResult.LESS and c.key == b"w"]) == write_compares
    assert [getattr(op, "key", None) for op in txn.success] == [b"a", b"w"]
    with pytest.raises(ValueError):
        r.StmState("chaos")


def _header(rev: int) -> ResponseHeader:
    return ResponseHeader(revision=rev)


def _kv(key: bytes, rev: int) -> KeyValue:
    return KeyValue(key=key, create_revision=rev, mod_revision=rev, version=1)


def test_a_waiter_watches_only_its_predecessor_and_cleans_up_when_interrupted() -> None:
    prefix = r.prefix_of(b"\x00lock")
    mine = r.key_for(prefix, 0xAB)
    steps = r.acquire(prefix, 0xAB)
    claim = next(steps)
    assert isinstance(claim, r.Call) and claim.request.compare[0].key == mine
    owner = _kv(prefix + b"1", 5)
    claimed = TxnResponse(
        header=_header(9),
        succeeded=True,
        responses=[PutResponse(header=_header(9)), RangeResponse(header=_header(9), kvs=[owner], count=2)],
    )
    query = steps.send(claimed)  # not the owner: who was just before me?
    assert isinstance(query, r.Call) and query.request.max_create_revision == 8
    just_before = _kv(prefix + b"7", 8)
    watch = steps.send(RangeResponse(header=_header(9), kvs=[just_before], count=1))
    assert watch == r.OpenWatch(just_before.key, start_revision=10)  # that key alone
    assert isinstance(steps.send("handle"), r.NextEvents)
    put = Event(type=EventType.PUT, kv=just_before)
    assert isinstance(steps.send([put]), r.NextEvents)  # not a deletion: wait on
    assert steps.throw(KeyboardInterrupt()) == r.CloseWatch("handle")
    cleanup = steps.send(None)
    assert isinstance(cleanup, r.Call) and cleanup.request.key == mine
    with pytest.raises(KeyboardInterrupt):
        steps.send(None)


def test_try_lock_held_by_another_removes_the_key_it_made() -> None:
    prefix = r.prefix_of("l")
    steps = r.acquire(prefix, 1, try_only=True)
    next(steps)
    other = _kv(prefix + b"0", 2)
    answer: Any = TxnResponse(
        header=_header(3),
        succeeded=True,
        responses=[PutResponse(header=_header(3)), RangeResponse(header=_header(3), kvs=[other], count=2)],
    )
    cleanup = steps.send(answer)
    assert isinstance(cleanup, r.Call) and cleanup.request.key == r.key_for(prefix, 1)
    with pytest.raises(r.Locked, match="mutex: Locked by another session"):
        steps.send(None)


def test_names_must_not_be_empty_and_errors_carry_etcds_texts() -> None:
    with pytest.raises(ValueError):
        r.prefix_of(b"")
    assert str(r.NotLeader()) == "election: not leader"
    assert str(r.NoLeader()) == "election: no leader"
    assert isinstance(r.SessionExpired(), EtcdzError)
