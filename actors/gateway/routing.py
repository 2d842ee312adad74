"""The gateway's routing: proposals, ReadIndex rounds, reads to the backend, and what the node tells it.

Rules (etcd's v3 server):
- Writes are wrapped once in an ``InternalRequest`` and proposed; the raft core and WAL never
  look inside. While no leader is known, writes and linearizable reads wait (up to the request
  timeout, then ``etcdserver: no leader``): a node that just started answers after its first
  election instead of failing the first requests. A proposal the raft core dropped before it
  reached the log while a leader is known (not reachable: dead, or not connected yet) is
  proposed again on every tick until a leader takes it or the request times out (``no
  leader``, definite: it never reached the log); a dead leader stays known for at most an
  election timeout. Dropped while no leader is known, it is refused at once (a cut-off
  member: the client goes elsewhere).
- Every write is named in a session (its client's, or the gateway's own) so that a copy of it
  in the log is answered without being applied again (actors/mvcc/sessions.py). That makes it
  safe to propose again what may have been lost: after the raft core restarted or the leader
  changed, every pending write is proposed again once a leader is known. A client's copy that
  arrives while the write is still pending here is not proposed again: the answer goes to the
  copy's connection.
- Linearizable reads go through ReadIndex: all reads that arrive in one batch share one
  round (asked of the local raft core on the leader, of the leader's peer port on a follower,
  see ``take_outbox``); each waits until applied >= the returned index, then goes to the
  backend. Serializable reads go straight to the backend. A ReadIndex asked of a leader that
  changed fails with ``leader changed``.
- Lease keep-alives and time-to-lives are answered by the leader's lease expirer; a follower
  checks the client's auth, then passes the call on to the leader's peer port (``LeaseQuery``,
  as etcd's followers do) and checks a time-to-live's keys on the answer.
- The gateway proposes on its own the NOSPACE alarm (at most once a second) and
  auto-compactions; nobody waits for their outcome (an auto-compaction's is logged).
"""

from __future__ import annotations

import heapq
from typing import Any

from actors.auth.perms import needs
from actors.gateway.access import Access
from actors.gateway.requests import LEASE_CALLS, Outbox, error_code
from proto_schemas.cluster import PeerBatch, ReadIndexAnswer, ReadIndexQuery
from proto_schemas.codec import encode
from proto_schemas.errors import ErrorCode, EtcdzError
from proto_schemas.internal import (
    ActorStarted,
    BackendState,
    InternalRequest,
    Propose,
    ProposeFailed,
    RaftStatus,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadRequest,
    ReadResult,
    ReadResults,
    Results,
)
from proto_schemas.kv import CompactionRequest, StatusResponse
from proto_schemas.lease import LeaseAnswer, LeaseCall, LeaseQuery
from proto_schemas.maintenance import AlarmAction, AlarmRequest, AlarmType
from proto_schemas.raft import Entry, MessageType, RaftMessage

ALARM_RETRY_S = 1.0  # NOSPACE is proposed again at most this often while puts keep coming
VERSION = "3.5.0"  # the etcd API version etcdz speaks


class Routing(Access):
    """Where each request goes (raft, a ReadIndex round, the backend, the leader) and the node's news."""

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

    def _route(self, rid: int) -> None:
        pending = self._pending[rid]
        if isinstance(pending.request, LEASE_CALLS):
            if self.raft is not None and self.raft.leader == self.member_id:
                self.out.to_lease.append(LeaseCall(read_id=rid, request=pending.request))
            else:
                # on the leader's peer port: auth was checked here, the query carries none
                query = LeaseQuery(
                    cluster_id=self.cluster_id, from_=self.member_id, query_id=rid, request=pending.request
                )
                self.out.at_leader.append((query, None))
        elif pending.write:
            if not pending.proposal:
                pending.proposal = encode(
                    InternalRequest(
                        request_id=rid,
                        request=pending.request,
                        user=pending.user,
                        auth_revision=pending.auth_revision,
                        client_id=pending.client_id,
                        seq=pending.seq,
                        acked=pending.acked,
                    )
                )
            self._propose_data.append(pending.proposal)
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

    def leader_answered(self, answer: LeaseAnswer | ReadIndexAnswer, now: float) -> None:
        """The leader answered on its peer port: a lease call we passed on (its expirer's body,
        unchanged) or a ReadIndex query (as our raft core would have)."""
        if isinstance(answer, LeaseAnswer):
            self._lease_answered(answer.query_id, answer.body)
        else:
            read_point = ReadIndexResponse(read_id=answer.query_id, index=answer.index, code=answer.code)
            self.internal(read_point, now)

    def _lease_answered(self, rid: int, body: bytes) -> None:
        """A lease expirer's answer. ``not leader`` (the member the call went to lost the
        leadership on the way) is not the client's to handle: as etcd's server forwards a
        renewal again until its deadline, the call is routed again at the next status that
        names a leader, the way a dropped proposal is."""
        pending = self._pending.get(rid)
        if pending is not None and isinstance(pending.request, LEASE_CALLS):
            if error_code(body) is ErrorCode.NOT_LEADER:
                self._held.append(rid)
                return
        self._answer(rid, body)

    def _read_answered(self, result: ReadResult, now: float) -> None:
        if error_code(result.body) is ErrorCode.CORRUPT:  # the backend failed its checksums
            self._raise_alarm(AlarmType.CORRUPT, now)
        self._lease_answered(result.read_id, result.body)

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
                    self._own_done(result.request_id, error_code(result.body), now)
                else:
                    self._answer(result.request_id, result.body)
            self._release_reads()
        elif isinstance(msg, ReadResult):  # a read's, or the local lease expirer's
            self._read_answered(msg, now)
        elif isinstance(msg, ReadResults):
            for answer in msg.results:
                self._read_answered(answer, now)
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
            if msg.leader and self._copies_due:
                self._propose_copies()
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
                elif rid in self._pending and self._pending[rid].copies:
                    pass  # a copy was dropped; the first proposal may yet commit: wait for it
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
        with a definite error the SDK retries; writes are proposed again (to a new raft core,
        which may have lost them; past a new backend, which may have applied them but died
        before it answered): a copy of a write the log has already is answered from the
        backend's sessions, not applied twice. A client's write with a session of its own is
        sent back instead when the raft core restarted (``unavailable``, indefinite): a new
        raft core is the last of the member's actors to serve again (it waits for a leader,
        and catches up with it), so the client's copy of the write goes to another member."""
        if actor == "raft":
            self._leader_changed()
            own = self.session_id
            for rid in [rid for rid, p in self._pending.items() if p.write and p.client_id != own]:
                self._fail(rid, ErrorCode.UNAVAILABLE, definite=False)
        elif actor == "mvcc":
            for rid in list(self._at_backend):
                self._fail(rid, ErrorCode.UNAVAILABLE)
            self._copies_due = True
            if self.raft is not None and self.raft.leader:
                self._propose_copies()

    def _propose_copies(self) -> None:
        """Propose again every write proposed before the raft core restarted or the leader
        changed: the copy that reaches the log second is answered without being applied
        (actors/mvcc/sessions.py), so a write is neither lost with a dead leader nor done twice,
        and its client waits for it instead of timing out."""
        self._copies_due = False
        held = set(self._held)
        for rid, pending in self._pending.items():
            if pending.proposal and rid not in held:
                pending.copies += 1
                self._propose_data.append(pending.proposal)
                self._propose_ids.append(rid)

    def _retry_dropped(self, rid: int) -> bool:
        """Whether a proposal the raft core dropped is tried again: while a leader is known
        (unreachable for now: not connected yet, or dead and about to be replaced), not
        without one (a cut-off member answers at once, and the client goes elsewhere)."""
        return rid in self._pending and self.raft is not None and self.raft.leader != 0

    def _leader_changed(self) -> None:
        """A ReadIndex asked of the old leader may never be answered: fail those reads at once
        with etcd's ``leader changed`` (a read changed nothing, so the client may retry). A
        proposal the old leader (or the old raft core) took may be lost: every pending write is
        proposed again once a leader is known (``_propose_copies``)."""
        self._copies_due = True
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

    def take_outbox(self) -> Outbox:
        """A follower's raft core would only pass its gateway's writes on to the leader (raft's
        MsgProp) and its ReadIndex rounds too (MsgReadIndex, and the answer back): both go
        to the leader's peer port instead, one process hop less each way. The raft core gets
        them only if that port cannot take them now (and refuses them without a leader)."""
        raft = self.raft
        leader = raft.leader if raft is not None and raft.leader_peer_urls else 0
        me = self.member_id
        elsewhere = leader not in (0, me)
        if self._propose_data:
            proposal = Propose(data=self._propose_data, request_ids=self._propose_ids)
            if elsewhere:
                entries = [Entry(term=0, index=0, data=d) for d in proposal.data]
                forward = RaftMessage(type=MessageType.PROP, to=leader, from_=me, entries=entries)
                batch = PeerBatch(cluster_id=self.cluster_id, from_=me, messages=[forward])
                self.out.at_leader.append((batch, proposal))
            else:
                self.out.to_raft.append(proposal)
            self._propose_data, self._propose_ids = [], []
        if self._need_index:
            round_id = next(self._ids)
            self._index_rounds[round_id] = self._need_index
            self._need_index = []
            asked = ReadIndexRequest(read_id=round_id)
            if elsewhere:
                query = ReadIndexQuery(cluster_id=self.cluster_id, from_=me, query_id=round_id)
                self.out.at_leader.append((query, asked))
            else:
                self.out.to_raft.append(asked)
        out, self.out = self.out, Outbox()
        return out
