"""Watch fan-out benchmark: how many events a cluster's watch hubs deliver per second, and how
long a put takes to reach its watchers.

    python -m tools.bench watch --endpoints tcp://127.0.0.1:2379 --watchers 1000 --streams 20 \\
        --put-rate 20 --seconds 10 [--procs 2]

``--watchers`` watches on one key, spread over ``--streams`` client streams (one ``Client``
each; a stream goes to one of the hubs the cluster advertises), in ``--procs`` receiving
processes. One writer puts at ``--put-rate`` per second for ``--seconds``; each value carries
its send time, so every delivered event gives one put→event latency (wall clock, one machine).
With ``--keys N`` watcher n watches key n mod N and put i writes key i mod N: each put then
reaches watchers / N of them (10,000 watchers on 10,000 keys: one), which shows what a put
costs a hub whose watchers it mostly does not concern.
The summary: events expected and delivered, events/s from the first put to the last event,
latency percentiles over every event, and how many watchers got fewer events than there were
puts or more (a watch must see each once: either is a bug, named rather than averaged away).
``--put-rate`` × ``--watchers`` beyond what the hubs (or the receiving processes) can deliver
shows as a growing tail and falling events/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import struct
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

from etcdz import Client
from etcdz.watcher import create_request
from proto_schemas.watch import WatchResponse

KEY = "/bench/watch"
STAMP = struct.Struct("d")
TAIL_S = 15.0  # how long to wait for the last events after the last put


def receiver(
    endpoints: list[str],
    hubs: list[str] | None,
    index: int,
    first_stream: int,
    streams: int,
    first_watcher: int,
    watchers: int,
    keys: int,
    ready: Any,
    stop: Any,
    results: Any,
    counts: Any,
) -> None:
    """One receiving process: ``watchers`` watches over ``streams`` clients; reports latencies
    at the end and its running event count in ``counts[index]`` (its own slot, no lock). With
    ``hubs``, stream n of the run is pinned to hub n mod len(hubs) (an even spread), else each
    stream picks one of the advertised hubs at random, as any client."""
    latencies = array("d")
    last = [0.0]
    seen = array("q", [0] * watchers)  # events each watcher got

    def sink_of(n: int) -> Any:
        def sink(item: object) -> None:  # on a stream thread; array.append holds the GIL
            if isinstance(item, WatchResponse) and item.events:
                now = time.time()
                for e in item.events:
                    latencies.append(now - STAMP.unpack_from(e.kv.value)[0])
                seen[n] += len(item.events)
                last[0] = now
                counts[index] = len(latencies)

        return sink

    clients = []
    for n in range(first_stream, first_stream + streams):
        first = n % len(endpoints)
        pinned = [hubs[n % len(hubs)]] if hubs else None
        clients.append(Client(endpoints[first:] + endpoints[:first], timeout=10, watch_endpoints=pinned))
    watches = [
        clients[n % streams]
        .watch_stream()
        .watch(create_request(key_of(first_watcher + n, keys)), sink=sink_of(n))
        for n in range(watchers)
    ]
    created = all(w.created.wait(30) for w in watches)
    hubs = sorted({c.watch_stream().hub for c in clients})
    ready.put((index, created, hubs))
    stop.wait()
    results.put((index, latencies.tobytes(), last[0], seen.tobytes()))
    for c in clients:
        c.close()


def run(
    endpoints: list[str],
    watchers: int,
    streams: int,
    procs: int,
    put_rate: float,
    seconds: float,
    val_size: int,
    hubs: list[str] | None = None,
    on_ready: Callable[[], None] | None = None,
    keys: int = 1,
) -> dict[str, Any]:
    """The load and its summary; ``on_ready`` is called once every watch is created, just
    before the first put (``tools.bench_hubs`` reads the hubs' CPU time there, so that the
    creates are not counted as delivery)."""
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    counts = ctx.RawArray("q", procs)
    split = [watchers // procs + (1 if i < watchers % procs else 0) for i in range(procs)]
    stream_split = [max(1, streams // procs + (1 if i < streams % procs else 0)) for i in range(procs)]
    workers = [
        ctx.Process(
            target=receiver,
            args=(
                endpoints,
                hubs,
                i,
                sum(stream_split[:i]),
                stream_split[i],
                sum(split[:i]),
                split[i],
                keys,
                ready,
                stop,
                results,
                counts,
            ),
            daemon=True,
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    hubs_used: set[str] = set()
    for _ in workers:
        _, created, used = ready.get(timeout=120)
        if not created:
            raise SystemExit("some watches were never created")
        hubs_used.update(used)
    if on_ready is not None:
        on_ready()
    puts = 0
    padding = b"x" * max(0, val_size - STAMP.size)
    with Client(endpoints, timeout=10) as c:
        began = time.time()
        interval = 1.0 / put_rate
        next_at = time.monotonic()
        end = next_at + seconds
        while next_at < end:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            c.put(key_of(puts, keys), STAMP.pack(time.time()) + padding)
            puts += 1
            next_at += interval
    puts_of = [puts // keys + (1 if k < puts % keys else 0) for k in range(keys)]  # per key
    expected = sum(puts_of[n % keys] for n in range(watchers))
    deadline = time.monotonic() + TAIL_S
    while sum(counts) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    latencies = array("d")
    last_event = began
    seen_by: dict[int, bytes] = {}  # receiving process -> its watchers' event counts
    for _ in workers:
        index, raw, last, seen = results.get(timeout=60)
        part = array("d")
        part.frombytes(raw)
        latencies.extend(part)
        last_event = max(last_event, last)
        seen_by[index] = seen
    per_watcher = array("q")  # by watcher number across the processes, as keys were given
    for index in sorted(seen_by):
        per_watcher.frombytes(seen_by[index])
    for w in workers:
        w.join(10)
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2) if lat else 0.0

    span = max(last_event - began, 1e-9)
    return {
        "watchers": watchers,
        "streams": sum(stream_split),
        "hubs": len(hubs_used),
        "puts": puts,
        "events_expected": expected,
        "events_delivered": len(lat),
        "watchers_short": sum(1 for n, got in enumerate(per_watcher) if got < puts_of[n % keys]),
        "watchers_doubled": sum(1 for n, got in enumerate(per_watcher) if got > puts_of[n % keys]),
        "events_per_s": round(len(lat) / span, 1),
        "latency_ms": {f"p{p:g}": pct(p) for p in (50, 90, 99, 99.9)} | {"max": pct(100)},
    }


def key_of(n: int, keys: int) -> str:
    """The key of watcher (or put) ``n`` with ``keys`` keys."""
    return KEY if keys == 1 else f"{KEY}/{n % keys}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench watch", description=__doc__)
    p.add_argument("--endpoints", default="tcp://127.0.0.1:2379")
    p.add_argument("--watchers", type=int, default=1000)
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--procs", type=int, default=2, help="receiving processes")
    p.add_argument("--put-rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--keys", type=int, default=1, help="keys the watchers and the puts spread over")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    s = run(
        args.endpoints.split(","),
        args.watchers,
        args.streams,
        args.procs,
        args.put_rate,
        args.seconds,
        args.val_size,
        keys=args.keys,
    )
    if args.output == "json":
        sys.stdout.write(json.dumps(s, indent=1) + "\n")
    else:
        lat = s["latency_ms"]
        sys.stdout.write(
            f"\nWatch summary ({s['watchers']} watchers, {s['streams']} streams, {s['hubs']} hubs):\n"
            f"  Puts:\t{s['puts']}\n"
            f"  Events:\t{s['events_delivered']} of {s['events_expected']}"
            f" (watchers short of events: {s['watchers_short']}, with more: {s['watchers_doubled']})\n"
            f"  Events/sec:\t{s['events_per_s']:.1f}\n"
            f"  Put to event:\tp50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, "
            f"p99.9 {lat['p99.9']} ms, max {lat['max']} ms\n"
        )
    complete = s["events_delivered"] == s["events_expected"] and not s["watchers_doubled"]
    return 0 if complete else 1
