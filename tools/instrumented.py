"""One benchmark load against a fresh local cluster whose actors run instrumented.

``tools.profile`` (cProfile in every actor) and ``tools.round_trace`` (the raft cores' round
timestamps) both start a cluster with a variable in every member's environment, run one load of
``tools.bench`` against all its members, and stop it cleanly (so that each actor writes what it
recorded) before reading the records: this is that run.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

from tools import bench
from tools.cluster import LocalCluster


@dataclass
class LoadRun:
    result: bench.Result
    elapsed: float
    began_ns: int  # CLOCK_MONOTONIC around the load: the actors' records use the same clock
    ended_ns: int
    leader: str
    follower: str | None


def run_load(members: int, env: dict[str, str], args: argparse.Namespace, root: str) -> LoadRun:
    """``args`` (``tools.bench``'s) against a cluster of ``members`` under ``root`` started
    with ``env`` added to every member's environment; the cluster is stopped on return."""
    cluster = LocalCluster(os.path.join(root, "cluster"), members)
    for m in cluster.members:
        m.env.update(env)
    cluster.start()
    try:
        cluster.wait_ready(timeout=30)
        leader = cluster.leader()
        follower = next((m.name for m in cluster.members if m is not leader), None)
        args.endpoints = cluster.endpoints
        conns = bench.open_conns("etcdz", args.endpoints, args.conns)
        try:
            make_op = bench.load_for(args, conns[0])
            began = time.monotonic_ns()
            result, elapsed = bench.run_load(
                conns, args.clients, args.seconds, args.total, make_op, rate=args.rate
            )
            ended = time.monotonic_ns()
        finally:
            for c in conns:
                c.close()
    finally:
        cluster.stop()
    return LoadRun(result, elapsed, began, ended, leader.name, follower)
