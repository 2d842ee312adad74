"""Crash recovery benchmark: how long a node takes to serve writes again after kill -9 of one
of its actors under a write load (the supervisor restarts the actor with its restart set).

    python -m tools.bench recovery [--rounds 3] [--actors wal,raft,mvcc,apply,lease,gateway]

Starts a fresh single-member node in a temporary directory; for each actor and round: a writer
runs for a second, the actor is killed, and the time from the kill to the first successful put
is taken; the next kill waits until the restarted actors have run ``STABLE_AFTER_S`` (a faster
kill loop is, to the supervisor, a crash loop it backs off from). The summary gives the median and the
worst per actor.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time

from actors.supervisor.node import STABLE_AFTER_S
from tools.cluster import running
from tools.workload import Writer, wait_serving

ACTORS = ("wal", "raft", "mvcc", "apply", "lease", "gateway")


def run(actors: list[str], rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[float]] = {a: [] for a in actors}
    with tempfile.TemporaryDirectory(prefix="etcdz-recovery-") as root, running(root, 1) as node:
        member = node.members[0]
        killed_at = -STABLE_AFTER_S
        for r in range(rounds):
            for actor in actors:
                # Let the restarted node count as stable, or the next kill looks like a crash
                # loop to the supervisor (which backs off, then gives up).
                time.sleep(max(0.0, STABLE_AFTER_S + 0.5 - (time.monotonic() - killed_at)))
                writer = Writer(node.endpoints, f"/recovery/{actor}/{r}")
                writer.start()
                time.sleep(1.0)
                killed_at = time.monotonic()
                os.kill(member.actor_pids()[actor], signal.SIGKILL)
                results[actor].append(wait_serving(node.endpoints, killed_at, limit_s=60))
                writer.stop.set()
                writer.join(10)
                node.wait_ready(timeout=30)
    return {
        a: {"median_s": round(statistics.median(v), 3), "max_s": round(max(v), 3)} for a, v in results.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench recovery")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--actors", default=",".join(ACTORS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    summary = run([a for a in args.actors.split(",") if a], args.rounds)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        sys.stdout.write("actor      median   worst  (seconds from kill -9 to the next acknowledged put)\n")
        for actor, s in summary.items():
            sys.stdout.write(f"{actor:<9} {s['median_s']:>7.2f} {s['max_s']:>7.2f}\n")
    return 0
