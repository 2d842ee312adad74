"""Deterministic simulation of a raft cluster (TigerBeetle VOPR / FoundationDB style).

Safety phase: a seeded fake network drops, delays, reorders and duplicates messages, splits and
heals partitions; nodes crash (losing un-fsynced writes) and restart from their disk; clients
propose values and ask for read indexes. Every invariant in ``raft_cluster`` is checked after
every event. Liveness phase: everything heals, every node restarts; once a leader is stable,
proposals made through it must be applied by every member.

Membership (half the seeds): the cluster is bootstrapped; now and then the leader removes a
voter other than itself and, later, a new member with an empty disk and a new id joins (as a
voter, or as a learner promoted afterwards); leaders compact their logs now and then, so a
joining member may catch up by snapshot. A removed member is stopped for good once its removal
is committed, as an etcd member shuts itself down.

Every run of the suite tries 1,000 seeds (``ETCDZ_SIM_SEEDS`` changes that). A failure names
its seed; replay (with a trace) by::

    .venv/bin/python tests/sim/test_raft_sim.py SEED [NODES]
"""

from __future__ import annotations

import os
import random
import sys

import pytest
from raft_cluster import Cluster

from actors.raft.rawnode import Role
from proto_schemas.raft import ConfChangeType, ConfState

ADD = ConfChangeType.ADD_NODE
ADD_LEARNER = ConfChangeType.ADD_LEARNER_NODE
REMOVE = ConfChangeType.REMOVE_NODE

TICK = 10  # time units per tick; message delays are mostly below a tick
P_MEMBERSHIP = 0.004  # per time unit, in the membership seeds: a change or a compaction
SAFETY_TIME = 2500
LIVENESS_TIME = 3000


class Membership:
    """The simulation's operator: changes the membership one step at a time through the
    leader, and retires removed members once their removal is committed."""

    def __init__(self, c: Cluster, n: int, rng: random.Random) -> None:
        self.c = c
        self.n = n
        self.rng = rng
        self.next_id = n + 1
        self.joining = 0  # a started member not yet in the configuration
        self.retired: set[int] = set()

    def config(self) -> ConfState | None:
        """The latest committed configuration (the last conf change anybody applied)."""
        c = self.c
        return c.conf_at[max(c.conf_at)] if c.conf_at else None

    def members(self) -> list[int]:
        cfg = self.config()
        live = [i for i in self.c.ids if self.c.nodes[i].up]
        return [i for i in live if cfg is None or i in cfg.voters or i in cfg.learners]

    def retire_removed(self) -> None:
        cfg = self.config()
        if cfg is None:
            return
        for i in self.c.ids:
            if i not in cfg.voters and i not in cfg.learners and i != self.joining and i not in self.retired:
                self.retired.add(i)
                if self.c.nodes[i].up:
                    self.c.crash(i)
        if self.joining in cfg.voters:
            self.joining = 0

    def step(self) -> None:
        c, rng = self.c, self.rng
        cfg, lead = self.config(), c.leader()
        if cfg is None or lead is None:
            return
        if rng.random() < 0.3:
            c.compact(lead)
            return
        if len(cfg.voters) >= self.n:
            victims = [v for v in cfg.voters if v != lead]
            c.propose_conf_change(lead, REMOVE, rng.choice(victims))
            return
        if not self.joining:
            self.joining = self.next_id
            self.next_id += 1
            c.add_node(self.joining)
        as_learner = self.joining not in cfg.learners and rng.random() < 0.5
        c.propose_conf_change(lead, ADD_LEARNER if as_learner else ADD, self.joining)


def run(seed: int, n: int, trace: bool = False) -> Cluster:
    rng = random.Random(seed * 7919 + n)
    membership = seed % 4 in (1, 2)
    c = Cluster(n, seed, bootstrap=membership, trace=trace)
    ops = Membership(c, n, random.Random(seed)) if membership else None
    harsh = seed % 2 == 0  # half the seeds: slow disks, frequent crashes and partitions
    c.drop_rate = 0.05
    c.dup_rate = 0.03
    p_prop, p_read, p_part, p_heal, p_crash = (
        (0.06, 0.07, 0.075, 0.08, 0.085) if harsh else (0.03, 0.04, 0.043, 0.047, 0.049)
    )

    def delay() -> int:
        return rng.randint(0, 60) if rng.random() < 0.05 else rng.randint(0, 12)

    c.delay = delay
    c.disk_delay = (lambda: rng.randint(0, 30)) if harsh else (lambda: rng.randint(0, 8))
    phase = {i: rng.randrange(TICK) for i in c.ids}
    down_until: dict[int, int] = {}
    proposals = 0
    reads = 0

    def step_time() -> None:
        c.now += 1
        c.complete_due_writes()
        c.deliver_due()
        for i in c.ids:
            if i not in phase:
                phase[i] = rng.randrange(TICK)  # a member that just joined
            if c.nodes[i].up and c.now % TICK == phase[i]:
                c.tick(i)
        if ops is not None:
            ops.retire_removed()

    # -- safety phase -------------------------------------------------------------------------
    while c.now < SAFETY_TIME:
        step_time()
        r = rng.random()
        live = [i for i in c.ids if c.nodes[i].up]
        if r < p_prop and live:
            proposals += 1
            target = c.leader() if rng.random() < 0.7 else rng.choice(live)
            if target is not None and c.nodes[target].up:
                c.propose(target, f"s{seed}-{proposals}".encode())
        elif r < p_read and live:
            reads += 1
            target = rng.choice(live)
            if c.node(target).status.leader:
                c.read_index(target, f"r{target}-{reads}".encode())
        elif r < p_part:
            ids = list(c.ids)
            rng.shuffle(ids)
            k = rng.randint(1, n // 2)
            c.partition(ids[:k], ids[k:])
            c.log(f"partition {ids[:k]} | {ids[k:]}")
        elif r < p_heal:
            c.heal()
            c.log("heal")
        elif r < p_crash and live:
            victim = rng.choice(live)
            c.crash(victim)
            down_until[victim] = c.now + (rng.randint(0, 40) if harsh else rng.randint(20, 300))
        elif r < p_crash + P_MEMBERSHIP and ops is not None:
            ops.step()
        for i, t in list(down_until.items()):
            if t <= c.now:
                del down_until[i]
                if ops is None or i not in ops.retired:
                    c.restart(i)

    # -- liveness phase -----------------------------------------------------------------------
    c.heal()
    c.drop_rate = 0.0
    c.dup_rate = 0.0
    c.delay = lambda: rng.randint(0, 12)
    for i in list(down_until):
        if ops is None or i not in ops.retired:
            c.restart(i)
    down_until.clear()

    def members() -> list[int]:
        return ops.members() if ops is not None else c.ids

    deadline = c.now + LIVENESS_TIME
    stable_since: tuple[int, int] | None = None
    while c.now < deadline:
        step_time()
        lead = c.leader()
        # Stable: everybody follows the leader, which applied its whole log (so no change
        # proposed before the healing is still to take effect, such as its own removal).
        if (
            lead is not None
            and c.node(lead).status.applied == c.node(lead).status.last_index
            and all(
                c.node(i).status.leader == lead and c.node(i).status.term == c.node(lead).status.term
                for i in members()
            )
        ):
            stable_since = (lead, c.node(lead).status.term)
            break
    assert stable_since is not None, f"seed {seed}: no stable leader after healing"
    lead, term = stable_since
    want = [f"l{seed}-{k}".encode() for k in range(5)]
    for v in want:
        assert c.propose(lead, v), f"seed {seed}: stable leader {lead} dropped a proposal"
    while c.now < deadline:
        step_time()
        if all(set(want) <= set(c.applied_data(i)) for i in members()):
            break
    st = c.node(lead).status
    assert st.role is Role.LEADER and st.term == term, (
        f"seed {seed}: leadership changed without faults ({lead}@{term} -> {st})"
    )
    for i in members():
        got = c.applied_data(i)
        assert set(want) <= set(got), f"seed {seed}: node {i} did not apply {want}: {got[-8:]}"
    # every node applied the same sequence
    seqs = [[(e.index, e.term, e.data) for e in c.nodes[i].applied] for i in members()]
    longest = max(seqs, key=len)
    for s in seqs:
        assert s == longest[: len(s)], f"seed {seed}: applied sequences diverge"
    return c


# A thousand seeds per run of the suite; ETCDZ_SIM_SEEDS=N runs N (for a long soak).
_N = int(os.environ.get("ETCDZ_SIM_SEEDS", "1000"))
SEEDS_3 = range(0, _N * 3 // 4)
SEEDS_5 = range(100_000, 100_000 + _N - _N * 3 // 4)


def run_named(seed: int, n: int) -> None:
    try:
        run(seed, n)
    except AssertionError as e:
        replay = f".venv/bin/python tests/sim/test_raft_sim.py {seed} {n}"
        raise AssertionError(f"seed {seed}, {n} nodes: {e}\nreplay: {replay}") from e


@pytest.mark.parametrize("seed", SEEDS_3)
def test_sim_three_nodes(seed: int) -> None:
    run_named(seed, 3)


@pytest.mark.parametrize("seed", SEEDS_5)
def test_sim_five_nodes(seed: int) -> None:
    run_named(seed, 5)


def test_same_seed_replays_exactly() -> None:
    a = run(7, 3)
    b = run(7, 3)
    assert [x.applied for x in a.nodes.values()] == [x.applied for x in b.nodes.values()]
    assert a.leaders == b.leaders


if __name__ == "__main__":
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    nodes = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    c = run(seed, nodes, trace=True)
    print(f"seed {seed} ok: leaders by term {c.leaders}, committed {len(c.committed)}")
