"""The rules of one call, shared by the blocking ``Client`` and the asyncio ``AsyncClient``.

Both clients do the same thing around different I/O: encode a request, send it with a fresh
``msg_id`` on the current member's connection, match the reply by ``in_reply_to``, and decide
from the outcome whether to return, to raise, or to try the next endpoint. The deciding lives
here, without sockets or clocks (the shells pass ``expired``), so that the two clients cannot
drift apart:
- a *definite* failure that another member may not have (no leader, leader changed,
  unavailable, stopping, a learner's refusal): try the next endpoint, and after every round
  of them, pause (50 ms, doubling up to 0.5 s), until the call's deadline (a learner's refusal:
  each endpoint once), as clientv3 retries ``Unavailable``: an election leaves every member
  without a leader for about an election timeout;
- no reply at all, for a read: try the next endpoint, within the call's deadline;
- a connection lost with the call in flight (the member's gateway died; ``LOST``, seen at once
  through the socket's monitor): send it again, to the next endpoint (the same one if it is
  the only one), writes too: every write carries its client's session and keeps its msg_id
  on every attempt, so a copy of a write that was applied is answered, not applied again
  (``WriteSession``; actors/mvcc/sessions.py on the members);
- no reply to a *write* by its deadline: ``RequestTimedOut(definite=False)`` — it may have
  been applied, and there is no time left to ask again;
- a request that never left (no connection to that member) may go elsewhere, writes too.
With many calls in flight on one connection, a move to the next endpoint is made once for a
given connection (``Endpoints.move``), not once per call that saw it fail.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections import OrderedDict
from typing import Any

from etcdz.errors import EtcdzError, RequestTimedOut, Unavailable, from_response
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import pack, reply_to, unpack_header
from proto_schemas.errors import RELOGIN, ErrorCode, ErrorResponse
from proto_schemas.kv import ResponseHeader


class _Outcome:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOT_SENT = _Outcome("NOT_SENT")  # the request never left: no connection to the endpoint
NO_REPLY = _Outcome("NO_REPLY")  # sent, and nothing came back before the deadline
LOST = _Outcome("LOST")  # sent, and the connection it left on is gone: no answer can come on it
RETRY_LIMIT = 32  # attempts of one call at most (the deadline usually ends them first)
BACKOFF_S = 0.05  # the pause after a round of every endpoint, doubled each round ...
BACKOFF_MAX_S = 0.5  # ... up to this
RETRY_ELSEWHERE = {
    ErrorCode.NO_LEADER,
    ErrorCode.LEADER_CHANGED,  # a linearizable read's ReadIndex asked of a leader that lost office
    ErrorCode.UNAVAILABLE,
    ErrorCode.STOPPING,
    ErrorCode.NOT_SUPPORTED_FOR_LEARNER,
}
# Of those, the ones that pass (an election, a restart): asked again until the deadline. A
# learner refuses until it is promoted: each endpoint is asked once.
RETRY_UNTIL_DEADLINE = RETRY_ELSEWHERE - {ErrorCode.NOT_SUPPORTED_FOR_LEARNER}
# Refusals of a request before it reached the log: of a write's later attempt, they leave the
# write's fate to its earlier attempts.
COPY_REFUSALS = RETRY_ELSEWHERE | {ErrorCode.TOO_MANY_REQUESTS, ErrorCode.TIMEOUT}
# Requests that may change state: each carries its client's write session (``WriteSession``), so
# that a copy sent again is applied once. Named rather than listed as classes, so that a call
# imports only its own message's module.
WRITES = frozenset(
    {
        "PutRequest",
        "DeleteRangeRequest",
        "TxnRequest",
        "CompactionRequest",
        "LeaseGrantRequest",
        "LeaseRevokeRequest",
        "MemberAddRequest",
        "MemberRemoveRequest",
        "MemberUpdateRequest",
        "MemberPromoteRequest",
        "MoveLeaderRequest",
        "AlarmRequest",
    }
)
# Calls one connection carries at once: beyond, they wait on the client's side (a member
# refuses more than its --max-client-inflight, 1000 by default, as too many requests).
MAX_IN_FLIGHT = 1000
LOGIN_ATTEMPTS = 5  # a login refused as busy, or checked against a changed auth store, is retried
LOGIN_BACKOFF_S = 0.1


def is_write(request: Any) -> bool:
    """Whether ``request`` may change state (every auth request but the login does)."""
    cls = type(request)
    if cls.__module__ == "proto_schemas.auth":
        return cls.__name__ != "AuthenticateRequest"
    return cls.__name__ in WRITES


def reply_id(frames: list[bytes]) -> tuple[int, bytes] | None:
    """(``in_reply_to``, body) of a reply's frames; None for frames nobody can be given."""
    if len(frames) == 2 and (in_reply_to := reply_to(frames[0])) >= 0:
        return in_reply_to, frames[1]
    try:
        header, body = unpack_header(frames)
    except DecodeError:
        return None
    return header.in_reply_to, body


def decode_reply(body: bytes, endpoint: str) -> Any:
    try:
        return decode(body)
    except DecodeError as exc:
        raise EtcdzError(f"malformed reply from {endpoint}: {exc}") from None


class Endpoints:
    """The members a client may talk to and the one it talks to now. ``generation`` counts
    moves: a connection made for generation g is replaced once, by the first caller that saw
    it fail, however many calls in flight saw the same failure."""

    def __init__(self, urls: str | list[str]) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one endpoint is required")
        self.index = 0
        self.generation = 0

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def move(self, seen_generation: int) -> bool:
        """Go to the next endpoint unless someone already moved away from ``seen_generation``."""
        if seen_generation != self.generation:
            return False
        self.index = (self.index + 1) % len(self.urls)
        self.generation += 1
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """What to do after one exchange: ``move`` to the next endpoint first, then raise
    ``error``, or return ``response``, or (neither) send again."""

    move: bool = False
    error: EtcdzError | None = None
    response: Any = None
    done: bool = False
    delay: float = 0.0  # seconds to wait before the next attempt


class WriteSession:
    """A client's write session: its id, and its writes not yet answered (oldest first), whose
    first is the ``acked`` every write names (answers below it may be forgotten by the
    members). A write's sequence number is its msg_id, the same on every attempt."""

    def __init__(self, ids: Any) -> None:
        self.client_id = secrets.randbits(63) | 1
        self._ids = ids
        self._open: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()  # ids taken in the order they are listed (threads)

    def open(self) -> int:
        with self._lock:
            seq = next(self._ids)
            self._open[seq] = None
            return seq

    def attempt(self, body: bytes, seq: int, token: str) -> tuple[int, list[bytes]]:
        """The msg_id and frames of one attempt of a call: a write (``seq`` from ``open``)
        keeps its number and names the session; anything else gets a fresh msg_id."""
        if not seq:
            msg_id = next(self._ids)
            return msg_id, pack(body, msg_id=msg_id, token=token)
        with self._lock:
            acked = next(iter(self._open))
        return seq, pack(body, msg_id=seq, token=token, client_id=self.client_id, acked=acked)

    def close(self, seq: int) -> None:
        with self._lock:
            self._open.pop(seq, None)


class Failover:
    """One call's attempts across endpoints (what the old single-threaded loop decided inline)."""

    def __init__(self, endpoints: Endpoints, write: bool) -> None:
        self._endpoints = endpoints
        self._write = write
        self.tried = 0
        self.lost = 0
        self.refused: EtcdzError | None = None  # the last refusal, said if the deadline passes

    def step(self, outcome: Any, expired: bool) -> Step:
        """``outcome``: NOT_SENT, NO_REPLY, LOST or the decoded reply; ``expired``: the
        deadline passed."""
        self.tried += 1
        last = self.tried >= len(self._endpoints.urls) or expired
        names = ", ".join(self._endpoints.urls)
        if outcome is LOST or _sent_back(outcome):
            self.lost += 1
            return self._again(expired, RequestTimedOut(definite=not self._write))
        if self.lost and _refused_copy(outcome):  # about this attempt, not the call: an earlier one left
            return self._again(expired, RequestTimedOut(definite=not self._write))
        if outcome is NOT_SENT:
            error = self.refused or Unavailable(f"no endpoint reachable: {names}")
            return Step(move=True, error=error if last else None)
        if outcome is NO_REPLY:
            if self._write:
                return Step(move=True, error=RequestTimedOut(definite=False))
            if last:
                error = Unavailable(f"no reply from {names}") if self.tried > 1 else RequestTimedOut()
                return Step(move=True, error=error)
            return Step(move=True)
        if isinstance(outcome, ErrorResponse):
            if outcome.code in RETRY_UNTIL_DEADLINE:
                self.refused = from_response(outcome)
                return self._again(expired, self.refused)
            if outcome.code in RETRY_ELSEWHERE and not last:
                return Step(move=True)
            return Step(error=from_response(outcome))
        return Step(response=outcome, done=True)

    def _again(self, expired: bool, error: EtcdzError) -> Step:
        """Try again on the next endpoint until the deadline (then raise ``error``), pausing
        once every endpoint was tried: an election takes about an election timeout, and a
        restarted gateway a moment."""
        if expired or self.tried >= RETRY_LIMIT:
            return Step(move=True, error=error)
        rounds = self.tried // len(self._endpoints.urls)
        delay = min(BACKOFF_S * 2 ** (rounds - 1), BACKOFF_MAX_S) if rounds else 0.0
        return Step(move=True, delay=delay)


def _sent_back(outcome: Any) -> bool:
    """A member sent the call back after it may have reached the log (its raft core restarted):
    to be sent elsewhere, as a call lost in flight is."""
    return isinstance(outcome, ErrorResponse) and outcome.code in RETRY_ELSEWHERE and not outcome.definite


def _refused_copy(outcome: Any) -> bool:
    """Whether a member refused this attempt before it reached the log, or it never left:
    after an earlier attempt of the same write was lost in flight, that says nothing of the
    write, which may have been applied."""
    if outcome is NOT_SENT:
        return True
    return isinstance(outcome, ErrorResponse) and outcome.code in COPY_REFUSALS


def cluster_id_of(response: Any) -> int:
    """The cluster id a member's answer names (0: none), which the watch hubs must serve."""
    header = getattr(response, "header", None)
    return header.cluster_id if isinstance(header, ResponseHeader) else 0


def relogin_cures(user: str | None, exc: EtcdzError) -> bool:
    """Whether a fresh login (then one more try) may cure ``exc``: the refused call did not
    happen, so retrying it is safe."""
    return user is not None and exc.code in RELOGIN


def login_retry(exc: EtcdzError, attempt: int, expired: bool) -> float | None:
    """After a failed login: seconds to wait before the next try, -1.0 to go on without a token
    (auth is disabled, as clientv3 does), None to raise ``exc``."""
    if exc.code == ErrorCode.AUTH_NOT_ENABLED:
        return -1.0
    if exc.code not in (ErrorCode.AUTH_OLD_REVISION, ErrorCode.TOO_MANY_REQUESTS):
        return None
    if attempt >= LOGIN_ATTEMPTS - 1 or expired:
        return None
    return LOGIN_BACKOFF_S * 2**attempt if exc.code == ErrorCode.TOO_MANY_REQUESTS else 0.0
