"""etcd's Auth API (rpc.proto, auth.proto) as etcdz messages (type ids 210-259).

Every request here but ``AuthenticateRequest`` and ``AuthStatusRequest`` needs the root role
once auth is enabled, and every one of them goes through raft (reads too, so a ``user get``
sees every change applied before it). Passwords never enter the log: the gateway replaces a
password by its hash (``hashed_password``) before proposing, and a token by its SHA-256 digest.
"""

from __future__ import annotations

import enum
from dataclasses import field

from proto_schemas.codec import message, wire
from proto_schemas.kv import ResponseHeader

ROOT = "root"  # the user and the role that may do anything


class PermissionType(enum.IntEnum):
    READ = 0
    WRITE = 1
    READWRITE = 2


@message(210)
@wire
class Permission:
    """``key`` alone: that key; with ``range_end``: [key, range_end); ``range_end`` b"\\0":
    every key from ``key`` on (etcd's ``--from-key``)."""

    perm_type: PermissionType
    key: bytes
    range_end: bytes = b""


@message(211)
@wire
class AuthEnableRequest:
    pass


@message(212)
@wire
class AuthEnableResponse:
    header: ResponseHeader


@message(213)
@wire
class AuthDisableRequest:
    pass


@message(214)
@wire
class AuthDisableResponse:
    header: ResponseHeader


@message(215)
@wire
class AuthStatusRequest:
    pass


@message(216)
@wire
class AuthStatusResponse:
    header: ResponseHeader
    enabled: bool = False
    auth_revision: int = 0


@message(217)
@wire
class AuthenticateRequest:
    """From a client: ``name`` and ``password``. In the log: ``password`` empty and the digest
    of the token the gateway chose (applied, it makes the token valid on every member)."""

    name: str
    password: str = ""
    token_digest: bytes = b""
    auth_revision: int = 0  # the auth store the password was checked against


@message(218)
@wire
class AuthenticateResponse:
    header: ResponseHeader
    token: str = ""


@message(219)
@wire
class UserAddRequest:
    name: str
    password: str = ""
    no_password: bool = False  # a user who never authenticates by password (no token for it)
    hashed_password: str = ""  # set by the gateway, ``password`` cleared


@message(220)
@wire
class UserAddResponse:
    header: ResponseHeader


@message(221)
@wire
class UserGetRequest:
    name: str


@message(222)
@wire
class UserGetResponse:
    header: ResponseHeader
    roles: list[str] = field(default_factory=list)


@message(223)
@wire
class UserDeleteRequest:
    name: str


@message(224)
@wire
class UserDeleteResponse:
    header: ResponseHeader


@message(225)
@wire
class UserChangePasswordRequest:
    name: str
    password: str = ""
    hashed_password: str = ""  # set by the gateway, ``password`` cleared


@message(226)
@wire
class UserChangePasswordResponse:
    header: ResponseHeader


@message(227)
@wire
class UserGrantRoleRequest:
    user: str
    role: str


@message(228)
@wire
class UserGrantRoleResponse:
    header: ResponseHeader


@message(229)
@wire
class UserRevokeRoleRequest:
    name: str
    role: str


@message(230)
@wire
class UserRevokeRoleResponse:
    header: ResponseHeader


@message(231)
@wire
class UserListRequest:
    pass


@message(232)
@wire
class UserListResponse:
    header: ResponseHeader
    users: list[str] = field(default_factory=list)


@message(233)
@wire
class RoleAddRequest:
    name: str


@message(234)
@wire
class RoleAddResponse:
    header: ResponseHeader


@message(235)
@wire
class RoleGetRequest:
    role: str


@message(236)
@wire
class RoleGetResponse:
    header: ResponseHeader
    perm: list[Permission] = field(default_factory=list)


@message(237)
@wire
class RoleDeleteRequest:
    role: str


@message(238)
@wire
class RoleDeleteResponse:
    header: ResponseHeader


@message(239)
@wire
class RoleGrantPermissionRequest:
    name: str
    perm: Permission


@message(240)
@wire
class RoleGrantPermissionResponse:
    header: ResponseHeader


@message(241)
@wire
class RoleRevokePermissionRequest:
    role: str
    key: bytes
    range_end: bytes = b""


@message(242)
@wire
class RoleRevokePermissionResponse:
    header: ResponseHeader


@message(243)
@wire
class RoleListRequest:
    pass


@message(244)
@wire
class RoleListResponse:
    header: ResponseHeader
    roles: list[str] = field(default_factory=list)


@message(245)
@wire
class AuthCheckRequest:
    """From a watch hub: may the holder of ``token`` read [key, range_end)? (A watcher's
    token is checked where tokens are known: at a member.)"""

    token: str
    key: bytes
    range_end: bytes = b""


@message(246)
@wire
class AuthCheckResponse:
    header: ResponseHeader
    user: str = ""  # empty while auth is disabled


# -- the auth store as a member's gateway holds it (never sent to clients) ---------------------


@message(250)
@wire
class UserRecord:
    name: str
    hashed_password: str = ""  # empty: a user without password (no token for it)
    roles: list[str] = field(default_factory=list)


@message(251)
@wire
class RoleRecord:
    name: str
    perms: list[Permission] = field(default_factory=list)


@message(252)
@wire
class AuthState:
    """The whole auth store at ``revision``: sent by the backend to its gateway at start and
    whenever an applied entry changed it."""

    enabled: bool = False
    revision: int = 0
    users: list[UserRecord] = field(default_factory=list)
    roles: list[RoleRecord] = field(default_factory=list)


@message(253)
@wire
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
