"""etcd's Auth API (rpc.proto, auth.proto) as etcdz messages (type ids 210-259).

Every request here but ``AuthenticateRequest`` and ``AuthStatusRequest`` needs the root role
once auth is enabled, and every one of them goes through raft (reads too, so a ``user get``
sees every change applied before it). Passwords never enter the log: the gateway replaces a
password by its hash (``hashed_password``) before proposing, and a token by its SHA-256 digest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from proto_schemas.codec import message
from proto_schemas.kv import ResponseHeader

_msg = dataclass(frozen=True, slots=True, kw_only=True)

ROOT = "root"  # the user and the role that may do anything


class PermissionType(enum.IntEnum):
    READ = 0
    WRITE = 1
    READWRITE = 2


@message(210)
@_msg
class Permission:
    """``key`` alone: that key; with ``range_end``: [key, range_end); ``range_end`` b"\\0":
    every key from ``key`` on (etcd's ``--from-key``)."""

    perm_type: PermissionType
    key: bytes
    range_end: bytes = b""


@message(211)
@_msg
class AuthEnableRequest:
    pass


@message(212)
@_msg
class AuthEnableResponse:
    header: ResponseHeader


@message(213)
@_msg
class AuthDisableRequest:
    pass


@message(214)
@_msg
class AuthDisableResponse:
    header: ResponseHeader


@message(215)
@_msg
class AuthStatusRequest:
    pass


@message(216)
@_msg
class AuthStatusResponse:
    header: ResponseHeader
    enabled: bool = False
    auth_revision: int = 0


@message(217)
@_msg
class AuthenticateRequest:
    """From a client: ``name`` and ``password``. In the log: ``password`` empty and the digest
    of the token the gateway chose (applied, it makes the token valid on every member)."""

    name: str
    password: str = ""
    token_digest: bytes = b""
    auth_revision: int = 0  # the auth store the password was checked against


@message(218)
@_msg
class AuthenticateResponse:
    header: ResponseHeader
    token: str = ""


@message(219)
@_msg
class UserAddRequest:
    name: str
    password: str = ""
    no_password: bool = False  # a user who never authenticates by password (no token for it)
    hashed_password: str = ""  # set by the gateway, ``password`` cleared


@message(220)
@_msg
class UserAddResponse:
    header: ResponseHeader


@message(221)
@_msg
class UserGetRequest:
    name: str


@message(222)
@_msg
class UserGetResponse:
    header: ResponseHeader
    roles: list[str] = field(default_factory=list)


@message(223)
@_msg
class UserDeleteRequest:
    name: str


@message(224)
@_msg
class UserDeleteResponse:
    header: ResponseHeader


@message(225)
@_msg
class UserChangePasswordRequest:
    name: str
    password: str = ""
    hashed_password: str = ""  # set by the gateway, ``password`` cleared


@message(226)
@_msg
class UserChangePasswordResponse:
    header: ResponseHeader


@message(227)
@_msg
class UserGrantRoleRequest:
    user: str
    role: str


@message(228)
@_msg
class UserGrantRoleResponse:
    header: ResponseHeader


@message(229)
@_msg
class UserRevokeRoleRequest:
    name: str
    role: str


@message(230)
@_msg
class UserRevokeRoleResponse:
    header: ResponseHeader


@message(231)
@_msg
class UserListRequest:
    pass


@message(232)
@_msg
class UserListResponse:
    header: ResponseHeader
    users: list[str] = field(default_factory=list)


@message(233)
@_msg
class RoleAddRequest:
    name: str


@message(234)
@_msg
class RoleAddResponse:
    header: ResponseHeader


@message(235)
@_msg
class RoleGetRequest:
    role: str


@message(236)
@_msg
class RoleGetResponse:
    header: ResponseHeader
    perm: list[Permission] = field(default_factory=list)


@message(237)
@_msg
class RoleDeleteRequest:
    role: str


@message(238)
@_msg
class RoleDeleteResponse:
    header: ResponseHeader


@message(239)
@_msg
class RoleGrantPermissionRequest:
    name: str
    perm: Permission


@message(240)
@_msg
class RoleGrantPermissionResponse:
    header: ResponseHeader


@message(241)
@_msg
class RoleRevokePermissionRequest:
    role: str
    key: bytes
    range_end: bytes = b""


@message(242)
@_msg
class RoleRevokePermissionResponse:
    header: ResponseHeader


@message(243)
@_msg
class RoleListRequest:
    pass


@message(244)
@_msg
class RoleListResponse:
    header: ResponseHeader
    roles: list[str] = field(default_factory=list)


@message(245)
@_msg
class AuthCheckRequest:
    """From a watch hub: may the holder of ``token`` read [key, range_end)? (A watcher's
    token is checked where tokens are known: at a member.)"""

    token: str
    key: bytes
    range_end: bytes = b""


@message(246)
@_msg
class AuthCheckResponse:
    header: ResponseHeader
    user: str = ""  # empty while auth is disabled


# -- the auth store as a member's gateway holds it (never sent to clients) ---------------------


@message(250)
@_msg
class UserRecord:
    name: str
    hashed_password: str = ""  # empty: a user without password (no token for it)
    roles: list[str] = field(default_factory=list)


@message(251)
@_msg
class RoleRecord:
    name: str
    perms: list[Permission] = field(default_factory=list)


@message(252)
@_msg
class AuthState:
    """The whole auth store at ``revision``: sent by the backend to its gateway at start and
    whenever an applied entry changed it."""

    enabled: bool = False
    revision: int = 0
    users: list[UserRecord] = field(default_factory=list)
    roles: list[RoleRecord] = field(default_factory=list)


@message(253)
@_msg
class TokenGranted:
    """An applied ``AuthenticateRequest``: the token whose digest this is now names ``user``
    (each member's gateway keeps it for the token TTL, renewed on use)."""

    user: str
    token_digest: bytes


AUTH_REQUESTS = (
    AuthEnableRequest,
    AuthDisableRequest,
    AuthStatusRequest,
    AuthenticateRequest,
    UserAddRequest,
    UserGetRequest,
    UserDeleteRequest,
    UserChangePasswordRequest,
    UserGrantRoleRequest,
    UserRevokeRoleRequest,
    UserListRequest,
    RoleAddRequest,
    RoleGetRequest,
    RoleDeleteRequest,
    RoleGrantPermissionRequest,
    RoleRevokePermissionRequest,
    RoleListRequest,
)
