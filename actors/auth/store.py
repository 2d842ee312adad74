"""The auth store the backend applies: users, roles, the enabled flag and the auth revision,
kept in memory and staged into the apply batch's LevelDB write (so they travel with backend
snapshots and survive restarts).

Rules (etcd's auth store):
- Every change bumps the auth revision by one; reads (get, list, status) change nothing.
  The KV revision is not touched: auth changes make no KV events.
- ``auth enable`` needs a ``root`` user holding the ``root`` role; while auth is enabled the
  root user cannot be deleted nor lose that role, and the root role cannot be deleted
  (``invalid auth management``), so nobody locks the cluster.
- Deleting a role takes it from every user. Granting a role twice, or a permission on an
  interval the role has already, is not an error (the permission's type is replaced).
- A request proposed against an older auth revision is checked again against the current
  store when it is applied: a permission revoked in between is honoured on every member.
  A login checked against an older revision fails (``revision of auth store is old``): the
  password may have changed meanwhile.
- A login applied makes its token's digest valid (``TokenGranted``); a password change or a
  user deletion voids the user's tokens (``TokenGranted`` with an empty digest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from actors.auth.perms import Anyone, Grants, Needs, needs
from proto_schemas.auth import (
    ROOT,
    AuthDisableRequest,
    AuthDisableResponse,
    AuthEnableRequest,
    AuthEnableResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthState,
    AuthStatusRequest,
    AuthStatusResponse,
    Permission,
    RoleAddRequest,
    RoleAddResponse,
    RoleDeleteRequest,
    RoleDeleteResponse,
    RoleGetRequest,
    RoleGetResponse,
    RoleGrantPermissionRequest,
    RoleGrantPermissionResponse,
    RoleListRequest,
    RoleListResponse,
    RoleRecord,
    RoleRevokePermissionRequest,
    RoleRevokePermissionResponse,
    TokenGranted,
    UserAddRequest,
    UserAddResponse,
    UserChangePasswordRequest,
    UserChangePasswordResponse,
    UserDeleteRequest,
    UserDeleteResponse,
    UserGetRequest,
    UserGetResponse,
    UserGrantRoleRequest,
    UserGrantRoleResponse,
    UserListRequest,
    UserListResponse,
    UserRecord,
    UserRevokeRoleRequest,
    UserRevokeRoleResponse,
)
from proto_schemas.codec import decode, encode
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.kv import ResponseHeader

# Its key spaces in the backend's LevelDB, beside the MVCC ones (actors/mvcc/keys.py): users,
# roles, and two names in the backend's ``m`` (meta) space. Written here, not imported from the
# backend, which hosts this store and so sits above it.
META = b"m"
USERS = b"U"
USERS_END = b"V"
ROLES = b"P"
ROLES_END = b"Q"
META_ENABLED = META + b"auth_enabled"
META_REVISION = META + b"auth_revision"


class AuthView:
    """The auth store as a reader needs it: who holds which permissions. Built from an
    ``AuthState`` (the gateway's copy) or kept by ``AuthStore`` (the backend's)."""

    def __init__(self, state: AuthState | None = None) -> None:
        state = state or AuthState()
        self.enabled = state.enabled
        self.revision = state.revision
        self.users = {u.name: u for u in state.users}
        self.roles = {r.name: r for r in state.roles}
        self._grants: dict[str, Grants] = {}

    def state(self) -> AuthState:
        return AuthState(
            enabled=self.enabled,
            revision=self.revision,
            users=[self.users[n] for n in sorted(self.users)],
            roles=[self.roles[n] for n in sorted(self.roles)],
        )

    def grants(self, user: str) -> Grants:
        held = self._grants.get(user)
        if held is None:
            record = self.users.get(user)
            held = self._grants[user] = Grants(self.roles.values(), record.roles if record else [])
        return held

    def check(self, user: str, wanted: Needs) -> None:
        """Raise unless ``user`` may do what ``wanted`` names (auth enabled)."""
        if isinstance(wanted, Anyone):
            return
        if not user:
            raise EtcdzError(ErrorCode.USER_EMPTY)
        if user not in self.users or not self.grants(user).allows_all(wanted):
            raise EtcdzError(ErrorCode.PERMISSION_DENIED)

    def _changed(self) -> None:
        self.revision += 1
        self._grants.clear()


class AuthStore(AuthView):
    def __init__(self, db: Any) -> None:
        super().__init__()
        self.enabled = db.get(META_ENABLED) == b"\x01"
        self.revision = int.from_bytes(db.get(META_REVISION) or b"", "big")
        for _, raw in db.iterator(start=USERS, stop=USERS_END):
            user = decode(raw, UserRecord)
            self.users[user.name] = user
        for _, raw in db.iterator(start=ROLES, stop=ROLES_END):
            role = decode(raw, RoleRecord)
            self.roles[role.name] = role
        self.tokens: list[TokenGranted] = []  # applied logins and voided users, for the gateways
        self.changed = False  # since the last take_changes()
        self._wb: Any = None

    # -- checks at apply -----------------------------------------------------------------------
    def admit(self, user: str | None, auth_revision: int, request: Any) -> None:
        """Raise if ``request``, proposed by ``user`` against ``auth_revision``, may not be
        applied. ``user`` None: proposed by the node itself."""
        if not self.enabled or user is None or auth_revision >= self.revision:
            return
        self.check(user, needs(request))

    # -- apply ---------------------------------------------------------------------------------
    def apply(self, wb: Any, request: Any, header: ResponseHeader) -> Any:
        self._wb = wb
        try:
            handler = _HANDLERS[type(request)]
            return handler(self, request, header)
        finally:
            self._wb = None

    def take_changes(self) -> tuple[AuthState | None, list[TokenGranted]]:
        """What the gateways must learn from what was applied since the last call."""
        state = self.state() if self.changed else None
        tokens, self.tokens, self.changed = self.tokens, [], False
        return state, tokens

    def _bump(self) -> None:
        self._changed()
        self.changed = True
        self._wb.put(META_REVISION, self.revision.to_bytes(8, "big"))

    def _put_user(self, user: UserRecord) -> None:
        self.users[user.name] = user
        self._wb.put(USERS + user.name.encode(), encode(user))

    def _put_role(self, role: RoleRecord) -> None:
        self.roles[role.name] = role
        self._wb.put(ROLES + role.name.encode(), encode(role))

    def _user(self, name: str) -> UserRecord:
        if not name:
            raise EtcdzError(ErrorCode.USER_EMPTY)
        user = self.users.get(name)
        if user is None:
            raise EtcdzError(ErrorCode.USER_NOT_FOUND)
        return user

    def _role(self, name: str) -> RoleRecord:
        if not name:
            raise EtcdzError(ErrorCode.ROLE_EMPTY)
        role = self.roles.get(name)
        if role is None:
            raise EtcdzError(ErrorCode.ROLE_NOT_FOUND)
        return role

    def _enable(self, _: AuthEnableRequest, h: ResponseHeader) -> AuthEnableResponse:
        if not self.enabled:
            root = self.users.get(ROOT)
            if root is None:
                raise EtcdzError(ErrorCode.ROOT_USER_NOT_EXIST)
            if ROOT not in root.roles:
                raise EtcdzError(ErrorCode.ROOT_ROLE_NOT_EXIST)
            self.enabled = True
            self._wb.put(META_ENABLED, b"\x01")
            self._bump()
        return AuthEnableResponse(header=h)

    def _disable(self, _: AuthDisableRequest, h: ResponseHeader) -> AuthDisableResponse:
        if self.enabled:
            self.enabled = False
            self._wb.put(META_ENABLED, b"\x00")
            self._bump()
        return AuthDisableResponse(header=h)

    def _status(self, _: AuthStatusRequest, h: ResponseHeader) -> AuthStatusResponse:
        return AuthStatusResponse(header=h, enabled=self.enabled, auth_revision=self.revision)

    def _authenticate(self, r: AuthenticateRequest, h: ResponseHeader) -> AuthenticateResponse:
        if not self.enabled:
            raise EtcdzError(ErrorCode.AUTH_NOT_ENABLED)
        if r.auth_revision < self.revision:
            raise EtcdzError(ErrorCode.AUTH_OLD_REVISION)
        if r.name not in self.users or not r.token_digest:
            raise EtcdzError(ErrorCode.AUTH_FAILED)
        self.tokens.append(TokenGranted(user=r.name, token_digest=r.token_digest))
        return AuthenticateResponse(header=h)

    def _user_add(self, r: UserAddRequest, h: ResponseHeader) -> UserAddResponse:
        if not r.name:
            raise EtcdzError(ErrorCode.USER_EMPTY)
        if r.name in self.users:
            raise EtcdzError(ErrorCode.USER_ALREADY_EXIST)
        self._put_user(UserRecord(name=r.name, hashed_password="" if r.no_password else r.hashed_password))
        self._bump()
        return UserAddResponse(header=h)

    def _user_get(self, r: UserGetRequest, h: ResponseHeader) -> UserGetResponse:
        return UserGetResponse(header=h, roles=sorted(self._user(r.name).roles))

    def _user_list(self, _: UserListRequest, h: ResponseHeader) -> UserListResponse:
        return UserListResponse(header=h, users=sorted(self.users))

    def _user_delete(self, r: UserDeleteRequest, h: ResponseHeader) -> UserDeleteResponse:
        self._user(r.name)
        if self.enabled and r.name == ROOT:
            raise EtcdzError(ErrorCode.INVALID_AUTH_MGMT)
        del self.users[r.name]
        self._wb.delete(USERS + r.name.encode())
        self.tokens.append(TokenGranted(user=r.name, token_digest=b""))
        self._bump()
        return UserDeleteResponse(header=h)

    def _passwd(self, r: UserChangePasswordRequest, h: ResponseHeader) -> UserChangePasswordResponse:
        user = self._user(r.name)
        self._put_user(dataclasses.replace(user, hashed_password=r.hashed_password))
        self.tokens.append(TokenGranted(user=r.name, token_digest=b""))
        self._bump()
        return UserChangePasswordResponse(header=h)

    def _grant_role(self, r: UserGrantRoleRequest, h: ResponseHeader) -> UserGrantRoleResponse:
        user = self._user(r.user)
        if r.role != ROOT:
            self._role(r.role)
        if r.role not in user.roles:
            roles = sorted([*user.roles, r.role])
            self._put_user(dataclasses.replace(user, roles=roles))
            self._bump()
        return UserGrantRoleResponse(header=h)

    def _revoke_role(self, r: UserRevokeRoleRequest, h: ResponseHeader) -> UserRevokeRoleResponse:
        user = self._user(r.name)
        if self.enabled and r.name == ROOT and r.role == ROOT:
            raise EtcdzError(ErrorCode.INVALID_AUTH_MGMT)
        if r.role not in user.roles:
            raise EtcdzError(ErrorCode.ROLE_NOT_GRANTED)
        roles = [x for x in user.roles if x != r.role]
        self._put_user(dataclasses.replace(user, roles=roles))
        self._bump()
        return UserRevokeRoleResponse(header=h)

    def _role_add(self, r: RoleAddRequest, h: ResponseHeader) -> RoleAddResponse:
        if not r.name:
            raise EtcdzError(ErrorCode.ROLE_EMPTY)
        if r.name in self.roles:
            raise EtcdzError(ErrorCode.ROLE_ALREADY_EXIST)
        self._put_role(RoleRecord(name=r.name))
        self._bump()
        return RoleAddResponse(header=h)

    def _role_get(self, r: RoleGetRequest, h: ResponseHeader) -> RoleGetResponse:
        return RoleGetResponse(header=h, perm=list(self._role(r.role).perms))

    def _role_list(self, _: RoleListRequest, h: ResponseHeader) -> RoleListResponse:
        return RoleListResponse(header=h, roles=sorted(self.roles))

    def _role_delete(self, r: RoleDeleteRequest, h: ResponseHeader) -> RoleDeleteResponse:
        self._role(r.role)
        if self.enabled and r.role == ROOT:
            raise EtcdzError(ErrorCode.INVALID_AUTH_MGMT)
        del self.roles[r.role]
        self._wb.delete(ROLES + r.role.encode())
        for user in list(self.users.values()):
            if r.role in user.roles:
                roles = [x for x in user.roles if x != r.role]
                self._put_user(dataclasses.replace(user, roles=roles))
        self._bump()
        return RoleDeleteResponse(header=h)

    def _grant_perm(self, r: RoleGrantPermissionRequest, h: ResponseHeader) -> RoleGrantPermissionResponse:
        role = self._role(r.name)
        if not r.perm.key:
            raise EtcdzError(ErrorCode.BAD_REQUEST, "a permission needs a key")
        kept = [p for p in role.perms if (p.key, p.range_end) != (r.perm.key, r.perm.range_end)]
        perms = sorted([*kept, r.perm], key=lambda p: (p.key, p.range_end))
        self._put_role(RoleRecord(name=role.name, perms=perms))
        self._bump()
        return RoleGrantPermissionResponse(header=h)

    def _revoke_perm(self, r: RoleRevokePermissionRequest, h: ResponseHeader) -> RoleRevokePermissionResponse:
        role = self._role(r.role)
        kept: list[Permission] = [p for p in role.perms if (p.key, p.range_end) != (r.key, r.range_end)]
        if len(kept) == len(role.perms):
            raise EtcdzError(ErrorCode.PERMISSION_NOT_GRANTED)
        self._put_role(RoleRecord(name=role.name, perms=kept))
        self._bump()
        return RoleRevokePermissionResponse(header=h)


_HANDLERS: dict[type, Callable[[AuthStore, Any, ResponseHeader], Any]] = {
    AuthEnableRequest: AuthStore._enable,
    AuthDisableRequest: AuthStore._disable,
    AuthStatusRequest: AuthStore._status,
    AuthenticateRequest: AuthStore._authenticate,
    UserAddRequest: AuthStore._user_add,
    UserGetRequest: AuthStore._user_get,
    UserListRequest: AuthStore._user_list,
    UserDeleteRequest: AuthStore._user_delete,
    UserChangePasswordRequest: AuthStore._passwd,
    UserGrantRoleRequest: AuthStore._grant_role,
    UserRevokeRoleRequest: AuthStore._revoke_role,
    RoleAddRequest: AuthStore._role_add,
    RoleGetRequest: AuthStore._role_get,
    RoleListRequest: AuthStore._role_list,
    RoleDeleteRequest: AuthStore._role_delete,
    RoleGrantPermissionRequest: AuthStore._grant_perm,
    RoleRevokePermissionRequest: AuthStore._revoke_perm,
}
