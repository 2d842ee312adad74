"""The raft shell's member table: conf changes applied, publishing, learner promotion, joining members.

Rules:
- The member table belongs to the raft core: committed conf changes are applied to it here,
  before the entries go to the apply worker, and the peer mesh follows it (connect to
  members, refuse removed ones). A snapshot from the leader brings its table along.
- A member records its name and client URLs in the table once there is a leader (etcd's
  publish), every tick until the table shows them.
- The leader promotes a caught-up learner by itself (the decision is ``promotion.py``'s).
- A member removed from the cluster stops; so does one that bootstrapped an empty log while
  the log holds a publish of it it did not make (its data dir was lost).
"""

from __future__ import annotations

import time

import structlog
import zmq

from actors.raft.cluster_calls import ClusterCalls
from actors.raft.membership import MembershipLog, MemberTable
from actors.raft.peer_queries import PeerQueries
from actors.raft.promotion import AutoPromoter, observe
from actors.raft.rawnode import ProposalDropped, RawNode
from actors.raft.snapshots import Snapshots
from actors.raft.transport import PeerTransport
from actors.runtime.config import NodeConfig
from actors.runtime.loop import FatalError, send
from actors.runtime.metrics import Counter
from proto_schemas.cluster import (
    JoinInfo,
    JoinQuery,
    MemberChange,
    MemberPromoteRequest,
)
from proto_schemas.codec import DecodeError, decode
from proto_schemas.errors import EtcdzError
from proto_schemas.internal import (
    Apply,
)
from proto_schemas.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    Snapshot,
)


class MemberShell:
    """The shell's state (set up by ``RaftShell.__init__``) and its member table."""

    config: NodeConfig
    log: structlog.BoundLogger
    node: RawNode | None
    table: MemberTable
    history: MembershipLog
    fresh_nonce: int
    peers: PeerTransport
    calls: ClusterCalls
    snapshots: Snapshots
    promoter: AutoPromoter
    to_gateway: zmq.Socket[bytes]
    to_apply: zmq.Socket[bytes]
    to_mvcc: zmq.Socket[bytes]
    m_promotions: Counter
    _table_epoch: int
    _replayed_to: int
    queries: PeerQueries
    to_lease: zmq.Socket[bytes]

    def _join_info(self, query: JoinQuery) -> JoinInfo:
        """Tell a member that is joining which id ``member add`` gave it."""
        urls = sorted(query.peer_urls)
        for member in self.table.members.values():
            if sorted(member.peer_urls) == urls:
                return JoinInfo(cluster_id=self.config.cluster_id, member_id=member.id)
        return JoinInfo(
            cluster_id=self.config.cluster_id,
            error=f"no member with peer URLs {','.join(urls)}: add it first (etcdzctl member add)",
        )

    def _publish(self, node: RawNode) -> None:
        """Record our name and client URLs in the member table (etcd's publish), once there is
        a leader to take the proposal; retried every tick until the table shows them. The
        gRPC URLs are client URLs too (http://): etcd's clients find the members by them, while
        etcdz's own clients use only the ZeroMQ ones (``zmq_urls``)."""
        if node.status.leader == 0 or self.config.member_id not in self.table.members:
            return
        nonce = self.fresh_nonce or 1
        cc = self.table.plan_publish(
            self.config.member_id,
            self.config.name,
            [*self.config.advertise_client_urls, *self.config.advertise_grpc_urls],
            nonce,
        )
        if cc is None or not self.calls.may_publish(time.monotonic()):
            return
        try:
            node.propose_conf_change(cc)
        except ProposalDropped:
            return

    def _auto_promote(self, node: RawNode) -> None:
        """The leader promotes a caught-up learner (the decision is ``promotion``'s): a conf
        change like a requested promotion, marked ``auto`` for the metric."""
        learner = self.promoter.tick(observe(node.raft, self.table.auto_learners()))
        if learner is None:
            return
        try:
            # request id 0: no client waits for this change
            cc = self.table.plan_promote(MemberPromoteRequest(id=learner), 0, auto=True)
            node.propose_conf_change(cc)
        except (EtcdzError, ProposalDropped) as exc:
            self.log.info("learner promotion deferred", member=f"{learner:x}", reason=str(exc))
            return
        st = node.status
        self.log.info(
            "promoting learner",
            member=f"{learner:x}",
            match=node.match_of(learner),
            last_index=st.last_index,
            max_lag=self.promoter.rules.max_lag,
            stable_ticks=self.promoter.rules.stable_ticks,
        )

    def _restored(self, snap: Snapshot) -> None:
        """The core adopted a snapshot from the leader (the backend already holds it)."""
        index = snap.metadata.index
        self.table = MemberTable.restore(snap.data)
        self.history = MembershipLog(index, self.table.snapshot())
        self.snapshots.snap_index = index
        self._table_changed()
        send(self.to_apply, Apply(restored=index))
        self.log.info(
            "snapshot restored", index=index, term=snap.metadata.term, members=len(self.table.members)
        )

    def _table_changed(self) -> None:
        """The mesh follows the member table: connect to members, refuse removed ones."""
        self._table_epoch += 1
        self.peers.set_peers(self.table.peer_urls())
        self.peers.removed = frozenset(self.table.removed)

    def _apply_conf_changes(self, node: RawNode, entries: list[Entry]) -> bool:
        changed = False
        for entry in entries:
            if entry.type != EntryType.CONF_CHANGE:
                continue
            try:
                cc = decode(entry.data, expect=ConfChange)
            except DecodeError as exc:
                self.log.error("undecodable conf change skipped", index=entry.index, error=str(exc))
                continue
            node.apply_conf_change(cc)
            was_learner = cc.node_id in self.table.members and self.table.members[cc.node_id].is_learner
            change = self.table.apply(cc)
            if was_learner and cc.type is ConfChangeType.ADD_NODE and entry.index > self._replayed_to:
                self.m_promotions.inc(how="auto" if change is not None and change.auto else "manual")
            self.history.record(entry.index, self.table.snapshot())
            changed = True
            self.log.info(
                "membership changed",
                change=cc.type.name,
                member=f"{cc.node_id:x}",
                index=entry.index,
                voters=len(self.table.voters()),
                members=len(self.table.members),
            )
            self._check_identity(cc, change)
            if change is not None:
                for reply in self.calls.applied(change.request_id, cc, self.table, node):
                    send(self.to_gateway, reply)
        if changed:
            self._table_changed()
        return changed

    def _campaign_if_alone(self, node: RawNode) -> None:
        """The only voter needs no election timeout: it campaigns as soon as it knows it is
        alone, at start from a snapshot's member table or once the log's conf changes have
        been applied again after a restart (the table is empty until then)."""
        if node.status.leader == 0 and self.table.voters() == [self.config.member_id]:
            node.campaign()

    def _check_identity(self, cc: ConfChange, change: MemberChange | None) -> None:
        me = self.config.member_id
        if cc.node_id != me:
            return
        if cc.type is ConfChangeType.REMOVE_NODE:
            raise FatalError(f"member {me:x} has been permanently removed from the cluster")
        if not self.fresh_nonce or cc.type is not ConfChangeType.UPDATE_NODE or change is None:
            return
        if change.request_id == self.fresh_nonce:
            self.fresh_nonce = 0  # our own publish: from here on the log is ours
        elif change.member.client_urls:
            # We bootstrapped an empty log in this start, yet the log holds a publish of us we
            # did not make: this member existed before and its data dir was lost.
            raise FatalError(
                f"member {me:x} has already been bootstrapped and its data dir was lost; remove it "
                "(etcdzctl member remove) and add it again (member add) with an empty data dir"
            )
