"""CPU per request of every process of a local cluster under a benchmark load, no profiler.

    python -m tools.cpu_census --members 3 put --seconds 8
    python -m tools.cpu_census --members 1 range --consistency s --seconds 8
    python -m tools.cpu_census --members 3 put --seconds 8 --protocol grpc

Starts a cluster (no standalone hubs), reads each actor's CPU time (user + system, Linux
``/proc/<pid>/stat``) before and after the load of ``tools.bench`` (arguments after the
command), and prints microseconds of CPU per acknowledged request per actor (leader first),
the benchmark client's own CPU per request, and the CPU the machine offered per request at
that rate: the "where the time goes" table of docs/performance.md. Unlike ``tools.profile`` it does not slow
the code down, so the figures add up to what the benchmark measures.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from typing import Any

from tools import bench
from tools.cluster import running

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """User + system CPU of this process (every thread: the benchmark's clients) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(members: int, bench_args: list[str]) -> dict[str, Any]:
    """``bench_args`` with ``--protocol grpc``: the members serve etcd's gRPC API and the load
    goes through it (the door's cost is then the gateway's)."""
    grpc = "grpc" in bench_args and bench_args[bench_args.index("grpc") - 1] == "--protocol"
    with (
        tempfile.TemporaryDirectory(prefix="etcdz-cpu-") as root,
        running(root, members, watch_hubs=0, grpc=grpc) as cluster,
    ):
        leader = cluster.leader()
        order = [leader] + [m for m in cluster.members if m is not leader]
        pids = {(m.name, actor): pid for m in order for actor, pid in m.actor_pids().items()}
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        own_before = own_cpu_seconds()
        began = time.monotonic()
        urls = [m.grpc_url for m in cluster.members] if grpc else cluster.endpoints
        args = bench.parse_args([*bench_args, "--endpoints", ",".join(urls)])
        s = bench.measure(args)
        elapsed = time.monotonic() - began
        own_after = own_cpu_seconds()
        after = {k: cpu_seconds(p) for k, p in pids.items()}
    n = max(1, s["requests"])
    per_actor: dict[str, list[float]] = {}
    for (node, actor), cpu in after.items():
        per_actor.setdefault(actor, []).append(round((cpu - before[(node, actor)]) / n * 1e6, 1))
    client = own_after - own_before
    return {
        "requests": s["requests"],
        "requests_per_s": s.get("requests_per_s", 0.0),
        "us_per_request": per_actor,  # actor -> [leader, followers...]
        "server_us_per_request": round(sum(sum(v) for v in per_actor.values()), 1),
        "client_us_per_request": round(client / n * 1e6, 1),
        "offered_us_per_request": round((os.cpu_count() or 1) * elapsed / n * 1e6, 1),
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['requests']} requests, {r['requests_per_s']} requests/s; CPU per request (leader first):"]
    for actor, values in sorted(r["us_per_request"].items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"  {actor:10s} " + " / ".join(f"{v:6.0f}" for v in values) + " us")
    lines.append(
        f"  server {r['server_us_per_request']:.0f} us, client {r['client_us_per_request']:.0f} us, "
        f"offered by the machine {r['offered_us_per_request']:.0f} us"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.cpu_census")
    p.add_argument("--members", type=int, default=3)
    args, rest = p.parse_known_args(argv)
    sys.stdout.write(format_report(run(args.members, rest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
