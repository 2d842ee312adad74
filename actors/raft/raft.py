"""The Raft state machine (etcd-raft's ``raft.go``): ``step(msg)`` and ``tick()``, no I/O.

The node's jobs each have a module: ``state.py`` (its state, vocabulary and sending),
``replication.py`` (appends, snapshots, commitment), ``read_index.py`` (ReadIndex),
``reconfig.py`` (membership changes), ``election.py`` (campaigns, votes, timers, leader
transfer); this module puts them together with the roles and the entry point.

Rules and why:
- One entry point, ``step``. It first reconciles terms (thesis §3.3: a higher term turns
  anyone into a follower; a lower-term message is answered or dropped), then handles votes,
  then hands the message to the role's step function (``_step_leader`` / ``_step_follower`` /
  ``_step_candidate``), swapped on every role change instead of ``if role == ...`` tangles.
- A follower forwards proposals, reads and transfer requests to the leader it knows; without
  one, proposals and transfers are refused (``ProposalDropped``) and reads dropped.
- A removed leader steps down (``reconfig.py``).
"""

from __future__ import annotations

from actors.raft import quorum
from actors.raft.election import Election
from actors.raft.log import RaftLog
from actors.raft.progress import Progress, ProgressState
from actors.raft.readonly import ReadOnly
from actors.raft.state import CAMPAIGN_TRANSFER, MT, Config, ProposalDropped, Role
from actors.raft.storage import Storage
from proto_schemas.raft import ConfState, Entry, EntryType, HardState, RaftMessage, ReadState


class Raft(Election):
    """One Raft node: its roles, the entry point and the local requests of the RawNode."""

    def __init__(self, config: Config, storage: Storage) -> None:
        config.validate()
        self.id = config.id
        self.config = config
        self.rng = config.rng
        self.log = RaftLog(storage, config.max_committed_size_per_ready)
        hard_state, conf_state = storage.initial_state()
        # The configuration comes from the Config (a fixed cluster, tests) or else from the
        # storage's snapshot; committed conf changes after it are re-applied as the shell
        # replays them. Neither: a member joining an existing cluster, which learns the
        # configuration from the leader's log or snapshot and never campaigns until then.
        if config.voters or config.learners:
            conf_state = ConfState(voters=list(config.voters), learners=list(config.learners))
        self.voters = frozenset(conf_state.voters)
        self.learners = frozenset(conf_state.learners)
        self.election_timeout = config.election_tick
        self.heartbeat_timeout = config.heartbeat_tick
        self.pre_vote = config.pre_vote
        self.check_quorum = config.check_quorum
        self.max_msg_size = config.max_size_per_msg
        self.max_inflight = config.max_inflight_msgs

        self.term = 0
        self.vote = 0
        self.lead = 0
        self.role = Role.FOLLOWER
        self.prs = {}
        self.votes = {}
        self.msgs = []
        self.msgs_after_append = []
        self.read_states = []
        self.read_only = ReadOnly()
        self.pending_read_index = []
        self.lead_transferee = 0
        self.pending_conf_index = 0  # a conf change at or below this index may be unapplied
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        self._step = self._step_follower
        self._tick = self._tick_election

        if hard_state != HardState():
            self._load_state(hard_state)
        if config.applied > 0:
            self.log.applied_to(min(config.applied, self.log.committed))
        self.become_follower(self.term, 0)

    def __repr__(self) -> str:
        return f"Raft(id={self.id}, term={self.term}, role={self.role.value}, {self.log!r})"

    # -- role changes ---------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = 0
        self.lead = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(self.election_timeout)
        self.lead_transferee = 0
        self.votes = {}
        last = self.log.last_index()
        self.prs = {}
        for peer in self._all_peers():
            pr = Progress(last + 1, self.max_inflight, is_learner=peer in self.learners)
            if peer == self.id:
                # Only what is durable counts as our own acknowledgement.
                pr.match = self.log.persisted
            self.prs[peer] = pr
        self.read_only.reset()
        self.pending_read_index = []

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # Neither term nor vote change: a pre-candidate disturbs nobody (thesis §9.6).
        self._step = self._step_candidate
        self.votes = {}
        self._tick = self._tick_election
        self.lead = 0
        self.role = Role.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.role is Role.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.role = Role.LEADER
        me = self.prs[self.id]
        me.become_replicate()
        me.recent_active = True
        # Our log may hold a conf change not yet applied: refuse new ones until it is (etcd).
        self.pending_conf_index = self.log.last_index()
        # An empty entry of our own term lets us commit what predecessors left (§6.4).
        self._append_entry([Entry(term=0, index=0)])

    # -- the entry points -----------------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def step(self, m: RaftMessage) -> None:
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum and self.lead != 0 and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    return  # leader lease: we heard from a leader recently (§6.2)
            if m.type is MT.PRE_VOTE:
                pass  # never change term for a pre-vote
            elif m.type is MT.PRE_VOTE_RESP and not m.reject:
                pass  # granted pre-votes carry the future term; we bump it on winning
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, 0)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. behind a healed partition) learns our term and steps
                # down; without this, pre-vote/check-quorum could leave it stuck (etcd #5451).
                self._send(self._msg(MT.APP_RESP, m.from_))
            elif m.type is MT.PRE_VOTE:
                self._send(self._msg(MT.PRE_VOTE_RESP, m.from_, reject=True))
            return

        if m.type is MT.HUP:
            self._hup()
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._vote(m)
        else:
            self._step(m)

    # -- leader ---------------------------------------------------------------------------------

    def _step_leader(self, m: RaftMessage) -> None:
        t = m.type
        if t is MT.BEAT:
            self.bcast_heartbeat()
            return
        if t is MT.CHECK_QUORUM:
            active = [p for p, pr in self.prs.items() if pr.recent_active or p == self.id]
            if not quorum.has_quorum(self.voters, active):
                self.become_follower(self.term, 0)
                return
            for peer, progress in self.prs.items():
                progress.recent_active = peer == self.id
            return
        if t is MT.PROP:
            if not m.entries:
                raise ValueError("raft: proposal without entries")
            if self.lead_transferee:
                raise ProposalDropped("leadership transfer in progress")
            conf_at = [i for i, e in enumerate(m.entries) if e.type == EntryType.CONF_CHANGE]
            if conf_at and self._check_conf_change(m.entries, conf_at):
                self.pending_conf_index = self.log.last_index() + conf_at[-1] + 1
            self._append_entry(m.entries)
            self.bcast_append()
            return
        if t is MT.READ_INDEX:
            self._read_index_as_leader(m)
            return

        pr = self.prs.get(m.from_)
        if pr is None:
            return
        if t is MT.APP_RESP:
            self._on_append_resp(m, pr)
        elif t is MT.HEARTBEAT_RESP:
            self._on_heartbeat_resp(m, pr)
            if m.context:
                self._on_read_ack(m)
        elif t is MT.SNAP_STATUS:
            if pr.state is ProgressState.SNAPSHOT:
                if m.reject:
                    pr.pending_snapshot = 0
                pr.become_probe()
                pr.probe_sent = True  # wait for a heartbeat response before probing again
        elif t is MT.UNREACHABLE:
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
        elif t is MT.TRANSFER_LEADER:
            self._transfer_leadership(m, pr)

    # -- candidate ------------------------------------------------------------------------------

    def _step_candidate(self, m: RaftMessage) -> None:
        my_resp = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        t = m.type
        if t is MT.PROP:
            raise ProposalDropped("no leader: election in progress")
        if t is MT.APP:
            self.become_follower(m.term, m.from_)
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t is MT.SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t is my_resp:
            result = self._poll(m.from_, not m.reject)
            if result is quorum.VoteResult.WON:
                if self.role is Role.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result is quorum.VoteResult.LOST:
                self.become_follower(self.term, 0)

    # -- follower -------------------------------------------------------------------------------

    def _step_follower(self, m: RaftMessage) -> None:
        t = m.type
        if t is MT.PROP:
            if self.lead == 0:
                raise ProposalDropped("no leader")
            self._send(self._msg(MT.PROP, self.lead, entries=m.entries))
        elif t is MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append(m)
        elif t is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t is MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t is MT.TRANSFER_LEADER:
            if self.lead == 0:
                raise ProposalDropped("no leader to transfer leadership")
            # from_ names the transferee, as in etcd (the leader reads it so).
            self._send(RaftMessage(type=MT.TRANSFER_LEADER, to=self.lead, from_=m.from_, term=self.term))
        elif t is MT.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t is MT.READ_INDEX:
            if self.lead == 0:
                return  # dropped, as etcd does: the asker times out
            self._send(self._msg(MT.READ_INDEX, self.lead, context=m.context))
        elif t is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

    # -- local requests (RawNode) ---------------------------------------------------------------

    def report_snapshot(self, to: int, ok: bool) -> None:
        self._step(RaftMessage(type=MT.SNAP_STATUS, from_=to, reject=not ok))

    def report_unreachable(self, to: int) -> None:
        self._step(RaftMessage(type=MT.UNREACHABLE, from_=to))

    def propose(self, data: list[bytes], type_: EntryType = EntryType.NORMAL) -> None:
        entries = [Entry(term=0, index=0, type=type_, data=d) for d in data]
        self.step(RaftMessage(type=MT.PROP, from_=self.id, entries=entries))
