"""Robustness runs: a 3-member cluster under a recorded load while the nemesis injects faults,
then healed and checked, as etcd's robustness suite does.

    python -m tools.robustness --scenario kills --seconds 30 --seed 7

Scenarios: ``kills`` (kill -9 of members and actors under writes), ``actors`` (kill -9 or
SIGSTOP of one actor of the leader or a follower, with watchers and kept-alive leases),
``partitions`` (partitions,
a bridge, loss and delay under reads and writes, clients pinned to one member each),
``crash-apply`` (crash points in the apply path and the WAL writer of one member),
``watch`` (watchers through the hubs while members are killed), ``leases`` (kept-alive leases
while the leader is killed or isolated). Every run ends healed, and then: the history is
linearizable (final reads of every key included, so no acknowledged write is lost), all members
have the same HashKV, no watch guarantee broke, no lease expired early.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.runtime import failpoints
from etcdz import Client
from etcdz.errors import EtcdzError
from tools.cluster import LocalCluster, Member
from tools.history import Recorder
from tools.linearizability import Op, check
from tools.nemesis import ACTORS, Nemesis
from tools.watch_check import Collector, Spec, history
from tools.watch_check import check as check_watch

CRASH_POINTS = ("apply-mid-batch=40", "mvcc-after-commit=40", "wal-before-fsync=60", "wal-after-fsync=60")
LEASE_TTL = 4


@dataclass
class Outcome:
    scenario: str
    seed: int
    seconds: float
    operations: int = 0
    faults: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Scenario:
    fault: Callable[[Nemesis], str] | None  # one fault, undone by the next heal
    pinned: bool = False  # clients pinned to one member each (what partitions need to matter)
    failpoints: bool = False  # one member runs with a crash point armed
    watchers: bool = False
    leases: bool = False
    readers: int = 0  # clients that only read, on top of the 4 that read and write


def _kill(n: Nemesis) -> str:
    choice = n.rng.choice(["member", "leader", "actor"])
    if choice == "actor":
        actor = n.rng.choice(ACTORS)
        n.kill_actor(actor)
        return f"kill {actor}"
    n.kill("leader" if choice == "leader" else "any")
    return f"kill {choice}"


def _actor_fault(n: Nemesis) -> str:
    """kill -9 or SIGSTOP of one actor of the leader or a follower (the supervision scenario)."""
    actor, which = n.rng.choice(ACTORS), n.rng.choice(["leader", "follower"])
    if n.rng.random() < 0.25:
        n.hang_actor(actor, which)
        return f"hang {actor} of {which}"
    n.kill_actor(actor, which)
    return f"kill {actor} of {which}"


def _partition(n: Nemesis) -> str:
    choice = n.rng.choice(["minority", "leader", "bridge", "lossy", "pause"])
    if choice == "lossy":
        n.lossy(n.rng.choice([10, 30]), n.rng.choice([0, 20, 50]))
    elif choice == "pause":
        n.pause("any")
    else:
        n.partition(choice)
    return choice


def _isolate(n: Nemesis) -> str:
    choice = n.rng.choice(["minority", "leader"])
    n.partition(choice)
    return choice


def _leader_change(n: Nemesis) -> str:
    if n.rng.random() < 0.5:
        n.kill("leader")
        return "kill leader"
    n.partition("leader")
    return "isolate leader"


SCENARIOS: dict[str, Scenario] = {
    "kills": Scenario(fault=_kill),
    "actors": Scenario(fault=_actor_fault, watchers=True, leases=True),
    "partitions": Scenario(fault=_partition, pinned=True),
    "crash-apply": Scenario(fault=None, failpoints=True),
    "watch": Scenario(fault=_kill, watchers=True),
    "leases": Scenario(fault=_leader_change, leases=True),
}


Log = Callable[[str], None]


def run(
    name: str, root: str, seconds: float, seed: int, log: Log = lambda _: None, *, broken_reads: bool = False
) -> Outcome:
    """One run. ``broken_reads`` runs a deliberately broken build (linearizable reads served
    locally without ReadIndex), which the checks must catch."""
    scenario = SCENARIOS[name]
    if broken_reads and scenario.pinned:
        # Stale reads need a member cut off from the others (every fault is one such cut) and a
        # client reading there while the others write: a reader and a writer per member.
        scenario = dataclasses.replace(scenario, fault=_isolate, readers=3)
    rng = random.Random(seed)
    outcome = Outcome(name, seed, seconds)
    cluster = LocalCluster(root, 3)
    if broken_reads:
        for m in cluster.members:
            _arm(m, "gateway-skip-read-index")
    if scenario.failpoints:
        point = rng.choice(CRASH_POINTS)
        _arm(cluster.members[0], point)
        outcome.faults.append(f"{cluster.members[0].name}: {point}")
    cluster.start()
    try:
        cluster.wait_ready(timeout=30)
        outcome.problems += _exercise(cluster, scenario, rng, seconds, outcome, log)
    finally:
        cluster.stop()
    return outcome


def _exercise(
    cluster: LocalCluster,
    scenario: Scenario,
    rng: random.Random,
    seconds: float,
    outcome: Outcome,
    log: Log,
) -> list[str]:
    problems: list[str] = []
    recorder = Recorder(
        cluster.endpoints,
        clients=4 + scenario.readers,
        readers=scenario.readers,
        keys=4,
        seed=rng.randrange(1 << 30),
        pinned=scenario.pinned,
    )
    watch = _Watchers(cluster) if scenario.watchers else None
    leases = _LeaseKeeper(cluster.endpoints) if scenario.leases else None
    recorder.start()
    if leases is not None:
        leases.start()
    nemesis = Nemesis(cluster, rng, log)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(rng.uniform(0.3, 1.0), max(0.0, deadline - time.monotonic())))
        if scenario.fault is None:
            continue  # the armed crash point is the fault
        outcome.faults.append(scenario.fault(nemesis))
        time.sleep(min(rng.uniform(0.5, 2.0), max(0.0, deadline - time.monotonic())))
        nemesis.heal()
    ops = recorder.stop()
    if leases is not None:
        problems += leases.stop()
    if scenario.failpoints:
        problems += _disarm(cluster)
    nemesis.heal()
    ops += _final_reads(cluster, recorder.keys)
    outcome.operations = len(ops)
    outcome.errors = recorder.errors
    verdict = check(ops)
    if not verdict.ok:
        problems.append(verdict.report())
    if not _hashes_agree(cluster):
        problems.append("members differ in HashKV after healing")
    if watch is not None:
        problems += watch.check()
    return problems


def _final_reads(cluster: LocalCluster, keys: list[str]) -> list[Op]:
    """One linearizable read of every key once healed: the last word on what was acknowledged."""
    reads = []
    with cluster.client(timeout=10) as c:
        for key in keys:
            invoke = time.monotonic()
            resp = c.get(key)
            kv = resp.kvs[0] if resp.kvs else None
            reads.append(
                Op(
                    -1,
                    "get",
                    key,
                    invoke,
                    time.monotonic(),
                    revision=resp.header.revision,
                    found=kv.value.decode() if kv else None,
                    mod_revision=kv.mod_revision if kv else 0,
                )
            )
    return reads


def _hashes_agree(cluster: LocalCluster) -> bool:
    deadline = time.monotonic() + 20
    while True:
        try:
            if cluster.hashes_agree(cluster.members):
                return True
        except EtcdzError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _arm(member: Member, point: str) -> None:
    armed = member.env.get(failpoints.VARIABLE, "")
    member.env[failpoints.VARIABLE] = f"{armed},{point}" if armed else point


def _disarm(cluster: LocalCluster) -> list[str]:
    """Restart the member with the crash point without it; report whether it ever fired."""
    member = cluster.members[0]
    cluster.stop(member)
    with open(member.log_path, encoding="utf-8") as f:
        fired = f.read().count('"failpoint fired"')
    armed = failpoints.parse(member.env.pop(failpoints.VARIABLE))
    for point, count in armed.items():
        if not count:  # behaviours stay
            _arm(member, point)
    cluster.start(member)
    return [] if fired else [f"the crash point of {member.name} never fired"]


class _Watchers:
    """Watchers on the recorder's keys through the hubs, from the first revision; checked
    against the backend's history once healed."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.clients = [Client(cluster.endpoints[i:] + cluster.endpoints[:i], timeout=5) for i in range(3)]
        self.collectors = [Collector(c, "/lin/", prefix=True, start_revision=1) for c in self.clients]

    def check(self) -> list[str]:
        with self.cluster.client(timeout=10) as c:
            final = c.put("/lin-end", "x").header.revision
            events = history(c)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(col.watch.revision < final for col in self.collectors):
            for client in self.clients:
                client.request_progress()
            time.sleep(0.5)
        problems = []
        spec = Spec(key=b"/lin/", range_end=b"/lin0", start_revision=1)
        for n, col in enumerate(self.collectors):
            problems += [f"watcher {n}: {p}" for p in check_watch(spec, events, col.got)]
            if col.watch.revision < final:
                problems.append(f"watcher {n} stopped at revision {col.watch.revision} of {final}")
        for client in self.clients:
            client.close()
        return problems


class _LeaseKeeper(threading.Thread):
    """Leases kept alive every second, their keys read in between: a key gone while its lease
    was renewed less than a TTL ago is an early expiry."""

    def __init__(self, endpoints: list[str], leases: int = 4) -> None:
        super().__init__(daemon=True)
        self.client = Client(endpoints, timeout=1.0)
        self.count = leases
        self.stopping = threading.Event()
        self.problems: list[str] = []

    def run(self) -> None:
        renewed: dict[int, float] = {}  # lease -> invoke time of its last successful renewal
        keys: dict[int, str] = {}
        with self.client:
            for i in range(self.count):
                try:
                    granted = time.monotonic()
                    lease = self.client.lease_grant(LEASE_TTL).id
                    self.client.put(f"/lease/{i}", "held", lease=lease)
                except EtcdzError:
                    continue
                renewed[lease], keys[lease] = granted, f"/lease/{i}"
            while not self.stopping.is_set():
                for lease, key in keys.items():
                    try:
                        invoke = time.monotonic()
                        if self.client.lease_keep_alive_once(lease).ttl > 0:
                            renewed[lease] = invoke
                        resp = self.client.get(key)
                        returned = time.monotonic()
                    except EtcdzError:
                        continue
                    if not resp.kvs and returned < renewed[lease] + LEASE_TTL:
                        self.problems.append(
                            f"lease {lease:x} expired early: {key} gone {returned - renewed[lease]:.2f}s "
                            f"after a renewal of a {LEASE_TTL}s lease"
                        )
                self.stopping.wait(0.5)

    def stop(self) -> list[str]:
        self.stopping.set()
        self.join(15)
        return self.problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.robustness", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=1, help="seeds seed, seed+1, ...")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.add_argument("--broken-reads", action="store_true", help="a broken build the checks must catch")
    args = p.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.runs):

        def say(text: str) -> None:
            if args.output == "text":
                sys.stderr.write(f"  {text}\n")

        with tempfile.TemporaryDirectory(prefix="etcdz-robustness-") as root:
            outcome = run(args.scenario, root, args.seconds, seed, say, broken_reads=args.broken_reads)
        failed += not outcome.ok
        if args.output == "json":
            sys.stdout.write(json.dumps({**outcome.__dict__, "ok": outcome.ok}) + "\n")
        else:
            verdict = "ok" if outcome.ok else "FAILED"
            sys.stdout.write(
                f"{args.scenario} seed {seed}: {verdict}, {outcome.operations} operations, "
                f"{len(outcome.faults)} faults, errors {outcome.errors}\n"
            )
            for problem in outcome.problems:
                sys.stdout.write(f"  {problem}\n")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
