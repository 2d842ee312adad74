"""A benchmark in the manner of etcd's ``benchmark`` tool.

    python -m tools.bench put   --endpoints tcp://127.0.0.1:2379 --clients 16 --seconds 10
    python -m tools.bench range --clients 16 --seconds 10 [--consistency s] [--prefix]
    python -m tools.bench txn-put --txn-ops 4 --clients 16 --total 10000
    python -m tools.bench lease-keepalive --clients 16 --conns 4 --seconds 10
    python -m tools.bench put --client aio --clients 64 --seconds 10 (one asyncio connection)
    python -m tools.bench put --target etcd --endpoints http://127.0.0.1:2379 (a real etcd)
    python -m tools.bench put --protocol grpc --endpoints http://127.0.0.1:2384 (etcd's gRPC API)
    python -m tools.bench watch --watchers 1000 --streams 20 --put-rate 20 (see tools.bench_watch)
    python -m tools.bench recovery --rounds 3 (see tools.bench_recovery)
    python -m tools.bench memory --keys 1000000 (see tools.bench_memory)
    python -m tools.bench startup --runs 20 (see tools.bench_startup)
    python -m tools.bench actor-kill --clients 16 --kills 3 (see tools.bench_actor_kill)

Closed-loop clients (one thread each; ZeroMQ and sockets release the GIL while a client waits)
issue requests for a duration or a total, over ``--conns`` connections: client ``i`` uses
connection ``i % conns``. A connection is an SDK ``Client`` (``--target etcdz``) or, to drive a
real etcd with a client of the same cost, a keep-alive HTTP connection to etcd's JSON gateway
(``--target etcd``, see ``tools.etcd_http``). Both sit behind the same methods (``put``, ``get``,
``txn_put``, ``lease_grant``, ``lease_keep_alive_once``), so a load does not know which it drives.
``--protocol grpc`` makes every connection a gRPC channel speaking etcd's v3 API instead
(``tools.grpc_conn``): to an etcdz member's gRPC door or to a real etcd, the same client for both.

The summary is etcd's (see ``tools.bench_report``); ``-o json`` prints it for machines. A
progress bar is drawn on stderr when stderr is a terminal or ``--progress`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from etcdz import Client, ops
from etcdz.errors import EtcdzError
from tools.bench_report import Progress, format_summary, summary
from tools.etcd_http import EtcdHTTPClient, EtcdHTTPError

DEFAULT_ENDPOINTS = {"etcdz": "tcp://127.0.0.1:2379", "etcd": "http://127.0.0.1:2379"}
SUBTOOLS = {
    "watch": "tools.bench_watch",
    "recovery": "tools.bench_recovery",
    "memory": "tools.bench_memory",
    "startup": "tools.bench_startup",
    "actor-kill": "tools.bench_actor_kill",
}
TARGET_ERRORS = (EtcdzError, EtcdHTTPError)  # what a request may fail with: counted, not raised
LEASE_TTL = 60
RANGE_KEYS = 100  # the keys a range load reads (written before it starts)


class Conn(Protocol):
    """What a load calls on a connection, whichever the target."""

    def put(self, key: bytes, value: bytes) -> object: ...
    def get(self, key: bytes, *, range_end: bytes = b"", serializable: bool = False) -> object: ...
    def txn_put(self, pairs: list[tuple[bytes, bytes]]) -> object: ...
    def cas(self, key: bytes, mod_revision: int, value: bytes) -> int: ...
    def lease_grant(self, ttl: int) -> int: ...
    def lease_keep_alive_once(self, lease_id: int) -> object: ...
    def close(self) -> None: ...


class EtcdzConn:
    """An SDK ``Client`` behind ``Conn``'s methods."""

    def __init__(self, endpoints: list[str]) -> None:
        self.client = Client(endpoints, timeout=10)

    def put(self, key: bytes, value: bytes) -> object:
        return self.client.put(key, value)

    def get(self, key: bytes, *, range_end: bytes = b"", serializable: bool = False) -> object:
        return self.client.get(key, range_end=range_end or None, serializable=serializable)

    def txn_put(self, pairs: list[tuple[bytes, bytes]]) -> object:
        return self.client.txn([], [ops.put(k, v) for k, v in pairs])

    def cas(self, key: bytes, mod_revision: int, value: bytes) -> int:
        """Put ``value`` if ``key`` was last modified at ``mod_revision``, else read it: the key's
        mod revision afterwards (0: it does not exist)."""
        resp = self.client.txn([ops.ModRevision(key) == mod_revision], [ops.put(key, value)], [ops.get(key)])
        if resp.succeeded:
            return resp.header.revision
        kvs = resp.responses[0].kvs  # type: ignore[union-attr]
        return kvs[0].mod_revision if kvs else 0

    def lease_grant(self, ttl: int) -> int:
        return self.client.lease_grant(ttl).id

    def lease_keep_alive_once(self, lease_id: int) -> object:
        return self.client.lease_keep_alive_once(lease_id)

    def close(self) -> None:
        self.client.close()


def open_conns(target: str, endpoints: list[str], n: int, protocol: str = "zmq") -> list[Conn]:
    """``n`` connections spread over ``endpoints``, as etcd's benchmark spreads its clients."""
    conns: list[Conn] = []
    if protocol == "grpc":
        from tools.grpc_conn import GrpcConn

        return [GrpcConn(endpoints[j % len(endpoints)]) for j in range(n)]
    for j in range(n):
        if target == "etcd":
            conns.append(EtcdHTTPClient(endpoints[j % len(endpoints)]))
        else:
            first = j % len(endpoints)
            conns.append(EtcdzConn(endpoints[first:] + endpoints[:first]))
    return conns


@dataclass
class Result:
    """One client's outcomes; ``done`` is read by the progress thread without a lock."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    done: int = 0

    def fail(self, exc: Exception) -> None:
        """Count a failed request by its message: the store's refusals by theirs, anything
        else (a bug in a client, say) by its type too, so that no request goes uncounted."""
        message = exc.message if isinstance(exc, TARGET_ERRORS) else f"{type(exc).__name__}: {exc}"
        self.errors[message] = self.errors.get(message, 0) + 1
        self.done += 1


MakeOp = Callable[[Conn, random.Random, int], Callable[[], object]]


def run_load(
    conns: list[Conn],
    clients: int,
    seconds: float,
    total: int,
    make_op: MakeOp,
    progress: bool = False,
    rate: float = 0.0,
) -> tuple[Result, float]:
    """Run ``clients`` threads, client ``i`` on ``conns[i % len(conns)]``, each looping the
    request ``make_op`` built for it (before the clock starts) until ``seconds`` have passed or
    ``total`` requests were issued by all; the merged outcomes and the elapsed seconds. With
    ``rate`` (requests per second, all clients together), the n-th request starts no earlier
    than n / ``rate`` seconds after the start, as etcd's benchmark ``--rate`` limits: the same
    offered load for every run, so that CPU per request compares across code versions."""
    results = [Result() for _ in range(clients)]
    slots = itertools.count()
    remaining = [total]
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]
    began = [0.0]

    def worker(i: int) -> None:
        rng = random.Random(i)
        res = results[i]
        try:
            op: Callable[[], object] | None = make_op(conns[i % len(conns)], rng, i)
        except TARGET_ERRORS as exc:  # e.g. the lease grant of lease-keepalive
            res.fail(exc)
            op = None
        start_gate.wait()
        while op is not None and time.monotonic() < stop_at[0]:
            if total:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
            if rate:
                wait = began[0] + next(slots) / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            t0 = time.perf_counter()
            try:
                op()
                res.latencies.append(time.perf_counter() - t0)
                res.done += 1
            except Exception as exc:  # every failure is counted, as etcd's benchmark does
                res.fail(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + (seconds if not total else 3600)
    began[0] = time.perf_counter()
    start_gate.wait()

    def done() -> int:
        return sum(r.done for r in results)

    with Progress(done, total, seconds, sys.stderr) if progress else contextlib.nullcontext():
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - began[0]
    merged = Result()
    for r in results:
        merged.latencies.extend(r.latencies)
        for k, v in r.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
    return merged, elapsed


def load_for(args: argparse.Namespace, setup: Conn) -> MakeOp:
    """The request of ``args.command`` for each client (``setup`` writes what a range reads)."""
    value = b"x" * args.val_size

    def key_for(n: int) -> bytes:
        return b"%0*d" % (args.key_size, n % args.key_space_size)

    def keys(rng: random.Random, counter: Iterator[int], n: int) -> list[bytes]:
        """``n`` distinct keys for one txn (etcd refuses a txn that puts a key twice)."""
        if args.sequential_keys:
            first = next(counter) * n
            return [key_for(first + j) for j in range(n)]
        return [key_for(k) for k in rng.sample(range(args.key_space_size), n)]

    def make_op(c: Conn, rng: random.Random, i: int) -> Callable[[], object]:
        counter = iter(range(i, 1 << 62, args.clients))
        if args.command == "put" and args.sequential_keys:
            return lambda: c.put(key_for(next(counter)), value)
        if args.command == "put":
            return lambda: c.put(key_for(rng.randrange(args.key_space_size)), value)
        if args.command == "txn-put":
            return lambda: c.txn_put([(k, value) for k in keys(rng, counter, args.txn_ops)])
        if args.command == "txn-cas":
            return cas_op(c, rng, args, value)
        if args.command == "mixed":
            serial = args.consistency == "s"
            read_percent = args.read_percent

            def mixed() -> object:
                key = key_for(rng.randrange(args.key_space_size))
                if rng.randrange(100) < read_percent:
                    return c.get(key, serializable=serial)
                return c.put(key, value)

            return mixed
        if args.command == "lease-keepalive":
            lease_id = c.lease_grant(LEASE_TTL)
            return lambda: c.lease_keep_alive_once(lease_id)
        serializable = args.consistency == "s"
        if args.prefix:
            return lambda: c.get(key_for(0), range_end=key_for(RANGE_KEYS), serializable=serializable)
        return lambda: c.get(key_for(rng.randrange(RANGE_KEYS)), serializable=serializable)

    if args.command == "range":
        for start in range(0, RANGE_KEYS, 50):
            setup.txn_put([(key_for(n), value) for n in range(start, start + 50)])
    return make_op


def cas_op(c: Conn, rng: random.Random, args: argparse.Namespace, value: bytes) -> Callable[[], object]:
    """Compare-and-swap as users run it: a txn that puts a key only if its mod revision is the
    one this client last saw, else reads it (and retries with what it read next time). Keys
    are drawn from ``--cas-keys`` shared keys, so clients contend as they would on counters."""
    seen: dict[bytes, int] = {}

    def cas() -> object:
        key = b"cas/%d" % rng.randrange(args.cas_keys)
        seen[key] = c.cas(key, seen.get(key, 0), value)
        return seen[key]

    return cas


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench")
    p.add_argument(
        "command",
        choices=[
            "put",
            "range",
            "txn-put",
            "txn-cas",
            "mixed",
            "lease-keepalive",
            "watch",
            "recovery",
            "memory",
            "startup",
            "actor-kill",
        ],
    )
    p.add_argument(
        "--target",
        choices=["etcdz", "etcd"],
        default="etcdz",
        help="etcdz through the SDK, or a real etcd (3.4) through its JSON gateway",
    )
    p.add_argument(
        "--protocol",
        choices=["zmq", "grpc"],
        default="zmq",
        help="zmq: etcdz's SDK (or etcd's JSON gateway for --target etcd); grpc: etcd's gRPC API",
    )
    p.add_argument("--endpoints", help="default tcp://127.0.0.1:2379 (etcdz), http://127.0.0.1:2379 (etcd)")
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients (threads)")
    p.add_argument(
        "--conns",
        type=int,
        default=0,
        help="connections (SDK Clients, or HTTP connections to etcd) the clients share, client i "
        "using connection i %% conns; default one per client (one with --client aio). An SDK "
        "Client carries the calls of every thread sharing it at once; an HTTP connection "
        "serialises them, so fewer conns than clients limits etcd's requests in flight to --conns",
    )
    p.add_argument(
        "--client",
        choices=["sync", "aio"],
        default="sync",
        help="sync: a thread per client on blocking SDK Clients; aio: coroutines on one event "
        "loop sharing --conns asyncio clients (default 1: every request in flight on one "
        "connection; see tools.bench_aio)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="run this long (unless --total is given)")
    p.add_argument("--total", type=int, default=0, help="stop after this many requests instead")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="at most this many requests per second, all clients together (0: no limit)",
    )
    p.add_argument("--key-size", type=int, default=8)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--key-space-size", type=int, default=10_000)
    p.add_argument("--sequential-keys", action="store_true")
    p.add_argument("--txn-ops", type=int, default=1, help="txn-put: puts per txn")
    p.add_argument("--cas-keys", type=int, default=1000, help="txn-cas: the shared keys clients swap")
    p.add_argument("--read-percent", type=int, default=90, help="mixed: ranges in 100 requests")
    p.add_argument("--consistency", choices=["l", "s"], default="l")
    p.add_argument("--prefix", action="store_true", help="range: a prefix of 100 keys instead of one key")
    p.add_argument("--progress", action="store_true", help="draw the progress bar even if stderr is no TTY")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    if args.command == "txn-cas" and args.client == "aio":
        p.error("txn-cas reads each swap's answer before the next: it runs on blocking clients")
    if args.rate and args.client == "aio":
        p.error("--rate paces the blocking clients (--client sync)")
    if args.txn_ops > args.key_space_size:
        p.error("--txn-ops cannot exceed --key-space-size (a txn may not put one key twice)")
    args.conns = args.conns or (1 if args.client == "aio" else args.clients)
    args.endpoints = (args.endpoints or DEFAULT_ENDPOINTS[args.target]).split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBTOOLS:  # loads with a tool of their own
        tool: Any = importlib.import_module(SUBTOOLS[argv[0]])
        return int(tool.main(argv[1:]))
    args = parse_args(argv)
    s = measure(args)
    if args.output == "json":
        sys.stdout.write(json.dumps(s, indent=1) + "\n")
    else:
        sys.stdout.write(format_summary(s))
    return 0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run one load as ``args`` (from ``parse_args``) says and return its summary."""
    if args.client == "aio":
        return _measure_aio(args)
    conns = open_conns(args.target, args.endpoints, args.conns, args.protocol)
    try:
        make_op = load_for(args, conns[0])
        progress = args.progress or sys.stderr.isatty()
        result, elapsed = run_load(
            conns, args.clients, args.seconds, args.total, make_op, progress, rate=args.rate
        )
    finally:
        for c in conns:
            c.close()
    return _summary(args, summary(result.latencies, result.errors, elapsed))


def _measure_aio(args: argparse.Namespace) -> dict[str, Any]:
    from tools.bench_aio import run_load_aio

    if args.target != "etcdz":
        raise SystemExit("--client aio drives etcdz only")
    setup = EtcdzConn(args.endpoints)
    try:
        make_op = load_for(args, setup)
    finally:
        setup.close()
    latencies, errors, elapsed = run_load_aio(
        args.endpoints, args.conns, args.clients, args.seconds, args.total, make_op, (Exception,)
    )
    return _summary(args, summary(latencies, errors, elapsed))


def _summary(args: argparse.Namespace, s: dict[str, Any]) -> dict[str, Any]:
    s.update(
        command=args.command,
        target=args.target,
        protocol=args.protocol,
        clients=args.clients,
        conns=args.conns,
        val_size=args.val_size,
        txn_ops=args.txn_ops if args.command == "txn-put" else None,
        consistency=args.consistency if args.command == "range" else None,
        client=args.client,
    )
    return s


if __name__ == "__main__":
    sys.exit(main())
