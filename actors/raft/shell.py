"""The raft core's shell: feeds the pure RawNode and carries out its Ready.

Its parts: ``shell_members.py`` (the member table), ``shell_peers.py`` (the other members),
``shell_status.py`` (the status and metrics); this module starts the core, takes its inputs
and hands out its Readys.

Start-up: ask the WAL writer for what it replayed (``WalLoad`` -> ``WalState``), fill the
storage with it (snapshot, then entries, then hard state), rebuild the member table from the
snapshot, then start ticking. A member of a new cluster with an empty WAL bootstraps its log
with one conf change per initial member (the same entries on every member). A member started
with ``--initial-cluster-state existing`` starts empty and learns everything from the leader.

Each loop iteration: step every drained message, tick when due, then for each Ready: entries +
hard state to the WAL writer (with the messages that must wait for durability), other messages
to peers in the same iteration (a leader replicates in parallel with its own fsync; the
messages of every Ready and of the WAL's acknowledgements go out together, neighbouring appends
to one peer merged: see coalesce.py), committed entries to the
apply worker (conf changes are applied here first: the member table belongs to the raft core),
read states to the gateway; advance. Then the status (``RaftStatus``): to the gateway at once
when the leader, the term or the member table changed, otherwise (commit and applied only,
every batch under load) at most every ``STATUS_REFRESH_S``; to the lease expirer only on the
former.
"""

from __future__ import annotations

import random
import time

import structlog
import zmq

from actors.raft.cluster_calls import ClusterCalls
from actors.raft.coalesce import coalesce
from actors.raft.group_commit import GroupCommit
from actors.raft.membership import MembershipLog, MemberTable, bootstrap_changes
from actors.raft.persisting import Persisting
from actors.raft.promotion import AutoPromoter, PromotionRules
from actors.raft.rawnode import Config, ProposalDropped, RawNode, Ready, Role
from actors.raft.shell_peers import peer_queries
from actors.raft.shell_status import StatusShell
from actors.raft.snapshots import Snapshots
from actors.raft.storage import MemoryStorage
from actors.raft.transport import PeerTransport
from actors.runtime import curve
from actors.runtime.config import NodeConfig
from actors.runtime.loop import FatalError, Loop, send
from actors.runtime.round_trace import APPENDED, COMMITTED, OFFERED, PERSISTED, from_environment
from proto_schemas.cluster import (
    ClusterCall,
    PeerFaults,
    SaveSnapshot,
    SnapshotInstalled,
    SnapshotPiece,
    SnapshotSaved,
)
from proto_schemas.errors import ErrorCode
from proto_schemas.internal import (
    ActorStarted,
    Applied,
    Apply,
    ApplyFrom,
    BackendState,
    BackendStateRequest,
    Persisted,
    Propose,
    ProposeFailed,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadResult,
    WalLoad,
    WalState,
)
from proto_schemas.raft import (
    RaftMessage,
)

HELD_RELEASE_S = 0.005  # how often frames held back by an injected delay are looked at (only
# once a delay was injected: a member never faulted keeps its idle loop quiet)
RESYNC_BYTES = 4 << 20  # committed entries per ``Apply`` when the apply worker asks for them again


class RaftShell(StatusShell):
    def __init__(self, config: NodeConfig, log: structlog.BoundLogger) -> None:
        self.config = config
        self.log = log
        self.loop = Loop(log)
        self.node: RawNode | None = None
        self.applied = 0
        self._outgoing: list[RaftMessage] = []  # to peers, sent once at the end of the flush
        self.group_commit: GroupCommit[Propose | RaftMessage] = GroupCommit(
            config.group_commit_delay_ms / 1000, config.group_commit_siblings
        )
        self._group_commit_armed = False  # a timer will release what group_commit holds
        self.trace = from_environment(config.name)  # tools/round_trace.py; None: off
        self._status_sent_at = 0.0
        self._status_key: tuple[int, ...] = ()  # (term, leader, table epoch, commit, applied) last sent
        self._table_epoch = 0  # bumped on every membership change
        self.table = MemberTable()
        self.history = MembershipLog(0, self.table.snapshot())
        self.fresh_nonce = 0  # set when this start bootstrapped an empty log (see _check_identity)
        self.leader = 0
        self.inbox = self.loop.inbox(config.inbox("raft"))
        self.to_wal = self.loop.outbox(config.inbox("wal"))
        self.to_apply = self.loop.outbox(config.inbox("apply"))
        self.to_gateway = self.loop.outbox(config.inbox("gateway"))
        self.to_mvcc = self.loop.outbox(config.inbox("mvcc"))
        self.to_lease = self.loop.outbox(config.inbox("lease"))
        self.storage = MemoryStorage()
        peer_curve = config.peer_curve()
        curve.guard(self.loop, peer_curve)
        self.peers = PeerTransport(
            self.loop.ctx,
            member_id=config.member_id,
            cluster_id=config.cluster_id,
            listen_urls=config.listen_peer_urls,
            advertise_urls=config.initial_advertise_peer_urls,
            log=log,
            curve=peer_curve,
            initial_urls=[u for urls in config.initial_cluster.values() for u in urls],
        )
        self.calls = ClusterCalls(config, log)
        self.queries = peer_queries()  # other members' queries waiting for an answer
        self.snapshots = Snapshots(
            cluster_id=config.cluster_id,
            member_id=config.member_id,
            snapshot_count=config.snapshot_count,
            catch_up_entries=config.snapshot_catchup_entries,
            send_chunk=self.peers.send_chunk,
            to_backend=lambda msg: send(self.to_mvcc, msg),
        )
        metrics = self.loop.metrics
        self.m_has_leader = metrics.gauge(
            "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."
        )
        self.m_is_leader = metrics.gauge(
            "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."
        )
        self.m_leader_changes = metrics.counter(
            "etcd_server_leader_changes_seen_total", "The number of leader changes seen."
        )
        self.m_committed = metrics.gauge(
            "etcd_server_proposals_committed_total", "The total number of consensus proposals committed."
        )
        self.m_applied = metrics.gauge(
            "etcd_server_proposals_applied_total", "The total number of consensus proposals applied."
        )
        self.m_pending = metrics.gauge(
            "etcd_server_proposals_pending", "The current number of pending proposals to commit."
        )
        self.m_term = metrics.gauge("etcd_server_term", "The raft term of this member.")
        self.m_is_learner = metrics.gauge(
            "etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise."
        )
        self.m_promotions = metrics.counter(
            "etcdz_learner_promotions_total",
            "Learners promoted to voters, by the leader once caught up (auto) or on request (manual).",
            ["how"],
        )
        self.m_group_commit = metrics.counter(
            "etcdz_group_commit_proposals_total",
            "Proposals the leader stepped at once, or held to share a round (--group-commit-delay).",
            ["how"],
        )
        ticks = -(-config.auto_promote_after_ms // config.heartbeat_interval_ms)
        self.promoter = AutoPromoter(
            PromotionRules(
                max_lag=config.auto_promote_max_lag, stable_ticks=ticks, election_ticks=config.election_tick
            )
        )
        self.loop.on_messages(self.inbox, self.handle)
        self.loop.on_frames(self.peers.inbox, self.from_peers)
        self.loop.every(config.heartbeat_interval_ms / 1000, self.tick)
        self._releasing = False  # the timer for delayed peer frames is running
        self.loop.after_batch(self.flush)
        self._apply_from: int | None = None  # an ``ApplyFrom`` heard before the WAL was loaded
        self.generation = random.getrandbits(63) | 1  # this core's, for the WAL writer
        self._replayed_to = 0  # the log's last index at start: entries up to it happened before
        self.persisting = Persisting()
        send(self.to_wal, WalLoad(generation=self.generation))
        # Neighbours that ran on while this core restarted: the apply worker tells the applied
        # index again, the gateway fails read index rounds asked of the old core.
        send(self.to_apply, ActorStarted(actor="raft"))
        send(self.to_gateway, ActorStarted(actor="raft"))

    # -- start ---------------------------------------------------------------------------------
    def start(self, state: WalState) -> None:
        storage = self.storage
        snap_index = 0
        if state.snapshot is not None:
            storage.apply_snapshot(state.snapshot)
            snap_index = state.snapshot.metadata.index
            self.table = MemberTable.restore(state.snapshot.data)
            self.history = MembershipLog(snap_index, self.table.snapshot())
            self.snapshots.snap_index = snap_index
        storage.append(state.entries)
        storage.set_hard_state(state.hard_state)
        self._replayed_to = state.entries[-1].index if state.entries else snap_index
        self.persisting.loaded(state.hard_state)
        self.node = RawNode(
            Config(
                id=self.config.member_id,
                voters=[],
                election_tick=self.config.election_tick,
                heartbeat_tick=1,
                applied=snap_index,
                rng=random.Random(),
            ),
            storage,
        )
        empty = not state.entries and state.snapshot is None and state.hard_state.term == 0
        if empty and self.config.initial_cluster_state == "new":
            initial = {
                pid: (name, self.config.initial_cluster[name]) for pid, name in self.config.peers.items()
            }
            changes = bootstrap_changes(initial)
            self.node.bootstrap(changes)
            for cc in changes:
                self.table.apply(cc)
            self.fresh_nonce = random.getrandbits(62) | 1
        self._table_changed()
        self.log.info(
            "raft started",
            term=state.hard_state.term,
            commit=state.hard_state.commit,
            last_index=state.entries[-1].index if state.entries else snap_index,
            snapshot_index=snap_index,
            members=len(self.table.members),
            bootstrapped=bool(self.fresh_nonce),
        )
        self._campaign_if_alone(self.node)
        if self._apply_from is not None:
            self._resend_committed(self.node, self._apply_from)

    # -- input ---------------------------------------------------------------------------------
    def handle(self, msgs: list[object]) -> None:
        for msg in msgs:
            if isinstance(msg, ReadResult):
                self._peer_answered(msg)
                continue
            if isinstance(msg, WalState):
                if self.node is None:
                    self.start(msg)
                continue
            if isinstance(msg, ActorStarted):
                self._status_key = ()  # the next flush sends the status to the gateway and the expirer
                continue
            if isinstance(msg, ApplyFrom):
                if self.node is None:
                    self._apply_from = msg.index  # answered once started
                else:
                    self._resend_committed(self.node, msg.index)
                continue
            if isinstance(msg, PeerFaults):
                self.peers.inject(msg)
                if msg.delay_ms and not self._releasing:
                    self._releasing = True
                    self.loop.every(HELD_RELEASE_S, lambda: self.peers.release(self._from_peer))
                blocked = [f"{b:x}" for b in msg.blocked]
                self.log.warning(
                    "peer faults injected", blocked=blocked, drop=msg.drop_percent, delay_ms=msg.delay_ms
                )
                continue
            node = self.node
            if node is None:
                self._refuse(msg)
            elif isinstance(msg, Propose):
                self._offer_proposal(msg)
            elif isinstance(msg, ReadIndexRequest):
                if node.status.leader == 0:
                    send(self.to_gateway, ReadIndexResponse(read_id=msg.read_id, code=ErrorCode.NO_LEADER))
                else:
                    node.read_index(msg.read_id.to_bytes(8, "big"))
            elif isinstance(msg, Persisted):
                if self.trace:
                    self.trace.record(PERSISTED, msg.last_index)
                if msg.generation == self.generation:  # not a dead predecessor's write
                    self.persisting.persisted(msg.seq)
                node.on_persisted(msg.last_index, msg.last_term)
                self._outgoing.extend(msg.messages)  # sent with this iteration's flush
            elif isinstance(msg, Applied):
                self.applied = max(self.applied, msg.index)
                self.snapshots.maybe_take(
                    self.applied,
                    time.monotonic(),
                    lambda: send(self.to_mvcc, BackendStateRequest(reply_to="raft", sync=True)),
                )
            elif isinstance(msg, BackendState):
                snap = self.snapshots.take(msg.consistent_index, self.storage, self.history)
                if snap is not None:
                    send(self.to_wal, SaveSnapshot(snapshot=snap))
            elif isinstance(msg, SnapshotSaved):
                self.log.info("snapshot taken", index=msg.index)
            elif isinstance(msg, SnapshotPiece):
                self.snapshots.piece(msg, node, self.storage, self.history, time.monotonic())
            elif isinstance(msg, SnapshotInstalled):
                done = self.snapshots.installed(msg)
                if done is not None:
                    node.step(done)
            elif isinstance(msg, ClusterCall):
                # Only the leader hears from every member: elsewhere the started check is skipped.
                started = self.peers.started() if node.status.role is Role.LEADER else None
                for reply in self.calls.call(msg, node, self.table, started, time.monotonic()):
                    send(self.to_gateway, reply)

    def _resend_committed(self, node: RawNode, index: int) -> None:
        """Hand the apply worker the committed entries from ``index`` on again (an apply worker
        that started while this core ran on, or this core's own start): the first ``Apply``
        says ``resync``; those before it are dropped by the worker. Entries compacted into a
        snapshot are covered by it (the backend installed or synced it before the log was cut)."""
        self._apply_from = None
        start, chunks = node.handed_out(index, RESYNC_BYTES)
        restored = start - 1 if start > index else 0
        for i, entries in enumerate(chunks or [[]]):
            send(self.to_apply, Apply.of(entries, restored=restored if i == 0 else 0, resync=i == 0))
        sent = sum(len(c) for c in chunks)
        self.log.info("apply worker resynced", start=index, restored=restored, entries=sent)

    def _refuse(self, msg: object) -> None:
        if isinstance(msg, Propose):
            send(self.to_gateway, ProposeFailed(request_ids=msg.request_ids, code=ErrorCode.NO_LEADER))
        elif isinstance(msg, ReadIndexRequest):
            send(self.to_gateway, ReadIndexResponse(read_id=msg.read_id, code=ErrorCode.NO_LEADER))

    def _offer_proposal(self, proposal: Propose | RaftMessage) -> None:
        """Step a proposal (the gateway's, or a follower's forwarded one) now, or, on a leader
        under load, hold it to share the next round with others (group_commit.py)."""
        node = self.node
        assert node is not None
        if node.position()[1] != self.config.member_id:  # not the leader: forwarded at once
            self._step_proposal(node, proposal)
            return
        now = time.monotonic()
        size = len(proposal.data) if isinstance(proposal, Propose) else len(proposal.entries)
        if self.trace:
            self.trace.record(OFFERED, size)
        for p in self.group_commit.offer(proposal, size, now, alone=not node.replicates):
            self._step_proposal(node, p)
        due = self.group_commit.due
        self.m_group_commit.inc(how="held" if due is not None else "at_once")
        if due is not None and not self._group_commit_armed:
            self._group_commit_armed = True
            self.loop.after(max(0.0, due - now), self._release_proposals)

    def _release_proposals(self) -> None:
        self._group_commit_armed = False
        node = self.node
        assert node is not None
        for p in self.group_commit.release(time.monotonic()):
            self._step_proposal(node, p)

    def _step_proposal(self, node: RawNode, proposal: Propose | RaftMessage) -> None:
        if isinstance(proposal, Propose):
            self._propose(node, proposal)
        else:
            node.step(proposal)

    def _propose(self, node: RawNode, msg: Propose) -> None:
        if not msg.data:
            return
        try:
            node.propose(*msg.data)
        except ProposalDropped:
            send(self.to_gateway, ProposeFailed(request_ids=msg.request_ids, code=ErrorCode.NO_LEADER))

    def tick(self) -> None:
        node = self.node
        if node is None:
            return
        node.tick()
        self.snapshots.tick(node, time.monotonic())
        self._publish(node)
        self._auto_promote(node)
        self.calls.expire(time.monotonic())

    # -- output --------------------------------------------------------------------------------
    def flush(self) -> None:
        node = self.node
        if node is None:
            return
        while node.has_ready():
            rd = node.ready()
            table_changed = False
            if rd.soft_state is not None:
                self.log.info(
                    "raft role",
                    leader=f"{rd.soft_state.leader:x}",
                    role=rd.soft_state.role.name,
                    term=node.status.term,
                )
                if rd.soft_state.leader != self.leader:
                    self._leader_changed(rd.soft_state.leader, node.status.term)
                    self._read_queries_lost()
                for reply in self.calls.leader_changed(rd.soft_state.leader):
                    send(self.to_gateway, reply)
            if rd.snapshot is not None:
                self._restored(rd.snapshot)
            self._persist(rd)
            self._outgoing.extend(rd.messages)
            if self.trace:
                self._trace(rd)
            if rd.committed_entries:
                table_changed = self._apply_conf_changes(node, rd.committed_entries)
                send(self.to_apply, Apply.of(list(rd.committed_entries)))
            for rs in rd.read_states:
                if not self._read_point(rs.request_ctx, rs.index):
                    read_id = int.from_bytes(rs.request_ctx, "big")
                    send(self.to_gateway, ReadIndexResponse(read_id=read_id, index=rs.index))
            node.advance(rd)
            if table_changed:  # raft campaigns only once its conf changes count as applied
                self._campaign_if_alone(node)
        if self._outgoing:
            outgoing, self._outgoing = self._outgoing, []
            self._send_peers(coalesce(outgoing))
        self._report_status(node)

    def _trace(self, rd: Ready) -> None:
        assert self.trace is not None
        if rd.entries:
            self.trace.record(APPENDED, rd.entries[0].index, rd.entries[-1].index)
        if rd.committed_entries:
            self.trace.record(COMMITTED, rd.committed_entries[0].index, rd.committed_entries[-1].index)

    def _persist(self, rd: Ready) -> None:
        """Hand the WAL writer what must be durable (``persisting.py``)."""
        persist, now = self.persisting.take(rd, self.generation)
        if persist is not None:
            send(self.to_wal, persist)
        self._outgoing.extend(now)


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    try:
        return RaftShell(config, log).loop
    except zmq.ZMQError as exc:
        raise FatalError(f"cannot listen on peer URLs {config.listen_peer_urls}: {exc}") from exc
