"""The CPU a pure core spends per item, timed in this process: the core benchmarks' clock.

A core run in one process (``tools.bench_mvcc_core``, ``tools.bench_gateway_core``) is warmed
up on the first half of its batches; the second half is timed in ``PARTS`` parts of this
process's CPU time, and the best and the median part are reported per item. On a machine whose
speed moves with other tenants the best part is the steadier figure; for one that does not
move at all, count instructions under callgrind (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

PARTS = 6
T = TypeVar("T")


def cpu_per_item(batches: Sequence[T], per_batch: int, work: Callable[[int, T], None]) -> tuple[float, float]:
    """(best, median) microseconds of CPU per item; ``work(i, batch)`` handles the i-th batch."""
    half = len(batches) // 2
    for i in range(half):
        work(i, batches[i])
    size = max(1, (len(batches) - half) // PARTS)
    parts = []
    for p in range(PARTS):
        first = half + p * size
        part = range(first, min(first + size, len(batches)))
        started = time.process_time()
        for i in part:
            work(i, batches[i])
        parts.append((time.process_time() - started) / max(1, len(part) * per_batch) * 1e6)
    parts.sort()
    return round(parts[0], 1), round(parts[len(parts) // 2], 1)
