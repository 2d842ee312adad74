"""Where a write's latency goes on the raft path: the stages of each round, under a load.

    python -m tools.round_trace put --members 3 --seconds 8
    python -m tools.round_trace put --members 3 --seconds 8 --rate 100

Starts a cluster whose raft cores record their rounds (``actors/runtime/round_trace.py``),
runs the benchmark load (``tools.bench`` arguments after the command), and prints, from the
records of the load's middle (its first and last half second left out, or a tenth of a short
load), how long each stage took per entry: the group-commit hold (a proposal reaching the
leader until the round that carries it), the leader's own WAL round trip, the hop to each
follower, a follower's WAL round trip, the commit (leader's append to its commit) and the
commit reaching each follower; and how many rounds a second the leader started, with how many
entries each. The CPU each actor spends is ``tools.cpu_census``'s; this is the waiting between them.
"""

from __future__ import annotations

import argparse
import bisect
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from actors.runtime.round_trace import APPENDED, COMMITTED, OFFERED, PERSISTED, TRACE_VARIABLE
from tools import bench
from tools.bench_report import percentile_index, summary
from tools.instrumented import run_load

EDGE_NS = 500_000_000  # of the load's start and end, left out (at most a tenth of it each)


@dataclass
class MemberRounds:
    """One raft core's records: when each entry was appended, made durable and committed."""

    offers: list[tuple[int, int]] = field(default_factory=list)  # (ns, requests)
    rounds: list[tuple[int, int, int]] = field(default_factory=list)  # (ns, first, last) appended
    appended: dict[int, int] = field(default_factory=dict)  # index -> ns (first time)
    persisted: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)


def parse(lines: Iterable[str]) -> MemberRounds:
    m = MemberRounds()
    durable = 0
    for line in lines:
        ns_text, kind, a_text, b_text = line.split()
        ns, a, b = int(ns_text), int(a_text), int(b_text)
        if kind == OFFERED:
            m.offers.append((ns, a))
        elif kind == APPENDED:
            m.rounds.append((ns, a, b))
            for i in range(a, b + 1):
                m.appended.setdefault(i, ns)
        elif kind == COMMITTED:
            for i in range(a, b + 1):
                m.committed.setdefault(i, ns)
        elif kind == PERSISTED and a > durable:
            for i in range(durable + 1, a + 1):
                m.persisted.setdefault(i, ns)
            durable = a
    return m


def leader_of(members: dict[str, MemberRounds], start_ns: int, end_ns: int) -> str:
    """The member that heard the proposals in [start, end): the leader of the load."""
    return max(members, key=lambda n: sum(1 for t, _ in members[n].offers if start_ns <= t < end_ns))


def stages(members: dict[str, MemberRounds], start_ns: int, end_ns: int) -> list[tuple[str, list[int]]]:
    """Each stage's durations (ns) over the entries the leader appended in [start, end)."""
    leader_name = leader_of(members, start_ns, end_ns)
    leader = members[leader_name]
    entries = [i for i, t in leader.appended.items() if start_ns <= t < end_ns and i in leader.committed]
    round_starts = [t for t, _, _ in leader.rounds]
    held = []
    for t, _ in leader.offers:
        if start_ns <= t < end_ns:
            k = bisect.bisect_left(round_starts, t)
            if k < len(round_starts):
                held.append(round_starts[k] - t)
    out = [
        ("hold: proposal at the leader -> its round", held),
        ("leader: append -> own WAL durable", _gaps(leader.appended, leader.persisted, entries)),
        ("leader: append -> commit", _gaps(leader.appended, leader.committed, entries)),
    ]
    for name in sorted(n for n in members if n != leader_name):
        f = members[name]
        out.append((f"{name}: leader's append -> appended here", _gaps(leader.appended, f.appended, entries)))
        out.append((f"{name}: appended -> WAL durable", _gaps(f.appended, f.persisted, entries)))
        out.append(
            (f"{name}: leader's commit -> committed here", _gaps(leader.committed, f.committed, entries))
        )
    return out


def _gaps(begin: dict[int, int], end: dict[int, int], entries: list[int]) -> list[int]:
    return [end[i] - begin[i] for i in entries if i in begin and i in end]


def rounds_summary(members: dict[str, MemberRounds], start_ns: int, end_ns: int) -> str:
    leader = members[leader_of(members, start_ns, end_ns)]
    rounds = [(t, a, b) for t, a, b in leader.rounds if start_ns <= t < end_ns]
    if not rounds:
        return "no rounds"
    seconds = (end_ns - start_ns) / 1e9
    per_round = sum(b - a + 1 for _, a, b in rounds) / len(rounds)
    return f"{len(rounds) / seconds:,.0f} rounds/s on the leader, {per_round:.1f} entries per round"


def percentiles(values: list[int]) -> str:
    if not values:
        return "(none)"
    v = sorted(values)
    p50, p90 = (v[percentile_index(len(v), p)] / 1e6 for p in (50, 90))
    return f"p50 {p50:6.2f}  p90 {p90:6.2f}  mean {sum(v) / len(v) / 1e6:6.2f} ms"


def read_dir(directory: str) -> dict[str, MemberRounds]:
    members: dict[str, list[str]] = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".rounds"):
            with open(os.path.join(directory, name), encoding="ascii") as f:
                members.setdefault(name.rsplit("-", 1)[0], []).extend(f)  # a restarted core: one member
    return {name: parse(lines) for name, lines in members.items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m tools.round_trace", add_help=False)
    p.add_argument("--members", type=int, default=3)
    ours, rest = p.parse_known_args(argv)
    args = bench.parse_args(rest)
    root = tempfile.mkdtemp(prefix="etcdz-rounds-")
    out = os.path.join(root, "rounds")
    os.makedirs(out)
    run = run_load(ours.members, {TRACE_VARIABLE: out}, args, root)
    s = summary(run.result.latencies, run.result.errors, run.elapsed)
    pct = s.get("percentiles_s", {})
    members = read_dir(out)
    edge = min(EDGE_NS, (run.ended_ns - run.began_ns) // 10)
    start, end = run.began_ns + edge, run.ended_ns - edge
    lines = [
        f"{args.command} on {ours.members} member(s), {args.clients} clients: {s['requests']} requests, "
        f"{s.get('requests_per_s', 0)} requests/s, p50 {pct.get('p50', 0) * 1e3:.2f} ms, "
        f"p99 {pct.get('p99', 0) * 1e3:.2f} ms; records in {out}",
        rounds_summary(members, start, end),
    ]
    lines += [f"  {name:48s} {percentiles(values)}" for name, values in stages(members, start, end)]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
