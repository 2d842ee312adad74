"""The auth store's rules on a real LevelDB (no sockets): users, roles, permission coverage,
enable/disable, tokens, the re-check at apply, password hashes and login limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_mvcc_rules import Harness

from actors.auth.passwords import hash_password, verify_password
from actors.auth.perms import ADMIN, ANYONE, Grants, Need, leases_touched, needs
from actors.auth.tokens import (
    LOGIN_BURST,
    LOGIN_REFILL_S,
    LOGINS_PER_S,
    LOGINS_PER_SOURCE_PER_S,
    LoginLimiter,
    TokenKeeper,
    digest,
)
from etcdz import ops
from proto_schemas.auth import (
    AuthDisableRequest,
    AuthEnableRequest,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthStatusRequest,
    Permission,
    PermissionType,
    RoleAddRequest,
    RoleDeleteRequest,
    RoleGetRequest,
    RoleGrantPermissionRequest,
    RoleRecord,
    RoleRevokePermissionRequest,
    TokenGranted,
    UserAddRequest,
    UserChangePasswordRequest,
    UserDeleteRequest,
    UserGetRequest,
    UserGrantRoleRequest,
    UserListRequest,
    UserRevokeRoleRequest,
)
from proto_schemas.cluster import MemberAddRequest, MemberListRequest
from proto_schemas.codec import decode
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.internal import InternalRequest
from proto_schemas.kv import CompactionRequest, RangeStreamRequest, StatusRequest
from proto_schemas.lease import LeaseGrantRequest, LeaseRevokeRequest
from proto_schemas.maintenance import AlarmAction, AlarmRequest, DefragmentRequest
from proto_schemas.watch import WatchHistoryRequest

R, W, RW = PermissionType.READ, PermissionType.WRITE, PermissionType.READWRITE


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "db")
    yield harness
    harness.db.close()


def code(resp: Any) -> ErrorCode | None:
    return resp.code if isinstance(resp, ErrorResponse) else None


def grant(role: str, kind: PermissionType, key: bytes, end: bytes = b"") -> RoleGrantPermissionRequest:
    return RoleGrantPermissionRequest(name=role, perm=Permission(perm_type=kind, key=key, range_end=end))


def as_user(h: Harness, user: str | None, request: Any, auth_revision: int = 0) -> Any:
    """Apply ``request`` as proposed by ``user`` against ``auth_revision``."""
    proposal = InternalRequest(request_id=1, request=request, user=user, auth_revision=auth_revision)
    (result,) = h.store.apply([(next(h.index), 1, proposal)])
    return decode(result.body)


def setup_root(h: Harness) -> None:
    h.apply(
        UserAddRequest(name="root", hashed_password="x"),
        RoleAddRequest(name="root"),
        UserGrantRoleRequest(user="root", role="root"),
    )


# -- what requests need, and whether grants cover it --------------------------------------------


def test_what_each_request_needs() -> None:
    assert needs(ops.get("a")) == [Need(b"a", b"", False)]
    assert needs(ops.put("a", "1")) == [Need(b"a", b"", True)]
    assert needs(ops.put("a", "1", prev_kv=True)) == [Need(b"a", b"", True), Need(b"a", b"", False)]
    assert needs(ops.delete("a", prefix=True)) == [Need(b"a", b"b", True)]
    txn = ops.txn([ops.Value("c") == "1"], [ops.put("p", "1")], [ops.get("f", prefix=True)])
    assert needs(txn) == [Need(b"c", b"", False), Need(b"p", b"", True), Need(b"f", b"g", False)]
    for admin in (
        CompactionRequest(revision=1),
        DefragmentRequest(),
        AlarmRequest(action=AlarmAction.DEACTIVATE),
        MemberAddRequest(peer_urls=["tcp://h:1"]),
        WatchHistoryRequest(start_revision=1),
        UserListRequest(),
        AuthEnableRequest(),
    ):
        assert needs(admin) is ADMIN, admin
    for open_ in (StatusRequest(), AuthStatusRequest(), AuthenticateRequest(name="a"), MemberListRequest()):
        assert needs(open_) is ANYONE, open_
    assert needs(AlarmRequest(action=AlarmAction.GET)) == []  # any authenticated user
    assert needs(LeaseGrantRequest(ttl=5)) == []


def test_a_streamed_range_needs_what_its_chunk_reads_from_the_resume_key() -> None:
    public = ops.get("b/public")
    assert needs(RangeStreamRequest(range=public)) == [Need(b"b/public", b"", False)]
    resumed = RangeStreamRequest(range=public, resume_key=b"\x00")
    assert needs(resumed) == [Need(b"b/public", b"", False), Need(b"\x00", b"b/public\x00", False)]
    reader = grants((R, b"b/public", b""))
    assert reader.allows_all(needs(RangeStreamRequest(range=public, resume_key=b"b/public")))
    assert not reader.allows_all(needs(resumed))  # a/secret lies in what it would read
    prefix = grants((R, b"b/", b"b0"))
    ranged = ops.get("b/", prefix=True)
    assert prefix.allows_all(needs(RangeStreamRequest(range=ranged, resume_key=b"b/q")))
    assert not prefix.allows_all(needs(RangeStreamRequest(range=ranged, resume_key=b"a")))
    assert not prefix.allows_all(needs(RangeStreamRequest(range=ranged, resume_key=b"c")))  # backwards
    txn = ops.txn([], [ops.put("a", "1", lease=5)], [ops.txn([], [ops.put("b", "1", lease=6)], [])])
    assert leases_touched(txn) == [5, 6]
    assert leases_touched(ops.put("a", "1")) == [] and leases_touched(LeaseRevokeRequest(id=3)) == [3]


def grants(*perms: tuple[PermissionType, bytes, bytes], roles: tuple[str, ...] = ("r",)) -> Grants:
    role = RoleRecord(name="r", perms=[Permission(perm_type=k, key=a, range_end=b) for k, a, b in perms])
    return Grants([role], roles)


def test_a_read_prefix_covers_its_keys_and_nothing_else() -> None:
    g = grants((R, b"/a/", b"/a0"))
    assert g.allows(Need(b"/a/x", b"", False))
    assert g.allows(Need(b"/a/", b"/a0", False))  # the whole prefix
    assert g.allows(Need(b"/a/b", b"/a/c", False))
    assert not g.allows(Need(b"/a/x", b"", True))  # read is not write
    assert not g.allows(Need(b"/b", b"", False))
    assert not g.allows(Need(b"/a", b"", False))  # the prefix without its slash
    assert not g.allows(Need(b"/a/", b"/a1", False))  # one key past the prefix
    assert not g.allows(Need(b"/a/", b"\0", False))  # from /a/ on: open ended
    assert not g.allows(Need(b"/a/x", b"/a/", False))  # a backwards range is refused


def test_intervals_merge_across_roles_and_single_keys_and_open_ends() -> None:
    g = grants((R, b"a", b"c"), (RW, b"c", b"e"), (R, b"k", b""), (W, b"x", b"\0"))
    assert g.allows(Need(b"a", b"e", False))  # [a,c) + [c,e) touch
    assert not g.allows(Need(b"a", b"f", False))
    assert g.allows(Need(b"k", b"", False)) and not g.allows(Need(b"k", b"k\0\0", False))
    assert g.allows(Need(b"k", b"k\0", False))  # exactly the one key as a range
    assert g.allows(Need(b"c", b"e", True)) and not g.allows(Need(b"a", b"b", True))  # RW counts as write
    assert g.allows(Need(b"y", b"\0", True)) and g.allows(Need(b"zzz", b"", True))
    assert not g.allows(Need(b"w", b"\0", True))
    root = Grants([], ["root"])
    assert root.allows(Need(b"anything", b"\0", True)) and root.allows_all(ADMIN)
    assert not g.allows_all(ADMIN) and g.allows_all(ANYONE) and g.allows_all([])


# -- the store ------------------------------------------------------------------------------------


def test_enable_needs_a_root_user_with_the_root_role(h: Harness) -> None:
    assert code(h.one(AuthEnableRequest())) == ErrorCode.ROOT_USER_NOT_EXIST
    h.one(UserAddRequest(name="root", hashed_password="x"))
    assert code(h.one(AuthEnableRequest())) == ErrorCode.ROOT_ROLE_NOT_EXIST
    assert code(h.one(UserGrantRoleRequest(user="root", role="nosuch"))) == ErrorCode.ROLE_NOT_FOUND
    h.apply(RoleAddRequest(name="root"), UserGrantRoleRequest(user="root", role="root"))
    before = h.store.auth.revision
    h.one(AuthEnableRequest())
    assert h.store.auth.enabled and h.store.auth.revision == before + 1
    status = h.one(AuthStatusRequest())
    assert status.enabled and status.auth_revision == before + 1
    assert h.store.current_revision == 1  # auth changes take no KV revision
    # while enabled, nobody can lock the cluster
    assert code(h.one(UserDeleteRequest(name="root"))) == ErrorCode.INVALID_AUTH_MGMT
    assert code(h.one(UserRevokeRoleRequest(name="root", role="root"))) == ErrorCode.INVALID_AUTH_MGMT
    assert code(h.one(RoleDeleteRequest(role="root"))) == ErrorCode.INVALID_AUTH_MGMT
    h.one(AuthDisableRequest())
    assert not h.store.auth.enabled
    assert code(h.one(RoleDeleteRequest(role="root"))) is None


def test_users_roles_and_permissions_with_etcds_errors(h: Harness) -> None:
    assert code(h.one(UserAddRequest(name=""))) == ErrorCode.USER_EMPTY
    h.one(UserAddRequest(name="u", hashed_password="x"))
    assert code(h.one(UserAddRequest(name="u"))) == ErrorCode.USER_ALREADY_EXIST
    assert code(h.one(RoleAddRequest(name=""))) == ErrorCode.ROLE_EMPTY
    h.one(RoleAddRequest(name="r"))
    assert code(h.one(RoleAddRequest(name="r"))) == ErrorCode.ROLE_ALREADY_EXIST
    assert code(h.one(UserGetRequest(name="nobody"))) == ErrorCode.USER_NOT_FOUND
    assert code(h.one(RoleGetRequest(role="none"))) == ErrorCode.ROLE_NOT_FOUND
    h.one(grant("r", R, b"/b", b"/c"))
    h.one(grant("r", R, b"/a"))
    h.one(grant("r", W, b"/a"))  # the same interval again: its type is replaced
    assert h.one(RoleGetRequest(role="r")).perm == [
        Permission(perm_type=W, key=b"/a"),
        Permission(perm_type=R, key=b"/b", range_end=b"/c"),
    ]
    revoke = RoleRevokePermissionRequest(role="r", key=b"/b", range_end=b"/c")
    assert code(h.one(revoke)) is None
    assert code(h.one(revoke)) == ErrorCode.PERMISSION_NOT_GRANTED
    h.one(UserGrantRoleRequest(user="u", role="r"))
    assert code(h.one(UserGrantRoleRequest(user="u", role="r"))) is None  # granting twice is fine
    assert h.one(UserGetRequest(name="u")).roles == ["r"]
    assert code(h.one(UserRevokeRoleRequest(name="u", role="other"))) == ErrorCode.ROLE_NOT_GRANTED
    h.one(RoleDeleteRequest(role="r"))  # taken from every user
    assert h.one(UserGetRequest(name="u")).roles == []
    assert h.one(UserListRequest()).users == ["u"]


def test_the_auth_store_survives_a_restart(h: Harness) -> None:
    setup_root(h)
    h.apply(RoleAddRequest(name="r"), grant("r", RW, b"k"), AuthEnableRequest())
    revision = h.store.auth.revision
    h.reopen()
    auth = h.store.auth
    assert auth.enabled and auth.revision == revision
    assert sorted(auth.users) == ["root"] and auth.roles["r"].perms == [Permission(perm_type=RW, key=b"k")]


def test_a_request_checked_against_an_older_auth_store_is_checked_again_at_apply(h: Harness) -> None:
    setup_root(h)
    h.apply(
        UserAddRequest(name="u", hashed_password="x"),
        RoleAddRequest(name="w"),
        grant("w", W, b"k"),
        UserGrantRoleRequest(user="u", role="w"),
        AuthEnableRequest(),
    )
    checked_at = h.store.auth.revision
    assert code(as_user(h, "u", ops.put("k", "1"), checked_at)) is None
    h.one(UserRevokeRoleRequest(name="u", role="w"))  # revoked between check and apply
    assert code(as_user(h, "u", ops.put("k", "2"), checked_at)) == ErrorCode.PERMISSION_DENIED
    assert code(as_user(h, "", ops.put("k", "2"), checked_at)) == ErrorCode.USER_EMPTY
    assert code(as_user(h, "root", ops.put("k", "3"), checked_at)) is None
    assert code(as_user(h, None, ops.put("k", "4"), 0)) is None  # the node's own proposal
    assert h.get("k").kvs[0].value == b"4"


def test_revoking_a_lease_needs_write_on_its_keys(h: Harness) -> None:
    setup_root(h)
    h.apply(
        UserAddRequest(name="u", hashed_password="x"),
        RoleAddRequest(name="w"),
        grant("w", W, b"mine"),
        UserGrantRoleRequest(user="u", role="w"),
        LeaseGrantRequest(ttl=60, id=7),
        ops.put("mine", "1", lease=7),
        ops.put("theirs", "1", lease=7),
        AuthEnableRequest(),
    )
    at = h.store.auth.revision
    assert code(as_user(h, "u", LeaseRevokeRequest(id=7), at)) == ErrorCode.PERMISSION_DENIED
    assert code(as_user(h, "root", LeaseRevokeRequest(id=7), at)) is None


def test_attaching_a_key_to_a_lease_needs_write_on_the_keys_it_holds(h: Harness) -> None:
    setup_root(h)
    h.apply(
        UserAddRequest(name="u", hashed_password="x"),
        RoleAddRequest(name="w"),
        grant("w", RW, b"mine", b"mine0"),
        UserGrantRoleRequest(user="u", role="w"),
        LeaseGrantRequest(ttl=60, id=7),
        ops.put("theirs", "1", lease=7),
        LeaseGrantRequest(ttl=60, id=8),
        ops.put("mine/1", "1", lease=8),
        LeaseGrantRequest(ttl=60, id=9),
        AuthEnableRequest(),
    )
    at = h.store.auth.revision
    for refused in (  # lease 7 holds a key u may not write (etcd's checkLeasePuts)
        ops.put("mine/2", "x", lease=7),
        ops.txn([], [ops.put("mine/2", "x")], [ops.put("mine/3", "x", lease=7)]),  # either branch
        ops.txn([], [ops.txn([], [ops.put("mine/2", "x", lease=7)], [])], []),
    ):
        assert code(as_user(h, "u", refused, at)) == ErrorCode.PERMISSION_DENIED, refused
    assert h.get("mine/2").count == 0
    assert code(as_user(h, "u", ops.put("mine/2", "x", lease=8), at)) is None  # keys u may write
    assert code(as_user(h, "u", ops.put("mine/3", "x", lease=9), at)) is None  # a lease with no key
    assert code(as_user(h, "root", ops.put("root/1", "x", lease=7), at)) is None
    assert code(as_user(h, None, ops.put("node/1", "x", lease=7), 0)) is None  # the node's own
    assert code(as_user(h, "u", LeaseRevokeRequest(id=8), at)) is None


def test_logins_make_tokens_and_password_changes_void_them(h: Harness) -> None:
    setup_root(h)
    h.apply(UserAddRequest(name="u", hashed_password="x"))
    login = AuthenticateRequest(name="u", token_digest=b"d1", auth_revision=h.store.auth.revision)
    assert code(h.one(login)) == ErrorCode.AUTH_NOT_ENABLED
    h.one(AuthEnableRequest())
    assert code(h.one(login)) == ErrorCode.AUTH_OLD_REVISION  # checked before the enable
    login = AuthenticateRequest(name="u", token_digest=b"d1", auth_revision=h.store.auth.revision)
    assert isinstance(h.one(login), AuthenticateResponse)
    state, tokens = h.store.auth.take_changes()
    assert tokens == [TokenGranted(user="u", token_digest=b"d1")]
    h.one(UserChangePasswordRequest(name="u", hashed_password="y"))
    state, tokens = h.store.auth.take_changes()
    assert tokens == [TokenGranted(user="u", token_digest=b"")]
    assert (
        state is not None and state.enabled and {u.name: u.hashed_password for u in state.users}["u"] == "y"
    )
    assert h.store.auth.take_changes() == (None, [])


# -- tokens, limits, hashes ------------------------------------------------------------------------


def test_a_token_lives_its_ttl_from_its_last_use() -> None:
    keeper = TokenKeeper(ttl_s=10)
    keeper.grant("u", digest("tok"), now=0)
    assert keeper.user("tok", now=9) == "u"
    assert keeper.user("tok", now=18) == "u"  # renewed at 9
    assert keeper.user("other", now=18) is None
    assert keeper.user("tok", now=28.5) is None  # expired
    keeper.grant("u", digest("a"), 30)
    keeper.grant("v", digest("b"), 30)
    keeper.revoke_user("u")
    assert keeper.user("a", 31) is None and keeper.user("b", 31) == "v"
    keeper.expire(100)
    assert len(keeper) == 0


def test_failed_logins_are_limited_per_name_and_source_and_all_logins_overall() -> None:
    limiter = LoginLimiter()
    for i in range(LOGIN_BURST):
        assert limiter.allow("root", "10.0.0.9", i * 0.25)
        limiter.failed("root", "10.0.0.9", i * 0.25)
    assert not limiter.allow("root", "10.0.0.9", 1.5)  # guessed at: refused there without a check
    assert limiter.allow("root", "10.0.0.1", 1.5)  # the owner elsewhere is not locked out
    assert limiter.allow("v", "10.0.0.9", 1.5)  # nor another name from the guesser
    assert limiter.allow("root", "10.0.0.9", 1.5 + LOGIN_REFILL_S)  # one more after the refill
    busy = LoginLimiter()
    allowed = sum(busy.allow(f"n{i}", "10.0.0.9", 10.0) for i in range(3 * LOGINS_PER_S))
    assert allowed == LOGINS_PER_SOURCE_PER_S  # one source gets half the overall rate
    assert sum(busy.allow("root", "10.0.0.1", 10.0) for _ in range(LOGINS_PER_S)) == LOGINS_PER_SOURCE_PER_S
    assert not busy.allow("root", "10.0.0.2", 10.0)  # then the overall rate is spent
    assert busy.allow("root", "10.0.0.2", 11.0)


def test_passwords_are_stored_as_salted_scrypt_hashes() -> None:
    stored = hash_password("s3cret", b"0123456789abcdef")
    assert "s3cret" not in stored and stored.startswith("scrypt$")
    assert verify_password("s3cret", stored) and not verify_password("s3cret!", stored)
    assert stored != hash_password("s3cret", b"fedcba9876543210")  # the salt matters
    assert not verify_password("s3cret", "scrypt$1$2$3$%%%$%%%") and not verify_password("x", "")
    assert not verify_password("x" * 5000, stored)  # absurd lengths are refused, not hashed
