"""What one dead actor costs the clients of a 3-member cluster: failed requests per kill.

    python -m tools.bench actor-kill [--clients 16] [--kills 3] [--window 5] [--actors raft,wal]

Starts three members (with a watch hub, metrics and the periodic corruption check each) and
``--clients`` closed-loop writers spread over the members' client URLs. For each target — every
actor of a follower, every actor of the leader, and as the baseline the whole leader (kill -9
of its supervisor and actors) — it kills it ``--kills`` times and counts the puts that failed
(any error: timed out, unavailable, no leader...; each put's deadline ``--timeout``, etcdctl's
default of 5 s) from the kill to ``--window`` seconds after it, the errors seen, and how long
until every writer succeeded again. Kills are ``STABLE_AFTER_S`` apart: closer
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
from typing import Any

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
    timeout_s: float = 5.0
    failures: list[tuple[float, str]] = field(default_factory=list)  # (when, error text)
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
        with Client([endpoint, *others], timeout=self.timeout_s) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    c.put(f"/kill/{i}/{n % 64}", "x" * 64)
                    with self._lock:
                        self.last_ok[i] = time.monotonic()
                except EtcdzError as exc:
                    with self._lock:
                        self.failures.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                    time.sleep(0.02)

    def failed_between(self, start: float, end: float) -> list[str]:
        with self._lock:
            return [error for t, error in self.failures if start <= t <= end]

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
    clients: int,
    kills: int,
    window_s: float,
    actors: tuple[str, ...] = ACTORS,
    whole_leader: bool = True,
    timeout_s: float = 5.0,
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    extra = ["--experimental-corrupt-check-time", "5s"]
    with tempfile.TemporaryDirectory(prefix="etcdz-actor-kill-") as root:
        cluster = LocalCluster(root, 3, metrics=True, extra_args=extra)
        cluster.start()
        try:
            cluster.wait_ready(timeout=60)
            load = Load(cluster.endpoints, clients, timeout_s)
            threads = load.start()
            time.sleep(2.0)
            targets = [(a, "follower") for a in actors] + [(a, "leader") for a in actors]
            targets += [("member", "leader")] if whole_leader else []
            for actor, role in targets:
                failed: list[int] = []
                recovered: list[float] = []
                errors: set[str] = set()
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
                    seen = load.failed_between(killed_at, killed_at + window_s)
                    failed.append(len(seen))
                    errors.update(seen)
                    cluster.wait_ready(timeout=60)
                    # Let the restart count as stable, or the next kill looks like a crash loop
                    # to the supervisor (which backs off, then stops the member).
                    time.sleep(max(0.0, killed_at + STABLE_AFTER_S + 0.5 - time.monotonic()))
                results[f"{actor} of the {role}"] = {
                    "failed_median": statistics.median(failed),
                    "failed_max": max(failed),
                    "all_writing_again_s": round(statistics.median(recovered), 2),
                    "errors": sorted(errors),
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
    p.add_argument("--actors", default=",".join(ACTORS), help="the actors to kill, comma-separated")
    p.add_argument("--no-whole-leader", action="store_true", help="skip the whole leader's kill")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="each put's deadline (etcdctl's --command-timeout: 5 s)"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    actors = tuple(a for a in args.actors.split(",") if a)
    results = run(args.clients, args.kills, args.window, actors, not args.no_whole_leader, args.timeout)
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
        return 0
    sys.stdout.write(f"{'killed':<26} {'failed puts (median/max)':>25} {'all writing again (s)':>22}\n")
    for what, r in results.items():
        failed = f"{r['failed_median']:g} / {r['failed_max']:g}"
        sys.stdout.write(f"{what:<26} {failed:>25} {r['all_writing_again_s']:>22.2f}\n")
        for error in r["errors"]:
            sys.stdout.write(f"    {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
