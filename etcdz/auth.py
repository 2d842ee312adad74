"""etcd's Auth API on the client: users, roles, permissions, enabling auth.

Every call here but ``authenticate`` and ``auth_status`` needs the root role once auth is
enabled. Keys are bytes or str; a permission on one key leaves ``range_end`` empty, on a
prefix uses ``prefix=True``, on every key from ``key`` on ``from_key=True`` (as etcdctl).
"""

from __future__ import annotations

from typing import Any

from etcdz import ops
from proto_schemas.auth import (
    ROOT,
    AuthDisableRequest,
    AuthDisableResponse,
    AuthEnableRequest,
    AuthEnableResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthStatusRequest,
    AuthStatusResponse,
    Permission,
    PermissionType,
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
    RoleRevokePermissionRequest,
    RoleRevokePermissionResponse,
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
    UserRevokeRoleRequest,
    UserRevokeRoleResponse,
)

__all__ = ["AuthApi", "Permission", "PermissionType", "ROOT"]


class AuthApi:
    """Mixed into ``Client``: each method is one request through ``call``."""

    def call(self, request: Any, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def authenticate(self, name: str, password: str) -> AuthenticateResponse:
        """A token for ``name`` (a client made with ``user=`` does this by itself)."""
        return self.call(AuthenticateRequest(name=name, password=password))

    def auth_enable(self) -> AuthEnableResponse:
        """Turn auth on; refused until a ``root`` user with the ``root`` role exists."""
        return self.call(AuthEnableRequest())

    def auth_disable(self) -> AuthDisableResponse:
        return self.call(AuthDisableRequest())

    def auth_status(self) -> AuthStatusResponse:
        return self.call(AuthStatusRequest())

    def user_add(self, name: str, password: str = "", no_password: bool = False) -> UserAddResponse:
        return self.call(UserAddRequest(name=name, password=password, no_password=no_password))

    def user_get(self, name: str) -> UserGetResponse:
        return self.call(UserGetRequest(name=name))

    def user_list(self) -> UserListResponse:
        return self.call(UserListRequest())

    def user_delete(self, name: str) -> UserDeleteResponse:
        return self.call(UserDeleteRequest(name=name))

    def user_change_password(self, name: str, password: str) -> UserChangePasswordResponse:
        """A new password; every token of the user stops working."""
        return self.call(UserChangePasswordRequest(name=name, password=password))

    def user_grant_role(self, user: str, role: str) -> UserGrantRoleResponse:
        return self.call(UserGrantRoleRequest(user=user, role=role))

    def user_revoke_role(self, user: str, role: str) -> UserRevokeRoleResponse:
        return self.call(UserRevokeRoleRequest(name=user, role=role))

    def role_add(self, name: str) -> RoleAddResponse:
        return self.call(RoleAddRequest(name=name))

    def role_get(self, name: str) -> RoleGetResponse:
        return self.call(RoleGetRequest(role=name))

    def role_list(self) -> RoleListResponse:
        return self.call(RoleListRequest())

    def role_delete(self, name: str) -> RoleDeleteResponse:
        """Delete a role; every user holding it loses it."""
        return self.call(RoleDeleteRequest(role=name))

    def role_grant_permission(
        self,
        name: str,
        perm_type: PermissionType | str,
        key: ops.Bytes,
        range_end: ops.Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
    ) -> RoleGrantPermissionResponse:
        """Grant ``perm_type`` (read, write, readwrite) on a key, [key, range_end), a prefix or
        every key from ``key`` on."""
        kind = perm_type if isinstance(perm_type, PermissionType) else PermissionType[perm_type.upper()]
        start, end = _interval(key, range_end, prefix, from_key)
        return self.call(
            RoleGrantPermissionRequest(name=name, perm=Permission(perm_type=kind, key=start, range_end=end))
        )

    def role_revoke_permission(
        self,
        name: str,
        key: ops.Bytes,
        range_end: ops.Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
    ) -> RoleRevokePermissionResponse:
        """Revoke the permission granted on exactly that interval."""
        start, end = _interval(key, range_end, prefix, from_key)
        return self.call(RoleRevokePermissionRequest(role=name, key=start, range_end=end))


def _interval(
    key: ops.Bytes, range_end: ops.Bytes | None, prefix: bool, from_key: bool
) -> tuple[bytes, bytes]:
    return ops.key_and_end(key, range_end, prefix, from_key)
