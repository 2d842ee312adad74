"""Mass lease expiry: does a node keep serving while thousands of leases expire at once?

    python -m tools.lease_expiry --leases 10000 --ttl 15

Starts one member on loopback, grants ``--leases`` leases with one key each, then restarts the
member: a new leader gives every lease the same deadline (TTL + election timeout), so they all
expire in the same instant. A closed-loop client puts meanwhile; the tool prints put latency
during the expiry window and checks every key is gone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from etcdz import Client
from tools.cluster import LocalCluster

GRANTERS = 8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.lease_expiry", description=__doc__)
    p.add_argument("--leases", type=int, default=10_000)
    p.add_argument("--ttl", type=int, default=15)
    args = p.parse_args(argv)
    cluster = LocalCluster(tempfile.mkdtemp(prefix="etcdz-lease-expiry-"), 1)
    cluster.start()
    try:
        cluster.wait_ready(30)

        def grant(first: int) -> None:
            with Client(cluster.endpoints, timeout=10) as c:
                for i in range(first, args.leases, GRANTERS):
                    c.put(f"/expiring/{i}", "x", lease=c.lease_grant(args.ttl).id)

        with ThreadPoolExecutor(GRANTERS) as pool:
            list(pool.map(grant, range(GRANTERS)))
        cluster.stop()
        cluster.start()
        cluster.wait_ready(30)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        with Client(cluster.endpoints, timeout=10) as c:
            while time.monotonic() < started + args.ttl + 10:
                t = time.perf_counter()
                c.put("/writer", "y")
                samples.append((time.monotonic() - started, (time.perf_counter() - t) * 1000))
            left = c.get("/expiring/", prefix=True, count_only=True).count
        window = sorted(ms for at, ms in samples if args.ttl - 1 <= at <= args.ttl + 8)
        print(
            f"{args.leases} leases expiring at once: {len(window)} puts in the 9 s around it, "
            f"p50 {window[len(window) // 2]:.1f} ms, p99 {window[int(len(window) * 0.99)]:.1f} ms, "
            f"max {window[-1]:.1f} ms; keys left afterwards: {left}"
        )
        return 0 if left == 0 else 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
