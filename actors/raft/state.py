"""The Raft node's vocabulary and shared state: roles, config, errors, and how a message leaves.

Rules and why:
- Durability (the asynchronous storage model, as etcd-raft's async storage writes): messages
  whose meaning depends on our durable state -- append and vote responses, and our own vote
  requests (our term and self-vote must be durable before anybody can vote for us, §3.8) --
  go to ``msgs_after_append``: the shell sends them only after the Ready carrying the state
  they depend on is durable. Everything else goes to ``msgs`` and may leave at once: the
  leader replicates in parallel with its own fsync (§10.2.1) and counts itself in a quorum only
  once the WAL acknowledges (``on_persisted``).
- The node's parts (``replication.py``, ``read_index.py``, ``reconfig.py``, ``election.py``)
  share the state declared here; ``raft.py`` puts them together.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.raft.log import RaftLog
from actors.raft.progress import Progress
from actors.raft.readonly import ReadOnly
from proto_schemas.raft import HardState, MessageType, RaftMessage, ReadState

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


class RaftBase:
    """The state every part of the node reads and writes (set up by ``Raft.__init__``)."""

    id: int
    config: Config
    rng: random.Random
    log: RaftLog
    voters: frozenset[int]
    learners: frozenset[int]
    election_timeout: int
    heartbeat_timeout: int
    pre_vote: bool
    check_quorum: bool
    max_msg_size: int
    max_inflight: int
    term: int
    vote: int
    lead: int
    role: Role
    prs: dict[int, Progress]
    votes: dict[int, bool]
    msgs: list[RaftMessage]
    msgs_after_append: list[RaftMessage]
    read_states: list[ReadState]
    read_only: ReadOnly
    pending_read_index: list[RaftMessage]
    lead_transferee: int
    pending_conf_index: int  # a conf change at or below this index may be unapplied
    election_elapsed: int
    heartbeat_elapsed: int
    randomized_election_timeout: int
    _step: Callable[[RaftMessage], None]
    _tick: Callable[[], None]

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
