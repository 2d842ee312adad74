"""The nemesis: faults injected into a running local cluster, each undone by ``heal()``.

Member faults: kill -9 of a whole member (leader, follower or any) and its restart from its data
dir, kill -9 of one actor (the supervisor restarts it alone, or the member), SIGSTOP of one
actor (hung: its supervisor kills it once its heartbeat stops), SIGSTOP/SIGCONT pauses.
Network faults, through the raft transport's fault hook: partitions (majority/minority, the
leader isolated, a bridge), frame loss and delay. Crash points inside the WAL writer and the
apply worker are armed by environment (``actors.runtime.failpoints``) when a member starts.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable

from proto_schemas.cluster import PeerFaults
from tools.cluster import LocalCluster, Member

ACTORS = ("wal", "raft", "mvcc", "apply", "lease", "gateway")


class Nemesis:
    def __init__(
        self, cluster: LocalCluster, rng: random.Random, log: Callable[[str], None] = lambda _: None
    ) -> None:
        self.cluster = cluster
        self.rng = rng
        self.log = log
        self.down: list[Member] = []  # killed, to be restarted
        self.paused: list[Member] = []
        self.hung: list[int] = []  # actor pids stopped alone (the supervisor may kill them first)
        self.faulty = False  # network faults in force

    # -- choosing members ------------------------------------------------------------------------
    def pick(self, which: str) -> Member:
        """ "leader", "follower" or "any" of the running members."""
        up = self.cluster.running()
        if which == "any":
            return self.rng.choice(up)
        try:
            leader = self.cluster.leader(timeout=5)
        except TimeoutError:
            return self.rng.choice(up)
        if which == "leader":
            return leader
        return self.rng.choice([m for m in up if m is not leader] or up)

    # -- member faults ---------------------------------------------------------------------------
    def kill(self, which: str = "any") -> Member:
        member = self.pick(which)
        self.log(f"kill -9 {member.name} ({which})")
        self.cluster.kill(member)
        self.down.append(member)
        return member

    def kill_actor(self, actor: str, which: str = "any") -> Member:
        member, _ = self._signal_actor(actor, which, signal.SIGKILL, "kill -9")
        return member

    def hang_actor(self, actor: str, which: str = "any") -> Member:
        """SIGSTOP one actor: alive to its supervisor's waitpid, serving nothing (a hung
        process), until its heartbeat is missed and it is killed, or until ``heal``."""
        member, pid = self._signal_actor(actor, which, signal.SIGSTOP, "SIGSTOP")
        if pid is not None:
            self.hung.append(pid)
        return member

    def _signal_actor(self, actor: str, which: str, sig: int, what: str) -> tuple[Member, int | None]:
        member = self.pick(which)
        pid = member.actor_pids().get(actor)
        self.log(f"{what} the {actor} of {member.name}")
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pid = None
        return member, pid

    def pause(self, which: str = "any") -> Member:
        member = self.pick(which)
        self.log(f"SIGSTOP {member.name} ({which})")
        self._signal(member, signal.SIGSTOP)
        self.paused.append(member)
        return member

    def _signal(self, member: Member, sig: int) -> None:
        for pid in [member.pid, *member.actor_pids().values()]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # -- network faults --------------------------------------------------------------------------
    def partition(self, kind: str) -> None:
        """ "minority" (a random member alone), "leader" (the leader alone), "bridge" (two halves
        that only one member sees both of: with 3 members, the outer two cut from each other)."""
        members = self.cluster.running()
        if kind == "leader":
            alone = self.pick("leader")
            groups = [[alone], [m for m in members if m is not alone]]
        elif kind == "bridge" and len(members) >= 3:
            shuffled = self.rng.sample(members, len(members))
            bridge, rest = shuffled[0], shuffled[1:]
            half = len(rest) // 2
            left, right = rest[:half], rest[half:]
            self.log(f"bridge {bridge.name} between {[m.name for m in left]} and {[m.name for m in right]}")
            for m in left:
                m.inject(PeerFaults(blocked=[r.member_id for r in right]))
            for m in right:
                m.inject(PeerFaults(blocked=[r.member_id for r in left]))
            self.faulty = True
            return
        else:
            alone = self.rng.choice(members)
            groups = [[alone], [m for m in members if m is not alone]]
        self.log(f"partition {[[m.name for m in g] for g in groups]}")
        self.cluster.partition(*groups)
        self.faulty = True

    def lossy(self, drop_percent: int, delay_ms: int) -> None:
        self.log(f"network: drop {drop_percent}%, delay {delay_ms} ms")
        for m in self.cluster.running():
            m.inject(PeerFaults(drop_percent=drop_percent, delay_ms=delay_ms))
        self.faulty = True

    # -- healing ---------------------------------------------------------------------------------
    def heal(self) -> None:
        """Undo every fault: resume paused members, lift network faults, restart killed
        members (from their data dirs), and wait until every member serves."""
        for member in self.paused:
            self._signal(member, signal.SIGCONT)
        self.paused.clear()
        for pid in self.hung:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # killed by its supervisor as hung, and restarted
        self.hung.clear()
        if self.faulty:
            self.cluster.heal()
            self.faulty = False
        for member in self.down:
            self.cluster.start(member)
        self.down.clear()
        self.cluster.wait_ready(timeout=60)
