"""``python -m tools.bench ... --client aio``: the same loads through ``etcdz.aio.AsyncClient``.

``--clients`` closed-loop coroutines on one event loop share ``--conns`` asyncio clients
(default one: every request in flight on one connection), client ``i`` on connection
``i % conns``. The loads are ``tools.bench``'s: an ``AioConn`` has ``Conn``'s methods as
coroutines, so an op built for it returns an awaitable, which the loop awaits. This is how the
asyncio client on one connection is set against N blocking clients (``--client sync``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from etcdz import Client, ops
from etcdz.aio import AsyncClient


class AioConn:
    """An ``AsyncClient`` behind ``Conn``'s methods, each returning an awaitable."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.client = AsyncClient(endpoints, timeout=10)

    def put(self, key: bytes, value: bytes) -> Any:
        return self.client.put(key, value)

    def get(self, key: bytes, *, range_end: bytes = b"", serializable: bool = False) -> Any:
        return self.client.get(key, range_end=range_end or None, serializable=serializable)

    def txn_put(self, pairs: list[tuple[bytes, bytes]]) -> Any:
        return self.client.txn([], [ops.put(k, v) for k, v in pairs])

    def lease_grant(self, ttl: int) -> int:
        """Set-up, before the clock starts: granted by a blocking client."""
        with Client(self.endpoints, timeout=10) as c:
            return c.lease_grant(ttl).id

    def lease_keep_alive_once(self, lease_id: int) -> Any:
        return self.client.lease_keep_alive_once(lease_id)

    def close(self) -> None:
        pass  # closed by run_load_aio, on its loop


def run_load_aio(
    endpoints: list[str],
    conns: int,
    clients: int,
    seconds: float,
    total: int,
    make_op: Callable[[Any, random.Random, int], Callable[[], Any]],
    errors: tuple[type[Exception], ...],
) -> tuple[list[float], dict[str, int], float]:
    """(latencies, errors by message, elapsed seconds) of the load."""
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def main() -> float:
        pool = []
        for j in range(conns):
            first = j % len(endpoints)
            pool.append(AioConn(endpoints[first:] + endpoints[:first]))
        remaining = [total]
        try:
            ops_ = [make_op(pool[i % len(pool)], random.Random(i), i) for i in range(clients)]
            stop_at = time.monotonic() + (seconds if not total else 3600)

            async def client(op: Callable[[], Any]) -> None:
                while time.monotonic() < stop_at:
                    if total:
                        if remaining[0] <= 0:
                            return
                        remaining[0] -= 1
                    t0 = time.perf_counter()
                    try:
                        await op()
                        latencies.append(time.perf_counter() - t0)
                    except errors as exc:
                        message = getattr(exc, "message", f"{type(exc).__name__}: {exc}")
                        failures[message] = failures.get(message, 0) + 1

            began = time.perf_counter()
            await asyncio.gather(*(client(op) for op in ops_))
            return time.perf_counter() - began
        finally:
            for c in pool:
                await c.client.close()

    elapsed = asyncio.run(main())
    return latencies, failures, elapsed
