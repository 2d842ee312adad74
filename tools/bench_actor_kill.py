"""What one dead actor costs the clients of a 3-member cluster: failed requests per kill.

    python -m tools.bench actor-kill [--clients 16] [--kills 3] [--window 5]

Starts three members (with a watch hub, metrics and the periodic corruption check each) and
``--clients`` closed-loop writers spread over the members' client URLs. For each target — every
actor of a follower, every actor of the leader, and as the baseline the whole leader (kill -9
of its supervisor and actors) — it kills it ``--kills`` times and counts the puts that failed
(any error: timed out, unavailable, no leader...) from the kill to ``--window`` seconds after
it, and how long until every writer succeeded again. Kills are ``STABLE_AFTER_S`` apart: closer
ones look like a crash loop to the supervisor, which backs off and then stops the member.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from actors.supervisor.node import STABLE_AFTER_S
from etcdz import Client
from etcdz.errors import EtcdzError
from tools.cluster import LocalCluster, Member

ACTORS = ("wal", "raft", "mvcc", "apply", "lease", "gateway", "watch0", "metrics", "corruption")


@dataclass
class Load:
    """Closed-loop writers; every failure is kept with its time."""

    endpoints: list[str]
    clients: int
    failures: list[float] = field(default_factory=list)
    last_ok: dict[int, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]
        for t in threads:
            t.start()
        return threads

    def _run(self, i: int) -> None:
        endpoint = self.endpoints[i % len(self.endpoints)]
        others = [e for e in self.endpoints if e != endpoint]
        with Client([endpoint, *others], timeout=2.0) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    c.put(f"/kill/{i}/{n % 64}", "x" * 64)
                    with self._lock:
                        self.last_ok[i] = time.monotonic()
                except EtcdzError:
                    with self._lock:
                        self.failures.append(time.monotonic())
                    time.sleep(0.02)

    def failed_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in self.failures if start <= t <= end)

    def all_ok_since(self, t: float) -> bool:
        with self._lock:
            return len(self.last_ok) == self.clients and all(v > t for v in self.last_ok.values())


def _kill(cluster: LocalCluster, member: Member, actor: str) -> None:
    if actor == "member":
        cluster.kill(member)
        cluster.start(member)
        return
    pid = member.actor_pids().get(actor)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)


def run(
    clients: int, kills: int, window_s: float, actors: tuple[str, ...] = ACTORS, whole_leader: bool = True
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    extra = ["--experimental-corrupt-check-time", "5s"]
    with tempfile.TemporaryDirectory(prefix="etcdz-actor-kill-") as root:
        cluster = LocalCluster(root, 3, metrics=True, extra_args=extra)
        cluster.start()
        try:
            cluster.wait_ready(timeout=60)
            load = Load(cluster.endpoints, clients)
            threads = load.start()
            time.sleep(2.0)
            targets = [(a, "follower") for a in actors] + [(a, "leader") for a in actors]
            targets += [("member", "leader")] if whole_leader else []
            for actor, role in targets:
                failed, recovered = [], []
                for _ in range(kills):
                    leader = cluster.leader(timeout=30)
                    member = (
                        leader if role == "leader" else next(m for m in cluster.members if m is not leader)
                    )
                    killed_at = time.monotonic()
                    _kill(cluster, member, actor)
                    deadline = killed_at + 60
                    while not load.all_ok_since(killed_at) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    recovered.append(time.monotonic() - killed_at)
                    time.sleep(max(0.0, killed_at + window_s - time.monotonic()))
                    failed.append(load.failed_between(killed_at, killed_at + window_s))
                    cluster.wait_ready(timeout=60)
                    # Let the restart count as stable, or the next kill looks like a crash loop
                    # to the supervisor (which backs off, then stops the member).
                    time.sleep(max(0.0, killed_at + STABLE_AFTER_S + 0.5 - time.monotonic()))
                results[f"{actor} of the {role}"] = {
                    "failed_median": statistics.median(failed),
                    "failed_max": max(failed),
                    "all_writing_again_s": round(statistics.median(recovered), 2),
                }
            load.stop.set()
            for t in threads:
                t.join(10)
        finally:
            cluster.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench actor-kill")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--kills", type=int, default=3, help="kills of each target")
    p.add_argument("--window", type=float, default=5.0, help="seconds after a kill whose failures count")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = run(args.clients, args.kills, args.window)
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
        return 0
    sys.stdout.write(f"{'killed':<26} {'failed puts (median/max)':>25} {'all writing again (s)':>22}\n")
    for what, r in results.items():
        failed = f"{r['failed_median']:g} / {r['failed_max']:g}"
        sys.stdout.write(f"{what:<26} {failed:>25} {r['all_writing_again_s']:>22.2f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
