"""The raft shell's status: where raft is, told to the gateway and the lease expirer, and its metrics.

The status (``RaftStatus``) goes to the gateway at once when the leader, the term or the member
table changed, otherwise (commit and applied only, every batch under load) at most every
``STATUS_REFRESH_S``; to the lease expirer only on the former.
"""

from __future__ import annotations

import time

import zmq

from actors.raft.rawnode import RawNode
from actors.raft.shell_peers import PeerShell
from actors.raft.storage import MemoryStorage
from actors.runtime.loop import Loop, send
from actors.runtime.metrics import Counter, Gauge
from proto_schemas.internal import (
    RaftStatus,
)

STATUS_REFRESH_S = 0.02  # commit/applied-only status changes reach the gateway at most this often


class StatusShell(PeerShell):
    """The status last sent, the leader last seen, the metrics that follow them."""

    loop: Loop
    storage: MemoryStorage
    to_lease: zmq.Socket[bytes]
    applied: int
    leader: int
    _status_key: tuple[int, ...]
    _status_sent_at: float
    m_has_leader: Gauge
    m_is_leader: Gauge
    m_leader_changes: Counter
    m_committed: Gauge
    m_applied: Gauge
    m_pending: Gauge
    m_term: Gauge
    m_is_learner: Gauge

    def _leader_changed(self, leader: int, term: int) -> None:
        if leader:
            self.m_leader_changes.inc()
            self.log.info("leader changed", previous=f"{self.leader:x}", leader=f"{leader:x}", term=term)
        else:
            self.log.warning("leader lost", previous=f"{self.leader:x}", term=term)
        self.leader = leader

    def _report_status(self, node: RawNode) -> None:
        """Tell the gateway (and, on a role change, the lease expirer) where raft is: at once
        when the term, the leader or the member table changed, else at most every
        ``STATUS_REFRESH_S`` (under load commit and applied move on every flush)."""
        term, leader, commit = node.position()
        key = (term, leader, self._table_epoch, commit, self.applied)
        last = self._status_key
        if key == last:
            return
        role_changed = key[:3] != last[:3]
        now = time.monotonic()
        if not role_changed and now - self._status_sent_at < STATUS_REFRESH_S:
            return  # sent with a later flush or the next tick
        self._status_key, self._status_sent_at = key, now
        st = node.status
        is_leader = st.leader == self.config.member_id
        self.m_has_leader.set(1 if st.leader else 0)
        self.m_is_leader.set(1 if is_leader else 0)
        self.m_committed.set(st.commit)
        self.m_applied.set(self.applied)
        self.m_pending.set(max(0, self.storage.last_index() - st.commit) if is_leader else 0)
        self.m_term.set(st.term)
        self.m_is_learner.set(1 if self.config.member_id in st.learners else 0)
        member = self.table.members.get(st.leader)
        status = RaftStatus(
            member_id=self.config.member_id,
            cluster_id=self.config.cluster_id,
            term=st.term,
            leader=st.leader,
            commit=st.commit,
            applied=self.applied,
            is_learner=self.config.member_id in st.learners,
            leader_peer_urls=list(member.peer_urls) if member is not None else [],
        )
        send(self.to_gateway, status)
        if role_changed:  # the expirer cares who leads, not how far the log got
            send(self.to_lease, status)
            self.loop.report_now()  # /health follows a new leader at once, not up to a second later
