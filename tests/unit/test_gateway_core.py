"""The gateway core driven without sockets: preflight, routing, ReadIndex, timeouts."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

import cbor2
import pytest

from actors.gateway import compactor
from actors.gateway.core import MAX_HUBS, GatewayCore
from actors.gateway.requests import batched_reads
from proto_schemas.cluster import (
    ClusterCall,
    MemberAddRequest,
    MemberListRequest,
    MemberListResponse,
    PeerBatch,
    ReadIndexAnswer,
    ReadIndexQuery,
)
from proto_schemas.codec import decode, encode
from proto_schemas.envelope import Header, pack
from proto_schemas.errors import ErrorCode, ErrorResponse, error_response
from proto_schemas.internal import (
    ActorStarted,
    ApplyResult,
    BackendState,
    BackendStateRequest,
    InternalRequest,
    Propose,
    ProposeFailed,
    RaftStatus,
    ReadBatch,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadRequest,
    ReadResult,
    Results,
)
from proto_schemas.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    StatusRequest,
    StatusResponse,
    TxnRequest,
)
from proto_schemas.lease import (
    LeaseAnswer,
    LeaseCall,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseQuery,
    LeaseTimeToLiveRequest,
)
from proto_schemas.maintenance import AlarmAction, AlarmRequest, AlarmType
from proto_schemas.raft import MessageType
from proto_schemas.watch import HubAnnounce, WatchHistoryRequest, WatchHubsRequest

LEADER = RaftStatus(member_id=1, cluster_id=2, term=3, leader=1, commit=10, applied=10)


def make(**overrides: Any) -> GatewayCore:
    options = dict(
        member_id=1,
        cluster_id=2,
        max_request_bytes=1024,
        max_txn_ops=4,
        request_timeout_s=7.0,
        max_gap=5000,
        boot_nonce=5,
    )
    options.update(overrides)
    core = GatewayCore(**options)  # type: ignore[arg-type]
    (probe,) = core.take_outbox().to_mvcc  # the backend's revision, asked once at start
    assert isinstance(probe, BackendStateRequest)
    state: dict[str, Any] = dict(
        consistent_index=0, revision=1, compact_revision=0, db_size=0, db_size_in_use=0
    )
    core.internal(BackendState(read_id=probe.read_id, **state), 0)
    return core


def ask(core: GatewayCore, request: Any, msg_id: int = 1, now: float = 0.0, route: bytes = b"c") -> None:
    core.client_message(route, pack(request, msg_id=msg_id), now)


def replies(core: GatewayCore) -> list[tuple[bytes, int, Any]]:
    out = core.take_outbox()
    return [(r, m, decode(b) if isinstance(b, bytes) else b) for r, m, b in out.to_client]


def error_code(reply: tuple[bytes, int, Any]) -> ErrorCode:
    assert isinstance(reply[2], ErrorResponse), reply
    return reply[2].code


def test_a_write_is_proposed_once_and_answered_with_the_backend_bytes() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, PutRequest(key=b"k", value=b"v"), msg_id=7)
    ask(core, PutRequest(key=b"k2", value=b"v"), msg_id=8)
    out = core.take_outbox()
    (propose,) = out.to_raft  # both writes of the batch in one Propose
    assert isinstance(propose, Propose) and len(propose.data) == 2
    first = decode(propose.data[0], InternalRequest)
    assert first.request == PutRequest(key=b"k", value=b"v")
    assert first.request_id == propose.request_ids[0]
    body = encode(PutResponse(header=ResponseHeader(revision=2)))
    core.internal(Results(applied_index=11, results=[ApplyResult(request_id=first.request_id, body=body)]), 1)
    out = core.take_outbox()
    assert out.to_client == [(b"c", 7, body)]  # forwarded as is, not re-encoded


def test_a_followers_writes_go_to_the_leaders_peer_port_as_raft_would_pass_them_on() -> None:
    """On a follower the raft core would only forward the batch (raft's MsgProp): the gateway
    sends that message to the leader's peer port itself, with the proposal for its own raft
    core should that port not take it; without the leader's peer URLs the raft core gets it."""
    core = make()
    core.internal(dataclasses.replace(LEADER, leader=3, leader_peer_urls=["tcp://127.0.0.1:9"]), 0)
    ask(core, PutRequest(key=b"k", value=b"v"), msg_id=7)
    ask(core, PutRequest(key=b"k2", value=b"v"), msg_id=8)
    out = core.take_outbox()
    assert out.to_raft == []
    ((batch, fallback),) = out.at_leader
    assert isinstance(batch, PeerBatch) and isinstance(fallback, Propose)
    assert (batch.cluster_id, batch.from_) == (2, 1)
    (forward,) = batch.messages
    assert (forward.type, forward.to, forward.from_, forward.term) == (MessageType.PROP, 3, 1, 0)
    assert [e.data for e in forward.entries] == fallback.data and len(fallback.data) == 2
    core.internal(dataclasses.replace(LEADER, leader=3), 1)  # the leader's peer URLs unknown
    ask(core, PutRequest(key=b"k3"), msg_id=9, now=1)
    out = core.take_outbox()
    assert out.at_leader == [] and isinstance(out.to_raft[0], Propose)


def test_writes_wait_for_a_leader_then_fail_with_no_leader() -> None:
    core = make(request_timeout_s=2.0)
    ask(core, PutRequest(key=b"k"), now=0.0)
    assert core.take_outbox().to_raft == []
    core.tick(2.5)
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.NO_LEADER


def test_held_writes_are_proposed_when_a_leader_appears() -> None:
    core = make()
    ask(core, PutRequest(key=b"k"))
    core.take_outbox()
    core.internal(LEADER, 0.5)
    (propose,) = core.take_outbox().to_raft
    assert isinstance(propose, Propose)


def test_linearizable_reads_share_one_read_index_round_and_wait_for_apply() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, RangeRequest(key=b"a"), msg_id=1)
    ask(core, RangeRequest(key=b"b"), msg_id=2)
    out = core.take_outbox()
    (round_,) = out.to_raft
    assert isinstance(round_, ReadIndexRequest)
    assert out.to_mvcc == []
    core.internal(ReadIndexResponse(read_id=round_.read_id, index=12), 0)
    assert core.take_outbox().to_mvcc == []  # applied is 10 < 12
    core.internal(Results(applied_index=12), 0)
    reads = core.take_outbox().to_mvcc
    assert [decode(r.body) for r in reads] == [RangeRequest(key=b"a"), RangeRequest(key=b"b")]
    body = encode(RangeResponse(header=ResponseHeader(revision=4)))
    core.internal(ReadResult(read_id=reads[1].read_id, body=body), 0)
    assert core.take_outbox().to_client == [(b"c", 2, body)]


def test_a_followers_read_index_round_goes_to_the_leaders_peer_port() -> None:
    """On a follower the raft core would only pass the round on to the leader and its answer
    back: the gateway asks the leader's peer port itself (``ReadIndexQuery``), with the round
    for its own raft core should that port not take it. The answer releases the reads once
    this member has applied up to the leader's index; a refusal fails them."""
    core = make(member_id=4)
    core.internal(dataclasses.replace(LEADER, member_id=4, leader_peer_urls=["tcp://127.0.0.1:9"]), 0)
    ask(core, RangeRequest(key=b"a"), msg_id=1)
    ask(core, RangeRequest(key=b"b"), msg_id=2)
    out = core.take_outbox()
    assert out.to_raft == [] and out.to_mvcc == []
    ((query, fallback),) = out.at_leader
    assert isinstance(query, ReadIndexQuery) and (query.cluster_id, query.from_) == (2, 4)
    assert fallback == ReadIndexRequest(read_id=query.query_id)
    core.leader_answered(ReadIndexAnswer(query_id=query.query_id, member_id=1, index=12), 0.1)
    assert core.take_outbox().to_mvcc == []  # applied is 10 < 12
    core.internal(Results(applied_index=12), 0.1)
    assert [decode(r.body) for r in core.take_outbox().to_mvcc] == [
        RangeRequest(key=b"a"),
        RangeRequest(key=b"b"),
    ]

    ask(core, RangeRequest(key=b"c"), msg_id=3, now=0.2)
    ((query, _),) = core.take_outbox().at_leader
    assert isinstance(query, ReadIndexQuery)
    core.leader_answered(
        ReadIndexAnswer(query_id=query.query_id, member_id=1, code=ErrorCode.LEADER_CHANGED), 0.3
    )
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.LEADER_CHANGED
    core.leader_answered(
        ReadIndexAnswer(query_id=query.query_id, member_id=1, index=13), 0.4
    )  # late: ignored
    assert core.take_outbox().to_mvcc == []


def test_a_read_index_round_asked_of_a_leader_that_changed_fails_at_once() -> None:
    core = make(member_id=4)
    core.internal(dataclasses.replace(LEADER, member_id=4, leader_peer_urls=["tcp://127.0.0.1:9"]), 0)
    ask(core, RangeRequest(key=b"a"), msg_id=1)
    ((query, _),) = core.take_outbox().at_leader
    assert isinstance(query, ReadIndexQuery)
    core.internal(dataclasses.replace(LEADER, member_id=4, term=4, leader=2), 0.1)
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.LEADER_CHANGED
    core.leader_answered(ReadIndexAnswer(query_id=query.query_id, member_id=1, index=12), 0.2)
    assert core.take_outbox().to_mvcc == []  # the old leader's late answer serves nothing


def test_serializable_reads_skip_read_index() -> None:
    core = make()
    ask(core, RangeRequest(key=b"a", serializable=True))
    out = core.take_outbox()
    assert out.to_raft == [] and isinstance(out.to_mvcc[0], ReadRequest)


def test_the_broken_build_for_the_checker_serves_linearizable_reads_locally() -> None:
    core = make(unsafe_local_reads=True)
    core.internal(LEADER, 0)
    ask(core, RangeRequest(key=b"a"))
    out = core.take_outbox()
    assert out.to_raft == [] and isinstance(out.to_mvcc[0], ReadRequest)


def test_read_index_failure_fails_the_reads() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, RangeRequest(key=b"a"))
    (round_,) = core.take_outbox().to_raft
    core.internal(ReadIndexResponse(read_id=round_.read_id, code=ErrorCode.NO_LEADER), 0)
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.NO_LEADER


@pytest.mark.parametrize(
    "frames, code",
    [
        ([b"not cbor", b"x"], ErrorCode.BAD_REQUEST),
        ([encode(Header(msg_id=1)), b"\xff"], ErrorCode.BAD_REQUEST),
        ([encode(Header(msg_id=1))], ErrorCode.UNKNOWN_OP),  # a lone frame is a body: a Header is no request
        ([encode(Header(msg_id=1)), encode(Header())], ErrorCode.UNKNOWN_OP),
        ([encode(Header(msg_id=1)), encode(PutRequest(key=b""))], ErrorCode.EMPTY_KEY),
        (
            [encode(Header(msg_id=1)), encode(PutRequest(key=b"k", value=b"x" * 2000))],
            ErrorCode.REQUEST_TOO_LARGE,
        ),
        ([encode(Header(msg_id=1)), b"\x80" * 2000], ErrorCode.REQUEST_TOO_LARGE),  # never decoded
        ([encode(Header(msg_id=1, token="t" * 9000)), b"\x00"], ErrorCode.BAD_REQUEST),  # header too big
        ([encode(Header(msg_id=1)), cbor2.dumps(Fraction(1 << 4000, 3))], ErrorCode.BAD_REQUEST),
        ([encode(Header(msg_id=1)), b"\xd8\x1c\x81\xd8\x1d\x00"], ErrorCode.BAD_REQUEST),  # shared ref
        (
            [encode(Header(msg_id=1)), encode(PutRequest(key=b"k")) + b"\x00"],
            ErrorCode.BAD_REQUEST,
        ),  # trailing
        (
            [
                encode(Header(msg_id=1)),
                encode(TxnRequest(success=[PutRequest(key=b"k%d" % i) for i in range(5)])),
            ],
            ErrorCode.TOO_MANY_OPS,
        ),
        (
            [
                encode(Header(msg_id=1)),
                encode(TxnRequest(success=[PutRequest(key=b"k"), PutRequest(key=b"k")])),
            ],
            ErrorCode.DUPLICATE_KEY,
        ),
    ],
)
def test_bad_requests_get_typed_definite_errors(frames: list[bytes], code: ErrorCode) -> None:
    core = make()
    core.internal(LEADER, 0)
    core.client_message(b"c", frames, 0)
    (reply,) = replies(core)
    assert error_code(reply) == code and reply[2].definite
    assert core.pending_count == 0


def test_too_many_requests_when_apply_lags() -> None:
    core = make(max_gap=100)
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=3, leader=1, commit=500, applied=10), 0)
    ask(core, PutRequest(key=b"k"))
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.TOO_MANY_REQUESTS


def test_timeouts_are_indefinite_for_writes_and_definite_for_reads() -> None:
    core = make(request_timeout_s=1.0)
    core.internal(LEADER, 0)
    ask(core, PutRequest(key=b"k"), msg_id=1)
    ask(core, RangeRequest(key=b"k"), msg_id=2)
    core.take_outbox()
    core.tick(1.5)
    by_id = {m: r for _, m, r in replies(core)}
    assert by_id[1].code == ErrorCode.TIMEOUT and not by_id[1].definite
    assert by_id[2].code == ErrorCode.TIMEOUT and by_id[2].definite
    core.internal(Results(applied_index=11, results=[ApplyResult(request_id=1, body=b"late")]), 2)
    assert replies(core) == []  # an answer after the timeout goes nowhere


def test_a_proposal_dropped_before_the_log_is_proposed_again_while_a_leader_is_known() -> None:
    core = make(request_timeout_s=5.0)
    core.internal(LEADER, 0)
    ask(core, PutRequest(key=b"k"))
    (propose,) = core.take_outbox().to_raft
    for t in (0.1, 0.4, 0.9, 1.6):  # the leader is dead or not connected yet: it may take a while
        core.internal(ProposeFailed(request_ids=propose.request_ids, code=ErrorCode.NO_LEADER), t)
        assert replies(core) == []  # definitely not in the log: proposed again instead of failing
        core.tick(t + 0.05)
        (again,) = core.take_outbox().to_raft
        assert again.request_ids == propose.request_ids and again.data == propose.data
    core.internal(ProposeFailed(request_ids=again.request_ids, code=ErrorCode.NO_LEADER), 2.0)
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=4, leader=0, commit=10, applied=10), 2.1)
    core.tick(2.2)
    assert core.take_outbox().to_raft == [] and replies(core) == []  # held until a leader is elected
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=5, leader=3, commit=10, applied=10), 2.5)
    (again,) = core.take_outbox().to_raft  # the new leader takes it
    assert again.request_ids == propose.request_ids
    core.internal(ProposeFailed(request_ids=again.request_ids, code=ErrorCode.NO_LEADER), 2.6)
    core.tick(5.1)
    (reply,) = replies(core)  # never reached a log: a definite no leader at the deadline
    assert error_code(reply) == ErrorCode.NO_LEADER and reply[2].definite
    core.internal(ProposeFailed(request_ids=[12345], code=ErrorCode.NOT_LEADER), 5.3)
    assert replies(core) == []
    ask(core, PutRequest(key=b"k"), msg_id=7, now=5.4)
    (propose,) = core.take_outbox().to_raft
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=5, leader=0, commit=10, applied=10), 5.5)
    core.internal(ProposeFailed(request_ids=propose.request_ids, code=ErrorCode.NO_LEADER), 5.5)
    (reply,) = replies(core)  # dropped with no leader at all: at once, the client goes elsewhere
    assert reply[1] == 7 and error_code(reply) == ErrorCode.NO_LEADER


def test_status_combines_raft_and_backend() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, StatusRequest(), msg_id=4)
    (question,) = core.take_outbox().to_mvcc
    assert isinstance(question, BackendStateRequest)
    core.internal(
        BackendState(
            read_id=question.read_id,
            consistent_index=10,
            revision=6,
            compact_revision=0,
            db_size=4096,
            db_size_in_use=2048,
        ),
        0,
    )
    ((_, msg_id, status),) = replies(core)
    assert msg_id == 4 and isinstance(status, StatusResponse)
    assert (status.leader, status.raft_term, status.db_size, status.header.revision) == (1, 3, 4096, 6)
    assert status.header.member_id == 1 and status.header.cluster_id == 2


def test_request_ids_differ_across_boots() -> None:
    a, b = make(boot_nonce=1), make(boot_nonce=2)
    for core in (a, b):
        core.internal(LEADER, 0)
        ask(core, PutRequest(key=b"k"))
    (pa,), (pb,) = a.take_outbox().to_raft, b.take_outbox().to_raft
    assert pa.request_ids != pb.request_ids


def test_cluster_requests_go_to_the_raft_core_and_changes_time_out_as_unknown() -> None:
    core = make()
    core.internal(LEADER, 0.0)
    ask(core, MemberListRequest(), msg_id=1)
    ask(core, MemberAddRequest(peer_urls=["tcp://127.0.0.1:1"]), msg_id=2)
    out = core.take_outbox()
    calls = [m for m in out.to_raft if isinstance(m, ClusterCall)]
    assert [type(c.request) for c in calls] == [MemberListRequest, MemberAddRequest]
    body = encode(MemberListResponse(header=ResponseHeader(cluster_id=2, member_id=1)))
    core.internal(ReadResult(read_id=calls[0].read_id, body=body), 0.1)
    ((_, msg_id, answer),) = core.take_outbox().to_client
    assert msg_id == 1 and answer == body
    core.tick(100.0)  # the member add never got an answer
    ((_, msg_id, failure),) = core.take_outbox().to_client
    assert msg_id == 2 and failure.code == ErrorCode.TIMEOUT and not failure.definite


def test_a_leader_change_fails_pending_read_index_rounds_at_once() -> None:
    core = make()
    core.internal(LEADER, 0.0)
    ask(core, RangeRequest(key=b"k"), msg_id=7)
    assert any(isinstance(m, ReadIndexRequest) for m in core.take_outbox().to_raft)
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=4, leader=2, commit=10, applied=10), 0.1)
    ((_, msg_id, failure),) = core.take_outbox().to_client
    assert msg_id == 7 and failure.code == ErrorCode.LEADER_CHANGED and failure.definite


def test_a_lease_grant_gets_an_id_and_at_least_the_minimum_ttl_before_raft() -> None:
    core = make(min_lease_ttl=3)
    core.internal(LEADER, 0)
    ask(core, LeaseGrantRequest(ttl=1), msg_id=1)
    ask(core, LeaseGrantRequest(ttl=60, id=42), msg_id=2)
    (propose,) = core.take_outbox().to_raft
    chosen, given = (decode(d, InternalRequest).request for d in propose.data)
    assert isinstance(chosen, LeaseGrantRequest)
    assert chosen.ttl == 3 and 0 < chosen.id < 2**63  # decided once, so every member agrees
    assert given == LeaseGrantRequest(ttl=60, id=42)


def test_keep_alives_go_to_the_local_expirer_on_the_leader_and_are_forwarded_elsewhere() -> None:
    leader = make()
    leader.internal(LEADER, 0)
    ask(leader, LeaseKeepAliveRequest(id=9), msg_id=1)
    out = leader.take_outbox()
    (call,) = out.to_lease
    assert isinstance(call, LeaseCall) and call.request == LeaseKeepAliveRequest(id=9)
    assert out.at_leader == [] and out.to_raft == []

    follower = make(member_id=4)
    follower.internal(LEADER, 0)  # member 1 leads
    ask(follower, LeaseTimeToLiveRequest(id=9, keys=True), msg_id=5)
    out = follower.take_outbox()
    assert out.to_lease == []
    ((query, fallback),) = out.at_leader  # for the leader's peer port: the call, no token or user
    assert fallback is None  # no raft core to pass it on: it times out if that port is full
    assert isinstance(query, LeaseQuery)
    assert query.request == LeaseTimeToLiveRequest(id=9, keys=True)
    assert (query.cluster_id, query.from_) == (2, 4)
    answer = encode(LeaseKeepAliveResponse(header=ResponseHeader(), id=9, ttl=5))
    follower.leader_answered(LeaseAnswer(query_id=query.query_id, member_id=1, body=answer), 0.1)
    assert follower.take_outbox().to_client == [(b"c", 5, answer)]


def test_a_lease_call_that_reaches_a_former_leader_is_routed_again_to_the_new_one() -> None:
    """The member a keep-alive went to lost the leadership on the way: the client does not see
    its "not leader"; the call goes to the leader the next status names (as etcd's server
    forwards a renewal again until its deadline)."""
    follower = make(member_id=4)
    follower.internal(LEADER, 0)  # member 1 leads
    ask(follower, LeaseKeepAliveRequest(id=9), msg_id=5)
    ((query, _),) = follower.take_outbox().at_leader
    assert isinstance(query, LeaseQuery)
    refused = encode(error_response(ErrorCode.NOT_LEADER))
    follower.leader_answered(LeaseAnswer(query_id=query.query_id, member_id=1, body=refused), 0.05)
    out = follower.take_outbox()
    assert out.to_client == [] and out.at_leader == []
    follower.internal(RaftStatus(member_id=4, cluster_id=2, term=4, leader=4, commit=10, applied=10), 0.1)
    out = follower.take_outbox()  # now this member leads: its own expirer takes the call
    (call,) = out.to_lease
    assert call.request == LeaseKeepAliveRequest(id=9) and out.to_client == []
    answer = encode(LeaseKeepAliveResponse(header=ResponseHeader(), id=9, ttl=5))
    follower.internal(ReadResult(read_id=call.read_id, body=answer), 0.2)
    assert follower.take_outbox().to_client == [(b"c", 5, answer)]


def test_keep_alives_wait_for_a_leader_and_time_out_as_definite() -> None:
    core = make(request_timeout_s=1.0)
    ask(core, LeaseKeepAliveRequest(id=9), msg_id=1)
    out = core.take_outbox()
    assert out.to_lease == [] and out.at_leader == []
    core.tick(1.5)
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.NO_LEADER and reply[2].definite


def announce(core: GatewayCore, hub: HubAnnounce, now: float, token: str = "", local: bool = True) -> Any:
    core.client_message(b"h", pack(hub, msg_id=9, token=token), now, local=local)
    *_, (_, _, answer) = replies(core)
    return answer


def test_watch_hubs_are_listed_while_they_keep_announcing() -> None:
    core = make(events_urls=["tcp://10.0.0.1:2382"])
    announce(core, HubAnnounce(hub_id="h1", urls=["tcp://10.0.0.1:2381"]), now=0.0)
    announce(core, HubAnnounce(hub_id="h2", urls=["tcp://10.0.0.2:2381"]), now=2.0)
    ask(core, WatchHubsRequest(), msg_id=3, now=2.5)
    *_, (_, msg_id, listed) = replies(core)
    assert msg_id == 3 and listed.urls == ["tcp://10.0.0.1:2381", "tcp://10.0.0.2:2381"]
    assert listed.events_urls == []  # a client is not told where the events are published
    ask(core, WatchHubsRequest(), msg_id=4, now=4.0)  # h1 silent for 4 s
    ((_, _, later),) = replies(core)
    assert later.urls == ["tcp://10.0.0.2:2381"]


def test_only_hubs_may_announce_and_only_hubs_learn_the_event_stream() -> None:
    core = make(events_urls=["tcp://10.0.0.1:2382"], hub_token="sesame")
    hub = HubAnnounce(hub_id="h1", urls=["tcp://10.0.0.9:2381"])
    refused = announce(core, hub, now=0.0, local=False)  # a client on the public port, auth off
    assert isinstance(refused, ErrorResponse) and refused.code == ErrorCode.PERMISSION_DENIED
    assert announce(core, hub, now=0.0, token="guess", local=False).code == ErrorCode.PERMISSION_DENIED
    ask(core, WatchHubsRequest(), msg_id=3, now=0.5)
    ((_, _, listed),) = replies(core)
    assert listed.urls == [] and listed.events_urls == []
    accepted = announce(core, hub, now=1.0, token="sesame", local=False)  # holds the members' key
    assert accepted.urls == ["tcp://10.0.0.9:2381"] and accepted.events_urls == ["tcp://10.0.0.1:2382"]
    assert announce(core, hub, now=1.0).events_urls == ["tcp://10.0.0.1:2382"]  # the node's own


@pytest.mark.parametrize(
    "hub",
    [
        HubAnnounce(hub_id="h", urls=["not a url"]),
        HubAnnounce(hub_id="h", urls=["tcp://10.0.0.1:0"]),
        HubAnnounce(hub_id="h", urls=["tcp://10.0.0.1:99999"]),
        HubAnnounce(hub_id="h", urls=["tcp://:2381"]),
        HubAnnounce(hub_id="h", urls=[]),
        HubAnnounce(hub_id="h", urls=["tcp://10.0.0.1:2381"] * 9),
        HubAnnounce(hub_id="h", urls=["tcp://" + "x" * 300 + ":1"]),
        HubAnnounce(hub_id="h" * 65, urls=["tcp://10.0.0.1:2381"]),
        HubAnnounce(hub_id="", urls=["tcp://10.0.0.1:2381"]),
    ],
)
def test_an_announced_hub_needs_urls_a_client_can_use(hub: HubAnnounce) -> None:
    core = make()
    refused = announce(core, hub, now=0.0)
    assert isinstance(refused, ErrorResponse) and refused.code == ErrorCode.BAD_REQUEST
    ask(core, WatchHubsRequest(), msg_id=3, now=0.5)
    ((_, _, listed),) = replies(core)
    assert listed.urls == []


def test_the_gateway_remembers_a_bounded_number_of_hubs_and_only_its_clusters() -> None:
    core = make()
    for i in range(MAX_HUBS):
        assert not isinstance(
            announce(core, HubAnnounce(hub_id=f"h{i}", urls=["tcp://a:1"]), 0.0), ErrorResponse
        )
    refused = announce(core, HubAnnounce(hub_id="one-more", urls=["tcp://a:1"]), now=0.0)
    assert refused.code == ErrorCode.TOO_MANY_REQUESTS
    assert not isinstance(announce(core, HubAnnounce(hub_id="h1", urls=["tcp://a:1"]), 1.0), ErrorResponse)
    later = announce(core, HubAnnounce(hub_id="one-more", urls=["tcp://a:1"]), now=5.0)  # the rest expired
    assert not isinstance(later, ErrorResponse)
    foreign = announce(core, HubAnnounce(hub_id="x", urls=["tcp://a:2"], cluster_id=77), now=5.0)
    assert foreign.code == ErrorCode.CLUSTER_ID_MISMATCH


def test_a_member_whose_own_hub_stops_announcing_reports_it_down() -> None:
    core = make(local_hubs=2)
    core.internal(LEADER, 0)
    core.tick(0.0)
    announce(core, HubAnnounce(hub_id="a", urls=["tcp://h:1"], name="watch0"), now=1.0)
    announce(core, HubAnnounce(hub_id="a", urls=["tcp://h:1"], name="watch0"), now=9.0)
    core.tick(10.0)  # watch1 has not announced yet: starting up
    assert core.hubs_down == []
    announce(core, HubAnnounce(hub_id="a", urls=["tcp://h:1"], name="watch0"), now=19.0)
    core.tick(21.0)  # watch1 never announced within the start grace
    assert core.hubs_down == ["watch1"]
    logs = core.take_outbox().logs
    assert ("watch hub down: member unhealthy", {"hub": "watch1", "level": "error"}) in logs
    core.tick(25.0)  # watch0 silent for 6 s
    assert core.hubs_down == ["watch0", "watch1"]
    ask(core, StatusRequest(), msg_id=5, now=25.0)
    (state,) = [m for m in core.take_outbox().to_mvcc if isinstance(m, BackendStateRequest)]
    core.internal(
        BackendState(
            read_id=state.read_id,
            consistent_index=0,
            revision=1,
            compact_revision=0,
            db_size=0,
            db_size_in_use=0,
        ),
        25.0,
    )
    ((_, _, status),) = replies(core)
    assert status.errors == ["watch hub watch0 is down", "watch hub watch1 is down"]
    announce(core, HubAnnounce(hub_id="b", urls=["tcp://h:2"], name="watch0"), now=26.0)
    announce(core, HubAnnounce(hub_id="c", urls=["tcp://h:3"], name="watch1"), now=26.0)
    core.tick(26.5)
    assert core.hubs_down == []


def test_history_reads_for_hubs_go_straight_to_the_backend() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, WatchHistoryRequest(start_revision=5), msg_id=1)
    out = core.take_outbox()
    (read,) = out.to_mvcc
    assert isinstance(read, ReadRequest) and decode(read.body) == WatchHistoryRequest(start_revision=5)
    assert out.to_raft == []


def test_a_put_past_the_quota_is_refused_and_raises_nospace_once_a_second() -> None:
    core = make(quota_bytes=10_000)
    core.internal(LEADER, 0)
    core.internal(Results(applied_index=10, db_size=9_900), 0)
    ask(core, PutRequest(key=b"k", value=b"v" * 100), msg_id=1, now=1.0)
    ask(core, PutRequest(key=b"k", value=b"v" * 100), msg_id=2, now=1.5)
    ask(core, RangeRequest(key=b"k", serializable=True), msg_id=3, now=1.5)  # costs nothing
    ask(core, DeleteRangeRequest(key=b"k"), msg_id=4, now=1.5)
    out = core.take_outbox()
    assert [m for _, m, b in out.to_client if b.code == ErrorCode.NO_SPACE] == [1, 2]
    (propose,) = out.to_raft
    proposed = [decode(d, InternalRequest).request for d in propose.data]
    assert proposed[0] == AlarmRequest(action=AlarmAction.ACTIVATE, member_id=1, alarm=AlarmType.NOSPACE)
    assert proposed[1:] == [DeleteRangeRequest(key=b"k")] and len(out.to_mvcc) == 1
    ask(core, PutRequest(key=b"k", value=b"v" * 100), msg_id=5, now=2.6)
    assert len(core.take_outbox().to_raft) == 1  # proposed again a second later
    core.internal(Results(applied_index=11, db_size=100), 3.0)  # room again (after a defrag)
    ask(core, PutRequest(key=b"k", value=b"v"), msg_id=6, now=3.0)
    (propose,) = core.take_outbox().to_raft
    assert decode(propose.data[0], InternalRequest).request == PutRequest(key=b"k", value=b"v")


def test_the_leaders_gateway_proposes_the_compaction_and_logs_its_outcome() -> None:
    core = make(compactor=compactor.Periodic(10.0, 0.0))
    follower = RaftStatus(member_id=1, cluster_id=2, term=3, leader=9, commit=10, applied=10)
    core.internal(follower, 0)
    for t in range(0, 12):
        core.internal(Results(applied_index=10 + t, revision=100 + t), float(t))
        core.tick(float(t))
    assert core.take_outbox().to_raft == []  # a follower only samples
    core.internal(LEADER, 12.0)
    core.tick(12.0)
    out = core.take_outbox()
    (propose,) = out.to_raft
    request = decode(propose.data[0], InternalRequest)
    assert isinstance(request.request, CompactionRequest) and 101 <= request.request.revision <= 102
    assert out.logs[0][0] == "starting auto-compaction"
    body = encode(error_response(ErrorCode.COMPACTED))  # already compacted that far: done
    core.internal(
        Results(applied_index=30, results=[ApplyResult(request_id=request.request_id, body=body)]), 12.5
    )
    assert core.take_outbox().logs == [
        ("finished auto-compaction", {"revision": request.request.revision, "error": "COMPACTED"})
    ]
    for at in (13.0, 22.0):  # the next one is due 10 s later; this one fails
        core.tick(at)
    (propose,) = core.take_outbox().to_raft
    core.internal(ProposeFailed(request_ids=propose.request_ids, code=ErrorCode.NO_LEADER), 22.1)
    assert core.take_outbox().logs[0][0] == "failed auto-compaction"
    core.tick(23.5)
    assert len(core.take_outbox().to_raft) == 1  # tried again at the next sample
    core.tick(31.0)  # that one is never heard of again (lost in a leader change): a timeout
    failed = [f["error"] for e, f in core.take_outbox().logs if e == "failed auto-compaction"]
    assert failed == ["TIMEOUT"]


def test_a_read_that_failed_its_checksums_raises_corrupt_for_this_member() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, RangeRequest(key=b"k", serializable=True), msg_id=1, now=1.0)
    (read,) = core.take_outbox().to_mvcc
    core.internal(ReadResult(read_id=read.read_id, body=encode(error_response(ErrorCode.CORRUPT))), 1.0)
    out = core.take_outbox()
    assert [decode(b).code for _, _, b in out.to_client] == [ErrorCode.CORRUPT]  # refused, not served
    (propose,) = out.to_raft
    raised = decode(propose.data[0], InternalRequest).request
    assert raised == AlarmRequest(action=AlarmAction.ACTIVATE, member_id=1, alarm=AlarmType.CORRUPT)


def test_a_client_may_have_only_so_many_requests_and_bytes_in_flight() -> None:
    core = make(max_client_inflight=3, max_client_inflight_bytes=1 << 20)
    core.internal(LEADER, 0)
    for i in range(4):
        ask(core, RangeRequest(key=b"k%d" % i, serializable=True), msg_id=i + 1, route=b"greedy")
    ask(core, RangeRequest(key=b"k", serializable=True), msg_id=9, route=b"other")  # others are not held back
    out = core.take_outbox()
    ((route, msg_id, refused),) = out.to_client
    assert (route, msg_id) == (b"greedy", 4) and isinstance(refused, ErrorResponse)
    assert refused.code == ErrorCode.TOO_MANY_REQUESTS and refused.message == "etcdserver: too many requests"
    reads = [r for r in out.to_mvcc if isinstance(r, ReadRequest)]
    assert len(reads) == 4
    body = encode(RangeResponse(header=ResponseHeader(revision=1)))
    core.internal(ReadResult(read_id=reads[0].read_id, body=body), 0)  # one answered: room for one
    replies(core)
    ask(core, RangeRequest(key=b"k5", serializable=True), msg_id=5, route=b"greedy")
    assert replies(core) == [] and core.pending_count == 4
    big = make(max_client_inflight=100, max_client_inflight_bytes=700)
    big.internal(LEADER, 0)
    for i in range(3):  # bytes count too: about 310 each
        ask(big, PutRequest(key=b"k", value=b"v" * 290), msg_id=i + 1, route=b"greedy")
    (refused,) = replies(big)
    assert refused[1] == 3 and error_code(refused) == ErrorCode.TOO_MANY_REQUESTS


def test_a_learner_serves_serializable_reads_and_refuses_the_rest_as_etcd() -> None:
    core = make()
    core.internal(
        RaftStatus(member_id=1, cluster_id=2, term=3, leader=5, commit=10, applied=10, is_learner=True), 0
    )
    refused = [
        PutRequest(key=b"k", value=b"v"),
        DeleteRangeRequest(key=b"k"),
        TxnRequest(),
        RangeRequest(key=b"k"),  # linearizable
        LeaseGrantRequest(ttl=10),
        LeaseKeepAliveRequest(id=1),
        MemberAddRequest(peer_urls=["tcp://127.0.0.1:1"]),
        CompactionRequest(revision=1),
    ]
    for i, request in enumerate(refused):
        ask(core, request, msg_id=i)
    got = replies(core)
    assert len(got) == len(refused)
    for reply in got:
        assert error_code(reply) == ErrorCode.NOT_SUPPORTED_FOR_LEARNER and reply[2].definite
        assert reply[2].message == "etcdserver: rpc not supported for learner"
    ask(core, RangeRequest(key=b"k", serializable=True), msg_id=20)
    ask(core, StatusRequest(), msg_id=21)
    ask(core, MemberListRequest(), msg_id=22)
    out = core.take_outbox()
    assert out.to_client == []
    assert len(out.to_mvcc) == 2 and len(out.to_raft) == 1  # the read and status, the member list


# -- exactly-once writes: sessions, copies ----------------------------------------------------
def ask_in_session(core: GatewayCore, request: Any, seq: int, acked: int, route: bytes = b"c") -> None:
    core.client_message(route, pack(request, msg_id=seq, client_id=99, acked=acked), 0.0)


def answered(index: int, rid: int, body: bytes) -> Results:
    return Results(applied_index=index, results=[ApplyResult(request_id=rid, body=body)])


def test_a_write_is_named_in_its_clients_session_or_the_gateways() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask_in_session(core, PutRequest(key=b"a"), seq=5, acked=4)
    ask(core, PutRequest(key=b"b"), msg_id=6)
    ask(core, PutRequest(key=b"c"), msg_id=7)
    (propose,) = core.take_outbox().to_raft
    a, b, c = (decode(data, InternalRequest) for data in propose.data)
    assert (a.client_id, a.seq, a.acked) == (99, 5, 4)
    assert b.client_id == c.client_id == core.session_id != 0
    assert (b.seq, c.seq) == (b.request_id, c.request_id)
    assert b.acked == c.acked == b.seq  # the oldest write of the gateway's session not answered
    core.internal(Results(applied_index=11, results=[ApplyResult(request_id=b.request_id, body=b"x")]), 1)
    ask(core, PutRequest(key=b"d"), msg_id=8)
    (propose,) = core.take_outbox().to_raft
    assert decode(propose.data[0], InternalRequest).acked == c.seq


def test_a_clients_copy_of_a_pending_write_is_answered_on_its_new_connection_not_proposed() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask_in_session(core, PutRequest(key=b"a"), seq=5, acked=5, route=b"old")
    (propose,) = core.take_outbox().to_raft
    ask_in_session(core, PutRequest(key=b"a"), seq=5, acked=5, route=b"new")  # reconnected
    assert core.take_outbox().to_raft == []
    core.internal(answered(11, propose.request_ids[0], b"r"), 1)
    assert core.take_outbox().to_client == [(b"new", 5, b"r")]
    ask_in_session(core, PutRequest(key=b"a"), seq=5, acked=5, route=b"new")  # answered: goes to the log
    (again,) = core.take_outbox().to_raft  # and the backend answers it from the session
    assert decode(again.data[0], InternalRequest).seq == 5


@pytest.mark.parametrize(
    "header",
    [
        Header(msg_id=5, client_id=2**64),
        Header(msg_id=5, client_id=1, acked=6),
        Header(msg_id=5, client_id=-1),
    ],
)
def test_a_malformed_session_is_refused(header: Header) -> None:
    core = make()
    core.internal(LEADER, 0)
    core.client_message(b"c", [encode(header), encode(PutRequest(key=b"k"))], 0.0)
    (reply,) = replies(core)
    assert error_code(reply) == ErrorCode.BAD_REQUEST and core.take_outbox().to_raft == []


def test_pending_writes_are_proposed_again_after_a_raft_core_restart_once_a_leader_is_known() -> None:
    core = make(request_timeout_s=5.0)
    core.internal(LEADER, 0)
    ask(core, PutRequest(key=b"k"), msg_id=1)
    ask_in_session(core, PutRequest(key=b"j"), seq=2, acked=2)
    (propose,) = core.take_outbox().to_raft
    core.internal(ActorStarted(actor="raft"), 0.5)
    # The client with a session of its own is sent to another member, indefinitely: its
    # first copy may yet commit, and its next is answered once.
    (reply,) = replies(core)
    assert reply[1] == 2 and error_code(reply) == ErrorCode.UNAVAILABLE and not reply[2].definite
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=3, leader=0, commit=10, applied=10), 0.6)
    assert core.take_outbox().to_raft == []  # no leader yet: a copy would only be dropped
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=4, leader=2, commit=10, applied=10), 1.0)
    (copies,) = core.take_outbox().to_raft
    assert (copies.data, copies.request_ids) == (propose.data[:1], propose.request_ids[:1])  # the same bytes
    core.internal(ProposeFailed(request_ids=copies.request_ids, code=ErrorCode.NO_LEADER), 1.1)
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=4, leader=0, commit=10, applied=10), 1.2)
    core.internal(ProposeFailed(request_ids=copies.request_ids, code=ErrorCode.NO_LEADER), 1.3)
    assert replies(core) == []  # the first proposals may yet commit: no definite failure
    core.tick(5.5)
    assert {error_code(r) for r in replies(core)} == {ErrorCode.TIMEOUT}


def test_pending_writes_are_proposed_again_when_the_leader_changes_or_the_backend_restarts() -> None:
    core = make()
    core.internal(LEADER, 0)
    ask(core, PutRequest(key=b"k"), msg_id=1)
    (propose,) = core.take_outbox().to_raft
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=4, leader=3, commit=10, applied=10), 1.0)
    (copy,) = core.take_outbox().to_raft
    assert copy.data == propose.data
    core.internal(ActorStarted(actor="mvcc"), 1.5)  # it may have applied it and died unheard
    (copy,) = core.take_outbox().to_raft
    assert copy.data == propose.data
    core.internal(answered(11, propose.request_ids[0], b"r"), 2)
    core.internal(answered(12, propose.request_ids[0], b"r"), 2)  # the copy's answer
    assert core.take_outbox().to_client == [(b"c", 1, b"r")]  # answered once
    core.internal(RaftStatus(member_id=1, cluster_id=2, term=5, leader=1, commit=12, applied=12), 3.0)
    assert core.take_outbox().to_raft == []  # nothing pending, nothing copied


def test_a_turns_reads_go_to_the_backend_as_one_message_and_keep_their_place() -> None:
    r1, r2, r3 = (ReadRequest(read_id=i, body=b"x") for i in (1, 2, 3))
    probe = BackendStateRequest(read_id=9)
    assert batched_reads([r1]) == [r1]
    assert batched_reads([r1, r2, probe, r3]) == [ReadBatch(reads=[r1, r2]), probe, r3]
    assert batched_reads([probe, r1, r2, r3]) == [probe, ReadBatch(reads=[r1, r2, r3])]
    assert batched_reads([]) == []
