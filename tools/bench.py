"""A benchmark in the manner of etcd's ``benchmark`` tool.

    python -m tools.bench put   --endpoints tcp://127.0.0.1:2379 --clients 16 --seconds 10
    python -m tools.bench range --clients 16 --seconds 10 [--consistency s]
    python -m tools.bench watch --watchers 1000 --streams 20 --put-rate 20 (see tools.bench_watch)
    python -m tools.bench recovery --rounds 3 (see tools.bench_recovery)

Closed-loop clients (one SDK client and one thread each; ZeroMQ releases the GIL while a client
waits) issue requests for a duration or a total; the summary is etcd's: total, slowest,
fastest, average, stddev, requests/sec, percentiles. ``-o json`` prints it for machines.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdz import Client, ops
from etcdz.errors import EtcdzError


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def run_load(
    endpoints: list[str],
    clients: int,
    seconds: float,
    total: int,
    make_op: Callable[[Client, random.Random, int], Callable[[], object]],
) -> tuple[Result, float]:
    results = [Result() for _ in range(clients)]
    remaining = [total]
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        rng = random.Random(i)
        first = i % len(endpoints)  # clients spread over the endpoints, as etcd's benchmark does
        with Client(endpoints[first:] + endpoints[:first], timeout=10) as c:
            op = make_op(c, rng, i)
            start_gate.wait()
            res = results[i]
            while time.monotonic() < stop_at[0]:
                if total:
                    with lock:
                        if remaining[0] <= 0:
                            return
                        remaining[0] -= 1
                t0 = time.perf_counter()
                try:
                    op()
                    res.latencies.append(time.perf_counter() - t0)
                except EtcdzError as exc:
                    res.errors[exc.message] = res.errors.get(exc.message, 0) + 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + (seconds if not total else 3600)
    start_gate.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    merged = Result()
    for r in results:
        merged.latencies.extend(r.latencies)
        for k, v in r.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
    return merged, elapsed


def summary(result: Result, elapsed: float) -> dict[str, object]:
    lat = sorted(result.latencies)
    if not lat:
        return {"requests": 0, "errors": result.errors}

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))]

    return {
        "requests": len(lat),
        "total_s": round(elapsed, 4),
        "slowest_s": round(lat[-1], 6),
        "fastest_s": round(lat[0], 6),
        "average_s": round(statistics.fmean(lat), 6),
        "stddev_s": round(statistics.pstdev(lat), 6),
        "requests_per_s": round(len(lat) / elapsed, 1),
        "percentiles_s": {f"p{p:g}": round(pct(p), 6) for p in (10, 25, 50, 75, 90, 95, 99, 99.9)},
        "errors": result.errors,
    }


def print_summary(s: dict[str, object]) -> None:
    out = sys.stdout.write
    out("\nSummary:\n")
    if not s["requests"]:
        out(f"  no successful requests; errors: {s['errors']}\n")
        return
    for label, key in (
        ("Total", "total_s"),
        ("Slowest", "slowest_s"),
        ("Fastest", "fastest_s"),
        ("Average", "average_s"),
        ("Stddev", "stddev_s"),
    ):
        out(f"  {label}:\t{s[key]:.4f} secs.\n")
    out(f"  Requests/sec:\t{s['requests_per_s']:.4f}\n\nLatency distribution:\n")
    for name, value in s["percentiles_s"].items():  # type: ignore[attr-defined]
        out(f"  {name[1:]}% in {value:.4f} secs.\n")
    if s["errors"]:
        out(f"\nErrors: {s['errors']}\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch"]:
        from tools import bench_watch

        return bench_watch.main(argv[1:])
    if argv[:1] == ["recovery"]:
        from tools import bench_recovery

        return bench_recovery.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m tools.bench")
    p.add_argument("command", choices=["put", "range", "watch"])
    p.add_argument("--endpoints", default="tcp://127.0.0.1:2379")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--total", type=int, default=0, help="stop after this many requests instead")
    p.add_argument("--key-size", type=int, default=8)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--key-space-size", type=int, default=10_000)
    p.add_argument("--sequential-keys", action="store_true")
    p.add_argument("--consistency", choices=["l", "s"], default="l")
    p.add_argument("--prefix", action="store_true", help="range: a prefix of 100 keys instead of one key")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    endpoints = args.endpoints.split(",")
    value = b"x" * args.val_size

    def key_for(n: int) -> bytes:
        return b"%0*d" % (args.key_size, n % args.key_space_size)

    if args.command == "put":

        def make_op(c: Client, rng: random.Random, i: int) -> Callable[[], object]:
            counter = iter(range(i, 1 << 62, args.clients))
            if args.sequential_keys:
                return lambda: c.put(key_for(next(counter)), value)
            return lambda: c.put(key_for(rng.randrange(args.key_space_size)), value)
    else:
        with Client(endpoints) as c:  # 100 keys to read
            for start in range(0, 100, 50):
                c.txn([], [ops.put(key_for(n), value) for n in range(start, start + 50)])
        serializable = args.consistency == "s"

        def make_op(c: Client, rng: random.Random, i: int) -> Callable[[], object]:
            if args.prefix:
                return lambda: c.get(key_for(0), range_end=key_for(100), serializable=serializable)
            return lambda: c.get(key_for(rng.randrange(100)), serializable=serializable)

    result, elapsed = run_load(endpoints, args.clients, args.seconds, args.total, make_op)
    s = summary(result, elapsed)
    s.update(
        command=args.command,
        clients=args.clients,
        val_size=args.val_size,
        consistency=args.consistency if args.command == "range" else None,
    )
    if args.output == "json":
        sys.stdout.write(json.dumps(s, indent=1) + "\n")
    else:
        print_summary(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
