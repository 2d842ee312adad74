"""Raft log replication (thesis §3.5, §3.6): sending appends and snapshots, commitment, a follower's side.

Rules and why:
- Commitment: the leader commits an index once a majority durably matched it *and* the entry
  is from its current term (§3.6.2, Figure 3.7, "Figure 8"). Earlier entries commit
  indirectly. A new leader appends an empty entry to commit its predecessors' entries (§6.4).
- Replication: per-follower ``Progress`` (probe/replicate, pipelining bounded by
  ``max_inflight_msgs``, batching bounded by ``max_size_per_msg`` bytes). A rejected append
  carries the follower's hint (index, term) so the leader skips a whole conflicting term at
  once (§3.5, etcd's ``findConflictByTerm``).
- The leader counts itself in a quorum only once the WAL acknowledges its entries
  (``on_persisted``); a follower acknowledges an append through ``msgs_after_append``
  (``state.py``), so only once it is durable.
- Learners and members not yet (or no longer) in the configuration still accept appends,
  heartbeats and snapshots.
"""

from __future__ import annotations

from actors.raft import quorum
from actors.raft.progress import Progress, ProgressState
from actors.raft.state import MT, LogLost, RaftBase, Role
from actors.raft.storage import StorageError, entry_size
from proto_schemas.raft import Entry, RaftMessage, Snapshot


class Replication(RaftBase):
    """The leader's appends, snapshots, heartbeats and commits; the follower's answers to them."""

    def _send_read_index(self, m: RaftMessage) -> None:
        """Queue a read for the next heartbeat round (``read_index.py``)."""
        raise NotImplementedError

    def _switch_config(self, voters: frozenset[int], learners: frozenset[int]) -> None:
        """Take a new configuration (``reconfig.py``)."""
        raise NotImplementedError

    # -- the leader -----------------------------------------------------------------------------

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send the peer what it is missing (or a snapshot); False if nothing was sent."""
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        entries: list[Entry] | None
        try:
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                entries = []
            else:
                entries = self.log.entries_from(pr.next, self.max_msg_size)
        except StorageError:
            entries = None
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self._send(
            self._msg(
                MT.APP,
                to,
                index=prev_index,
                log_term=prev_term,
                entries=entries,
                commit=self.log.committed,
            )
        )
        last = entries[-1].index if entries else prev_index
        pr.sent_entries(len(entries), last, sum(entry_size(e) for e in entries))
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # etcd: don't ship a snapshot to a peer that may be down
        snapshot = self.log.snapshot()
        if snapshot.metadata.index == 0:
            return False  # nothing to send yet (the shell has not made a snapshot)
        self._send(self._msg(MT.SNAP, to, snapshot=snapshot))
        pr.become_snapshot(snapshot.metadata.index)
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit beyond what it is known to have (it may lack it).
        commit = min(self.prs[to].match, self.log.committed)
        self._send(self._msg(MT.HEARTBEAT, to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for peer in self._all_peers():
            if peer != self.id:
                self._send_append(peer)

    def bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.pending_context()
        for peer in self._all_peers():
            if peer != self.id:
                self._send_heartbeat(peer, ctx)

    def _append_entry(self, entries: list[Entry]) -> None:
        li = self.log.last_index()
        stamped = [
            Entry(term=self.term, index=li + 1 + i, type=e.type, data=e.data) for i, e in enumerate(entries)
        ]
        self.log.append(stamped)
        # Our own acknowledgement arrives through on_persisted, once the WAL has it.

    def _maybe_commit(self) -> bool:
        acked = {peer: pr.match for peer, pr in self.prs.items()}
        index = quorum.committed_index(self.voters, acked)
        if not self.log.maybe_commit(index, self.term):
            return False
        if self.pending_read_index and self._committed_in_current_term():
            pending, self.pending_read_index = self.pending_read_index, []
            for req in pending:
                self._send_read_index(req)
        return True

    def _committed_in_current_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    def _on_append_resp(self, m: RaftMessage, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self.bcast_append()
        elif was_paused:
            self._send_append(m.from_)
        while self._send_append(m.from_, send_if_empty=False):
            pass  # fill the pipeline
        if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
            self._send(self._msg(MT.TIMEOUT_NOW, m.from_))

    def _on_heartbeat_resp(self, m: RaftMessage, pr: Progress) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index():
            self._send_append(m.from_)

    # -- durability -----------------------------------------------------------------------------

    def on_persisted(self, index: int, term: int) -> None:
        """The WAL made the log up to (index, term) durable (with the hard states before)."""
        log = self.log
        snap = log.unstable.snapshot
        if snap is not None and index >= snap.metadata.index:
            if log.term(snap.metadata.index) is not None and log.unstable.snapshot_in_progress:
                durable = log.unstable.stable_snap_to(snap.metadata.index)
                if durable is not None:
                    log.storage.apply_snapshot(durable)  # type: ignore[attr-defined]
        if log.term(index) != term:
            return  # stale: the log was truncated since (or it is beyond the log)
        if index >= log.unstable.offset_in_progress:
            return  # never handed out: cannot be durable (a stale same-term ack)
        stable = log.unstable.stable_to(index, term)
        if stable:
            log.storage.append(stable)  # type: ignore[attr-defined]
        if self.role is Role.LEADER:
            me = self.prs[self.id]
            if me.maybe_update(min(index, log.persisted)) and self._maybe_commit():
                self.bcast_append()

    # -- the follower ---------------------------------------------------------------------------

    def _handle_append(self, m: RaftMessage) -> None:
        if m.index < self.log.committed:
            self._send(self._msg(MT.APP_RESP, m.from_, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(self._msg(MT.APP_RESP, m.from_, index=last_new))
            return
        # Reject with a hint: our largest (index, term) at or below the leader's probe whose
        # term is <= the leader's log_term there; the leader skips to it (fast back-off).
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            self._msg(
                MT.APP_RESP,
                m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: RaftMessage) -> None:
        # The leader never sends a commit beyond what we acknowledged as durable.
        if m.commit > self.log.last_index():
            raise LogLost(
                f"leader {m.from_:x} says entries up to {m.commit} are on this member, whose log "
                f"ends at {self.log.last_index()}: its data dir was lost or truncated"
            )
        self.log.commit_to(m.commit)
        self._send(self._msg(MT.HEARTBEAT_RESP, m.from_, context=m.context))

    def _handle_snapshot(self, m: RaftMessage) -> None:
        snap = m.snapshot
        if snap is None:
            return
        if self._restore(snap):
            self._send(self._msg(MT.APP_RESP, m.from_, index=self.log.last_index()))
        else:
            self._send(self._msg(MT.APP_RESP, m.from_, index=self.log.committed))

    def _restore(self, snap: Snapshot) -> bool:
        meta = snap.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: fast-forward the commit only.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snap)
        # The snapshot's configuration is the one as of its index (etcd restores it too). A
        # snapshot without one (older tests and tools) leaves ours. We accept a snapshot that
        # does not name us: a joining member is added by a later entry of the same log.
        cs = meta.conf_state
        if cs.voters or cs.learners:
            self._switch_config(frozenset(cs.voters), frozenset(cs.learners))
        return True
