"""etcd's protobuf <-> etcdz's messages (actors/v3rpc/translate.py), and the wire numbers the
translation rests on: etcd's clients send binary protobuf, so a field number or enum value
that differs from etcd's is a silent corruption, not an error."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from actors.v3rpc.translate import STATUS, Untranslatable, cancel_reason, snake, status_of, to_cbor, to_pb
from proto_schemas import cluster, kv, lease, maintenance, watch
from proto_schemas.codec import decode, encode
from proto_schemas.errors import TEXTS, ErrorCode, error_response
from proto_schemas.etcdpb import auth_pb2, kv_pb2, rpc_pb2

# (message, field, number) as etcd's api/etcdserverpb, mvccpb and authpb define them
NUMBERS = [
    (rpc_pb2.ResponseHeader, "raft_term", 4),
    (rpc_pb2.RangeRequest, "serializable", 7),
    (rpc_pb2.RangeRequest, "max_create_revision", 13),
    (rpc_pb2.PutRequest, "ignore_lease", 6),
    (rpc_pb2.RequestOp, "request_txn", 4),
    (rpc_pb2.Compare, "lease", 8),
    (rpc_pb2.Compare, "range_end", 64),
    (rpc_pb2.WatchCreateRequest, "fragment", 8),
    (rpc_pb2.WatchResponse, "fragment", 7),
    (rpc_pb2.WatchResponse, "events", 11),
    (rpc_pb2.LeaseTimeToLiveResponse, "keys", 5),
    (rpc_pb2.StatusResponse, "isLearner", 10),
    (rpc_pb2.AuthUserAddRequest, "hashedPassword", 4),
    (kv_pb2.KeyValue, "lease", 6),
    (kv_pb2.Event, "prev_kv", 3),
    (auth_pb2.Role, "keyPermission", 2),
]


@pytest.mark.parametrize(("cls", "name", "number"), NUMBERS)
def test_field_numbers_are_etcds(cls: Any, name: str, number: int) -> None:
    assert cls.DESCRIPTOR.fields_by_name[name].number == number


def test_enum_values_are_etcds() -> None:
    assert rpc_pb2.Compare.CompareResult.Value("NOT_EQUAL") == 3
    assert rpc_pb2.Compare.CompareTarget.Value("LEASE") == 4
    assert rpc_pb2.RangeRequest.SortTarget.Value("VALUE") == 4
    assert rpc_pb2.AlarmType.Value("CORRUPT") == 2
    assert rpc_pb2.WatchCreateRequest.FilterType.Value("NODELETE") == 1
    assert kv_pb2.Event.EventType.Value("DELETE") == 1
    assert auth_pb2.Permission.Type.Value("READWRITE") == 2


def test_the_services_are_etcds() -> None:
    services = {
        s.full_name: [m.name for m in s.methods] for s in rpc_pb2.DESCRIPTOR.services_by_name.values()
    }
    assert services["etcdserverpb.KV"] == ["Range", "Put", "DeleteRange", "Txn", "Compact"]
    assert "LeaseKeepAlive" in services["etcdserverpb.Lease"]
    assert "Snapshot" in services["etcdserverpb.Maintenance"]
    assert len(services["etcdserverpb.Auth"]) == 17


def test_names_are_etcdzs() -> None:
    assert [snake(n) for n in ("ID", "TTL", "grantedTTL", "peerURLs", "dbSizeInUse", "remaining_TTL")] == [
        "id",
        "ttl",
        "granted_ttl",
        "peer_urls",
        "db_size_in_use",
        "remaining_ttl",
    ]


def unary_requests() -> list[Any]:
    streams = {"Watch", "LeaseKeepAlive", "Snapshot", "Hash", "Downgrade"}
    return [
        getattr(rpc_pb2, m.input_type.name)
        for s in rpc_pb2.DESCRIPTOR.services_by_name.values()
        for m in s.methods
        if m.name not in streams
    ]


@pytest.mark.parametrize("cls", unary_requests(), ids=lambda c: c.__name__)
def test_every_unary_request_has_an_etcdz_message_that_encodes(cls: Any) -> None:
    ours = to_cbor(cls())
    assert decode(encode(ours)) == ours


def test_a_txn_with_every_kind_of_op_and_a_flattened_compare() -> None:
    txn = rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                key=b"a", result=rpc_pb2.Compare.GREATER, target=rpc_pb2.Compare.MOD, mod_revision=7
            )
        ],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"a", value=b"1", prev_kv=True)),
            rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest()),
        ],
        failure=[
            rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"a", limit=2)),
            rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"b")),
        ],
    )
    ours = to_cbor(txn)
    assert ours.compare == [
        kv.Compare(key=b"a", result=kv.CompareResult.GREATER, target=kv.CompareTarget.MOD, mod_revision=7)
    ]
    assert ours.success == [kv.PutRequest(key=b"a", value=b"1", prev_kv=True), kv.TxnRequest()]
    assert ours.failure == [kv.RangeRequest(key=b"a", limit=2), kv.DeleteRangeRequest(key=b"b")]
    with pytest.raises(Untranslatable):
        to_cbor(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]))


def test_responses_in_etcds_shape() -> None:
    header = kv.ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)
    txn = kv.TxnResponse(
        header=header,
        succeeded=True,
        responses=[
            kv.RangeResponse(header=header, kvs=[kv.KeyValue(key=b"a", value=b"1", version=1)], count=1),
            kv.PutResponse(header=header),
        ],
    )
    out = to_pb(txn, rpc_pb2.TxnResponse)
    assert out.header.raft_term == 4
    assert out.responses[0].response_range.kvs[0].value == b"1"
    assert out.responses[1].WhichOneof("response") == "response_put"
    ttl = to_pb(
        lease.LeaseTimeToLiveResponse(header=header, id=5, ttl=9, granted_ttl=10, keys=[b"k"]),
        rpc_pb2.LeaseTimeToLiveResponse,
    )
    assert (ttl.ID, ttl.TTL, ttl.grantedTTL, list(ttl.keys)) == (5, 9, 10, [b"k"])
    members = to_pb(
        cluster.MemberListResponse(
            header=header, members=[cluster.Member(id=7, name="n", peer_urls=["p"], client_urls=["c"])]
        ),
        rpc_pb2.MemberListResponse,
    )
    assert (members.members[0].ID, list(members.members[0].peerURLs)) == (7, ["p"])
    event = watch.Event(type=kv.EventType.DELETE, kv=kv.KeyValue(key=b"k"), prev_kv=kv.KeyValue(key=b"k"))
    resp = to_pb(watch.WatchResponse(header=header, watch_id=3, events=[event]), rpc_pb2.WatchResponse)
    assert resp.events[0].type == kv_pb2.Event.DELETE and resp.events[0].HasField("prev_kv")
    alarms = to_pb(
        maintenance.AlarmResponse(
            header=header, alarms=[maintenance.AlarmMember(member_id=2, alarm=maintenance.AlarmType.NOSPACE)]
        ),
        rpc_pb2.AlarmResponse,
    )
    assert (alarms.alarms[0].memberID, alarms.alarms[0].alarm) == (2, rpc_pb2.NOSPACE)


def test_watch_requests_and_user_options() -> None:
    create = rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b"a", filters=[rpc_pb2.WatchCreateRequest.NOPUT])
    )
    assert to_cbor(create) == watch.WatchRequest(
        request=watch.WatchCreateRequest(key=b"a", filters=[watch.FilterType.NOPUT])
    )
    cancel = rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=4))
    assert to_cbor(cancel) == watch.WatchRequest(request=watch.WatchCancelRequest(watch_id=4))
    with pytest.raises(Untranslatable):
        to_cbor(rpc_pb2.WatchRequest())
    add = rpc_pb2.AuthUserAddRequest(name="u", options=auth_pb2.UserAddOptions(no_password=True))
    assert to_cbor(add).no_password is True


def test_every_error_has_etcds_status() -> None:
    assert set(STATUS) == set(ErrorCode)
    assert status_of(error_response(ErrorCode.COMPACTED)) == (
        "OUT_OF_RANGE",
        "etcdserver: mvcc: required revision has been compacted",
    )
    assert status_of(error_response(ErrorCode.LEASE_NOT_FOUND))[0] == "NOT_FOUND"
    assert status_of(error_response(ErrorCode.PERMISSION_DENIED))[0] == "PERMISSION_DENIED"
    assert status_of(error_response(ErrorCode.NO_LEADER)) == ("UNAVAILABLE", "etcdserver: no leader")
    assert status_of(error_response(ErrorCode.INVALID_AUTH_TOKEN))[0] == "UNAUTHENTICATED"
    assert status_of(error_response(ErrorCode.REQUEST_TOO_LARGE))[0] == "INVALID_ARGUMENT"


def test_message_fields_of_requests_are_all_known_to_the_translation() -> None:
    """A request field etcdz has no name for is dropped silently: list the ones dropped on
    purpose, so a new one shows up here."""
    dropped = set()
    for cls in unary_requests():
        ours = type(to_cbor(cls()))
        names = set(ours.__dataclass_fields__)
        for f in cls.DESCRIPTOR.fields:
            if f.type != FieldDescriptor.TYPE_MESSAGE and snake(f.name) not in names:
                dropped.add(f"{cls.__name__}.{f.name}")
    assert dropped <= {"MemberListRequest.linearizable", "AuthUserAddRequest.options"}, dropped


def test_watch_ids_are_etcds_over_the_hubs_own() -> None:
    import itertools

    from actors.v3rpc.streams import PROGRESS_ALL, StreamWatchers

    header = kv.ResponseHeader(revision=5)
    hub_ids = itertools.count(40)  # a reused hub connection: its ids go on from the former stream's
    mine = StreamWatchers()
    assert [mine.create(0, hub_ids.__next__), mine.create(7, hub_ids.__next__)] == [40, 41]
    assert mine.create(7, hub_ids.__next__) is None  # taken: etcd refuses it
    assert mine.create(0, hub_ids.__next__) == 42  # the next automatic id: 1
    assert mine.answer(watch.WatchResponse(header=header, watch_id=40, created=True)) == 0
    assert mine.answer(watch.WatchResponse(header=header, watch_id=41, created=True)) == 7
    assert mine.answer(watch.WatchResponse(header=header, watch_id=42, created=True)) == 1
    assert mine.answer(watch.WatchResponse(header=header, watch_id=PROGRESS_ALL)) == PROGRESS_ALL
    assert (
        mine.answer(watch.WatchResponse(header=header, watch_id=3, canceled=True)) is None
    )  # a former stream's
    assert mine.cancel(7) == 41 and mine.cancel(9) is None
    assert mine.answer(watch.WatchResponse(header=header, watch_id=41, canceled=True)) == 7
    assert mine.answer(watch.WatchResponse(header=header, watch_id=41)) is None  # over
    assert mine.hub_ids() == {40, 42}
    assert mine.create(0, hub_ids.__next__) == 43  # 2: ids 0 and 1 are taken, 7 is free again
    assert mine.to_client[43] == 2


def test_a_watch_refused_for_permission_is_cancelled_with_etcds_words() -> None:
    denied = cancel_reason(TEXTS[ErrorCode.PERMISSION_DENIED])
    assert denied == "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    assert cancel_reason("a reason of the hub's") == "a reason of the hub's"
