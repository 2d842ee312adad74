"""The Raft state machine (etcd-raft's ``raft.go``): ``step(msg)`` and ``tick()``, no I/O.

Rules and why:
- One entry point, ``step``. It first reconciles terms (thesis §3.3: a higher term turns
  anyone into a follower; a lower-term message is answered or dropped), then handles votes,
  then hands the message to the role's step function (``_step_leader`` / ``_step_follower`` /
  ``_step_candidate``), swapped on every role change instead of ``if role == ...`` tangles.
- Elections: a follower that hears nothing for a randomized timeout in
  [election_tick, 2*election_tick) campaigns (§3.4). With ``pre_vote`` it first asks whether it
  could win without bumping its term, so a partitioned node rejoining does not disrupt the
  cluster by term inflation (§9.6).
- Leader lease / check-quorum (§6.2, §9.6): a leader that did not hear from a quorum within an
  election timeout steps down; a follower that heard from a leader within the election timeout
  ignores (pre-)vote requests, unless they carry the leader-transfer context.
- Durability (the asynchronous storage model, as etcd-raft's async storage writes): messages
  whose meaning depends on our durable state -- append and vote responses, and our own vote
  requests (our term and self-vote must be durable before anybody can vote for us, §3.8) --
  go to ``msgs_after_append``: the shell sends them only after the Ready carrying the state
  they depend on is durable. Everything else goes to ``msgs`` and may leave at once: the
  leader replicates in parallel with its own fsync (§10.2.1) and counts itself in a quorum only
  once the WAL acknowledges (``on_persisted``).
- Commitment: the leader commits an index once a majority durably matched it *and* the entry
  is from its current term (§3.6.2, Figure 3.7, "Figure 8"). Earlier entries commit
  indirectly. A new leader appends an empty entry to commit its predecessors' entries (§6.4).
- Replication: per-follower ``Progress`` (probe/replicate, pipelining bounded by
  ``max_inflight_msgs``, batching bounded by ``max_size_per_msg`` bytes). A rejected append
  carries the follower's hint (index, term) so the leader skips a whole conflicting term at
  once (§3.5, etcd's ``findConflictByTerm``).
- ReadIndex (§6.4): see ``readonly.py``; a leader that has not committed in its term queues
  reads until it has; a follower forwards reads to the leader.
- Leader transfer (§3.10): the leader brings the target up to date, then sends TIMEOUT_NOW;
  the target campaigns at once, skipping pre-vote and lease checks. Proposals are refused
  meanwhile; the transfer aborts after an election timeout.
- Membership (single-step changes and learners, thesis §4; the rules are in ``confchange``):
  the configuration changes when the shell applies a committed conf change. Only voters vote,
  count in quorums and campaign; learners and members not yet (or no longer) in the
  configuration still accept appends, heartbeats and snapshots. A removed leader steps down.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.raft import confchange, quorum
from actors.raft.log import RaftLog
from actors.raft.progress import Progress, ProgressState
from actors.raft.readonly import ReadOnly, ReadRequest
from actors.raft.storage import Storage, StorageError, entry_size
from proto_schemas.codec import DecodeError, decode
from proto_schemas.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    RaftMessage,
    ReadState,
    Snapshot,
)

MT = MessageType

CAMPAIGN_TRANSFER = b"CampaignTransfer"  # vote context that bypasses the leader lease

#: Message types that only make sense inside one node, never from the network.
LOCAL_MESSAGES = frozenset({MT.HUP, MT.BEAT, MT.UNREACHABLE, MT.SNAP_STATUS, MT.CHECK_QUORUM})

#: Responses whose meaning depends on our durable state (see the module docstring).
_AFTER_APPEND = frozenset({MT.APP_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP, MT.VOTE})


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    PRE_CANDIDATE = "pre_candidate"
    LEADER = "leader"


class LogLost(Exception):
    """The leader knows we acknowledged entries we no longer have: our durable log was lost
    or truncated behind raft's back (etcd panics here). Only an operator can repair it."""


class ProposalDropped(Exception):
    """A proposal (or leader transfer) could not be accepted: no leader, the leader is
    transferring leadership, or a membership change is not allowed now (see ``confchange``).
    Definite: the entry was not appended anywhere."""


@dataclass(frozen=True)
class SoftState:
    leader: int
    role: Role


@dataclass
class Config:
    id: int
    voters: list[int]
    learners: list[int] = field(default_factory=list)
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_committed_size_per_ready: int = 1 << 20
    applied: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def validate(self) -> None:
        if self.id <= 0:
            raise ValueError("raft: id must be a positive integer")
        if self.heartbeat_tick <= 0:
            raise ValueError("raft: heartbeat_tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("raft: election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("raft: max_inflight_msgs must be greater than 0")
        if set(self.voters) & set(self.learners):
            raise ValueError("raft: a node cannot be both voter and learner")


class Raft:
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
        self.voters: frozenset[int] = frozenset(conf_state.voters)
        self.learners: frozenset[int] = frozenset(conf_state.learners)
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
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[RaftMessage] = []
        self.msgs_after_append: list[RaftMessage] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index: list[RaftMessage] = []
        self.lead_transferee = 0
        self.pending_conf_index = 0  # a conf change at or below this index may be unapplied
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout
        self._step: Callable[[RaftMessage], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        if hard_state != HardState():
            self._load_state(hard_state)
        if config.applied > 0:
            self.log.applied_to(min(config.applied, self.log.committed))
        self.become_follower(self.term, 0)

    def __repr__(self) -> str:
        return f"Raft(id={self.id}, term={self.term}, role={self.role.value}, {self.log!r})"

    # -- state views --------------------------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(leader=self.lead, role=self.role)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def _load_state(self, hs: HardState) -> None:
        # A WAL torn between entries and hard state cannot hold a commit beyond its last entry;
        # clamp defensively (commit is knowledge, not a promise we can lose).
        self.log.commit_to(min(hs.commit, self.log.last_index()))
        self.term = hs.term
        self.vote = hs.vote

    @property
    def promotable(self) -> bool:
        return self.id in self.voters

    def _all_peers(self) -> list[int]:
        return sorted(self.voters | self.learners)

    # -- sending --------------------------------------------------------------------------------

    def _send(self, msg: RaftMessage) -> None:
        if msg.type in _AFTER_APPEND:
            self.msgs_after_append.append(msg)
        else:
            self.msgs.append(msg)

    def _msg(self, type_: MessageType, to: int, **kw: object) -> RaftMessage:
        kw.setdefault("term", self.term)
        return RaftMessage(type=type_, to=to, from_=self.id, **kw)  # type: ignore[arg-type]

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

    # -- elections ------------------------------------------------------------------------------

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

    # -- ticks ----------------------------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

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

    # -- the entry point ------------------------------------------------------------------------

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
        else:
            self._step(m)

    # -- leader ---------------------------------------------------------------------------------

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
            if len(self.voters) == 1 and self.id in self.voters:
                self._respond_read(ReadRequest(self.log.committed, m.from_, m.context))
            elif not self._committed_in_current_term():
                self.pending_read_index.append(m)  # §6.4 step 1: wait for our first commit
            else:
                self._send_read_index(m)
            return

        pr = self.prs.get(m.from_)
        if pr is None:
            return
        if t is MT.APP_RESP:
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
        elif t is MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self._send_append(m.from_)
            if m.context:
                acks = self.read_only.recv_ack(m.from_, m.context)
                if acks is not None and quorum.has_quorum(self.voters, acks):
                    for req in self.read_only.advance(m.context):
                        self._respond_read(req)
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
            target = m.from_
            if pr.is_learner or target == self.id or target == self.lead_transferee:
                return
            self.lead_transferee = target
            self.election_elapsed = 0  # the transfer must finish within an election timeout
            if pr.match == self.log.last_index():
                self._send(self._msg(MT.TIMEOUT_NOW, target))
            else:
                self._send_append(target)

    def _send_read_index(self, m: RaftMessage) -> None:
        self.read_only.add_request(self.log.committed, m.from_, m.context)
        # The heartbeat round starts when the RawNode assembles the next Ready (batching).

    def flush_read_round(self) -> None:
        """Start one heartbeat round for every read that arrived since the last round."""
        if self.role is Role.LEADER and self.read_only.has_unsent():
            self.bcast_heartbeat(self.read_only.start_round(self.id))

    def _respond_read(self, req: ReadRequest) -> None:
        if req.from_ in (0, self.id):
            self.read_states.append(ReadState(index=req.index, request_ctx=req.ctx))
        else:
            self._send(self._msg(MT.READ_INDEX_RESP, req.from_, index=req.index, context=req.ctx))

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

    # -- membership -------------------------------------------------------------------------------

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

    def report_snapshot(self, to: int, ok: bool) -> None:
        self._step(RaftMessage(type=MT.SNAP_STATUS, from_=to, reject=not ok))

    def report_unreachable(self, to: int) -> None:
        self._step(RaftMessage(type=MT.UNREACHABLE, from_=to))

    # -- local requests (RawNode) ---------------------------------------------------------------

    def propose(self, data: list[bytes], type_: EntryType = EntryType.NORMAL) -> None:
        entries = [Entry(term=0, index=0, type=type_, data=d) for d in data]
        self.step(RaftMessage(type=MT.PROP, from_=self.id, entries=entries))
