"""Every request type of the API, on a real node with auth enabled, sent by a user who holds no
role: each is refused with ``etcdserver: permission denied`` (and without a token with ``user
name is empty``) unless the table says why anyone, or any logged-in user, may send it. The
tables are checked against the gateway's dispatch table and the watch hub's request types, so
a new request type cannot ship without a line here. Also through the real sockets: a streamed
range resumed outside its range, and a lease's keys (etcd's CVE-2023-32082)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import zmq
from test_auth import raw_call

from actors.gateway.core import CLIENT_REQUESTS
from etcdz import Client, ops
from etcdz.errors import PermissionDenied
from proto_schemas.auth import (
    AuthCheckRequest,
    AuthDisableRequest,
    AuthEnableRequest,
    AuthenticateRequest,
    AuthStatusRequest,
    Permission,
    PermissionType,
    RoleAddRequest,
    RoleDeleteRequest,
    RoleGetRequest,
    RoleGrantPermissionRequest,
    RoleListRequest,
    RoleRevokePermissionRequest,
    UserAddRequest,
    UserChangePasswordRequest,
    UserDeleteRequest,
    UserGetRequest,
    UserGrantRoleRequest,
    UserListRequest,
    UserRevokeRoleRequest,
)
from proto_schemas.cluster import (
    MemberAddRequest,
    MemberListRequest,
    MemberPromoteRequest,
    MemberRemoveRequest,
    MemberUpdateRequest,
    MoveLeaderRequest,
)
from proto_schemas.codec import decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.errors import TEXTS, ErrorCode, ErrorResponse
from proto_schemas.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    HashKVRequest,
    PutRequest,
    RangeRequest,
    RangeStreamRequest,
    RangeStreamResponse,
    StatusRequest,
    TxnRequest,
)
from proto_schemas.lease import (
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
)
from proto_schemas.maintenance import AlarmAction, AlarmRequest, AlarmType, DefragmentRequest, SnapshotRequest
from proto_schemas.watch import (
    HubAnnounce,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchHistoryRequest,
    WatchHubsRequest,
    WatchHubsResponse,
    WatchPing,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)
from tools.cluster import LocalCluster

LEASE = 0x5EC  # root's lease, holding /secret-leased
NOBODY, NOBODY_PW = "nobody", "npw"  # a user with no role


@dataclass(frozen=True)
class Denied:
    """A user without the permission gets ``permission denied`` for ``sample``."""

    sample: Any


@dataclass(frozen=True)
class Anyone:
    """Anyone may send it, even without a token."""

    sample: Any
    reason: str


@dataclass(frozen=True)
class LoggedIn:
    """Any user with a valid token may send it, holding no permission (none is checked)."""

    sample: Any
    reason: str


Expect = Denied | Anyone | LoggedIn
SECRET = ops.get("/secret")

GATEWAY: dict[type, Expect] = {
    RangeRequest: Denied(SECRET),
    PutRequest: Denied(ops.put("/secret", "x")),
    DeleteRangeRequest: Denied(ops.delete("/secret")),
    TxnRequest: Denied(ops.txn([], [SECRET], [])),
    CompactionRequest: Denied(CompactionRequest(revision=1)),
    RangeStreamRequest: Denied(RangeStreamRequest(range=SECRET)),
    StatusRequest: Anyone(StatusRequest(), "as etcd's Status: health probes carry no token"),
    HashKVRequest: Denied(HashKVRequest()),
    LeaseGrantRequest: LoggedIn(LeaseGrantRequest(ttl=60), "etcd checks none: a new lease holds no key"),
    # A lease holding no key is anyone's to revoke, as in etcd; one holding a key is not:
    LeaseRevokeRequest: Denied(LeaseRevokeRequest(id=LEASE)),
    # Without keys it is anyone's (etcd), with keys only for who may read them all (CVE-2023-32082):
    LeaseTimeToLiveRequest: Denied(LeaseTimeToLiveRequest(id=LEASE, keys=True)),
    LeaseLeasesRequest: LoggedIn(LeaseLeasesRequest(), "etcd checks no permission: lease ids only"),
    LeaseKeepAliveRequest: LoggedIn(
        LeaseKeepAliveRequest(id=LEASE), "etcd checks no permission: whoever knows the id keeps it alive"
    ),
    WatchHistoryRequest: Denied(WatchHistoryRequest(start_revision=1)),  # the hubs' (root or node)
    WatchHubsRequest: Anyone(WatchHubsRequest(), "where the hubs are: a watch is checked at the hub"),
    HubAnnounce: Denied(HubAnnounce(hub_id="fake", urls=["tcp://127.0.0.1:1"])),
    AlarmRequest: Denied(  # listing alarms (GET) is any logged-in user's, as etcd's
        AlarmRequest(action=AlarmAction.ACTIVATE, member_id=1, alarm=AlarmType.NOSPACE)
    ),
    DefragmentRequest: Denied(DefragmentRequest()),
    SnapshotRequest: Denied(SnapshotRequest()),
    # Anyone's at the gateway (a hub asks it for a watcher), but answered for the token inside:
    AuthCheckRequest: Denied(AuthCheckRequest(token="", key=b"/secret")),
    MemberListRequest: Anyone(MemberListRequest(), "as etcd's MemberList: clients find endpoints"),
    MemberAddRequest: Denied(MemberAddRequest(peer_urls=["tcp://127.0.0.1:1"])),
    MemberRemoveRequest: Denied(MemberRemoveRequest(id=1)),
    MemberUpdateRequest: Denied(MemberUpdateRequest(id=1, peer_urls=["tcp://127.0.0.1:1"])),
    MemberPromoteRequest: Denied(MemberPromoteRequest(id=1)),
    MoveLeaderRequest: Denied(MoveLeaderRequest(target_id=1)),
    AuthEnableRequest: Denied(AuthEnableRequest()),
    AuthDisableRequest: Denied(AuthDisableRequest()),
    AuthStatusRequest: Anyone(AuthStatusRequest(), "as etcd's: a client learns whether to log in"),
    AuthenticateRequest: Anyone(AuthenticateRequest(name=NOBODY, password=NOBODY_PW), "the login itself"),
    UserAddRequest: Denied(UserAddRequest(name="x", password="p")),
    UserGetRequest: Denied(UserGetRequest(name="root")),
    UserDeleteRequest: Denied(UserDeleteRequest(name="root")),
    UserChangePasswordRequest: Denied(UserChangePasswordRequest(name="root", password="p")),
    UserGrantRoleRequest: Denied(UserGrantRoleRequest(user=NOBODY, role="root")),
    UserRevokeRoleRequest: Denied(UserRevokeRoleRequest(name="root", role="root")),
    UserListRequest: Denied(UserListRequest()),
    RoleAddRequest: Denied(RoleAddRequest(name="x")),
    RoleGetRequest: Denied(RoleGetRequest(role="root")),
    RoleListRequest: Denied(RoleListRequest()),
    RoleDeleteRequest: Denied(RoleDeleteRequest(role="root")),
    RoleGrantPermissionRequest: Denied(
        RoleGrantPermissionRequest(name="x", perm=Permission(perm_type=PermissionType.READ, key=b"k"))
    ),
    RoleRevokePermissionRequest: Denied(RoleRevokePermissionRequest(role="x", key=b"k")),
}

HUB: dict[type, Expect] = {
    WatchCreateRequest: Denied(WatchRequest(request=WatchCreateRequest(key=b"/secret"))),
    WatchCancelRequest: Anyone(
        WatchRequest(request=WatchCancelRequest(watch_id=1)), "touches only the stream's own watchers"
    ),
    WatchProgressRequest: Anyone(
        WatchRequest(request=WatchProgressRequest()), "a revision only, as Status gives, as etcd's"
    ),
    WatchPing: Anyone(WatchPing(), "the hub's liveness and id"),
}


def test_the_tables_name_every_request_the_gateway_and_the_hubs_accept() -> None:
    assert set(GATEWAY) == set(CLIENT_REQUESTS)
    inner = typing.get_args(typing.get_type_hints(WatchRequest)["request"])
    assert set(HUB) == {WatchPing, *inner}
    for table in (GATEWAY, HUB):
        for kind, expect in table.items():
            sample = expect.sample.request if isinstance(expect.sample, WatchRequest) else expect.sample
            assert type(sample) is kind


@pytest.fixture(scope="module")
def tokens(secured_shared_node: tuple[LocalCluster, Client]) -> Iterator[dict[str, str]]:
    """A user with no role, root's lease holding a key, and the tokens of nobody and root."""
    node, root = secured_shared_node
    root.user_add(NOBODY, NOBODY_PW)
    root.lease_grant(600, lease_id=LEASE)
    root.put("/secret-leased", "x", lease=LEASE)
    yield {
        "nobody": root.authenticate(NOBODY, NOBODY_PW).token,
        "root": root.authenticate("root", "rootpw").token,
    }


def code_of(answer: object) -> ErrorCode | None:
    return answer.code if isinstance(answer, ErrorResponse) else None


def _with_token(sample: Any, token: str) -> Any:
    return dataclasses.replace(sample, token=token) if isinstance(sample, AuthCheckRequest) else sample


@pytest.mark.parametrize("kind", list(GATEWAY), ids=lambda k: k.__name__)
def test_every_gateway_request_without_the_permission(
    kind: type, secured_shared_node: tuple[LocalCluster, Client], tokens: dict[str, str]
) -> None:
    node, _ = secured_shared_node
    url, expect = node.endpoints[0], GATEWAY[kind]
    as_nobody = raw_call(url, _with_token(expect.sample, tokens["nobody"]), tokens["nobody"])
    anonymous = raw_call(url, _with_token(expect.sample, tokens["nobody"]))
    if isinstance(expect, Denied):
        assert code_of(as_nobody) == ErrorCode.PERMISSION_DENIED, as_nobody
        assert isinstance(as_nobody, ErrorResponse)
        assert as_nobody.message == TEXTS[ErrorCode.PERMISSION_DENIED]
        expected = ErrorCode.PERMISSION_DENIED if kind is AuthCheckRequest else ErrorCode.USER_EMPTY
        assert code_of(anonymous) == expected, anonymous
    elif isinstance(expect, LoggedIn):
        assert code_of(as_nobody) is None, as_nobody
        assert code_of(anonymous) == ErrorCode.USER_EMPTY, anonymous
    else:
        assert code_of(as_nobody) is None and code_of(anonymous) is None, (as_nobody, anonymous)


def hub_call(url: str, body: object, token: str = "") -> Any:
    """One message on a fresh stream to a hub; its first watch answer (a ping's pong as is)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    try:
        sock.send_multipart(pack(body, msg_id=1, token=token))
        assert sock.poll(10_000), "no answer"
        answer = decode(unpack_header(sock.recv_multipart())[1])
        if isinstance(answer, WatchResponses):
            return answer.responses[0]
        return answer
    finally:
        ctx.destroy(linger=0)


@pytest.mark.parametrize("kind", list(HUB), ids=lambda k: k.__name__)
def test_every_watch_hub_request_without_the_permission(
    kind: type, secured_shared_node: tuple[LocalCluster, Client], tokens: dict[str, str]
) -> None:
    node, _ = secured_shared_node
    hubs = raw_call(node.endpoints[0], WatchHubsRequest())
    assert isinstance(hubs, WatchHubsResponse) and hubs.urls
    expect = HUB[kind]
    as_nobody = hub_call(hubs.urls[0], expect.sample, tokens["nobody"])
    anonymous = hub_call(hubs.urls[0], expect.sample)
    if isinstance(expect, Denied):  # as etcd: created and canceled at once, the error as the reason
        assert isinstance(as_nobody, WatchResponse) and as_nobody.created and as_nobody.canceled
        assert as_nobody.cancel_reason == TEXTS[ErrorCode.PERMISSION_DENIED] and not as_nobody.events
        assert isinstance(anonymous, WatchResponse) and anonymous.canceled
        assert anonymous.cancel_reason == TEXTS[ErrorCode.USER_EMPTY]
    else:
        for answer in (as_nobody, anonymous):
            assert not isinstance(answer, ErrorResponse), answer
            assert not (isinstance(answer, WatchResponse) and answer.events), answer


def test_a_streamed_range_resumed_outside_its_range_reads_nothing_there(
    secured_shared_node: tuple[LocalCluster, Client], tokens: dict[str, str]
) -> None:
    """alice may read /a/ only: resuming her stream at \\x00 must not reach /secret."""
    node, root = secured_shared_node
    url = node.endpoints[0]
    alice = root.authenticate("alice", "apw").token
    for range_, resume in (
        (ops.get("/a/x"), b"\x00"),
        (ops.get("/a/", prefix=True), b"\x00"),
        (ops.get("/a/", prefix=True, serializable=True), b"/secret"),
        (ops.get("/a/", prefix=True), b"/a0"),
    ):
        answer = raw_call(url, RangeStreamRequest(range=range_, resume_key=resume), alice)
        assert code_of(answer) == ErrorCode.BAD_REQUEST, answer
        assert isinstance(answer, ErrorResponse) and "resume_key is outside the range" in answer.message
    inside = raw_call(url, RangeStreamRequest(range=ops.get("/a/", prefix=True), resume_key=b"/a/x"), alice)
    assert isinstance(inside, RangeStreamResponse) and [kv.key for kv in inside.kvs] == [b"/a/x"]
    with Client(node.endpoints, user="alice", password="apw") as sdk:
        assert [kv.key for kv in sdk.get_stream("/a/", prefix=True, chunk_bytes=1)] == [b"/a/x"]


def test_a_leases_keys_are_told_and_lent_only_to_who_may_touch_them(
    secured_shared_node: tuple[LocalCluster, Client], tokens: dict[str, str]
) -> None:
    """alice may read /a/ and write [/b, /c): root's lease holds /secret-leased."""
    node, root = secured_shared_node
    with Client(node.endpoints, user="alice", password="apw") as alice:
        assert alice.lease_time_to_live(LEASE).ttl > 0  # without keys: anyone's, as etcd
        with pytest.raises(PermissionDenied, match="etcdserver: permission denied"):
            alice.lease_time_to_live(LEASE, keys=True)  # CVE-2023-32082
        with pytest.raises(PermissionDenied):
            alice.put("/b-leased", "x", lease=LEASE)  # attaching to a lease she could not revoke
        with pytest.raises(PermissionDenied):
            alice.txn([], [ops.put("/b-leased", "x", lease=LEASE)], [])
        with pytest.raises(PermissionDenied):
            alice.lease_revoke(LEASE)
        own = alice.lease_grant(600).id
        alice.put("/b-own", "x", lease=own)
        assert alice.lease_time_to_live(own, keys=True).keys == [b"/b-own"]
        root.put("/secret-own", "x", lease=own)  # root may attach to anyone's lease
        with pytest.raises(PermissionDenied):
            alice.lease_time_to_live(own, keys=True)  # now it holds a key she may not read
        assert root.lease_time_to_live(own, keys=True).keys == [b"/b-own", b"/secret-own"]
    assert root.get("/b-leased").count == 0
    assert root.lease_time_to_live(LEASE, keys=True).keys == [b"/secret-leased"]
