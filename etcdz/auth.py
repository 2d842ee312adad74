"""etcd's Auth API on the client: users, roles, permissions, enabling auth.

Every call here but ``authenticate`` and ``auth_status`` needs the root role once auth is
enabled. Keys are bytes or str; a permission on one key leaves ``range_end`` empty, on a
prefix uses ``prefix=True``, on every key from ``key`` on ``from_key=True`` (as etcdctl).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import proto_schemas as pb  # the auth messages are imported by the first call that uses them
from etcdz import ops

if TYPE_CHECKING:
    import proto_schemas.auth
    from proto_schemas.auth import ROOT, Permission, PermissionType

__all__ = ["AuthApi", "Permission", "PermissionType", "ROOT"]


def __getattr__(name: str) -> Any:
    """``Permission``, ``PermissionType`` and ``ROOT``, from the auth messages when first used."""
    if name in ("Permission", "PermissionType", "ROOT"):
        return getattr(pb.auth, name)
    raise AttributeError(f"module 'etcdz.auth' has no attribute {name!r}")


class AuthApi:
    """Mixed into ``Client``: each method is one request through ``call``."""

    def call(self, request: Any, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def authenticate(self, name: str, password: str) -> pb.auth.AuthenticateResponse:
        """A token for ``name`` (a client made with ``user=`` does this by itself)."""
        return self.call(pb.auth.AuthenticateRequest(name=name, password=password))

    def auth_enable(self) -> pb.auth.AuthEnableResponse:
        """Turn auth on; refused until a ``root`` user with the ``root`` role exists."""
        return self.call(pb.auth.AuthEnableRequest())

    def auth_disable(self) -> pb.auth.AuthDisableResponse:
        return self.call(pb.auth.AuthDisableRequest())

    def auth_status(self) -> pb.auth.AuthStatusResponse:
        return self.call(pb.auth.AuthStatusRequest())

    def user_add(self, name: str, password: str = "", no_password: bool = False) -> pb.auth.UserAddResponse:
        return self.call(pb.auth.UserAddRequest(name=name, password=password, no_password=no_password))

    def user_get(self, name: str) -> pb.auth.UserGetResponse:
        return self.call(pb.auth.UserGetRequest(name=name))

    def user_list(self) -> pb.auth.UserListResponse:
        return self.call(pb.auth.UserListRequest())

    def user_delete(self, name: str) -> pb.auth.UserDeleteResponse:
        return self.call(pb.auth.UserDeleteRequest(name=name))

    def user_change_password(self, name: str, password: str) -> pb.auth.UserChangePasswordResponse:
        """A new password; every token of the user stops working."""
        return self.call(pb.auth.UserChangePasswordRequest(name=name, password=password))

    def user_grant_role(self, user: str, role: str) -> pb.auth.UserGrantRoleResponse:
        return self.call(pb.auth.UserGrantRoleRequest(user=user, role=role))

    def user_revoke_role(self, user: str, role: str) -> pb.auth.UserRevokeRoleResponse:
        return self.call(pb.auth.UserRevokeRoleRequest(name=user, role=role))

    def role_add(self, name: str) -> pb.auth.RoleAddResponse:
        return self.call(pb.auth.RoleAddRequest(name=name))

    def role_get(self, name: str) -> pb.auth.RoleGetResponse:
        return self.call(pb.auth.RoleGetRequest(role=name))

    def role_list(self) -> pb.auth.RoleListResponse:
        return self.call(pb.auth.RoleListRequest())

    def role_delete(self, name: str) -> pb.auth.RoleDeleteResponse:
        """Delete a role; every user holding it loses it."""
        return self.call(pb.auth.RoleDeleteRequest(role=name))

    def role_grant_permission(
        self,
        name: str,
        perm_type: pb.auth.PermissionType | str,
        key: ops.Bytes,
        range_end: ops.Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
    ) -> pb.auth.RoleGrantPermissionResponse:
        """Grant ``perm_type`` (read, write, readwrite) on a key, [key, range_end), a prefix or
        every key from ``key`` on."""
        kind = (
            perm_type
            if isinstance(perm_type, pb.auth.PermissionType)
            else pb.auth.PermissionType[perm_type.upper()]
        )
        start, end = _interval(key, range_end, prefix, from_key)
        return self.call(
            pb.auth.RoleGrantPermissionRequest(
                name=name, perm=pb.auth.Permission(perm_type=kind, key=start, range_end=end)
            )
        )

    def role_revoke_permission(
        self,
        name: str,
        key: ops.Bytes,
        range_end: ops.Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
    ) -> pb.auth.RoleRevokePermissionResponse:
        """Revoke the permission granted on exactly that interval."""
        start, end = _interval(key, range_end, prefix, from_key)
        return self.call(pb.auth.RoleRevokePermissionRequest(role=name, key=start, range_end=end))


def _interval(
    key: ops.Bytes, range_end: ops.Bytes | None, prefix: bool, from_key: bool
) -> tuple[bytes, bytes]:
    return ops.key_and_end(key, range_end, prefix, from_key)
