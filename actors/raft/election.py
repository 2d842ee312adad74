"""Raft elections (thesis §3.4, §9.6, §3.10): campaigns, pre-votes, votes, timers and leader transfer.

Rules and why:
- Elections: a follower that hears nothing for a randomized timeout in
  [election_tick, 2*election_tick) campaigns (§3.4). With ``pre_vote`` it first asks whether it
  could win without bumping its term, so a partitioned node rejoining does not disrupt the
  cluster by term inflation (§9.6).
- Leader lease / check-quorum (§6.2, §9.6): a leader that did not hear from a quorum within an
  election timeout steps down; a follower that heard from a leader within the election timeout
  ignores (pre-)vote requests, unless they carry the leader-transfer context (``raft.py``'s
  ``step``).
- Our own vote counts at once, but our vote requests leave only once our term and vote are
  durable (``state.py``), so nobody can vote for us before we could remember voting (§3.8).
- Only voters campaign, and not while a committed conf change is unapplied: our
  configuration may be about to change (as etcd).
- Leader transfer (§3.10): the leader brings the target up to date, then sends TIMEOUT_NOW;
  the target campaigns at once, skipping pre-vote and lease checks. Proposals are refused
  meanwhile; the transfer aborts after an election timeout.
"""

from __future__ import annotations

from actors.raft import quorum
from actors.raft.progress import Progress
from actors.raft.reconfig import Reconfig
from actors.raft.state import CAMPAIGN_TRANSFER, MT, Role
from proto_schemas.raft import EntryType, RaftMessage


class Election(Reconfig):
    """Campaigns, votes given and counted, the election and heartbeat timers, leader transfer."""

    def become_candidate(self) -> None:
        """Campaign in the next term (``raft.py``: role changes swap the step function)."""
        raise NotImplementedError

    def become_pre_candidate(self) -> None:
        """Ask for pre-votes, term unchanged (``raft.py``)."""
        raise NotImplementedError

    def become_leader(self) -> None:
        """Lead the current term (``raft.py``)."""
        raise NotImplementedError

    def step(self, m: RaftMessage) -> None:
        """The node's entry point (``raft.py``)."""
        raise NotImplementedError

    # -- campaigns ------------------------------------------------------------------------------

    def _hup(self, transfer: bool = False) -> None:
        if self.role is Role.LEADER:
            return
        if not self.promotable:
            return
        if self._has_unapplied_conf_changes():
            return  # as etcd: our configuration may be about to change (e.g. a restart replay)
        if self.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self.become_pre_candidate()
            vote_type = MT.PRE_VOTE
            term = self.term + 1  # the term we would campaign in; ours stays
        else:
            self.become_candidate()
            vote_type = MT.VOTE
            term = self.term
        # Our own vote counts at once: the vote requests wait for our durable term and vote
        # (msgs_after_append), so nobody can vote for us before we could remember voting.
        if self._poll(self.id, True) is quorum.VoteResult.WON:
            if pre:
                self._campaign(pre=False, transfer=False)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for voter in sorted(self.voters):
            if voter == self.id:
                continue
            self._send(
                self._msg(
                    vote_type,
                    voter,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=ctx,
                )
            )

    def _has_unapplied_conf_changes(self) -> bool:
        # A snapshot not applied yet already holds its configuration: look only after it.
        lo = max(self.log.applied, self.log.first_index() - 1) + 1
        pending = self.log.slice(lo, self.log.committed + 1)
        return any(e.type == EntryType.CONF_CHANGE for e in pending)

    def _poll(self, voter: int, granted: bool) -> quorum.VoteResult:
        self.votes.setdefault(voter, granted)
        return quorum.vote_result(self.voters, self.votes)

    def _past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _vote(self, m: RaftMessage) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote == 0 and self.lead == 0)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        resp = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # The response carries the candidate's term: for a pre-vote ours is lower,
            # and a lower-term response would be dropped (etcd #8501).
            self._send(self._msg(resp, m.from_, term=m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(self._msg(resp, m.from_, reject=True))

    # -- leader transfer ------------------------------------------------------------------------

    def _transfer_leadership(self, m: RaftMessage, pr: Progress) -> None:
        target = m.from_
        if pr.is_learner or target == self.id or target == self.lead_transferee:
            return
        self.lead_transferee = target
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        if pr.match == self.log.last_index():
            self._send(self._msg(MT.TIMEOUT_NOW, target))
        else:
            self._send_append(target)

    # -- timers ---------------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable and self._past_election_timeout():
            self.election_elapsed = 0
            self.step(RaftMessage(type=MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(RaftMessage(type=MT.CHECK_QUORUM, from_=self.id))
            if self.role is Role.LEADER and self.lead_transferee:
                self.lead_transferee = 0  # transfer timed out: accept proposals again
        if self.role is not Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(RaftMessage(type=MT.BEAT, from_=self.id))
