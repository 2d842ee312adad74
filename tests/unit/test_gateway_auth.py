"""The gateway core's auth checks, driven without sockets: tokens, permissions, logins, what the
proposal carries, and what the node's own socket may do."""

from __future__ import annotations

import itertools
from typing import Any

from test_gateway_core import LEADER, make, replies

from actors.auth.jwt import JwtTokens
from actors.auth.passwords import hash_password
from actors.auth.tokens import LOGIN_BURST, cert_token, digest
from actors.gateway.core import GatewayCore
from etcdz import ops
from proto_schemas.auth import (
    AuthCheckRequest,
    AuthCheckResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthState,
    Permission,
    PermissionType,
    RoleRecord,
    TokenGranted,
    UserAddRequest,
    UserRecord,
)
from proto_schemas.codec import decode, encode
from proto_schemas.envelope import pack
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.internal import (
    ApplyResult,
    InternalRequest,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadResult,
    Results,
)
from proto_schemas.kv import RangeStreamRequest, ResponseHeader, StatusRequest
from proto_schemas.lease import LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse
from proto_schemas.maintenance import DefragmentRequest

HASH = hash_password("apw", b"salt-for-a-test!")
STATE = AuthState(
    enabled=True,
    revision=7,
    users=[
        UserRecord(name="alice", hashed_password=HASH, roles=["reader"]),
        UserRecord(name="root", hashed_password=HASH, roles=["root"]),
    ],
    roles=[
        RoleRecord(
            name="reader", perms=[Permission(perm_type=PermissionType.READ, key=b"/a/", range_end=b"/a0")]
        )
    ],
)


def secured(**overrides: Any) -> GatewayCore:
    counter = itertools.count(1)
    core = make(random_bytes=lambda n: next(counter).to_bytes(n, "big"), **overrides)
    core.internal(LEADER, 0)
    core.internal(Results(applied_index=10, auth=STATE), 0)
    grants = [
        TokenGranted(user="alice", token_digest=digest("ta")),
        TokenGranted(user="root", token_digest=digest("tr")),
    ]
    core.internal(Results(applied_index=10, tokens=grants), 0)
    return core


def send(
    core: GatewayCore, request: Any, token: str = "", now: float = 0.0, local: bool = False, source: str = ""
) -> None:
    core.client_message(b"c", pack(request, msg_id=1, token=token), now, local=local, source=source)


def error(core: GatewayCore) -> ErrorCode | None:
    ((_, _, body),) = replies(core)
    return body.code if isinstance(body, ErrorResponse) else None


def proposed(core: GatewayCore) -> list[InternalRequest]:
    out = core.take_outbox()
    return [decode(d, InternalRequest) for p in out.to_raft for d in getattr(p, "data", [])]


def test_requests_without_a_valid_token_or_the_permission_are_refused_as_etcd() -> None:
    core = secured()
    send(core, ops.get("/a/x"))
    assert error(core) == ErrorCode.USER_EMPTY
    send(core, ops.get("/a/x"), token="forged")
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN
    send(core, ops.put("/a/x", "1"), token="ta")
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, ops.get("/b", serializable=True), token="ta")
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, ops.get("/b"), token="ta")  # linearizable: checked once its ReadIndex came back
    (round_,) = core.take_outbox().to_raft
    assert isinstance(round_, ReadIndexRequest)
    core.internal(ReadIndexResponse(read_id=round_.read_id, index=10), 0)
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, DefragmentRequest(), token="ta")
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, LeaseKeepAliveRequest(id=1))
    assert error(core) == ErrorCode.USER_EMPTY  # keep-alives are checked too
    send(core, StatusRequest())  # anyone may ask for status
    assert core.take_outbox().to_mvcc


def test_a_permitted_write_carries_its_user_and_the_auth_revision_it_was_checked_at() -> None:
    core = secured()
    send(core, ops.put("/k", "1"), token="tr")
    (proposal,) = proposed(core)
    assert (proposal.user, proposal.auth_revision) == ("root", 7)
    send(core, ops.get("/a/x"), token="ta")  # a permitted linearizable read waits for ReadIndex
    assert core.take_outbox().to_raft


def test_the_nodes_own_socket_is_not_checked_and_its_proposals_say_so() -> None:
    core = secured()
    send(core, ops.put("/k", "1"), local=True)
    (proposal,) = proposed(core)
    assert proposal.user is None


def test_a_login_checks_the_password_and_proposes_only_the_tokens_digest() -> None:
    core = secured()
    send(core, AuthenticateRequest(name="alice", password="wrong"))
    assert error(core) == ErrorCode.AUTH_FAILED
    send(core, AuthenticateRequest(name="nobody", password="apw"))
    assert error(core) == ErrorCode.AUTH_FAILED
    send(core, AuthenticateRequest(name="alice", password="apw"))
    (proposal,) = proposed(core)
    login = proposal.request
    assert isinstance(login, AuthenticateRequest) and login.password == "" and login.auth_revision == 7
    applied = encode(AuthenticateResponse(header=ResponseHeader(revision=3)))
    core.internal(
        Results(applied_index=11, results=[ApplyResult(request_id=proposal.request_id, body=applied)]), 0
    )
    ((_, _, answer),) = replies(core)
    assert isinstance(answer, AuthenticateResponse) and answer.token
    assert digest(answer.token) == login.token_digest and answer.token.encode() not in encode(proposal)


def test_a_name_guessed_at_is_refused_there_without_a_check_for_a_while_but_not_elsewhere() -> None:
    core = secured()
    for i in range(LOGIN_BURST):
        send(core, AuthenticateRequest(name="root", password="guess"), now=i * 0.1, source="10.0.0.9")
        assert error(core) == ErrorCode.AUTH_FAILED
    send(core, AuthenticateRequest(name="root", password="apw"), now=1.0, source="10.0.0.9")
    assert error(core) == ErrorCode.TOO_MANY_REQUESTS
    send(core, AuthenticateRequest(name="root", password="apw"), now=1.0, source="10.0.0.1")
    (proposal,) = proposed(core)  # root logs in from elsewhere
    assert isinstance(proposal.request, AuthenticateRequest) and proposal.request.name == "root"


def test_passwords_are_hashed_before_they_are_proposed() -> None:
    core = secured(max_request_bytes=1 << 16)
    send(core, UserAddRequest(name="bob", password="bpw"), token="tr")
    (proposal,) = proposed(core)
    added = proposal.request
    assert (
        isinstance(added, UserAddRequest)
        and added.password == ""
        and added.hashed_password.startswith("scrypt$")
    )
    send(core, UserAddRequest(name="carl", password=""), token="tr")
    assert error(core) == ErrorCode.BAD_REQUEST
    send(core, UserAddRequest(name="dan", password="x" * 5000), token="tr")
    assert error(core) == ErrorCode.BAD_REQUEST


def test_tokens_expire_die_with_their_user_and_with_auth_disabled() -> None:
    core = secured(auth_token_ttl_s=10.0)
    send(core, ops.get("/a/x"), token="ta", now=5.0)
    assert core.take_outbox().to_raft  # valid (and renewed)
    send(core, ops.get("/a/x"), token="ta", now=30.0)
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN
    core.internal(Results(applied_index=12, tokens=[TokenGranted(user="root", token_digest=b"")]), 31.0)
    send(core, ops.put("/k", "1"), token="tr", now=31.0)
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN
    core.internal(
        Results(applied_index=12, tokens=[TokenGranted(user="root", token_digest=digest("t2"))]), 32.0
    )
    disabled = AuthState(enabled=False, revision=8, users=STATE.users, roles=STATE.roles)
    core.internal(Results(applied_index=13, auth=disabled), 32.0)
    core.internal(
        Results(
            applied_index=14, auth=AuthState(enabled=True, revision=9, users=STATE.users, roles=STATE.roles)
        ),
        33.0,
    )
    send(core, ops.put("/k", "1"), token="t2", now=33.0)
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN  # disabling forgot every token


def test_a_hubs_check_of_a_watchers_token() -> None:
    core = secured()
    send(core, AuthCheckRequest(token="ta", key=b"/a/", range_end=b"/a0"))
    ((_, _, ok),) = replies(core)
    assert isinstance(ok, AuthCheckResponse) and ok.user == "alice"
    send(core, AuthCheckRequest(token="ta", key=b"/b", range_end=b""))
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, AuthCheckRequest(token="", key=b"/a/x"))
    assert error(core) == ErrorCode.USER_EMPTY
    plain = make()
    send(plain, AuthCheckRequest(token="", key=b"/anything"))
    ((_, _, ok),) = replies(plain)
    assert isinstance(ok, AuthCheckResponse) and ok.user == ""  # auth disabled: anyone may watch


def test_a_doors_certificate_token_names_the_user_of_a_verified_client_certificate() -> None:
    """etcd's "CommonName as user", on the token's own path: made under the gateway's secret,
    it passes as its user's token (a proposal, a hub's check); under another secret, or at a
    gateway without one, it is no token; a name that is no user is denied, as in etcd."""
    secret = b"s" * 32
    core = secured(cert_secret=secret)
    send(core, ops.put("/k", "1"), token=cert_token(secret, "root"))
    (proposal,) = proposed(core)
    assert (proposal.user, proposal.auth_revision) == ("root", 7)
    send(core, ops.put("/a/x", "1"), token=cert_token(secret, "alice"))
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, AuthCheckRequest(token=cert_token(secret, "alice"), key=b"/a/", range_end=b"/a0"))
    ((_, _, ok),) = replies(core)
    assert isinstance(ok, AuthCheckResponse) and ok.user == "alice"
    send(core, ops.get("/a/x", serializable=True), token=cert_token(secret, "bob"))
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, ops.put("/k", "1"), token=cert_token(b"t" * 32, "root"))
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN
    send(core, ops.put("/k", "1"), token=cert_token(secret, "root")[:-1] + "x")
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN
    without = secured()
    send(without, ops.put("/k", "1"), token=cert_token(secret, "root"))
    assert error(without) == ErrorCode.INVALID_AUTH_TOKEN


def test_a_streamed_range_resumed_outside_its_range_is_refused_before_any_check() -> None:
    core = secured()
    for resume in (b"\x00", b"/a0", b"/secret"):  # before, at the end of, after the range
        stream = RangeStreamRequest(range=ops.get("/a/", prefix=True, serializable=True), resume_key=resume)
        send(core, stream, token="tr")  # even root: the range says what may be read
        ((_, _, refused),) = replies(core)
        assert isinstance(refused, ErrorResponse) and refused.code == ErrorCode.BAD_REQUEST
        assert "resume_key is outside the range" in refused.message
    inside = RangeStreamRequest(range=ops.get("/a/", prefix=True, serializable=True), resume_key=b"/a/x")
    send(core, inside, token="ta")
    assert core.take_outbox().to_mvcc  # read


def lease_answer(core: GatewayCore, keys: list[bytes], token: str = "ta", ask_keys: bool = True) -> Any:
    send(core, LeaseTimeToLiveRequest(id=5, keys=ask_keys), token=token)
    (call,) = core.take_outbox().to_lease
    answer = LeaseTimeToLiveResponse(header=ResponseHeader(), id=5, ttl=9, granted_ttl=10, keys=keys)
    core.internal(ReadResult(read_id=call.read_id, body=encode(answer)), 0)
    ((_, _, body),) = replies(core)
    return body


def test_a_leases_keys_go_only_to_a_user_who_may_read_every_one() -> None:
    core = secured()
    denied = lease_answer(core, [b"/a/x", b"/secret"])  # CVE-2023-32082: one key alice may not read
    assert isinstance(denied, ErrorResponse) and denied.code == ErrorCode.PERMISSION_DENIED
    allowed = lease_answer(core, [b"/a/x", b"/a/y"])
    assert isinstance(allowed, LeaseTimeToLiveResponse) and allowed.keys == [b"/a/x", b"/a/y"]
    assert isinstance(lease_answer(core, [], ask_keys=False), LeaseTimeToLiveResponse)
    assert lease_answer(core, [b"/secret"], token="tr").keys == [b"/secret"]  # root reads anything


def test_no_token_skips_the_checks() -> None:
    """Members share no token that skips every check (their hash checks travel on the peer
    mesh); only the node's own private socket is trusted."""
    core = secured()
    send(core, ops.put("/k", "1"), token="n" * 64)
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN


def test_with_signed_tokens_a_login_is_answered_at_once_and_any_auth_change_ends_older_tokens() -> None:
    wall = [1_800_000_000.0]
    signer = JwtTokens(b"k" * 32, "HS256", 60, lambda: wall[0])
    core = secured(jwt=signer)
    send(core, AuthenticateRequest(name="alice", password="wrong"))
    assert error(core) == ErrorCode.AUTH_FAILED
    send(core, AuthenticateRequest(name="alice", password="apw"))
    out = core.take_outbox()
    assert not out.to_raft  # nothing to propose: every member checks the signature alone
    ((_, _, answer),) = [(r, m, decode(b) if isinstance(b, bytes) else b) for r, m, b in out.to_client]
    assert isinstance(answer, AuthenticateResponse) and signer.check(answer.token) == ("alice", 7)
    send(core, ops.get("/a/x", serializable=True), token=answer.token)
    assert core.take_outbox().to_mvcc  # permitted: read from the backend
    send(core, ops.put("/a/x", "1"), token=answer.token)
    assert error(core) == ErrorCode.PERMISSION_DENIED
    send(core, ops.get("/a/x", serializable=True), token="ta")  # a simple token means nothing here
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN
    send(core, AuthCheckRequest(token=answer.token, key=b"/a/", range_end=b"/a0"))
    ((_, _, ok),) = replies(core)
    assert isinstance(ok, AuthCheckResponse) and ok.user == "alice"  # hubs check signed tokens too
    moved = AuthState(enabled=True, revision=8, users=STATE.users, roles=STATE.roles)
    core.internal(Results(applied_index=11, auth=moved), 0)
    send(core, ops.get("/a/x", serializable=True), token=answer.token)
    assert error(core) == ErrorCode.AUTH_OLD_REVISION  # etcd's rule: log in again
    send(core, AuthenticateRequest(name="alice", password="apw"))
    ((_, _, fresh),) = replies(core)
    assert signer.check(fresh.token) == ("alice", 8)
    wall[0] += 60
    send(core, ops.get("/a/x", serializable=True), token=fresh.token)
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN  # expired, however often it was used
    gone = AuthState(enabled=True, revision=8, users=STATE.users[1:], roles=STATE.roles)
    core.internal(Results(applied_index=12, auth=gone), 0)
    send(core, ops.get("/a/x", serializable=True), token=signer.issue("alice", 8))
    assert error(core) == ErrorCode.INVALID_AUTH_TOKEN  # a deleted user's token
