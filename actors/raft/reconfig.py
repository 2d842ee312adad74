"""The node's configuration (thesis §4, rules in ``confchange.py``): checking and applying changes.

Rules and why:
- The configuration changes when the shell applies a committed conf change, never on append.
  Only voters vote, count in quorums and campaign; learners and members not yet (or no
  longer) in the configuration still accept appends, heartbeats and snapshots.
- The leader appends one change at a time, and only once the previous one is applied
  (``pending_conf_index``); ``UPDATE_NODE`` changes no configuration, so it waits for nothing.
- A removed leader steps down (etcd's stepDownOnRemoval), a removed candidate gives up, a
  transfer to a removed member aborts; fewer voters may commit at once, new peers start
  probing at once.
"""

from __future__ import annotations

from actors.raft import confchange
from actors.raft.progress import Progress
from actors.raft.read_index import ReadIndex
from actors.raft.state import ProposalDropped, Role
from proto_schemas.codec import DecodeError, decode
from proto_schemas.raft import ConfChange, ConfChangeType, ConfState, Entry


class Reconfig(ReadIndex):
    """The voters and learners, and their changes."""

    def become_follower(self, term: int, lead: int) -> None:
        """Become a follower of ``lead`` in ``term`` (``raft.py``)."""
        raise NotImplementedError

    def conf_state(self) -> ConfState:
        return ConfState(voters=sorted(self.voters), learners=sorted(self.learners))

    def _check_conf_change(self, entries: list[Entry], conf_at: list[int]) -> bool:
        """Refuse a conf change the leader must not append (see ``confchange``): the
        configuration it would apply to must be the latest one, hence one change at a time.
        Returns whether the change alters the configuration: ``UPDATE_NODE`` (a member
        publishing its client URLs, a peer URL update) does not, so it neither waits for an
        earlier change nor holds a later one back."""
        if len(conf_at) > 1:
            raise ProposalDropped("one membership change at a time")
        try:
            cc = decode(entries[conf_at[0]].data, expect=ConfChange)
        except DecodeError as exc:
            raise ProposalDropped(f"malformed membership change: {exc}") from None
        reason = confchange.refusal(self.voters, self.learners, cc)
        if reason is not None:
            raise ProposalDropped(reason)
        if cc.type is ConfChangeType.UPDATE_NODE:
            return False
        if self.pending_conf_index > self.log.applied:
            raise ProposalDropped("an earlier membership change is not applied yet; retry later")
        return True

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed change; replays (a restart, the bootstrap entries) change nothing."""
        self._switch_config(*confchange.apply_change(self.voters, self.learners, cc))
        return self.conf_state()

    def _switch_config(self, voters: frozenset[int], learners: frozenset[int]) -> None:
        members = voters | learners
        added = members - self.prs.keys()
        self.voters, self.learners = voters, learners
        for peer in self.prs.keys() - members:
            del self.prs[peer]
        for peer in added:
            pr = self.prs[peer] = Progress(self.log.last_index() + 1, self.max_inflight)
            pr.recent_active = True  # as etcd: a new peer gets an election timeout to answer
            if peer == self.id:
                pr.match = self.log.persisted
        for peer, pr in self.prs.items():
            pr.is_learner = peer in learners
        if self.role is Role.LEADER and not self.promotable:
            self.become_follower(self.term, 0)  # removed: step down (etcd's stepDownOnRemoval)
            return
        if self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self.promotable:
            self.become_follower(self.term, 0)  # removed: votes still in flight must not elect us
            return
        if self.role is not Role.LEADER:
            return
        if self.lead_transferee and self.lead_transferee not in voters:
            self.lead_transferee = 0  # the transferee was removed: abort the transfer
        if self._maybe_commit():  # fewer voters may already hold a quorum of more entries
            self.bcast_append()
            return
        for peer in sorted(members - {self.id}):
            self._send_append(peer, send_if_empty=peer in added)  # new peers start probing now
