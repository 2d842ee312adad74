"""Start-up benchmark: what a CLI call and an actor (re)start cost before any real work.

    python -m tools.bench startup [--runs 20] [--starts 5]

Starts a fresh single-member node in a temporary directory, then reports
- the wall time of ``etcdzctl --help``, ``etcdzctl get k`` and ``etcdzctl put k v`` against it,
  and of ``etcdctl --help`` when etcdctl is installed (the median and the worst of ``--runs``);
- each actor's ``ready_ms``, from the supervisor's exec to a loop ready to serve (interpreter,
  imports, sockets, recovery; every actor logs it when it starts), over ``--starts`` starts of
  the member (each a stop and a start, so recovery reads a data dir that already has data).

Run it on an idle machine: every figure is the interpreter's and the imports' CPU time. The
project's modules are compiled to bytecode first and the commands run with bytecode allowed,
as an installed package runs (an environment with PYTHONDONTWRITEBYTECODE set would otherwise
compile every module from source on every call). An editable install (``make install``) adds
its import finder to every start, about 15 ms more than a regular ``pip install``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from tools.cluster import LocalCluster, Member, running

PACKAGES = ("actors", "etcdz", "proto_schemas", "tools")
BYTECODE_OK = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_project() -> None:
    """Bytecode for every module of the project, next to its source (as an install has)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for package in PACKAGES:
        compileall.compile_dir(os.path.join(root, package), quiet=1)


def wall_times(argv: Sequence[str], runs: int) -> list[float]:
    """Seconds per run of a command that must succeed (its output is dropped)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=BYTECODE_OK, check=True
        )
        times.append(time.perf_counter() - started)
    return times


def ready_times(log_path: str, since: int) -> dict[str, float]:
    """Each actor's ``ready_ms`` from the member's JSON log, past byte offset ``since``."""
    ready: dict[str, float] = {}
    with open(log_path, "rb") as f:
        f.seek(since)
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "actor started" and "ready_ms" in entry:
                ready[str(entry.get("actor"))] = float(entry["ready_ms"])
    return ready


def restart(node: LocalCluster, member: Member) -> dict[str, float]:
    """Stop and start the member; its actors' ready times from this start. It waits for every
    actor the member ran before (an actor that the supervisor is restarting is, for a moment,
    not among the running ones: counting those would end the wait without it)."""
    actors = set(member.actor_pids())
    node.stop(member)
    since = os.path.getsize(member.log_path)
    node.start(member)
    node.wait_ready(timeout=60, member=member)
    deadline = time.monotonic() + 60
    ready = ready_times(member.log_path, since)
    while not actors <= ready.keys() and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = ready_times(member.log_path, since)
    return ready


def summary(samples: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples) * scale, 1),
        "max_ms": round(max(samples) * scale, 1),
    }


def run(runs: int, starts: int) -> dict[str, dict[str, float]]:
    ctl = os.path.join(os.path.dirname(sys.executable), "etcdzctl")
    results: dict[str, dict[str, float]] = {}
    compile_project()
    with tempfile.TemporaryDirectory(prefix="etcdz-startup-") as root, running(root, 1) as node:
        endpoint = ["--endpoints", node.endpoints[0]]
        subprocess.run([ctl, *endpoint, "put", "k", "v"], stdout=subprocess.DEVNULL, check=True)
        results["etcdzctl --help"] = summary(wall_times([ctl, "--help"], runs))
        results["etcdzctl get k"] = summary(wall_times([ctl, *endpoint, "get", "k"], runs))
        results["etcdzctl put k v"] = summary(wall_times([ctl, *endpoint, "put", "k", "v"], runs))
        etcdctl = shutil.which("etcdctl")
        if etcdctl:
            results["etcdctl --help"] = summary(wall_times([etcdctl, "--help"], runs))
        member = node.members[0]
        per_actor: dict[str, list[float]] = {}
        for _ in range(starts):
            for actor, ms in restart(node, member).items():
                per_actor.setdefault(actor, []).append(ms)
        for actor, samples in sorted(per_actor.items()):
            results[f"actor {actor}"] = summary(samples, scale=1.0)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench startup")
    p.add_argument("--runs", type=int, default=20, help="runs of each CLI command")
    p.add_argument("--starts", type=int, default=5, help="starts of the member")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = run(args.runs, args.starts)
    if args.json:
        sys.stdout.write(json.dumps(results) + "\n")
        return 0
    sys.stdout.write(f"{'what':<20} {'median':>9} {'worst':>9}  (ms; actors: spawn to ready to serve)\n")
    for what, s in results.items():
        sys.stdout.write(f"{what:<20} {s['median_ms']:>9.1f} {s['max_ms']:>9.1f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
