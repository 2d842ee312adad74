"""Memory and start-up of a node holding many keys.

    python -m tools.bench memory --keys 1000000 [--val-size 256] [--clients 4]

Starts a fresh single-member node, writes ``--keys`` distinct keys (txns of ``--txn-ops`` puts
from ``--clients`` clients), then reports the resident memory (RSS) of every process of the
node, summed and per actor; stops the node, starts it again on the same data dir and reports
how long it took to answer a linearizable read and its memory once serving again.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from typing import Any

from etcdz import Client, ops
from tools.cluster import LocalCluster, Member


def rss_mib(member: Member) -> dict[str, float]:
    """Resident memory of the member's supervisor and every actor (Linux /proc)."""
    pids = {"supervisor": member.pid, **member.actor_pids()}
    out = {}
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        out[name] = round(kb / 1024, 1)
    return out


def load(endpoints: list[str], keys: int, val_size: int, txn_ops: int, clients: int) -> float:
    """Write ``keys`` keys; the seconds it took."""
    value = b"v" * val_size
    starts = list(range(0, keys, txn_ops))
    lock = threading.Lock()
    began = time.monotonic()

    def worker() -> None:
        with Client(endpoints, timeout=30) as c:
            while True:
                with lock:
                    if not starts:
                        return
                    first = starts.pop()
                last = min(first + txn_ops, keys)
                c.txn([], [ops.put(b"/mem/%09d" % k, value) for k in range(first, last)])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - began


def start_time(cluster: LocalCluster) -> float:
    """Seconds from starting the node until a linearizable read is answered."""
    began = time.monotonic()
    cluster.start()
    cluster.wait_ready(timeout=120)
    return time.monotonic() - began


def run(keys: int, val_size: int = 256, txn_ops: int = 128, clients: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="etcdz-memory-") as root:
        cluster = LocalCluster(root, 1)
        member = cluster.members[0]
        cluster.start()
        try:
            cluster.wait_ready(timeout=30)
            load_s = load(cluster.endpoints, keys, val_size, txn_ops, clients)
            with Client(cluster.endpoints) as c:
                count = c.get(b"/mem/", prefix=True, count_only=True).count
            loaded = rss_mib(member)
            cluster.stop()
            startup_s = start_time(cluster)
            restarted = rss_mib(member)
        finally:
            cluster.stop()
    return {
        "keys": count,
        "val_size": val_size,
        "load_s": round(load_s, 1),
        "rss_mib_loaded": round(sum(loaded.values()), 1),
        "rss_mib_by_actor_loaded": loaded,
        "startup_s": round(startup_s, 2),
        "rss_mib_restarted": round(sum(restarted.values()), 1),
        "rss_mib_by_actor_restarted": restarted,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench memory")
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--txn-ops", type=int, default=128)
    p.add_argument("--clients", type=int, default=4)
    args = p.parse_args(argv)
    result = run(args.keys, args.val_size, args.txn_ops, args.clients)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
