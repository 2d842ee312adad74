"""Error codes, etcd's texts, and whether each is definite.

A *definite* error means the request did not happen and may be retried freely. An *indefinite*
one (a timeout, a lost leader after proposing) means it may have happened: clients and the
linearizability checker must treat the outcome as unknown. Type id 90.
"""

from __future__ import annotations

import enum

from proto_schemas.codec import message, wire


class ErrorCode(enum.IntEnum):
    # etcd's gRPC codes are kept as the number's meaning so SDK exceptions can mirror them.
    BAD_REQUEST = 1
    UNKNOWN_OP = 2
    REQUEST_TOO_LARGE = 3
    TOO_MANY_REQUESTS = 4
    TIMEOUT = 5
    COMPACTED = 6
    FUTURE_REV = 7
    TOO_MANY_OPS = 8
    DUPLICATE_KEY = 9
    EMPTY_KEY = 10
    NO_LEADER = 11
    LEADER_CHANGED = 12
    STOPPING = 13
    NO_SPACE = 14
    LEASE_NOT_FOUND = 15
    INTERNAL = 16
    UNAVAILABLE = 17
    KEY_NOT_FOUND = 18
    MEMBER_EXIST = 19
    PEER_URL_EXIST = 20
    MEMBER_NOT_ENOUGH_STARTED = 21
    MEMBER_BAD_URLS = 22
    MEMBER_NOT_FOUND = 23
    MEMBER_NOT_LEARNER = 24
    LEARNER_NOT_READY = 25
    TOO_MANY_LEARNERS = 26
    NOT_LEADER = 27
    BAD_LEADER_TRANSFEREE = 28
    UNHEALTHY = 29
    ID_REMOVED = 30
    CLUSTER_ID_MISMATCH = 31
    LEASE_EXIST = 32
    LEASE_TTL_TOO_LARGE = 33
    CORRUPT = 34
    AUTH_FAILED = 35
    INVALID_AUTH_TOKEN = 36
    PERMISSION_DENIED = 37
    USER_NOT_FOUND = 38
    ROLE_NOT_FOUND = 39
    AUTH_NOT_ENABLED = 40
    USER_EMPTY = 41
    USER_ALREADY_EXIST = 42
    ROLE_ALREADY_EXIST = 43
    ROLE_EMPTY = 44
    ROOT_USER_NOT_EXIST = 45
    ROOT_ROLE_NOT_EXIST = 46
    ROLE_NOT_GRANTED = 47
    PERMISSION_NOT_GRANTED = 48
    INVALID_AUTH_MGMT = 49
    AUTH_OLD_REVISION = 50
    NOT_SUPPORTED_FOR_LEARNER = 51
    MEMBER_NAME_EXIST = 52
    CLUSTER_TOKEN_MISMATCH = 53


TEXTS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "etcdserver: bad request",
    ErrorCode.UNKNOWN_OP: "etcdserver: unknown request type",
    ErrorCode.REQUEST_TOO_LARGE: "etcdserver: request is too large",
    ErrorCode.TOO_MANY_REQUESTS: "etcdserver: too many requests",
    ErrorCode.TIMEOUT: "etcdserver: request timed out",
    ErrorCode.COMPACTED: "etcdserver: mvcc: required revision has been compacted",
    ErrorCode.FUTURE_REV: "etcdserver: mvcc: required revision is a future revision",
    ErrorCode.TOO_MANY_OPS: "etcdserver: too many operations in txn request",
    ErrorCode.DUPLICATE_KEY: "etcdserver: duplicate key given in txn request",
    ErrorCode.EMPTY_KEY: "etcdserver: key is not provided",
    ErrorCode.NO_LEADER: "etcdserver: no leader",
    ErrorCode.LEADER_CHANGED: "etcdserver: leader changed",
    ErrorCode.STOPPING: "etcdserver: server stopped",
    ErrorCode.NO_SPACE: "etcdserver: mvcc: database space exceeded",
    ErrorCode.LEASE_NOT_FOUND: "etcdserver: requested lease not found",
    ErrorCode.INTERNAL: "etcdserver: internal error",
    ErrorCode.UNAVAILABLE: "etcdserver: unavailable",
    ErrorCode.KEY_NOT_FOUND: "etcdserver: key not found",
    ErrorCode.MEMBER_EXIST: "etcdserver: member ID already exist",
    ErrorCode.PEER_URL_EXIST: "etcdserver: Peer URLs already exists",
    ErrorCode.MEMBER_NOT_ENOUGH_STARTED: (
        "etcdserver: re-configuration failed due to not enough started members"
    ),
    ErrorCode.MEMBER_BAD_URLS: "etcdserver: given member URLs are invalid",
    ErrorCode.MEMBER_NOT_FOUND: "etcdserver: member not found",
    ErrorCode.MEMBER_NOT_LEARNER: "etcdserver: can only promote a learner member",
    ErrorCode.LEARNER_NOT_READY: "etcdserver: can only promote a learner member which is in sync with leader",
    ErrorCode.TOO_MANY_LEARNERS: "etcdserver: too many learner members in cluster",
    ErrorCode.NOT_LEADER: "etcdserver: not leader",
    ErrorCode.BAD_LEADER_TRANSFEREE: "etcdserver: bad leader transferee",
    ErrorCode.UNHEALTHY: "etcdserver: unhealthy cluster",
    ErrorCode.ID_REMOVED: "etcdserver: the member has been permanently removed from the cluster",
    ErrorCode.CLUSTER_ID_MISMATCH: "etcdserver: cluster ID mismatch",
    ErrorCode.LEASE_EXIST: "etcdserver: lease already exists",
    ErrorCode.LEASE_TTL_TOO_LARGE: "etcdserver: too large lease TTL",
    ErrorCode.CORRUPT: "etcdserver: corrupt cluster",
    ErrorCode.AUTH_FAILED: "etcdserver: authentication failed, invalid user ID or password",
    ErrorCode.INVALID_AUTH_TOKEN: "etcdserver: invalid auth token",
    ErrorCode.PERMISSION_DENIED: "etcdserver: permission denied",
    ErrorCode.USER_NOT_FOUND: "etcdserver: user name not found",
    ErrorCode.ROLE_NOT_FOUND: "etcdserver: role name not found",
    ErrorCode.AUTH_NOT_ENABLED: "etcdserver: authentication is not enabled",
    ErrorCode.USER_EMPTY: "etcdserver: user name is empty",
    ErrorCode.USER_ALREADY_EXIST: "etcdserver: user name already exists",
    ErrorCode.ROLE_ALREADY_EXIST: "etcdserver: role name already exists",
    ErrorCode.ROLE_EMPTY: "etcdserver: role name is empty",
    ErrorCode.ROOT_USER_NOT_EXIST: "etcdserver: root user does not exist",
    ErrorCode.ROOT_ROLE_NOT_EXIST: "etcdserver: root user does not have root role",
    ErrorCode.ROLE_NOT_GRANTED: "etcdserver: role is not granted to the user",
    ErrorCode.PERMISSION_NOT_GRANTED: "etcdserver: permission is not granted to the role",
    ErrorCode.INVALID_AUTH_MGMT: "etcdserver: invalid auth management",
    ErrorCode.AUTH_OLD_REVISION: "etcdserver: revision of auth store is old",
    ErrorCode.NOT_SUPPORTED_FOR_LEARNER: "etcdserver: rpc not supported for learner",
    # etcdz's own: refusals of a member adding itself (``etcdz --join``)
    ErrorCode.MEMBER_NAME_EXIST: "etcdserver: member name already exists",
    ErrorCode.CLUSTER_TOKEN_MISMATCH: "etcdserver: cluster token mismatch",
}

INDEFINITE = frozenset({ErrorCode.TIMEOUT, ErrorCode.LEADER_CHANGED, ErrorCode.STOPPING})
# Refusals a fresh login cures: no token yet (auth newly enabled), a token expired or unknown
# to this member, or a signed token older than the auth store's last change.
RELOGIN = frozenset({ErrorCode.USER_EMPTY, ErrorCode.INVALID_AUTH_TOKEN, ErrorCode.AUTH_OLD_REVISION})
# errors whose detail (what exactly was wrong) is worth showing after etcd's text
_DETAILED = frozenset(
    {
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNKNOWN_OP,
        ErrorCode.INTERNAL,
        ErrorCode.MEMBER_BAD_URLS,
        ErrorCode.CLUSTER_ID_MISMATCH,  # which clusters: a hub's, a client's
        ErrorCode.MEMBER_NAME_EXIST,
    }
)


@message(90)
@wire
class ErrorResponse:
    code: ErrorCode
    message: str
    definite: bool = True


class EtcdzError(Exception):
    """A request failed with one of etcd's errors; raised inside cores, turned into replies."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(TEXTS[code] + (f" ({detail})" if detail else ""))

    def to_response(self) -> ErrorResponse:
        return error_response(self.code, self.detail)


def error_response(code: ErrorCode, detail: str = "") -> ErrorResponse:
    text = TEXTS[code]
    if detail and code in _DETAILED:
        text = f"{text}: {detail}"
    return ErrorResponse(code=code, message=text, definite=code not in INDEFINITE)
