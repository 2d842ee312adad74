"""Watch hubs side by side: the CPU each delivered event costs the hubs, with 1, 2, 3... hubs.

    python -m tools.bench_hubs --hubs 1,2,3 --watchers 1000 --streams 21 --put-rate 20 --seconds 10

For each hub count it starts a one-member cluster whose watch hubs run as a service of their
own (the member runs none), runs the watch fan-out load of ``tools.bench watch`` against it
with the streams spread evenly over the hubs, and reads every hub's CPU time from the moment
every watch is created to the end of the load (``/proc``, as ``tools.cpu_census``). Hubs
share nothing but the member's event stream, so if the CPU per event stays flat as hubs are
added, delivery capacity grows with the cores the hubs get: one core per hub delivers
``hubs`` times the events per second of one. On a machine with fewer cores than hubs (and
the receiving clients), events/s cannot grow; this table is then the evidence for the scaling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any

from tools import bench_watch
from tools.cluster import running
from tools.cpu_census import cpu_seconds


def run_one(
    hubs: int, watchers: int, streams: int, put_rate: float, seconds: float, procs: int = 2, keys: int = 1
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="etcdz-hubs-") as root,
        running(root, 1, watch_hubs=hubs, member_hubs=0) as cluster,
    ):
        before: dict[str, float] = {}

        def ready() -> None:  # every watch created: from here on the hubs' CPU is delivery
            before.update({h.name: cpu_seconds(h.pid) for h in cluster.hubs})

        s = bench_watch.run(
            cluster.endpoints,
            watchers,
            streams,
            procs,
            put_rate,
            seconds,
            256,
            cluster.watch_urls,
            ready,
            keys,
        )
        cpu = {h.name: cpu_seconds(h.pid) - before[h.name] for h in cluster.hubs}
    delivered = max(1, s["events_delivered"])
    total = sum(cpu.values())
    return {
        "hubs": hubs,
        "hubs_used": s["hubs"],
        "events_delivered": s["events_delivered"],
        "watchers_short": s["watchers_short"],
        "watchers_doubled": s["watchers_doubled"],
        "events_expected": s["events_expected"],
        "events_per_s": s["events_per_s"],
        "p99_ms": s["latency_ms"]["p99"],
        "hub_cpu_s": {name: round(v, 2) for name, v in cpu.items()},
        "hub_cpu_us_per_event": round(total / delivered * 1e6, 2),
        "events_per_hub_cpu_s": round(delivered / total) if total else 0,
    }


def _short(r: dict[str, Any]) -> str:
    """What the events count hides: watchers that got fewer or more events than puts."""
    if not (r["watchers_short"] or r["watchers_doubled"]):
        return ""
    return f" ({r['watchers_short']} watchers short, {r['watchers_doubled']} with more)"


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| hubs | events delivered / expected | events/s | p99 | hub CPU per event "
        "| events per hub-CPU-second | with a core per hub |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['hubs']} | {r['events_delivered']:,} / {r['events_expected']:,}{_short(r)} "
            f"| {r['events_per_s']:,.0f} | {r['p99_ms']:.0f} ms | {r['hub_cpu_us_per_event']:.1f} us "
            f"| {r['events_per_hub_cpu_s']:,} "
            f"| {r['events_per_hub_cpu_s'] * r['hubs']:,} events/s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_hubs")
    p.add_argument("--hubs", default="1,2,3", help="comma-separated hub counts")
    p.add_argument("--watchers", type=int, default=1000)
    p.add_argument("--streams", type=int, default=21)
    p.add_argument("--put-rate", type=float, default=20.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--keys", type=int, default=1, help="keys the watchers and the puts spread over")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    counts = [int(n) for n in args.hubs.split(",")]
    rows = [
        run_one(n, args.watchers, args.streams, args.put_rate, args.seconds, keys=args.keys) for n in counts
    ]
    sys.stdout.write(json.dumps(rows, indent=1) + "\n" if args.output == "json" else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
