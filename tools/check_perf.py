"""``etcdctl check perf`` against etcd 3.4 and against etcdz's gRPC doors, in the same run.

    python -m tools.check_perf --members 3 --load s [--rounds 2]

The same etcdctl binary (ETCDCTL_API=3, gRPC) runs ``check perf --load=LOAD`` against a fresh
etcd cluster (``tools.etcd_cluster``), then against a fresh etcdz cluster of the same size with
its members' gRPC doors (``tools.cluster``), alternating for ``--rounds``; each cluster is
stopped before the other starts, so the two never share the machine. Prints etcdctl's report of
each run and a summary line per run (PASS/FAIL, throughput, slowest request, stddev).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from tools.cluster import running
from tools.etcd_cluster import EtcdCluster

ETCDCTL = shutil.which("etcdctl") or "etcdctl"
CHECK_TIMEOUT_S = 600


@contextmanager
def endpoints(store: str, members: int, root: str) -> Iterator[str]:
    """A fresh cluster of ``store`` and its gRPC endpoints, stopped on exit."""
    if store == "etcd":
        with EtcdCluster(root, members) as etcd:
            yield etcd.endpoints
    else:
        with running(root, members, grpc=True) as cluster:
            yield ",".join(m.grpc_url for m in cluster.members)


PROGRESS = re.compile(r"\s*\d+ / \d+\s+[\d.]+%( \d+m\d+s)?")


def check_perf(endpoints: str, load: str) -> tuple[int, str]:
    """etcdctl's exit code and report (its progress bar left out)."""
    env = {**os.environ, "ETCDCTL_API": "3"}
    result = subprocess.run(
        [ETCDCTL, "--endpoints", endpoints, "check", "perf", f"--load={load}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=CHECK_TIMEOUT_S,
    )
    report = PROGRESS.sub("\n", (result.stdout + result.stderr).replace("\r", "\n"))
    return result.returncode, "\n".join(line for line in report.splitlines() if line.strip())


def summary(report: str) -> str:
    """etcdctl's verdict lines, on one line."""
    return "; ".join(report.splitlines()) or "(no output)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.check_perf")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--load", choices=["s", "m", "l", "xl"], default="s")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--stores", default="etcd,etcdz", help="which stores, in the order run each round")
    args = p.parse_args(argv)
    for round_ in range(args.rounds):
        for store in args.stores.split(","):
            with tempfile.TemporaryDirectory(prefix=f"check-perf-{store}-") as root:
                with endpoints(store, args.members, root) as eps:
                    code, report = check_perf(eps, args.load)
            sys.stdout.write(f"== round {round_ + 1}, {store}, --load={args.load}, exit {code}\n{report}\n")
            sys.stdout.write(f"-- {store}: {summary(report)}\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
