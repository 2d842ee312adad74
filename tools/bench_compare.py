"""etcdz against etcd 3.4 on the same machine in the same run: the comparison in docs/performance.md.

    python -m tools.bench_compare --members 3 --seconds 10
    python -m tools.bench_compare --members 1 --loads put,range-s --seconds 5 -o json

For each target in turn (etcd first, then etcdz) it starts a fresh cluster of ``--members``
on 127.0.0.1 (etcd: the ``etcd`` binary; etcdz: ``tools.cluster``, no watch hubs), runs each
load of ``tools.bench`` against all its endpoints with the same clients and value size, and
stops it; then it prints one table: requests/s, p50 and p99 of both, and etcdz's throughput
as a fraction of etcd's. Only one cluster runs at a time, so neither competes with the other
for the CPU. etcd is driven through its JSON gateway over keep-alive HTTP, etcdz through the
SDK: Python clients of about the same cost (see ``tools.etcd_http``), which the table shows
(the benchmark process's CPU per request: the clients share the machine with the cluster),
beside the servers' CPU per request (every process of the cluster, from ``/proc``): on a
machine the load saturates, the rate follows what a request costs both sides.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tools import bench
from tools.cluster import running
from tools.cpu_census import cpu_seconds, own_cpu_seconds
from tools.etcd_cluster import EtcdCluster

LOADS: dict[str, list[str]] = {  # name -> tools.bench arguments
    "put": ["put"],
    "range-l": ["range", "--consistency", "l"],
    "range-s": ["range", "--consistency", "s"],
    "txn-put": ["txn-put", "--txn-ops", "4"],
    "txn-cas": ["txn-cas"],
    "mixed": ["mixed", "--read-percent", "90"],
    "lease-keepalive": ["lease-keepalive"],
}
SETTLE_S = 1.0  # after start-up: let elections and the first compactions pass


@contextmanager
def started(target: str, members: int, root: str) -> Iterator[tuple[str, list[int]]]:
    """A fresh cluster of ``target`` with ``members``; yields its endpoints and the pids of
    every process serving them (etcdz: each member's supervisor and its actors)."""
    if target == "etcd":
        with EtcdCluster(f"{root}/etcd", members) as etcd:
            time.sleep(SETTLE_S)
            yield etcd.endpoints, [p.pid for p in etcd.procs]
        return
    with running(f"{root}/etcdz", members, watch_hubs=0) as cluster:
        cluster.leader()
        time.sleep(SETTLE_S)
        pids = [pid for m in cluster.members for pid in (m.pid, *m.actor_pids().values())]
        yield ",".join(cluster.endpoints), pids


def servers_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def run(members: int, loads: list[str], seconds: float, clients: int, val_size: int) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    for target in ("etcd", "etcdz"):
        with (
            tempfile.TemporaryDirectory(prefix="bench-compare-") as root,
            started(target, members, root) as (eps, pids),
        ):
            for load in loads:
                argv = LOADS[load] + ["--target", target, "--endpoints", eps]
                argv += ["--seconds", str(seconds), "--clients", str(clients), "--val-size", str(val_size)]
                before, servers_before = own_cpu_seconds(), servers_cpu_seconds(pids)
                s = bench.measure(bench.parse_args(argv))
                n = max(1, s["requests"])
                client_us = (own_cpu_seconds() - before) / n * 1e6
                server_us = (servers_cpu_seconds(pids) - servers_before) / n * 1e6
                pct = s.get("percentiles_s", {})
                results.setdefault(load, {})[target] = {
                    "rps": s.get("requests_per_s", 0.0),
                    "p50_ms": pct.get("p50", 0.0) * 1000,
                    "p99_ms": pct.get("p99", 0.0) * 1000,
                    "errors": sum(s["errors"].values()),
                    "client_us": client_us,
                    "server_us": server_us,
                }
    for r in results.values():
        r["ratio"] = r["etcdz"]["rps"] / r["etcd"]["rps"] if r["etcd"]["rps"] else 0.0
    return dict(members=members, clients=clients, val_size=val_size, seconds=seconds, loads=results)


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['members']} member(s), {result['clients']} clients, {result['val_size']} B values, "
        f"{result['seconds']:g} s per load",
        "",
        "| load | etcd req/s | etcd p50 | etcd p99 | etcdz req/s | etcdz p50 | etcdz p99 | etcdz / etcd "
        "| server CPU per request, etcd / etcdz | client CPU per request, etcd / etcdz |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load, r in result["loads"].items():
        e, z = r["etcd"], r["etcdz"]
        lines.append(
            f"| {load} | {e['rps']:,.0f} | {e['p50_ms']:.1f} ms | {e['p99_ms']:.1f} ms "
            f"| {z['rps']:,.0f} | {z['p50_ms']:.1f} ms | {z['p99_ms']:.1f} ms | {r['ratio']:.2f} "
            f"| {e['server_us']:.0f} / {z['server_us']:.0f} us "
            f"| {e['client_us']:.0f} / {z['client_us']:.0f} us |"
        )
    errors = {f"{load} {t}": r[t]["errors"] for load, r in result["loads"].items() for t in ("etcd", "etcdz")}
    if any(errors.values()):
        lines.append("")
        lines.append("errors: " + ", ".join(f"{k}: {v}" for k, v in errors.items() if v))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_compare")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--loads", default="put,range-l,range-s", help=f"comma-separated, of {', '.join(LOADS)}")
    p.add_argument("--seconds", type=float, default=10.0, help="per load and target")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    loads = args.loads.split(",")
    if unknown := [load for load in loads if load not in LOADS]:
        p.error(f"unknown load(s): {', '.join(unknown)}")
    result = run(args.members, loads, args.seconds, args.clients, args.val_size)
    sys.stdout.write(json.dumps(result, indent=1) + "\n" if args.output == "json" else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
