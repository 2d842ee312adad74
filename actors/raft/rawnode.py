"""The raft core's public face (etcd-raft's ``RawNode`` with asynchronous storage writes).

The shell loop: ``step`` every peer message, ``tick`` when due, then while ``has_ready()``:
take ``ready()``, hand its parts out, ``advance(ready)``; call ``on_persisted(index, term)``
when the WAL reports durability.

Rules of a Ready (why each part may leave when it may):
- ``entries``, ``hard_state`` and ``snapshot`` go to the WAL, in Ready order; an entry at an
  index at or below the last written one replaces that suffix.
- ``messages`` may be sent at once (appends and heartbeats: a leader replicates in parallel
  with its own fsync, thesis §10.2.1).
- ``messages_after_persist`` leave only once this Ready's entries and hard state (and every
  earlier Ready's) are durable: append/vote responses and our own vote requests promise
  durable state (thesis §3.8).
- ``committed_entries`` are committed *and* locally durable; apply them in order.
- ``read_states``: a linearizable read may be served once applied >= ``index`` (§6.4).
- Between ``ready()`` and ``advance()`` the caller must not ``step``/``tick`` the node: the
  Ready describes the node at one instant (the shell is single-threaded, so it does not).
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.raft import confchange
from actors.raft.raft import Raft
from actors.raft.state import LOCAL_MESSAGES, Config, LogLost, ProposalDropped, Role, SoftState
from actors.raft.storage import Storage
from proto_schemas.codec import encode
from proto_schemas.raft import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MessageType,
    RaftMessage,
    ReadState,
    Snapshot,
)

__all__ = [
    "Config",
    "LogLost",
    "ProposalDropped",
    "RawNode",
    "Ready",
    "Role",
    "SoftState",
    "Status",
]


@dataclass(frozen=True)
class Ready:
    soft_state: SoftState | None
    hard_state: HardState | None
    entries: list[Entry]
    snapshot: Snapshot | None
    committed_entries: list[Entry]
    messages: list[RaftMessage]
    messages_after_persist: list[RaftMessage]
    read_states: list[ReadState]

    def contains_updates(self) -> bool:
        return bool(
            self.soft_state is not None
            or self.hard_state is not None
            or self.entries
            or self.snapshot is not None
            or self.committed_entries
            or self.messages
            or self.messages_after_persist
            or self.read_states
        )


def must_sync(
    term_vote: tuple[int, int], prev_term_vote: tuple[int, int], entries: bool, snapshot: bool
) -> bool:
    """Whether a write to the log must be durable before raft acts on it (etcd's ``MustSync``):
    new entries, a snapshot, or a new term or vote. A hard state whose commit alone moved need
    not be: commit is knowledge a member learns again from the leader, never a promise."""
    return entries or snapshot or term_vote != prev_term_vote


@dataclass(frozen=True)
class Status:
    id: int
    term: int
    vote: int
    leader: int
    role: Role
    commit: int
    applied: int
    last_index: int
    persisted: int
    voters: list[int]
    learners: list[int]


class RawNode:
    def __init__(self, config: Config, storage: Storage) -> None:
        self.raft = Raft(config, storage)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    # -- input ----------------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def step(self, msg: RaftMessage) -> None:
        """A message from a peer. Local-only types, and responses from unknown peers, are
        ignored -- but for the leader's answer to a ReadIndex: a member that joined knows its
        leader before it has applied the conf changes that name it; a forwarded proposal the
        leader cannot take is dropped (the follower's client times out, as with etcd)."""
        if msg.type in LOCAL_MESSAGES:
            return
        if msg.from_ not in self.raft.prs and msg.type in _RESPONSES:
            if not (msg.type is MessageType.READ_INDEX_RESP and msg.from_ == self.raft.lead):
                return
        try:
            self.raft.step(msg)
        except ProposalDropped:
            pass

    def propose(self, *data: bytes) -> None:
        """Append ``data`` to the log (or forward it to the leader), as one proposal: a batch
        costs one append per follower, not one per entry. Raises ProposalDropped (for all of
        them) when there is no leader or leadership is being transferred."""
        self.raft.propose(list(data))

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; answered by a ReadState carrying ``ctx``.
        Dropped silently without a leader (check ``status.leader`` first)."""
        self.raft.step(RaftMessage(type=MessageType.READ_INDEX, from_=self.raft.id, context=ctx))

    def campaign(self) -> None:
        """Start an election now (with pre-vote when configured)."""
        self.raft.step(RaftMessage(type=MessageType.HUP, from_=self.raft.id))

    def transfer_leader(self, to: int) -> None:
        """Ask the leader to hand leadership to ``to`` (raises ProposalDropped if no leader)."""
        self.raft.step(RaftMessage(type=MessageType.TRANSFER_LEADER, from_=to))

    def on_persisted(self, index: int, term: int) -> None:
        self.raft.on_persisted(index, term)

    # -- membership -----------------------------------------------------------------------------

    def bootstrap(self, changes: list[ConfChange]) -> None:
        """Start a new cluster (etcd's ``RawNode.Bootstrap``): entries 1..n carry the initial
        members' changes at term 1, committed at once and applied to the configuration at once,
        so that the node knows its voters before anything is durable. The next Ready carries
        them and the hard state (term 1, commit n) to persist; they come back as committed
        entries, and applying them again changes nothing. Every initial member bootstraps the
        same changes in the same order, so their logs agree."""
        r = self.raft
        if not changes:
            raise ValueError("raft: bootstrap needs at least one member")
        if r.log.last_index() != 0:
            raise ValueError("raft: bootstrap needs an empty log (this node already has one)")
        entries = [
            Entry(term=1, index=i + 1, type=EntryType.CONF_CHANGE, data=encode(cc))
            for i, cc in enumerate(changes)
        ]
        r.become_follower(1, 0)
        r.log.append(entries)
        r.log.commit_to(len(entries))
        for cc in changes:
            r.apply_conf_change(cc)

    def propose_conf_change(self, change: ConfChange) -> None:
        """Propose a single-step membership change (see ``confchange``). Raises
        ProposalDropped without a leader, during a leader transfer, while an earlier change is
        not applied yet, or for a change that would remove or demote the last voter. A
        follower forwards it; a leader that refuses it then drops it (the caller times out)."""
        r = self.raft
        reason = confchange.refusal(r.voters, r.learners, change)
        if reason is not None:
            raise ProposalDropped(reason)
        r.propose([encode(change)], EntryType.CONF_CHANGE)

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed conf change to the configuration: call it for every committed
        CONF_CHANGE entry, in log order, while handling the Ready that carries it."""
        return self.raft.apply_conf_change(change)

    @property
    def conf_state(self) -> ConfState:
        """The configuration as of the last applied conf change (or snapshot)."""
        return self.raft.conf_state()

    def report_snapshot(self, to: int, ok: bool) -> None:
        """The snapshot sent to ``to`` was delivered (or failed): the leader resumes probing."""
        self.raft.report_snapshot(to, ok)

    def match_of(self, peer: int) -> int | None:
        """How far the leader knows ``peer``'s log matches its own (None if not leader)."""
        if self.raft.role is not Role.LEADER or peer not in self.raft.prs:
            return None
        return self.raft.prs[peer].match

    @property
    def replicates(self) -> bool:
        """Whether a round reaches another member (a voter or a learner) than this one."""
        return len(self.raft.prs) > 1

    def report_unreachable(self, to: int) -> None:
        """A message to ``to`` could not be sent: stop pipelining to it, probe instead."""
        self.raft.report_unreachable(to)

    # -- output ---------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        log = r.log
        soft, hard = self._prev_soft, self._prev_hard
        return bool(  # the states compared field by field: this runs on every turn of the loop
            r.lead != soft.leader
            or r.role is not soft.role
            or r.term != hard.term
            or r.vote != hard.vote
            or log.committed != hard.commit
            or log.unstable.next_entries()
            or log.unstable.next_snapshot() is not None
            or log.has_next_committed_entries()
            or r.msgs
            or r.msgs_after_append
            or r.read_states
            or (r.role is Role.LEADER and r.read_only.has_unsent())
        )

    def ready(self) -> Ready:
        r = self.raft
        r.flush_read_round()  # one heartbeat round for every read since the last Ready
        soft = r.soft_state()
        hard = r.hard_state()
        return Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard else None,
            entries=list(r.log.unstable.next_entries()),
            snapshot=r.log.unstable.next_snapshot(),
            committed_entries=r.log.next_committed_entries(),
            messages=list(r.msgs),
            messages_after_persist=list(r.msgs_after_append),
            read_states=list(r.read_states),
        )

    def advance(self, rd: Ready) -> None:
        r = self.raft
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        last = rd.entries[-1].index if rd.entries else 0
        r.log.unstable.accept_in_progress(last, rd.snapshot is not None)
        if rd.snapshot is not None:
            r.log.applied_to(rd.snapshot.metadata.index)
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
        del r.msgs[: len(rd.messages)]
        del r.msgs_after_append[: len(rd.messages_after_persist)]
        del r.read_states[: len(rd.read_states)]

    def handed_out(self, lo: int, max_size: int) -> tuple[int, list[list[Entry]]]:
        """The committed entries from ``lo`` that were handed out to be applied already, in
        chunks of about ``max_size`` bytes, for an apply worker that asks again; and the index
        they start at: ``lo``, or the first one the log still has if ``lo`` was compacted."""
        log = self.raft.log
        start = max(lo, log.first_index())
        chunks: list[list[Entry]] = []
        at = start
        while at <= log.applied:
            chunks.append(log.slice(at, log.applied + 1, max_size))  # at least one entry
            at = chunks[-1][-1].index + 1
        return start, chunks

    # -- views ----------------------------------------------------------------------------------

    def position(self) -> tuple[int, int, int]:
        """(term, leader, commit): what a status report depends on, without building one."""
        r = self.raft
        return r.term, r.lead, r.log.committed

    @property
    def status(self) -> Status:
        r = self.raft
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            leader=r.lead,
            role=r.role,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            persisted=r.log.persisted,
            voters=sorted(r.voters),
            learners=sorted(r.learners),
        )


_RESPONSES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.READ_INDEX_RESP,
    }
)
