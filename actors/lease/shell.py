"""The lease expirer's shell: the lease table from the backend, deadlines on the leader.

Start: ask the backend for every lease (``LeaseTableRequest``); lease changes the apply worker
reports are applied on top, those the table already covers (index at or below it) skipped.
The raft core's status says whether this member leads: on becoming leader every deadline is
extended by an election timeout (``Lessor.promote``), on losing it the expirer goes quiet.

Every tick, on the leader only: propose a ``LeaseRevoke`` for each expired lease (rate-limited,
earliest first; a revoke that gets lost is proposed again) and the remaining TTLs of long
leases (``LeaseCheckpoint``), both through raft like any write (request id 0: nobody waits).
Keep-alives and time-to-live questions come from the gateway; a follower's gateway forwards
them to the leader's, so they are answered here only when this member leads. A keep-alive that
cannot be answered yet (its lease not granted here yet, or expired and being revoked) is held
and tried again on every lease event and tick.
"""

from __future__ import annotations

import time

import structlog

from actors.lease.core import EXPIRED, Held, Lessor, Wait
from actors.runtime.config import NodeConfig
from actors.runtime.loop import Loop, send
from proto_schemas.codec import encode
from proto_schemas.errors import ErrorCode, error_response
from proto_schemas.internal import ActorStarted, InternalRequest, Propose, RaftStatus, ReadResult
from proto_schemas.kv import ResponseHeader
from proto_schemas.lease import (
    LeaseCall,
    LeaseCheckpoint,
    LeaseCheckpointRequest,
    LeaseEvent,
    LeaseEvents,
    LeaseKeepAliveResponse,
    LeaseRead,
    LeaseRevokeRequest,
    LeaseTableRequest,
    LeaseTimeToLiveRequest,
)

TICK_S = 0.1
UNKNOWN_LEASE_WAIT_S = 0.2  # a keep-alive for an unknown lease waits this long for its grant (Held)
CHECKPOINT_INTERVAL_S = 300.0  # etcd's default lease checkpoint interval
MAX_REVOKES_PER_S = 1000


class LeaseShell:
    def __init__(self, config: NodeConfig, log: structlog.BoundLogger) -> None:
        self.config = config
        self.log = log
        self.loop = Loop(log)
        self.core = Lessor(
            min_ttl=config.min_lease_ttl,
            checkpoint_interval_s=CHECKPOINT_INTERVAL_S,
            max_revokes_per_s=MAX_REVOKES_PER_S,
        )
        self.table_index: int | None = None  # None until the backend sent the table
        self.early: list[LeaseEvents] = []
        self.status: RaftStatus | None = None
        self.leading = False
        self.last_tick = time.monotonic()
        metrics = self.loop.metrics
        self.m_granted = metrics.counter(
            "etcd_debugging_lease_granted_total", "The total number of granted leases."
        )
        self.m_revoked = metrics.counter(
            "etcd_debugging_lease_revoked_total", "The total number of revoked leases."
        )
        self.m_renewed = metrics.counter(
            "etcd_debugging_lease_renewed_total", "The number of renewed leases seen by the leader."
        )
        self.m_active = metrics.gauge("etcdz_leases_active", "The number of leases granted and not revoked.")
        inbox = self.loop.inbox(config.inbox("lease"))
        self.to_raft = self.loop.outbox(config.inbox("raft"))
        self.to_mvcc = self.loop.outbox(config.inbox("mvcc"))
        self.to_gateway = self.loop.outbox(config.inbox("gateway"))
        self.held = Held(UNKNOWN_LEASE_WAIT_S, revoke_wait_s=config.request_timeout_ms / 1000)
        self.loop.on_messages(inbox, self.handle)
        self.loop.every(TICK_S, self.tick)
        send(self.to_mvcc, LeaseTableRequest())
        send(self.to_raft, ActorStarted(actor="lease"))  # whether this member leads, restarted alone

    # -- input ---------------------------------------------------------------------------------
    def handle(self, msgs: list[object]) -> None:
        now = time.monotonic()
        for msg in msgs:
            if isinstance(msg, LeaseEvents):
                self._events(msg, now)
            elif isinstance(msg, RaftStatus):
                self._status(msg, now)
            elif isinstance(msg, LeaseCall):
                self._call(msg, now)
        if self.held and any(isinstance(msg, LeaseEvents) for msg in msgs):
            self._retry_held(now)

    def _events(self, msg: LeaseEvents, now: float) -> None:
        if msg.initial:
            self.core.load([(e.id, e.ttl, e.remaining) for e in msg.events], now)
            self.table_index = msg.index
            self.m_active.set(len(self.core))
            if self.leading:
                self.core.promote(now, self.config.election_timeout_ms / 1000)
            early, self.early = self.early, []
            for later in early:
                self._events(later, now)
            self.log.info("lease table loaded", leases=len(msg.events), index=msg.index)
        elif self.table_index is None:
            self.early.append(msg)
        elif msg.index > self.table_index:
            for event in msg.events:
                self._apply(event, now)

    def _apply(self, event: LeaseEvent, now: float) -> None:
        if event.revoked:
            self.core.revoked(event.id)
            self.m_revoked.inc()
        elif event.checkpointed:
            self.core.checkpointed(event.id, event.remaining)
        else:
            self.core.granted(event.id, event.ttl, now)
            self.m_granted.inc()
        self.m_active.set(len(self.core))

    def _status(self, status: RaftStatus, now: float) -> None:
        self.status = status
        leading = status.leader == self.config.member_id
        if leading and not self.leading:
            # A leader change never expires a lease early: everyone gets an extra election timeout.
            self.core.promote(now, self.config.election_timeout_ms / 1000)
            self.log.info("lease expirer active", leases=len(self.core.ids()), term=status.term)
        elif not leading and self.leading:
            self.core.demote()
        self.leading = leading

    def _call(self, msg: LeaseCall, now: float) -> None:
        if not self.leading:
            self._reply(msg, error_response(ErrorCode.NOT_LEADER))
            return
        request = msg.request
        if isinstance(request, LeaseTimeToLiveRequest):
            # The backend knows the granted TTL and the keys; only we know the time left.
            remaining = self.core.remaining(request.id, now)
            left = -1 if remaining is None else remaining
            read = LeaseRead(read_id=msg.read_id, request=request, remaining=left, reply_to=msg.reply_to)
            send(self.to_mvcc, read)
            return
        if self._keep_alive(msg, now) is not Wait.DONE:
            self.held.hold(msg, now)

    def _keep_alive(self, msg: LeaseCall, now: float) -> Wait:
        """Renew and answer, or say what the call waits for (see ``Held``)."""
        if not self.leading:  # demoted while the call was held
            self._reply(msg, error_response(ErrorCode.NOT_LEADER))
            return Wait.DONE
        ttl = self.core.keep_alive(msg.request.id, now)
        if ttl is None:
            return Wait.GRANT
        if ttl == EXPIRED:
            return Wait.REVOKE
        self.m_renewed.inc()
        header = ResponseHeader(
            cluster_id=self.config.cluster_id,
            member_id=self.config.member_id,
            raft_term=self.status.term if self.status else 0,
        )
        self._reply(msg, LeaseKeepAliveResponse(header=header, id=msg.request.id, ttl=ttl))
        return Wait.DONE

    def _retry_held(self, now: float) -> None:
        for msg in self.held.retry(lambda call: self._keep_alive(call, now), now):
            self._reply(msg, error_response(ErrorCode.LEASE_NOT_FOUND))

    def _reply(self, call: LeaseCall, body: object) -> None:
        """To the gateway, or to the raft core for a follower's call (``LeaseQuery``)."""
        to = self.to_raft if call.reply_to == "raft" else self.to_gateway
        send(to, ReadResult(read_id=call.read_id, body=encode(body)))

    # -- expiry --------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        elapsed, self.last_tick = now - self.last_tick, now
        if self.held:
            self._retry_held(now)
        if not self.leading or self.table_index is None:
            return
        expired = self.core.expired(now, self.core.revoke_budget(elapsed))
        requests: list[object] = [LeaseRevokeRequest(id=lease_id) for lease_id in expired]
        checkpoints = self.core.checkpoints(now)
        if checkpoints:
            cps = [LeaseCheckpoint(id=i, remaining_ttl=r) for i, r in checkpoints]
            requests.append(LeaseCheckpointRequest(checkpoints=cps))
        if not requests:
            return
        data = [encode(InternalRequest(request_id=0, request=r)) for r in requests]  # type: ignore[arg-type]
        send(self.to_raft, Propose(data=data, request_ids=[0] * len(data)))
        if expired:
            self.log.info("leases expired, revoking", count=len(expired))


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    return LeaseShell(config, log).loop
