"""Profile every actor of a local cluster under a benchmark load (cProfile, in the actors).

    python -m tools.profile put --members 3 --seconds 10
    python -m tools.profile range --members 3 --seconds 8 --consistency s --top 20

Starts a cluster whose actors run their loops under cProfile (``ETCDZ_PROFILE_DIR``), runs the
benchmark load (``tools.bench`` arguments after the command), stops the cluster cleanly so
each actor writes its profile, then prints per actor of the leader and of one follower: the
CPU its loop's thread took per request and the functions that took it (own CPU time, calls;
measured with the thread's CPU clock, so other processes' turns on a busy machine are not
charged to whatever call they interrupted; ZeroMQ's I/O threads are not in it). cProfile
slows Python code down about twofold, so the figures say where the time goes, not how fast
the store is; the benchmark's own numbers come from runs without it.
"""

from __future__ import annotations

import argparse
import os
import pstats
import sys
import tempfile
from dataclasses import dataclass

from actors.runtime.loop import PROFILE_VARIABLE
from tools import bench
from tools.bench_report import summary
from tools.instrumented import run_load


@dataclass
class ActorProfile:
    node: str
    actor: str
    seconds: float  # own time of every function: the loop's CPU, idle polls included
    idle: float  # time spent waiting in poll
    top: list[tuple[str, int, float]]  # (function, calls, own seconds)


def read(path: str, top: int) -> ActorProfile:
    name = os.path.basename(path)[: -len(".prof")]
    node, _, actor = name.rpartition("-")
    stats = pstats.Stats(path)
    rows = []
    idle = 0.0
    for (file, line, func), (_, calls, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{_short(file)}:{line}({func})"
        if (func == "poll" and "zmq" in file) or "zmq_poll" in func:  # the loop calls zmq_poll directly
            idle += own
        rows.append((where, calls, own))
    rows.sort(key=lambda r: -r[2])
    return ActorProfile(node, actor, sum(r[2] for r in rows), idle, rows[:top])


def _short(file: str) -> str:
    for marker in ("/actors/", "/proto_schemas/", "/site-packages/", "/lib/python3"):
        if marker in file:
            return file[file.index(marker) + 1 :]
    return file


def report(profiles: list[ActorProfile], requests: int, nodes: dict[str, str]) -> str:
    lines = []
    for p in sorted(profiles, key=lambda p: (p.actor, nodes.get(p.node, "z"))):
        if p.node not in nodes:
            continue
        busy = p.seconds - p.idle
        lines.append(
            f"\n== {p.actor} on {p.node} ({nodes[p.node]}): {busy:.2f} s busy, "
            f"{busy / max(requests, 1) * 1e6:.0f} us/request (poll {p.idle:.2f} s)"
        )
        for where, calls, own in p.top:
            lines.append(f"  {own:7.3f} s {calls:9d}  {where}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m tools.profile", add_help=False)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", default="", help="keep the .prof files here (default: a temp dir)")
    ours, rest = p.parse_known_args(argv)
    args = bench.parse_args(rest)
    root = tempfile.mkdtemp(prefix="etcdz-profile-")
    out = ours.out or os.path.join(root, "profiles")
    os.makedirs(out, exist_ok=True)
    run = run_load(ours.members, {PROFILE_VARIABLE: out}, args, root)
    s = summary(run.result.latencies, run.result.errors, run.elapsed)
    nodes = {run.leader: "leader"}
    if run.follower is not None:
        nodes[run.follower] = "follower"
    profiles = [read(os.path.join(out, f), ours.top) for f in sorted(os.listdir(out)) if f.endswith(".prof")]
    sys.stdout.write(
        f"{args.command} on {ours.members} member(s), {args.clients} clients, under cProfile: "
        f"{s['requests']} requests, {s.get('requests_per_s', 0)} requests/s; profiles in {out}\n"
    )
    sys.stdout.write(report(profiles, int(s["requests"]), nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
