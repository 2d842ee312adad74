"""The benchmark's report, as etcd's ``benchmark`` prints it (its ``pkg/report``), and its
progress bar.

``summary`` turns the latencies of the successful requests, the errors by message and the
elapsed time into one dict (what ``-o json`` prints); ``format_summary`` writes that dict as
etcd's text: Summary, Response time histogram, Latency distribution, Error distribution.
The figures are computed as etcd computes them:

- percentiles: the p-th is the first latency, in sorted order, whose index ``i`` has
  ``i * 100 / n >= p`` (etcd omits one that falls past the end; here it is the slowest; and
  below five latencies etcd's loop, giving each index to one percentile only, shifts them);
- the histogram has etcd's ten steps from the fastest to the slowest, drawn as etcd draws them:
  eleven upper bounds (the fastest itself, then fastest + k × step, then the slowest), each
  latency counted under the first bound not below it, each bar ``count * 40 // max count``.

``Progress`` redraws one status line on stderr about four times a second from its own thread,
reading a counter the load keeps without a lock (a stale count only draws a stale bar).
"""

from __future__ import annotations

import bisect
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

PERCENTILES = (10, 25, 50, 75, 90, 95, 99, 99.9)
HISTOGRAM_STEPS = 10
BAR_WIDTH = 40  # the longest histogram bar, in etcd's "∎"
BAR_CHAR = "∎"
PROGRESS_WIDTH = 40  # the progress bar, in "=" between brackets
PROGRESS_INTERVAL_S = 0.25


def percentile_index(n: int, p: float) -> int:
    """etcd's rule: the first index ``i`` with ``i * 100 / n >= p``, kept inside the list."""
    i = max(0, math.ceil(p * n / 100))
    while i > 0 and (i - 1) * 100 / n >= p:  # ceil of a float product may overshoot by one
        i -= 1
    while i < n and i * 100 / n < p:
        i += 1
    return min(i, n - 1)


def percentiles(latencies: list[float]) -> dict[str, float]:
    """``{"p10": ..., "p99.9": ...}`` of sorted, non-empty ``latencies``."""
    return {f"p{p:g}": latencies[percentile_index(len(latencies), p)] for p in PERCENTILES}


def histogram(latencies: list[float], steps: int = HISTOGRAM_STEPS) -> list[tuple[float, int]]:
    """(upper bound, count) for sorted, non-empty ``latencies``: ``steps + 1`` bounds from the
    fastest to the slowest; a latency counts under the first bound not below it."""
    fastest, slowest = latencies[0], latencies[-1]
    step = (slowest - fastest) / steps
    bounds = [fastest + step * k for k in range(steps)] + [slowest]
    counts = [0] * len(bounds)
    for lat in latencies:
        counts[min(bisect.bisect_left(bounds, lat), len(bounds) - 1)] += 1
    return list(zip(bounds, counts, strict=True))


def summary(latencies: list[float], errors: dict[str, int], elapsed_s: float) -> dict[str, Any]:
    """The report of one run as a dict; ``latencies`` in seconds, in any order."""
    lat = sorted(latencies)
    if not lat:
        return {"requests": 0, "errors": errors}
    return {
        "requests": len(lat),
        "total_s": round(elapsed_s, 4),
        "slowest_s": round(lat[-1], 6),
        "fastest_s": round(lat[0], 6),
        "average_s": round(statistics.fmean(lat), 6),
        "stddev_s": round(statistics.pstdev(lat), 6),
        "requests_per_s": round(len(lat) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "histogram": [[round(bound, 6), count] for bound, count in histogram(lat)],
        "percentiles_s": {name: round(value, 6) for name, value in percentiles(lat).items()},
        "errors": errors,
    }


def format_histogram(buckets: list[list[Any]]) -> str:
    """etcd's "Response time histogram" lines: ``  0.0012 [123]\\t|∎∎∎∎``."""
    most = max((count for _, count in buckets), default=0)
    lines = ["\nResponse time histogram:\n"]
    for bound, count in buckets:
        bar = BAR_CHAR * (count * BAR_WIDTH // most if most else 0)
        lines.append(f"  {bound:4.4f} [{count}]\t|{bar}\n")
    return "".join(lines)


def format_summary(s: dict[str, Any]) -> str:
    """The text etcd's benchmark prints at the end of a run, from a ``summary`` dict."""
    lines = ["\nSummary:\n"]
    if not s["requests"]:
        lines.append("  no successful requests\n")
    else:
        for label, key in (
            ("Total", "total_s"),
            ("Slowest", "slowest_s"),
            ("Fastest", "fastest_s"),
            ("Average", "average_s"),
            ("Stddev", "stddev_s"),
        ):
            lines.append(f"  {label}:\t{s[key]:4.4f} secs.\n")
        lines.append(f"  Requests/sec:\t{s['requests_per_s']:4.4f}\n")
        lines.append(format_histogram(s["histogram"]))
        lines.append("\nLatency distribution:\n")
        for name, value in s["percentiles_s"].items():
            lines.append(f"  {name[1:]}% in {value:4.4f} secs.\n")
    if s["errors"]:
        lines.append("\nError distribution:\n")
        for message, count in s["errors"].items():
            lines.append(f"  [{count}]\t{message}\n")
    return "".join(lines)


def progress_line(done: int, total: int, elapsed_s: float, seconds: float) -> str:
    """One status line: requests done of ``total`` (or, for a timed run with ``total`` 0,
    seconds elapsed of ``seconds``), a bar of the fraction done, and the rate so far."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if total:
        fraction, head = done / total, f"{done:>{len(str(total))}} / {total}"
    else:
        fraction, head = elapsed_s / seconds if seconds > 0 else 1.0, f"{elapsed_s:5.1f}s / {seconds:g}s"
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(fraction * PROGRESS_WIDTH)
    bar = "=" * filled + (">" if filled < PROGRESS_WIDTH and done else "")
    tail = f"{rate:.1f} req/s" if total else f"{done} requests, {rate:.1f} req/s"
    return f"{head} [{bar:<{PROGRESS_WIDTH}}] {fraction * 100:5.1f}% {tail}"


class Progress:
    """``with Progress(count, total, seconds, sys.stderr):`` redraws ``progress_line`` on
    ``stream`` every ``PROGRESS_INTERVAL_S`` until the block ends, then draws it once more and
    ends the line. ``count`` is called from the drawing thread: it must only read counters."""

    def __init__(self, count: Callable[[], int], total: int, seconds: float, stream: TextIO) -> None:
        self._count = count
        self._total = total
        self._seconds = seconds
        self._stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-progress", daemon=True)
        self._began = 0.0
        self._drawn = 0  # the longest line drawn: a shorter one is padded to cover it

    def _draw(self) -> None:
        line = progress_line(self._count(), self._total, time.perf_counter() - self._began, self._seconds)
        self._drawn = max(self._drawn, len(line))
        self._stream.write("\r" + line.ljust(self._drawn))
        self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL_S):
            self._draw()

    def __enter__(self) -> Progress:
        self._began = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._draw()
        self._stream.write("\n")
        self._stream.flush()
