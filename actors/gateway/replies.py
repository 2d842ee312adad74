"""The gateway's answers: each request exactly one, counted in the metrics and out of its client's in-flight.

Rules:
- Every request gets exactly one answer (or, for a streamed range, one per chunk). A read that
  failed changed nothing: its error is definite; a write's timeout is not (it may yet apply).
- A lease time-to-live with keys is answered only if the user may read every key in the
  answer (etcd's CVE-2023-32082 fix), checked on the keys actually answered.
- An applied login's answer carries the token minted for it, handed out once.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from actors.auth.jwt import JwtTokens
from actors.auth.perms import lease_keys_read
from actors.auth.store import AuthView
from actors.auth.tokens import LoginLimiter, TokenKeeper
from actors.gateway.compactor import AutoCompactor
from actors.gateway.hubs import LocalHubs
from actors.gateway.requests import Outbox, Pending, error_code
from actors.runtime.metrics import Counter, Gauge
from proto_schemas.auth import AuthenticateResponse
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.errors import ErrorCode, EtcdzError, error_response
from proto_schemas.internal import RaftStatus
from proto_schemas.kv import ResponseHeader
from proto_schemas.lease import LeaseTimeToLiveRequest, LeaseTimeToLiveResponse
from proto_schemas.maintenance import AlarmType


class Replies:
    """The gateway's state (set up by ``GatewayCore.__init__``) and its answers to clients."""

    member_id: int
    cluster_id: int
    unsafe_local_reads: bool
    max_request_bytes: int
    max_txn_ops: int
    request_timeout_s: float
    max_gap: int
    min_lease_ttl: int
    events_urls: list[str]
    quota_bytes: int
    db_size: int
    revision: int
    compactor: AutoCompactor | None
    auth: AuthView
    tokens: TokenKeeper
    jwt: JwtTokens | None
    logins: LoginLimiter
    _random: Callable[[int], bytes]
    hub_token: str
    cert_secret: bytes
    local_hubs: LocalHubs
    open_hubs: bool
    _token_sweep: float
    m_requests: Counter
    m_failed: Counter
    m_hubs_down: Gauge
    hubs_down: list[str]
    _alarm_proposed: dict[AlarmType, float]
    _hubs: dict[str, tuple[float, list[str]]]
    _ids: itertools.count[int]
    raft: RaftStatus | None
    applied: int
    _pending: dict[int, Pending]
    _at_backend: set[int]
    max_client_inflight: int
    max_client_inflight_bytes: int
    _inflight: dict[bytes, list[int]]
    _held: list[int]
    _need_index: list[int]
    _index_rounds: dict[int, list[int]]
    _wait_applied: list[tuple[int, int]]
    _deadlines: list[tuple[float, int]]
    out: Outbox
    _propose_data: list[bytes]
    _propose_ids: list[int]
    _own: dict[int, tuple[Any, float]]
    session_id: int
    _open_own: OrderedDict[int, None]
    _session_writes: dict[tuple[int, int], int]
    _copies_due: bool
    _state_probe: int

    def header(self, revision: int) -> ResponseHeader:
        return ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=revision,
            raft_term=self.raft.term if self.raft else 0,
        )

    def _settle(self, rid: int) -> Pending | None:
        """Forget a request being answered (and count it out of its client's)."""
        pending = self._pending.pop(rid, None)
        self._at_backend.discard(rid)
        if pending is not None:
            self._count_out(pending)
            if pending.client_id == self.session_id:
                self._open_own.pop(rid, None)
            elif pending.client_id:
                self._session_writes.pop((pending.client_id, pending.seq), None)
        return pending

    def _count_out(self, pending: Pending) -> None:
        held = self._inflight[pending.route]
        held[0] -= 1
        held[1] -= len(pending.body)
        if not held[0]:
            del self._inflight[pending.route]

    def _count_in(self, pending: Pending) -> None:
        held = self._inflight.setdefault(pending.route, [0, 0])
        held[0] += 1
        held[1] += len(pending.body)

    def _answer(self, rid: int, body: bytes) -> None:
        pending = self._settle(rid)
        if pending is not None:
            body = self._lease_keys_checked(pending, body)
            if pending.issued and error_code(body) is None:  # an applied login: its token
                applied = decode(body)
                if isinstance(applied, AuthenticateResponse):
                    body = encode(dataclasses.replace(applied, token=pending.issued))
            self.out.to_client.append((pending.route, pending.msg_id, body))
            code = error_code(body)
            self.m_requests.inc(op=pending.op, code=code.name if code is not None else "OK")

    def _lease_keys_checked(self, pending: Pending, body: bytes) -> bytes:
        """A time-to-live's keys go only to a user who may read every one of them (etcd's fix
        of CVE-2023-32082), checked on the keys actually answered: the lease's keys are known
        to the backend alone, and may change between the question and the answer."""
        request = pending.request
        if not (isinstance(request, LeaseTimeToLiveRequest) and request.keys and pending.user):
            return body
        if not self.auth.enabled or error_code(body) is not None:
            return body
        try:
            answer = decode(body)
        except DecodeError:  # a forwarded answer that does not decode is not passed on
            return encode(error_response(ErrorCode.INTERNAL, "undecodable lease answer"))
        if isinstance(answer, LeaseTimeToLiveResponse):
            try:
                self.auth.check(pending.user, lease_keys_read(answer.keys))
            except EtcdzError as exc:
                return encode(exc.to_response())
        return body

    def _fail(self, rid: int, code: ErrorCode, definite: bool | None = None) -> None:
        """Answer a pending request with ``code``. A read that failed changed nothing (definite);
        a write is as definite as the code says, unless ``definite`` says otherwise (a write
        handed back to be tried elsewhere may already be in the log)."""
        pending = self._settle(rid)
        if pending is None:
            return
        response = error_response(code)
        if not pending.write:
            definite = True
        else:
            self.m_failed.inc()
        if definite is not None and definite != response.definite:
            response = dataclasses.replace(response, definite=definite)
        self.out.to_client.append((pending.route, pending.msg_id, response))
        self.m_requests.inc(op=pending.op, code=code.name)

    def _reply(self, route: bytes, msg_id: int, body: Any) -> None:
        self.out.to_client.append((route, msg_id, body))

    def _reply_error(self, route: bytes, msg_id: int, code: ErrorCode, detail: str = "") -> None:
        """A request refused before it was understood."""
        self._reply(route, msg_id, error_response(code, detail))
        self.m_requests.inc(op="Invalid", code=code.name)
