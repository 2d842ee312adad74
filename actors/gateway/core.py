"""The gateway's logic, without sockets or a clock: decode, preflight, route, answer.

Rules (etcd's v3 server, preflight order as etcd's):
- A body larger than ``max_request_bytes`` is refused before it is decoded
  (``etcdserver: request is too large``). Anything that does not decode to a known request
  gets a typed, definite error; the gateway never raises on client input.
- Writes (Put, DeleteRange, Txn with writes, Compaction) are refused with
  ``etcdserver: too many requests`` when committed - applied exceeds the gap limit; otherwise
  wrapped once in an ``InternalRequest`` and proposed. The raft core and WAL never look inside.
- While no leader is known, writes and linearizable reads wait (up to the request timeout, then
  ``etcdserver: no leader``): a node that just started answers after its first election
  instead of failing the first requests. A proposal the raft core dropped before it reached
  the log while a leader is known (not reachable: dead, or not connected yet) is proposed
  again on every tick until a leader takes it or the request times out (``no leader``,
  definite: it never reached the log); a dead leader stays known for at most an election
  timeout. Dropped while no leader is known, it is refused at once (a cut-off member: the
  client goes elsewhere).
- Linearizable reads go through ReadIndex: all reads that arrive in one batch share one
  ``ReadIndexRequest``; each waits until applied >= the returned index, then goes to the
  backend. Serializable reads go straight to the backend.
- Quota (etcd's quotaKVServer): a put, a txn that puts or a lease grant that would take the
  backend past ``quota_bytes`` (as last measured; < 0: no quota) is refused with ``etcdserver:
  mvcc: database space exceeded`` and the NOSPACE alarm is proposed for this member (at most
  once a second). Raised alarms are enforced where entries are applied, on every member.
- Auto-compaction (``compactor``, see compactor.py) proposes a compaction on the leader when
  due; the gateway learns the backend's revision at start and from every apply result.
- Watch hubs announce themselves (``HubAnnounce``) every second; ``WatchHubsRequest`` lists
  those heard from within ``HUB_TTL_S``. Their history reads (``WatchHistoryRequest``) are
  serializable reads. Only a hub may announce (see hubs.py for the checks): the node's own,
  on its private socket; one holding the members' Curve key (it presents ``hub_token``,
  derived from that key's secret); with auth enabled, a root user; anyone, in a cluster
  started with ``--experimental-allow-unauthenticated-hubs`` (open anyway). Anyone else gets
  ``permission denied``, and the event stream's address is told only to hubs.
- Auth (see actors/auth): while enabled, every request but a login, the status ones and a
  hub's token check carries a token (``user name is empty`` if not, ``invalid auth token`` if
  unknown or expired) whose user must hold what the request needs (``permission denied``).
  The user and the auth revision checked against travel in the proposal, so apply checks
  again if the store changed; a linearizable read's permission is checked after its ReadIndex
  wait, as etcd does (so a permission revoked before the read began is honoured on every
  member, and ``permission denied`` means the cluster had a quorum). A lease time-to-live
  with keys is answered only if the user may read every key in the answer (etcd's
  CVE-2023-32082 fix); a lease's keys are checked for revokes and lease puts where they are
  known, at apply. A streamed range's ``resume_key`` must lie inside its range (``bad
  request`` otherwise): the check is on the range, so the read must stay in it. A login
  checks the password here (rate-limited, see tokens.py), mints a random token and proposes
  only its digest; the client gets the token once the login is applied. With JWT tokens
  (see actors/auth/jwt.py) the login is answered here with a signed token, which every member
  checks alone and refuses once the auth store has moved past it. Passwords are hashed
  here before ``user add`` / ``passwd`` are proposed. Requests arriving on the node's own
  socket (``local``: its watch hubs) are the node's and are not checked.
- A learner (etcd's rule, ``isRPCSupportedForLearner``) serves serializable reads, status,
  member lists, hash checks and its watch hubs' history reads, and refuses writes, linearizable
  reads, lease calls and membership or auth changes with ``etcdserver: rpc not supported for
  learner`` (definite: the SDK goes on to another member). It has no vote: a linearizable
  read or a write through it would only add a hop to the leader it cannot vouch for.
- Every request gets exactly one answer (or, for a streamed range, one per chunk). A request
  with no answer after ``request_timeout_s`` gets ``etcdserver: request timed out``
  (indefinite for writes: it may yet be applied).
"""

from __future__ import annotations

import base64
import dataclasses
import heapq
import hmac
import itertools
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from actors.auth.jwt import JwtTokens
from actors.auth.passwords import MAX_PASSWORD_BYTES, hash_password, verify_password
from actors.auth.perms import Anyone, Need, lease_keys_read, needs
from actors.auth.store import AuthView
from actors.auth.tokens import LoginLimiter, TokenKeeper, digest
from actors.gateway.compactor import AutoCompactor
from actors.gateway.hubs import LocalHubs, hub_problem
from actors.mvcc.alarms import quota_cost
from actors.mvcc.txn import in_range, validate_txn
from actors.runtime.metrics import Registry
from proto_schemas.auth import (
    AUTH_REQUESTS,
    AuthCheckRequest,
    AuthCheckResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthState,
    TokenGranted,
    UserAddRequest,
    UserChangePasswordRequest,
)
from proto_schemas.cluster import CLUSTER_CHANGES, CLUSTER_REQUESTS, ClusterCall
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.envelope import MAX_REQUEST_ITEMS, Header, TooLarge, unpack_header
from proto_schemas.errors import ErrorCode, ErrorResponse, EtcdzError, error_response
from proto_schemas.internal import (
    ActorStarted,
    BackendState,
    BackendStateRequest,
    InternalRequest,
    Propose,
    ProposeFailed,
    RaftStatus,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadRequest,
    ReadResult,
    Results,
)
from proto_schemas.kv import (
    CompactionRequest,
    DeleteRangeRequest,
    HashKVRequest,
    PutRequest,
    RangeRequest,
    RangeStreamRequest,
    ResponseHeader,
    StatusRequest,
    StatusResponse,
    TxnRequest,
)
from proto_schemas.lease import (
    LeaseCall,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
)
from proto_schemas.maintenance import (
    AlarmAction,
    AlarmRequest,
    AlarmType,
    DefragmentRequest,
    SnapshotRequest,
)
from proto_schemas.watch import HubAnnounce, WatchHistoryRequest, WatchHubsRequest, WatchHubsResponse

ALARM_RETRY_S = 1.0  # NOSPACE is proposed again at most this often while puts keep coming
HUB_TTL_S = 3.0  # a hub silent for longer is not advertised
MAX_HUBS = 256  # hubs remembered at once (announces of more are refused)
# What a hub holding the members' key may do without a login: a hub reads every key anyway.
HUB_REQUESTS = (HubAnnounce, WatchHubsRequest, WatchHistoryRequest)
VERSION = "3.5.0"  # the etcd API version etcdz speaks
CLIENT_REQUESTS = (
    RangeRequest,
    PutRequest,
    DeleteRangeRequest,
    TxnRequest,
    CompactionRequest,
    RangeStreamRequest,
    StatusRequest,
    HashKVRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseLeasesRequest,
    LeaseKeepAliveRequest,
    WatchHistoryRequest,
    WatchHubsRequest,
    HubAnnounce,
    AlarmRequest,
    DefragmentRequest,
    SnapshotRequest,
    AuthCheckRequest,
    *CLUSTER_REQUESTS,
    *AUTH_REQUESTS,
)
TOKEN_SWEEP_S = 10.0  # expired tokens are dropped this often
# Answered by the leader's lease expirer (deadlines live there only), forwarded if need be.
LEASE_CALLS = (LeaseKeepAliveRequest, LeaseTimeToLiveRequest)


@dataclass(slots=True)
class _Pending:
    route: bytes
    msg_id: int
    deadline: float
    write: bool
    body: bytes = b""  # the client's encoded request (reads: forwarded to the backend as is)
    request: Any = None
    op: str = ""  # for the request metrics
    user: str | None = None  # who asked (None: the node itself), checked at ``auth_revision``
    auth_revision: int = 0
    token: str = ""  # the client's, passed on with a forwarded lease call
    issued: str = ""  # a login's new token, handed out once the login is applied


@dataclass(slots=True)
class Outbox:
    """What one batch produced; the shell sends each list once."""

    to_client: list[tuple[bytes, int, Any]] = field(default_factory=list)  # route, reply-to, body
    to_raft: list[Any] = field(default_factory=list)
    to_mvcc: list[Any] = field(default_factory=list)
    to_lease: list[Any] = field(default_factory=list)
    to_leader: list[tuple[int, bytes, str]] = field(default_factory=list)  # (request id, body, token)
    logs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (event, fields) to log


class GatewayCore:
    def __init__(
        self,
        *,
        member_id: int,
        cluster_id: int,
        max_request_bytes: int,
        max_txn_ops: int,
        request_timeout_s: float,
        max_gap: int,
        boot_nonce: int,
        min_lease_ttl: int = 2,
        events_urls: list[str] | None = None,
        quota_bytes: int = 2 * 1024**3,
        compactor: AutoCompactor | None = None,
        metrics: Registry | None = None,
        unsafe_local_reads: bool = False,
        auth_token_ttl_s: float = 300.0,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        hub_token: str = "",
        local_hubs: int = 0,
        open_hubs: bool = False,
        jwt: JwtTokens | None = None,
        max_client_inflight: int = 1000,
        max_client_inflight_bytes: int = 64 << 20,
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.unsafe_local_reads = unsafe_local_reads  # a broken build for the checker's test
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops
        self.request_timeout_s = request_timeout_s
        self.max_gap = max_gap
        self.min_lease_ttl = min_lease_ttl
        self.events_urls = list(events_urls or [])
        self.quota_bytes = quota_bytes if quota_bytes != 0 else 2 * 1024**3  # 0: etcd's default
        self.db_size = 0  # the backend's size as last measured
        self.revision = 0  # the backend's revision as last heard (asked for at start)
        self.compactor = compactor
        self.auth = AuthView()  # as the backend last reported it
        self.tokens = TokenKeeper(auth_token_ttl_s)
        self.jwt = jwt  # signed tokens instead of simple ones (--auth-token jwt)
        self.logins = LoginLimiter()
        self._random = random_bytes
        self.hub_token = hub_token  # hubs on other hosts holding the members' key present it
        self.local_hubs = LocalHubs(local_hubs)
        self.open_hubs = open_hubs  # --experimental-allow-unauthenticated-hubs
        self._token_sweep = 0.0
        metrics = metrics if metrics is not None else Registry()
        self.m_requests = metrics.counter(
            "etcdz_server_requests_total",
            "Client requests answered, by operation and outcome.",
            ["op", "code"],
        )
        self.m_failed = metrics.counter(
            "etcd_server_proposals_failed_total", "The total number of failed proposals seen."
        )
        self.m_hubs_down = metrics.gauge(
            "etcdz_watch_hubs_down", "This member's own watch hubs that are not serving."
        )
        self.hubs_down: list[str] = []
        self._alarm_proposed: dict[AlarmType, float] = {}  # when we last proposed raising it
        self._hubs: dict[str, tuple[float, list[str]]] = {}  # hub id -> (last heard, urls)
        # Request ids must not collide with ids minted before a restart (old entries replay
        # through apply and their results reach the new gateway) nor by other members.
        self._ids = itertools.count(((boot_nonce & 0xFFFFFFFF) << 32) + 1)
        self.raft: RaftStatus | None = None
        self.applied = 0
        self._pending: dict[int, _Pending] = {}
        self._at_backend: set[int] = set()  # requests whose answer the backend owes
        # Per client connection: requests in flight and their bytes, bounded so that one client
        # cannot make the gateway hold without limit what it sends faster than it is answered.
        self.max_client_inflight = max_client_inflight
        self.max_client_inflight_bytes = max_client_inflight_bytes
        self._inflight: dict[bytes, list[int]] = {}  # route -> [requests, bytes]
        self._held: list[int] = []  # writes / linearizable reads waiting for a leader
        self._need_index: list[int] = []  # linearizable reads waiting for a ReadIndex round
        self._index_rounds: dict[int, list[int]] = {}
        self._wait_applied: list[tuple[int, int]] = []  # heap of (read index, request id)
        self._deadlines: list[tuple[float, int]] = []
        self.out = Outbox()
        self._propose_data: list[bytes] = []
        self._propose_ids: list[int] = []
        self._own: dict[int, tuple[Any, float]] = {}  # request id -> (own proposal, deadline)
        self._state_probe = next(self._ids)
        self.out.to_mvcc.append(BackendStateRequest(read_id=self._state_probe))

    # -- client side ---------------------------------------------------------------------
    def client_message(
        self, route: bytes, frames: list[bytes], now: float, local: bool = False, source: str = ""
    ) -> None:
        """One client request; ``source`` is the client's address (its logins are limited per
        address)."""
        try:
            header, body = unpack_header(frames, self.max_request_bytes)
        except TooLarge as exc:
            self._reply_error(route, exc.header.msg_id, ErrorCode.REQUEST_TOO_LARGE)
            return
        except DecodeError as exc:
            self._reply_error(route, 0, ErrorCode.BAD_REQUEST, str(exc))
            return
        try:
            request = decode(body, max_items=MAX_REQUEST_ITEMS)
        except DecodeError as exc:
            self._reply_error(route, header.msg_id, ErrorCode.BAD_REQUEST, str(exc))
            return
        if not isinstance(request, CLIENT_REQUESTS):
            self._reply_error(route, header.msg_id, ErrorCode.UNKNOWN_OP, type(request).__name__)
            return
        try:
            self._dispatch(route, header, body, request, now, local, source)
        except EtcdzError as exc:
            self._reply(route, header.msg_id, exc.to_response())
            self.m_requests.inc(op=_op(request), code=exc.code.name)
        except Exception as exc:  # a bug must cost one request, not the gateway
            self._reply(route, header.msg_id, error_response(ErrorCode.INTERNAL, type(exc).__name__))
            self.m_requests.inc(op=_op(request), code=ErrorCode.INTERNAL.name)
            self.out.logs.append(("request failed", {"op": _op(request), "error": repr(exc)}))

    def _dispatch(
        self, route: bytes, header: Header, body: bytes, request: Any, now: float, local: bool, source: str
    ) -> None:
        _validate(request, self.max_txn_ops)
        held = self._inflight.get(route)
        if (
            held is not None
            and not local
            and (held[0] >= self.max_client_inflight or held[1] + len(body) > self.max_client_inflight_bytes)
        ):
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS)  # definite: nothing was done
        trusted = local or (isinstance(request, HUB_REQUESTS) and self._is_hub(header.token))
        user = None if trusted else self._authorize(header.token, request, now)
        if isinstance(request, AuthCheckRequest):
            self._reply(route, header.msg_id, self._auth_check(request, now))
            return
        if isinstance(request, HubAnnounce | WatchHubsRequest):
            hub = local or self._is_hub(header.token) or self.open_hubs
            if isinstance(request, HubAnnounce):
                self._announced(request, hub or bool(user), local, now)
            self._reply(route, header.msg_id, self._watch_hubs(now, hub or bool(user)))
            return
        if self.raft is not None and self.raft.is_learner and not local and _refused_on_learner(request):
            raise EtcdzError(ErrorCode.NOT_SUPPORTED_FOR_LEARNER)
        rid = next(self._ids)
        if isinstance(request, LeaseGrantRequest):
            # Decided here, once, so every member applies the same grant (as etcd's server).
            request = LeaseGrantRequest(
                ttl=max(request.ttl, self.min_lease_ttl), id=request.id or (rid & 0x7FFF_FFFF_FFFF_FFFF)
            )
        issued = ""
        if isinstance(request, AuthenticateRequest):
            request, issued = self._login(request, now, source)
            if self.jwt is not None:  # a signed token needs no proposal: every member checks it
                answer = AuthenticateResponse(header=self.header(self.revision), token=issued)
                self._reply(route, header.msg_id, answer)
                self.m_requests.inc(op=_op(request), code="OK")
                return
        elif isinstance(request, UserAddRequest | UserChangePasswordRequest):
            request = self._hash(request)
        write = _is_write(request)
        cost = quota_cost(request)
        if cost and self.quota_bytes > 0 and self.db_size + cost > self.quota_bytes:
            self._raise_alarm(AlarmType.NOSPACE, now)
            raise EtcdzError(ErrorCode.NO_SPACE)
        pending = _Pending(
            route,
            header.msg_id,
            now + self.request_timeout_s,
            write,
            body,
            request,
            _op(request),
            user,
            self.auth.revision,
            header.token,
            issued,
        )
        if write and self.raft is not None and self.raft.commit - self.applied > self.max_gap:
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS)
        self._pending[rid] = pending
        held = self._inflight.setdefault(route, [0, 0])
        held[0] += 1
        held[1] += len(body)
        heapq.heappush(self._deadlines, (pending.deadline, rid))
        if isinstance(request, StatusRequest):
            self._at_backend.add(rid)
            self.out.to_mvcc.append(BackendStateRequest(read_id=rid))
        elif isinstance(request, CLUSTER_REQUESTS):
            self.out.to_raft.append(ClusterCall(read_id=rid, request=request))
        elif write or self._needs_read_index(request) or isinstance(request, LEASE_CALLS):
            if self.raft is None or self.raft.leader == 0:
                self._held.append(rid)
            else:
                self._route(rid)
        else:
            self._read(rid)

    # -- auth ----------------------------------------------------------------------------------
    def _authorize(self, token: str, request: Any, now: float) -> str:
        """The user a client request is made by ("" while auth is disabled or for what anyone
        may do); raises what etcd answers a request without the right."""
        if not self.auth.enabled:
            return ""
        wanted = needs(request)
        if isinstance(wanted, Anyone):
            return ""
        user = self._token_user(token, now)
        if not self._needs_read_index(request):  # a linearizable read is checked after ReadIndex
            self.auth.check(user, wanted)
        return user

    def _token_user(self, token: str, now: float) -> str:
        if not token:
            raise EtcdzError(ErrorCode.USER_EMPTY)
        if self.jwt is not None:
            return self._jwt_user(self.jwt, token)
        user = self.tokens.user(token, now)
        if user is None or user not in self.auth.users:
            raise EtcdzError(ErrorCode.INVALID_AUTH_TOKEN)
        return user

    def _jwt_user(self, jwt: JwtTokens, token: str) -> str:
        claims = jwt.check(token)
        if claims is None or claims[0] not in self.auth.users:
            raise EtcdzError(ErrorCode.INVALID_AUTH_TOKEN)
        user, revision = claims
        if revision < self.auth.revision:  # issued before the last auth change (etcd's rule)
            raise EtcdzError(ErrorCode.AUTH_OLD_REVISION)
        return user

    def _auth_check(self, request: AuthCheckRequest, now: float) -> AuthCheckResponse:
        """A watch hub asks whether a watcher's token may read what it wants to watch."""
        user = ""
        if self.auth.enabled:
            user = self._token_user(request.token, now)
            self.auth.check(user, [Need(request.key, request.range_end, False)])
        return AuthCheckResponse(header=self.header(self.revision), user=user)

    def _login(
        self, request: AuthenticateRequest, now: float, source: str
    ) -> tuple[AuthenticateRequest, str]:
        """Check a password (slow on purpose, so rate-limited) and mint the token whose digest
        is proposed."""
        if not self.auth.enabled:
            raise EtcdzError(ErrorCode.AUTH_NOT_ENABLED)
        if not self.logins.allow(request.name, source, now):
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS)
        record = self.auth.users.get(request.name)
        if (
            record is None
            or not record.hashed_password
            or not verify_password(request.password, record.hashed_password)
        ):
            self.logins.failed(request.name, source, now)
            raise EtcdzError(ErrorCode.AUTH_FAILED)
        if self.jwt is not None:
            return request, self.jwt.issue(request.name, self.auth.revision)
        token = base64.urlsafe_b64encode(self._random(32)).decode().rstrip("=")
        logged = AuthenticateRequest(
            name=request.name, token_digest=digest(token), auth_revision=self.auth.revision
        )
        return logged, token

    def _hash(self, request: UserAddRequest | UserChangePasswordRequest) -> Any:
        """The request as proposed: the password replaced by its hash."""
        if isinstance(request, UserAddRequest) and request.no_password:
            return dataclasses.replace(request, password="", hashed_password="")
        if not request.password:
            raise EtcdzError(ErrorCode.BAD_REQUEST, "a password is required (or no_password)")
        if len(request.password.encode()) > MAX_PASSWORD_BYTES:
            raise EtcdzError(ErrorCode.BAD_REQUEST, f"a password is at most {MAX_PASSWORD_BYTES} bytes")
        hashed = hash_password(request.password, self._random(16))
        return dataclasses.replace(request, password="", hashed_password=hashed)

    def _set_auth(self, state: AuthState | None, tokens: list[TokenGranted], now: float) -> None:
        if state is not None and state.revision >= self.auth.revision:
            if self.auth.enabled and not state.enabled:  # as etcd: disabling forgets every token
                self.tokens = TokenKeeper(self.tokens.ttl_s)
            self.auth = AuthView(state)
        for granted in tokens:
            if granted.token_digest:
                self.tokens.grant(granted.user, granted.token_digest, now)
            else:
                self.tokens.revoke_user(granted.user)

    def _needs_read_index(self, request: Any) -> bool:
        return _is_linearizable(request) and not self.unsafe_local_reads

    def _raise_alarm(self, alarm: AlarmType, now: float) -> None:
        """Propose ``alarm`` for this member (again only after ALARM_RETRY_S)."""
        if now - self._alarm_proposed.get(alarm, -ALARM_RETRY_S) < ALARM_RETRY_S:
            return
        self._alarm_proposed[alarm] = now
        raised = AlarmRequest(action=AlarmAction.ACTIVATE, member_id=self.member_id, alarm=alarm)
        self._propose_own(raised, now)

    def _propose_own(self, request: Any, now: float) -> None:
        """Propose a request the gateway makes itself (no client waits for it; an outcome not
        heard of within the request timeout counts as a timeout)."""
        rid = next(self._ids)
        self._own[rid] = (request, now + self.request_timeout_s)
        self._propose_data.append(encode(InternalRequest(request_id=rid, request=request)))
        self._propose_ids.append(rid)

    def _own_done(self, rid: int, code: ErrorCode | None, now: float) -> None:
        request, _ = self._own.pop(rid)
        if isinstance(request, CompactionRequest) and self.compactor is not None:
            ok = code in (None, ErrorCode.COMPACTED)
            self.compactor.result(now, ok)
            event = "finished auto-compaction" if ok else "failed auto-compaction"
            self.out.logs.append((event, {"revision": request.revision, "error": code.name if code else ""}))

    def _announced(self, hub: HubAnnounce, trusted: bool, local: bool, now: float) -> None:
        """Remember a hub that proved it is one (see ``_dispatch``), its URLs checked, at most
        ``MAX_HUBS`` of them: a client cannot make the gateway advertise its address."""
        if not trusted:
            raise EtcdzError(ErrorCode.PERMISSION_DENIED, "only watch hubs may announce themselves")
        if hub.cluster_id and hub.cluster_id != self.cluster_id:
            raise EtcdzError(
                ErrorCode.CLUSTER_ID_MISMATCH,
                f"hub serves cluster {hub.cluster_id:x}, this member {self.cluster_id:x}",
            )
        problem = hub_problem(hub)
        if problem:
            raise EtcdzError(ErrorCode.BAD_REQUEST, problem)
        self._expire_hubs(now)
        if hub.hub_id not in self._hubs and len(self._hubs) >= MAX_HUBS:
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS, f"{MAX_HUBS} watch hubs announced already")
        self._hubs[hub.hub_id] = (now, list(hub.urls))
        if local and hub.name:
            self.local_hubs.heard(hub.name, now)

    def _expire_hubs(self, now: float) -> None:
        self._hubs = {h: seen for h, seen in self._hubs.items() if now - seen[0] <= HUB_TTL_S}

    def _watch_hubs(self, now: float, hub: bool) -> WatchHubsResponse:
        """The hubs heard from lately; where the events are published only to a hub (the
        stream carries every key and value)."""
        self._expire_hubs(now)
        urls = sorted({u for _, hub_urls in self._hubs.values() for u in hub_urls})  # a restarted hub: once
        events = self.events_urls if hub else []
        return WatchHubsResponse(header=self.header(0), urls=urls, events_urls=events)

    def _is_hub(self, token: str) -> bool:
        return bool(self.hub_token) and hmac.compare_digest(token.encode(), self.hub_token.encode())

    def _route(self, rid: int) -> None:
        pending = self._pending[rid]
        if isinstance(pending.request, LEASE_CALLS):
            if self.raft is not None and self.raft.leader == self.member_id:
                self.out.to_lease.append(LeaseCall(read_id=rid, request=pending.request))
            else:
                self.out.to_leader.append((rid, pending.body, pending.token))
        elif pending.write:
            proposal = InternalRequest(
                request_id=rid,
                request=pending.request,
                user=pending.user,
                auth_revision=pending.auth_revision,
            )
            self._propose_data.append(encode(proposal))
            self._propose_ids.append(rid)
        else:
            self._need_index.append(rid)

    def _read(self, rid: int) -> None:
        pending = self._pending[rid]
        if pending.user and self.auth.enabled and self._needs_read_index(pending.request):
            try:  # as etcd: a linearizable read's permission is checked after its ReadIndex wait
                self.auth.check(pending.user, needs(pending.request))
            except EtcdzError as exc:
                self._fail(rid, exc.code)
                return
        term = self.raft.term if self.raft else 0
        self._at_backend.add(rid)
        self.out.to_mvcc.append(ReadRequest(read_id=rid, body=pending.body, raft_term=term))

    def forwarded_reply(self, rid: int, body: bytes) -> None:
        """The leader's gateway answered a lease call we forwarded (its body, unchanged)."""
        self._answer(rid, body)

    # -- node side -----------------------------------------------------------------------
    def internal(self, msg: Any, now: float) -> None:
        if isinstance(msg, Results):
            self.applied = max(self.applied, msg.applied_index)
            if msg.db_size >= 0:
                self.db_size = msg.db_size
            self.revision = max(self.revision, msg.revision)
            if msg.auth is not None or msg.tokens:
                self._set_auth(msg.auth, msg.tokens, now)
            for result in msg.results:
                if result.request_id in self._own:
                    self._own_done(result.request_id, _error_code(result.body), now)
                else:
                    self._answer(result.request_id, result.body)
            self._release_reads()
        elif isinstance(msg, ReadResult):
            if _error_code(msg.body) is ErrorCode.CORRUPT:  # the backend failed its checksums
                self._raise_alarm(AlarmType.CORRUPT, now)
            self._answer(msg.read_id, msg.body)
        elif isinstance(msg, ReadIndexResponse):
            rids = self._index_rounds.pop(msg.read_id, [])
            if msg.code is not None:
                for rid in rids:
                    self._fail(rid, msg.code)
                return
            for rid in rids:
                heapq.heappush(self._wait_applied, (msg.index, rid))
            self._release_reads()
        elif isinstance(msg, RaftStatus):
            if self.raft is not None and (msg.leader, msg.term) != (self.raft.leader, self.raft.term):
                self._leader_changed()
            self.raft = msg
            self.applied = max(self.applied, msg.applied)
            if msg.leader and self._held:
                held, self._held = self._held, []
                for rid in held:
                    if rid in self._pending:
                        self._route(rid)
            self._release_reads()
        elif isinstance(msg, ProposeFailed):
            for rid in msg.request_ids:
                if rid in self._own:
                    self._own_done(rid, msg.code, now)
                elif msg.code == ErrorCode.NO_LEADER and self._retry_dropped(rid):
                    self._held.append(rid)  # dropped before the log: proposed again soon
                else:
                    self._fail(rid, msg.code)
        elif isinstance(msg, BackendState):
            if msg.auth is not None:
                self._set_auth(msg.auth, [], now)
            self._answer_status(msg)
        elif isinstance(msg, ActorStarted):
            self._neighbour_started(msg.actor)

    def _neighbour_started(self, actor: str) -> None:
        """A raft core or a backend started while this gateway ran on (restarted alone, or
        the node's start): what was asked of the old one is never answered. Reads fail at once
        with a definite error the SDK retries; writes are left to time out (a proposal the old
        core took may still commit)."""
        if actor == "raft":
            self._leader_changed()
        elif actor == "mvcc":
            for rid in list(self._at_backend):
                self._fail(rid, ErrorCode.UNAVAILABLE)

    def _retry_dropped(self, rid: int) -> bool:
        """Whether a proposal the raft core dropped is tried again: while a leader is known
        (unreachable for now: not connected yet, or dead and about to be replaced), not
        without one (a cut-off member answers at once, and the client goes elsewhere)."""
        return rid in self._pending and self.raft is not None and self.raft.leader != 0

    def _leader_changed(self) -> None:
        """A ReadIndex asked of the old leader may never be answered: fail those reads at once
        with etcd's ``leader changed`` (a read changed nothing, so the client may retry)."""
        rounds, self._index_rounds = self._index_rounds, {}
        for rids in rounds.values():
            for rid in rids:
                self._fail(rid, ErrorCode.LEADER_CHANGED)

    def _release_reads(self) -> None:
        while self._wait_applied and self._wait_applied[0][0] <= self.applied:
            _, rid = heapq.heappop(self._wait_applied)
            if rid in self._pending:
                self._read(rid)

    def _answer_status(self, state: BackendState) -> None:
        if state.read_id == self._state_probe:
            self.revision = max(self.revision, state.revision)
            return
        pending = self._settle(state.read_id)
        if pending is None:
            return
        self.m_requests.inc(op=pending.op, code="OK")
        raft = self.raft
        self._reply(
            pending.route,
            pending.msg_id,
            StatusResponse(
                header=self.header(state.revision),
                version=VERSION,
                db_size=state.db_size,
                leader=raft.leader if raft else 0,
                raft_index=max(raft.commit, self.applied) if raft else 0,  # commit may lag by a refresh
                raft_term=raft.term if raft else 0,
                raft_applied_index=max(self.applied, state.consistent_index),
                db_size_in_use=state.db_size_in_use,
                is_learner=raft.is_learner if raft else False,
                errors=[f"watch hub {slot} is down" for slot in self.hubs_down],
            ),
        )

    def header(self, revision: int) -> ResponseHeader:
        return ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=revision,
            raft_term=self.raft.term if self.raft else 0,
        )

    # -- time ----------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._check_local_hubs(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, rid = heapq.heappop(self._deadlines)
            pending = self._pending.get(rid)
            if pending is None:
                continue
            # Held: never proposed, or its proposals were all dropped -- it did not happen.
            self._fail(rid, ErrorCode.NO_LEADER if rid in self._held else ErrorCode.TIMEOUT)
        if self._held:
            self._held = [rid for rid in self._held if rid in self._pending]
            if self.raft is not None and self.raft.leader:  # proposals dropped on their way
                held, self._held = self._held, []
                for rid in held:
                    self._route(rid)
        if now >= self._token_sweep:
            self.tokens.expire(now)
            self._token_sweep = now + TOKEN_SWEEP_S
        for rid in [rid for rid, (_, deadline) in self._own.items() if deadline <= now]:
            self._own_done(rid, ErrorCode.TIMEOUT, now)
        if self.compactor is not None:
            leader = self.raft is not None and self.raft.leader == self.member_id
            target = self.compactor.due(now, self.revision, leader)
            if target is not None:
                self._propose_own(CompactionRequest(revision=target), now)
                self.out.logs.append(
                    ("starting auto-compaction", {"revision": target, "retention": self.compactor.describe()})
                )

    def _check_local_hubs(self, now: float) -> None:
        """Note the member's own hubs going down or coming back (an error-level log line and
        the ``etcdz_watch_hubs_down`` gauge, which ``/health`` reads)."""
        down = self.local_hubs.down(now)
        if down != self.hubs_down:
            for slot in sorted(set(down) - set(self.hubs_down)):
                self.out.logs.append(("watch hub down: member unhealthy", {"hub": slot, "level": "error"}))
            for slot in sorted(set(self.hubs_down) - set(down)):
                self.out.logs.append(("watch hub serving again", {"hub": slot}))
            self.hubs_down = down
            self.m_hubs_down.set(len(down))

    def take_outbox(self) -> Outbox:
        if self._propose_data:
            self.out.to_raft.append(Propose(data=self._propose_data, request_ids=self._propose_ids))
            self._propose_data, self._propose_ids = [], []
        if self._need_index:
            round_id = next(self._ids)
            self._index_rounds[round_id] = self._need_index
            self._need_index = []
            self.out.to_raft.append(ReadIndexRequest(read_id=round_id))
        out, self.out = self.out, Outbox()
        return out

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- replies -------------------------------------------------------------------------
    def _settle(self, rid: int) -> _Pending | None:
        """Forget a request being answered (and count it out of its client's)."""
        pending = self._pending.pop(rid, None)
        self._at_backend.discard(rid)
        if pending is not None:
            held = self._inflight[pending.route]
            held[0] -= 1
            held[1] -= len(pending.body)
            if not held[0]:
                del self._inflight[pending.route]
        return pending

    def _answer(self, rid: int, body: bytes) -> None:
        pending = self._settle(rid)
        if pending is not None:
            body = self._lease_keys_checked(pending, body)
            if pending.issued and _error_code(body) is None:  # an applied login: its token
                applied = decode(body)
                if isinstance(applied, AuthenticateResponse):
                    body = encode(dataclasses.replace(applied, token=pending.issued))
            self.out.to_client.append((pending.route, pending.msg_id, body))
            code = _error_code(body)
            self.m_requests.inc(op=pending.op, code=code.name if code is not None else "OK")

    def _lease_keys_checked(self, pending: _Pending, body: bytes) -> bytes:
        """A time-to-live's keys go only to a user who may read every one of them (etcd's fix
        of CVE-2023-32082), checked on the keys actually answered: the lease's keys are known
        to the backend alone, and may change between the question and the answer."""
        request = pending.request
        if not (isinstance(request, LeaseTimeToLiveRequest) and request.keys and pending.user):
            return body
        if not self.auth.enabled or _error_code(body) is not None:
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

    def _fail(self, rid: int, code: ErrorCode) -> None:
        pending = self._settle(rid)
        if pending is None:
            return
        response = error_response(code)
        if not pending.write:  # a read that timed out changed nothing
            response = dataclasses.replace(response, definite=True)
        else:
            self.m_failed.inc()
        self.out.to_client.append((pending.route, pending.msg_id, response))
        self.m_requests.inc(op=pending.op, code=code.name)

    def _reply(self, route: bytes, msg_id: int, body: Any) -> None:
        self.out.to_client.append((route, msg_id, body))

    def _reply_error(self, route: bytes, msg_id: int, code: ErrorCode, detail: str = "") -> None:
        """A request refused before it was understood."""
        self._reply(route, msg_id, error_response(code, detail))
        self.m_requests.inc(op="Invalid", code=code.name)


_WRITES = (
    PutRequest,
    DeleteRangeRequest,
    CompactionRequest,
    TxnRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    AlarmRequest,
    *CLUSTER_CHANGES,
    *AUTH_REQUESTS,
)


def _op(request: Any) -> str:
    return type(request).__name__.removesuffix("Request")


# Every encoded ErrorResponse starts with these bytes (the tag, the field count, the type id),
# and no other message does: an answer is told apart without decoding it.
_ERROR_HEAD = cast(
    bytes,
    os.path.commonprefix(  # bytes in, bytes out
        [
            encode(error_response(ErrorCode.BAD_REQUEST, "a")),
            encode(dataclasses.replace(error_response(ErrorCode.TIMEOUT), definite=True)),
        ]
    ),
)


def _error_code(body: bytes) -> ErrorCode | None:
    """The error code of an encoded answer, None if it is not an error."""
    if not body.startswith(_ERROR_HEAD):
        return None
    try:
        answer = decode(body)
    except DecodeError:
        return ErrorCode.INTERNAL
    return answer.code if isinstance(answer, ErrorResponse) else None


def _is_write(request: Any) -> bool:
    """A request that changes state (so a timeout leaves its outcome unknown)."""
    # Every txn goes through raft, read-only ones included: one ordered path keeps a txn's
    # compares and reads atomic with respect to every write, at the cost of a log entry.
    return isinstance(request, _WRITES)


def _refused_on_learner(request: Any) -> bool:
    return _is_write(request) or _is_linearizable(request) or isinstance(request, LEASE_CALLS)


def _is_linearizable(request: Any) -> bool:
    if isinstance(request, LeaseLeasesRequest):
        return True
    if isinstance(request, RangeRequest):
        return not request.serializable
    if isinstance(request, RangeStreamRequest):
        return not request.range.serializable
    return False


def _validate(request: Any, max_txn_ops: int) -> None:
    if isinstance(request, RangeRequest | PutRequest | DeleteRangeRequest) and not request.key:
        raise EtcdzError(ErrorCode.EMPTY_KEY)
    if isinstance(request, RangeStreamRequest):
        if not request.range.key:
            raise EtcdzError(ErrorCode.EMPTY_KEY)
        if request.chunk_bytes <= 0:
            raise EtcdzError(ErrorCode.BAD_REQUEST, "chunk_bytes must be positive")
        r = request.range
        if request.resume_key and not in_range(request.resume_key, r.key, r.range_end):
            # the permission check is on the range: a chunk must never start outside it
            raise EtcdzError(ErrorCode.BAD_REQUEST, "resume_key is outside the range")
    if isinstance(request, TxnRequest):
        validate_txn(request, max_txn_ops)
