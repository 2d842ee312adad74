"""Exceptions raised by the SDK, one per etcd error, named after it.

``EtcdzError.definite`` tells whether the request certainly did not happen (retry freely) or
may have happened (a write that timed out: read before you retry).
"""

from __future__ import annotations

from proto_schemas.errors import TEXTS, ErrorCode, ErrorResponse


class EtcdzError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, definite: bool = True) -> None:
        self.message = message or TEXTS[self.code]
        self.definite = definite
        super().__init__(self.message)


class BadRequest(EtcdzError):
    code = ErrorCode.BAD_REQUEST


class UnknownOperation(EtcdzError):
    code = ErrorCode.UNKNOWN_OP


class RequestTooLarge(EtcdzError):
    code = ErrorCode.REQUEST_TOO_LARGE


class TooManyRequests(EtcdzError):
    code = ErrorCode.TOO_MANY_REQUESTS


class RequestTimedOut(EtcdzError):
    code = ErrorCode.TIMEOUT


class Compacted(EtcdzError):
    code = ErrorCode.COMPACTED


class FutureRevision(EtcdzError):
    code = ErrorCode.FUTURE_REV


class TooManyOperations(EtcdzError):
    code = ErrorCode.TOO_MANY_OPS


class DuplicateKey(EtcdzError):
    code = ErrorCode.DUPLICATE_KEY


class EmptyKey(EtcdzError):
    code = ErrorCode.EMPTY_KEY


class NoLeader(EtcdzError):
    code = ErrorCode.NO_LEADER


class LeaderChanged(EtcdzError):
    code = ErrorCode.LEADER_CHANGED


class Stopping(EtcdzError):
    code = ErrorCode.STOPPING


class NoSpace(EtcdzError):
    code = ErrorCode.NO_SPACE


class LeaseNotFound(EtcdzError):
    code = ErrorCode.LEASE_NOT_FOUND


class KeyNotFound(EtcdzError):
    code = ErrorCode.KEY_NOT_FOUND


class InternalError(EtcdzError):
    code = ErrorCode.INTERNAL


class MemberExists(EtcdzError):
    code = ErrorCode.MEMBER_EXIST


class PeerURLExists(EtcdzError):
    code = ErrorCode.PEER_URL_EXIST


class NotEnoughStartedMembers(EtcdzError):
    code = ErrorCode.MEMBER_NOT_ENOUGH_STARTED


class MemberBadURLs(EtcdzError):
    code = ErrorCode.MEMBER_BAD_URLS


class MemberNotFound(EtcdzError):
    code = ErrorCode.MEMBER_NOT_FOUND


class MemberNotLearner(EtcdzError):
    code = ErrorCode.MEMBER_NOT_LEARNER


class LearnerNotReady(EtcdzError):
    code = ErrorCode.LEARNER_NOT_READY


class TooManyLearners(EtcdzError):
    code = ErrorCode.TOO_MANY_LEARNERS


class NotLeader(EtcdzError):
    code = ErrorCode.NOT_LEADER


class BadLeaderTransferee(EtcdzError):
    code = ErrorCode.BAD_LEADER_TRANSFEREE


class Unhealthy(EtcdzError):
    code = ErrorCode.UNHEALTHY


class MemberRemoved(EtcdzError):
    code = ErrorCode.ID_REMOVED


class ClusterIdMismatch(EtcdzError):
    code = ErrorCode.CLUSTER_ID_MISMATCH


class LeaseExists(EtcdzError):
    code = ErrorCode.LEASE_EXIST


class LeaseTTLTooLarge(EtcdzError):
    code = ErrorCode.LEASE_TTL_TOO_LARGE


class Corrupt(EtcdzError):
    """A CORRUPT alarm is raised: members' data disagree and writes are refused."""

    code = ErrorCode.CORRUPT


class AuthFailed(EtcdzError):
    """A user name or password was wrong."""

    code = ErrorCode.AUTH_FAILED


class InvalidAuthToken(EtcdzError):
    """The token expired or was never issued by this cluster (authenticate again)."""

    code = ErrorCode.INVALID_AUTH_TOKEN


class PermissionDenied(EtcdzError):
    code = ErrorCode.PERMISSION_DENIED


class UserNotFound(EtcdzError):
    code = ErrorCode.USER_NOT_FOUND


class RoleNotFound(EtcdzError):
    code = ErrorCode.ROLE_NOT_FOUND


class AuthNotEnabled(EtcdzError):
    code = ErrorCode.AUTH_NOT_ENABLED


class UserEmpty(EtcdzError):
    """Auth is enabled and the request carried no token."""

    code = ErrorCode.USER_EMPTY


class UserAlreadyExists(EtcdzError):
    code = ErrorCode.USER_ALREADY_EXIST


class RoleAlreadyExists(EtcdzError):
    code = ErrorCode.ROLE_ALREADY_EXIST


class RoleEmpty(EtcdzError):
    code = ErrorCode.ROLE_EMPTY


class RootUserNotExist(EtcdzError):
    code = ErrorCode.ROOT_USER_NOT_EXIST


class RootRoleNotExist(EtcdzError):
    code = ErrorCode.ROOT_ROLE_NOT_EXIST


class RoleNotGranted(EtcdzError):
    code = ErrorCode.ROLE_NOT_GRANTED


class PermissionNotGranted(EtcdzError):
    code = ErrorCode.PERMISSION_NOT_GRANTED


class InvalidAuthManagement(EtcdzError):
    """A change that would lock everyone out (the root user's root role while auth is on)."""

    code = ErrorCode.INVALID_AUTH_MGMT


class AuthOldRevision(EtcdzError):
    """The auth store changed while the request was in flight, or since a signed (JWT) token
    was issued: log in again and retry (the SDK does both when it has the password)."""

    code = ErrorCode.AUTH_OLD_REVISION


class NotSupportedForLearner(EtcdzError):
    """A learner serves serializable reads, watches and status only: the SDK goes on to the
    next endpoint (definite: nothing happened)."""

    code = ErrorCode.NOT_SUPPORTED_FOR_LEARNER


class MemberNameExists(EtcdzError):
    code = ErrorCode.MEMBER_NAME_EXIST


class ClusterTokenMismatch(EtcdzError):
    code = ErrorCode.CLUSTER_TOKEN_MISMATCH


class Unavailable(EtcdzError):
    """No endpoint answered (all down, or unreachable)."""

    code = ErrorCode.UNAVAILABLE


BY_CODE: dict[ErrorCode, type[EtcdzError]] = {cls.code: cls for cls in EtcdzError.__subclasses__()}


def from_response(response: ErrorResponse) -> EtcdzError:
    return BY_CODE.get(response.code, InternalError)(response.message, definite=response.definite)


class WatchCanceled(EtcdzError):
    """The server ended a watch for a reason etcd has no error for (a watch hub cancels the
    watches of a stream whose client did not read its replies): ``message`` says which. Kept
    out of ``BY_CODE``: no error response carries it."""


def from_reason(reason: str) -> EtcdzError | None:
    """The error a watch was cancelled with, from its cancel reason: etcd's error for etcd's
    text, ``WatchCanceled`` for any other; None for no reason (the client cancelled it)."""
    for code, text in TEXTS.items():
        if text == reason:
            return BY_CODE.get(code, InternalError)(reason)
    return WatchCanceled(reason) if reason else None
