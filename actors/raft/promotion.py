"""When the leader promotes a learner by itself (etcd has only manual promotion, etcd#15107).

Rules and why:
- Only the leader decides: only it tracks every peer's progress (``match``, ``recent_active``).
  A new leader starts counting afresh.
- A learner is *close* while the leader heard from it within an election timeout, it
  replicates (it has acknowledged an append: a new peer counts as active before it ever
  answered) and its ``match`` is at most ``max_lag`` entries behind the leader's last index.
  It becomes ready once it has stayed close for ``stable_ticks`` ticks in a row; falling
  behind (or going silent) once starts the count again. So a learner is never promoted
  while behind, nor on a single lucky acknowledgement while it still catches up.
- Promotion makes the learner a voter and so raises the quorum: it is proposed only when every
  other voter is healthy (heard from within an election timeout, replicating, and itself within
  ``max_lag``), and never while a membership change is pending (single-step changes, see
  ``confchange``). Adding a voter to a cluster that already lost one would leave it one more
  failure from unavailability.
- One promotion at a time, and a learner that was just proposed must be close for another
  ``stable_ticks`` before it is proposed again (a proposal lost with a leader change).

Time reaches the policy as ticks (the raft core's heartbeat ticks), so tests drive it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.raft.progress import ProgressState
from actors.raft.raft import Raft
from actors.raft.state import Role


@dataclass(frozen=True)
class PromotionRules:
    max_lag: int = 1000  # entries behind the leader's last index a learner may be
    stable_ticks: int = 10  # ticks it must have stayed that close
    election_ticks: int = 10  # a peer silent for longer is not healthy


@dataclass(frozen=True)
class PeerView:
    """What the leader's progress tracker says of one peer at one tick."""

    match: int
    recent_active: bool
    replicating: bool


@dataclass(frozen=True)
class Observation:
    """The raft core at one tick, as far as promotion cares (``learners``: only those the
    member table lets the leader promote)."""

    is_leader: bool
    leader_id: int
    last_index: int
    conf_pending: bool
    voters: dict[int, PeerView]
    learners: dict[int, PeerView]


class AutoPromoter:
    def __init__(self, rules: PromotionRules) -> None:
        self.rules = rules
        self.now = 0
        self._close_since: dict[int, int] = {}  # learner -> tick since which it stays close
        self._heard: dict[int, int] = {}  # peer -> last tick it was seen recently active

    def tick(self, obs: Observation) -> int | None:
        """One tick; returns the learner to promote now, if any."""
        self.now += 1
        voters, learners, last_index = obs.voters, obs.learners, obs.last_index
        if not obs.is_leader:
            self._close_since.clear()
            self._heard.clear()
            return None
        for peer, view in {**voters, **learners}.items():
            if view.recent_active:
                self._heard[peer] = self.now
        for gone in set(self._close_since) - set(learners):
            del self._close_since[gone]
        for learner, view in learners.items():
            # Replicating: it answered an append (a new peer counts as active before it ever
            # answered, and its match of 0 may be within the distance of a short log).
            if view.replicating and self._healthy(learner, view, last_index):
                self._close_since.setdefault(learner, self.now)
            else:
                self._close_since.pop(learner, None)
        if obs.conf_pending:
            return None
        for voter, view in voters.items():
            if voter != obs.leader_id and not (view.replicating and self._healthy(voter, view, last_index)):
                return None
        stable = self.rules.stable_ticks
        ready = [p for p, since in sorted(self._close_since.items()) if self.now - since >= stable]
        if not ready:
            return None
        self._close_since[ready[0]] = self.now  # proposed: wait a full period before again
        return ready[0]

    def _healthy(self, peer: int, view: PeerView, last_index: int) -> bool:
        heard = self._heard.get(peer)
        recent = heard is not None and self.now - heard <= self.rules.election_ticks
        return recent and last_index - view.match <= self.rules.max_lag


def observe(raft: Raft, promotable: set[int]) -> Observation:
    """What ``AutoPromoter.tick`` needs, as ``raft`` (the core) sees it now."""
    is_leader = raft.role is Role.LEADER

    def view(peer: int) -> PeerView:
        pr = raft.prs[peer]
        return PeerView(pr.match, pr.recent_active, pr.state is ProgressState.REPLICATE)

    peers = raft.prs if is_leader else {}
    return Observation(
        is_leader=is_leader,
        leader_id=raft.id,
        last_index=raft.log.last_index(),
        conf_pending=raft.pending_conf_index > raft.log.applied,
        voters={p: view(p) for p in peers if p in raft.voters},
        learners={p: view(p) for p in peers if p in raft.learners and p in promotable},
    )
