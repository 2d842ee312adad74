"""The gateway's logic, without sockets or a clock: decode, preflight, route, answer.

Its parts: ``requests.py`` (the kinds of requests, their classes and checks), ``replies.py``
(answers), ``access.py`` (auth), ``routing.py`` (proposals, ReadIndex, reads, the node's news);
this module takes the clients' requests in, keeps the watch hubs' announces and time.

Rules (etcd's v3 server, preflight order as etcd's):
- A body larger than ``max_request_bytes`` is refused before it is decoded
  (``etcdserver: request is too large``). Anything that does not decode to a known request
  gets a typed, definite error; the gateway never raises on client input.
- Writes are refused with ``etcdserver: too many requests`` when committed - applied exceeds
  the gap limit, and so is a request from a client with too many (or too large) requests in
  flight.
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
- Auth is checked before anything else is done (``access.py``); requests arriving on the
  node's own socket (``local``: its watch hubs) are the node's and are not checked.
- A learner serves serializable reads, status, member lists, hash checks and its watch hubs'
  history reads, and refuses the rest with ``etcdserver: rpc not supported for learner``
  (definite: the SDK goes on to another member). It has no vote: a linearizable read or a
  write through it would only add a hop to the leader it cannot vouch for.
- A request with no answer after ``request_timeout_s`` gets ``etcdserver: request timed out``
  (indefinite for writes: it may yet be applied).
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from actors.auth.jwt import JwtTokens
from actors.auth.store import AuthView
from actors.auth.tokens import LoginLimiter, TokenKeeper
from actors.gateway.compactor import AutoCompactor
from actors.gateway.hubs import LocalHubs, hub_problem
from actors.gateway.requests import (
    CLIENT_REQUESTS,
    HUB_REQUESTS,
    LEASE_CALLS,
    Outbox,
    Pending,
    is_write,
    refused_on_learner,
    request_op,
    validate_request,
)
from actors.gateway.routing import Routing
from actors.mvcc.alarms import quota_cost
from actors.runtime.metrics import Registry
from proto_schemas.auth import (
    AuthCheckRequest,
    AuthenticateRequest,
    AuthenticateResponse,
    UserAddRequest,
    UserChangePasswordRequest,
)
from proto_schemas.cluster import CLUSTER_REQUESTS, ClusterCall
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import MAX_REQUEST_ITEMS, Header, TooLarge, unpack_header
from proto_schemas.errors import ErrorCode, EtcdzError, error_response
from proto_schemas.internal import BackendStateRequest
from proto_schemas.kv import CompactionRequest, StatusRequest
from proto_schemas.lease import LeaseGrantRequest
from proto_schemas.maintenance import AlarmType
from proto_schemas.watch import HubAnnounce, WatchHubsRequest, WatchHubsResponse

HUB_TTL_S = 3.0  # a hub silent for longer is not advertised
MAX_HUBS = 256  # hubs remembered at once (announces of more are refused)
TOKEN_SWEEP_S = 10.0  # expired tokens are dropped this often


class GatewayCore(Routing):
    """The gateway: its knobs, the clients' requests in, the watch hubs' announces, time."""

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
        cert_secret: bytes = b"",
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
        self.cert_secret = cert_secret  # gRPC doors' certificate tokens (tokens.cert_token)
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
        self.hubs_down = []
        self._alarm_proposed = {}  # when we last proposed raising it
        self._hubs = {}  # hub id -> (last heard, urls)
        # Request ids must not collide with ids minted before a restart (old entries replay
        # through apply and their results reach the new gateway) nor by other members.
        self._ids = itertools.count(((boot_nonce & 0xFFFFFFFF) << 32) + 1)
        self.raft = None
        self.applied = 0
        self._pending = {}
        self._at_backend = set()  # requests whose answer the backend owes
        # Per client connection: requests in flight and their bytes, bounded so that one client
        # cannot make the gateway hold without limit what it sends faster than it is answered.
        self.max_client_inflight = max_client_inflight
        self.max_client_inflight_bytes = max_client_inflight_bytes
        self._inflight = {}  # route -> [requests, bytes]
        self._held = []  # writes / linearizable reads waiting for a leader
        self._need_index = []  # linearizable reads waiting for a ReadIndex round
        self._index_rounds = {}
        self._wait_applied = []  # heap of (read index, request id)
        self._deadlines = []
        self.out = Outbox()
        self._propose_data = []
        self._propose_ids = []
        self._own = {}  # request id -> (own proposal, deadline)
        # Exactly-once writes (actors/mvcc/sessions.py): a write from a client without a session
        # of its own gets this gateway's (its request id is the sequence number), so that what
        # a restarted raft core or a changed leader lost can be proposed again.
        self.session_id = (int.from_bytes(random_bytes(8), "big") >> 1) | 1
        self._open_own = OrderedDict()  # this session's writes not yet answered, oldest first
        self._session_writes = {}  # (client id, seq) -> request id, for clients' sessions
        self._copies_due = False  # propose every pending write again once a leader is known
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
            self.m_requests.inc(op=request_op(request), code=exc.code.name)
        except Exception as exc:  # a bug must cost one request, not the gateway
            self._reply(route, header.msg_id, error_response(ErrorCode.INTERNAL, type(exc).__name__))
            self.m_requests.inc(op=request_op(request), code=ErrorCode.INTERNAL.name)
            self.out.logs.append(("request failed", {"op": request_op(request), "error": repr(exc)}))

    def _dispatch(
        self, route: bytes, header: Header, body: bytes, request: Any, now: float, local: bool, source: str
    ) -> None:
        validate_request(request, self.max_txn_ops)
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
        if self.raft is not None and self.raft.is_learner and not local and refused_on_learner(request):
            raise EtcdzError(ErrorCode.NOT_SUPPORTED_FOR_LEARNER)
        if header.client_id and is_write(request) and self._copy_arrived(route, header):
            return
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
                self.m_requests.inc(op=request_op(request), code="OK")
                return
        elif isinstance(request, UserAddRequest | UserChangePasswordRequest):
            request = self._hash(request)
        write = is_write(request)
        cost = quota_cost(request)
        if cost and self.quota_bytes > 0 and self.db_size + cost > self.quota_bytes:
            self._raise_alarm(AlarmType.NOSPACE, now)
            raise EtcdzError(ErrorCode.NO_SPACE)
        pending = Pending(
            route,
            header.msg_id,
            now + self.request_timeout_s,
            write,
            body,
            request,
            request_op(request),
            user,
            self.auth.revision,
            issued,
        )
        if write and self.raft is not None and self.raft.commit - self.applied > self.max_gap:
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS)
        if write:
            self._open_session(rid, pending, header)
        self._pending[rid] = pending
        self._count_in(pending)
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

    def _copy_arrived(self, route: bytes, header: Header) -> bool:
        """A client sent again a write still pending here (it lost its connection, then
        reconnected): the answer goes to the new connection, and nothing is proposed again."""
        rid = self._session_writes.get((header.client_id, header.msg_id))
        pending = self._pending.get(rid) if rid is not None else None
        if pending is None:
            return False
        if pending.route != route:
            self._count_out(pending)
            pending.route = route
            self._count_in(pending)
        return True

    def _open_session(self, rid: int, pending: Pending, header: Header) -> None:
        """Name a write in its session: the client's (checked: ids the log can record), or this
        gateway's."""
        if header.client_id:
            if not (0 < header.client_id < 1 << 64 and 0 <= header.acked <= header.msg_id < 1 << 64):
                raise EtcdzError(ErrorCode.BAD_REQUEST, "malformed write session (client_id, msg_id, acked)")
            pending.client_id, pending.seq, pending.acked = header.client_id, header.msg_id, header.acked
            self._session_writes[(header.client_id, header.msg_id)] = rid
        else:
            self._open_own[rid] = None
            pending.client_id, pending.seq, pending.acked = self.session_id, rid, next(iter(self._open_own))

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

    def tick(self, now: float) -> None:
        self._check_local_hubs(now)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, rid = heapq.heappop(self._deadlines)
            pending = self._pending.get(rid)
            if pending is None:
                continue
            # Held: never proposed, or its proposals were all dropped -- it did not happen
            # (unless a copy of it had been proposed: the original may yet commit).
            dropped = rid in self._held and not pending.copies
            self._fail(rid, ErrorCode.NO_LEADER if dropped else ErrorCode.TIMEOUT)
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

    @property
    def pending_count(self) -> int:
        return len(self._pending)
