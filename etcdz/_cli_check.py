"""``etcdzctl check perf``: etcdctl 3.4's performance check, its workloads and its verdict.

    etcdzctl check perf [--load s|m|l|xl] [--prefix P] [--auto-compact] [--auto-defrag]

As etcdctl does it: refuse a prefix that already holds keys (exit 3); then ``clients`` threads
put 1 KiB values under 256-byte keys below the prefix, as fast as a shared rate limiter allows
(``limit`` puts/s, burst 1, as golang.org/x/time/rate), for ``duration`` seconds, a progress bar
on stdout; then delete the prefix (compact the history at the delete's revision and defragment
every endpoint when asked) and print one line per criterion and ``PASS`` or ``FAIL`` (exit 1):
throughput above 90% of the limit, slowest request at most 500 ms, stddev at most 100 ms, no
errors. Lines and numbers are etcdctl's, Go's formatting included (``%f``, ``int(rps)+1``).

The hidden ``--duration SECONDS`` flag replaces the workload's 60 s; it is for tests.

The parts above the shell are pure (the limiter, the statistics, the verdict, the progress
line): time reaches them as arguments, so they are tested without a clock or a cluster. Only
``run`` and its helpers start threads, read the clock and talk to the members.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import random
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from etcdz import _cli_format as fmt
from etcdz import ops
from etcdz.errors import EtcdzError
from proto_schemas.kv import CompactionRequest

if TYPE_CHECKING:
    from etcdz.client import Client

EXIT_INVALID_INPUT, EXIT_BAD_FEATURE = 3, 4  # etcdctl's exit codes for these failures

KEY_SIZE, VALUE_SIZE = 256, 1024  # etcdctl: ksize, vsize
THROUGHPUT_RATIO = 0.9  # FAIL at or below 90% of the limit
SLOWEST_MAX_S = 0.5
STDDEV_MAX_S = 0.1
# etcdctl dials one gRPC connection per client; an etcdz Client serialises its calls and owns a
# ZeroMQ context (an I/O thread), so past this many the client threads share connections.
MAX_CONNECTIONS = 64
REFRESH_S = 0.2  # the progress bar's refresh (cheggaaa/pb's default)
CLEANUP_TIMEOUT_S = 30.0  # etcdctl's timeout for the delete, the compaction and each defrag


@dataclass(frozen=True, slots=True)
class PerfLoad:
    limit: int  # puts/s
    clients: int
    duration_s: int


LOADS = {
    "s": PerfLoad(limit=150, clients=50, duration_s=60),
    "m": PerfLoad(limit=1000, clients=200, duration_s=60),
    "l": PerfLoad(limit=8000, clients=500, duration_s=60),
    "xl": PerfLoad(limit=15000, clients=1000, duration_s=60),
}
ALIASES = {**{name: name for name in LOADS}, "small": "s", "medium": "m", "large": "l", "xLarge": "xl"}


def perf_load(name: str, duration_s: int | None = None) -> PerfLoad:
    """The workload ``--load`` names (etcdctl's aliases too), its duration overridden if given."""
    if name not in ALIASES:
        raise fmt.ExitError(f"unknown load option {name}", EXIT_BAD_FEATURE)
    load = LOADS[ALIASES[name]]
    if duration_s is None:
        return load
    if duration_s < 1:
        raise fmt.ExitError(f"invalid duration {duration_s}", fmt.EXIT_BAD_ARGS)
    return PerfLoad(limit=load.limit, clients=load.clients, duration_s=duration_s)


# -- pure parts ----------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket as golang.org/x/time/rate's ``Limiter``: ``rate_per_s`` tokens a second,
    at most ``burst`` saved up, full at first. Not thread-safe: one producer paces the work."""

    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def reserve(self, now: float, deadline: float | None = None) -> float | None:
        """Take a token: the time at which its holder may act (``now`` or later), or None —
        and nothing taken — when that would be after ``deadline`` (rate.Limiter.Wait's
        refusal to wait past its context's deadline)."""
        if deadline is not None and now >= deadline:
            return None
        tokens = self._tokens
        if self._last is not None:
            tokens = min(float(self.burst), tokens + max(0.0, now - self._last) * self.rate_per_s)
        tokens -= 1.0
        at = now if tokens >= 0 else now - tokens / self.rate_per_s
        if deadline is not None and at > deadline:
            return None
        self._tokens, self._last = tokens, now
        return at


@dataclass(frozen=True, slots=True)
class PerfStats:
    """What etcd's pkg/report computes from the results: successes only in the latencies."""

    requests: int
    total_s: float
    rps: float
    slowest_s: float
    average_s: float
    stddev_s: float
    errors: tuple[tuple[str, int], ...]


def perf_stats(latencies_s: Sequence[float], errors: Mapping[str, int], total_s: float) -> PerfStats:
    """pkg/report's Stats: requests/s over the whole run, population stddev; with no success
    the average and stddev are NaN (0/0), as there."""
    n = len(latencies_s)
    return PerfStats(
        requests=n,
        total_s=total_s,
        rps=n / total_s if total_s > 0 else 0.0,
        slowest_s=max(latencies_s, default=0.0),
        average_s=statistics.fmean(latencies_s) if n else math.nan,
        stddev_s=statistics.pstdev(latencies_s) if n else math.nan,
        errors=tuple(sorted(errors.items())),
    )


def go_f(x: float) -> str:
    """Go's ``%f``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:f}"


def verdict(stats: PerfStats, limit: int) -> tuple[list[str], bool]:
    """etcdctl's result lines (its words exactly: the slowest and stddev failures carry no
    ``FAIL:``) and whether the check passed; the last line is ``PASS`` or ``FAIL``."""
    lines: list[str] = []
    ok = True
    if stats.errors:
        lines.append("FAIL: too many errors")
        lines += [f"FAIL: ERROR({err}) -> {count}" for err, count in stats.errors]
        ok = False
    writes = int(stats.rps) + 1  # etcdctl rounds up this way, even a whole number
    if stats.rps / limit <= THROUGHPUT_RATIO:
        lines.append(f"FAIL: Throughput too low: {writes} writes/s")
        ok = False
    else:
        lines.append(f"PASS: Throughput is {writes} writes/s")
    if stats.slowest_s > SLOWEST_MAX_S:
        lines.append(f"Slowest request took too long: {go_f(stats.slowest_s)}s")
        ok = False
    else:
        lines.append(f"PASS: Slowest request took {go_f(stats.slowest_s)}s")
    if stats.stddev_s > STDDEV_MAX_S:  # False for NaN, as in Go
        lines.append(f"Stddev too high: {go_f(stats.stddev_s)}s")
        ok = False
    else:
        lines.append(f"PASS: Stddev is {go_f(stats.stddev_s)}s")
    lines.append("PASS" if ok else "FAIL")
    return lines, ok


def perf_key(prefix: bytes, n: int) -> bytes:
    """etcdctl's key: the prefix, then 256 bytes holding ``n`` as a Go varint (zig-zag)."""
    ux = n << 1 if n >= 0 else ~(n << 1)
    raw = bytearray()
    while ux >= 0x80:
        raw.append(ux & 0x7F | 0x80)
        ux >>= 7
    raw.append(ux)
    return prefix + bytes(raw) + bytes(KEY_SIZE - len(raw))


def pb_duration(seconds: int) -> str:
    """cheggaaa/pb v1's time-left box: ``00m59s`` (hours and days in front when there are)."""
    out = ""
    if seconds > 86400:
        out, seconds = f"{seconds // 86400}d", seconds % 86400
    if seconds > 3600:
        out, seconds = f"{out}{seconds // 3600}h", seconds % 3600
    return f"{out}{seconds // 60:02d}m{seconds % 60:02d}s"


def go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String`` of whole seconds: ``0s``, ``3s``, ``1m0s``, ``1h0m5s``."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    return f"{m}m{s}s" if m else f"{s}s"


def progress_line(
    current: int, total: int, elapsed_s: float, changed_s: float, finished: bool, width: int = 0
) -> str:
    """etcdctl's progress bar (cheggaaa/pb v1, format ``Bom !``) after ``elapsed_s``, the count
    last changed at ``changed_s``: counters, the bar if ``width`` (a terminal's) leaves room,
    percent, then the time left — or, ``finished``, the time taken. Without a terminal (width
    0) pb draws no bar and pads nothing."""
    percent = current / (total / 100) if total > 0 else current / 100
    counters = f" {current} / {total} "
    percent_box = f" {percent:6.2f}%"
    time_box = ""
    if finished:
        time_box = " " + go_duration(int(elapsed_s))
    elif current > 0:
        left = int((total - current) * (changed_s / current) - (elapsed_s - changed_s))
        if left > 0:
            time_box = " " + pb_duration(left)
    bar = ""
    size = width - len(counters + "B!" + percent_box + time_box)
    if width and size > 0:
        filled = min(size, math.ceil(current / total * size)) if total > 0 else 0
        empty = max(0, size - filled)
        if empty <= 0:
            inner = "o" * filled
        else:
            inner = "o" * (filled - 1) + "m" if filled > 0 else ""
        bar = "B" + inner + " " * empty + "!"
    out = counters + bar + percent_box + time_box
    return out + " " * max(0, width - len(out))


def go_quote(text: str) -> str:
    """Go's ``%q`` for the strings etcdctl quotes (prefixes, endpoints)."""
    return json.dumps(text, ensure_ascii=False)


# -- the shell: threads, the clock, the members --------------------------------------------------


def refuse_used_prefix(first: Client, prefix: str) -> None:
    """A check writes under its prefix and deletes all of it afterwards: never a user's keys."""
    if first.get(prefix, prefix=True, limit=1).kvs:  # etcdctl's words, its name included
        raise fmt.ExitError(
            f"prefix {go_quote(prefix)} has keys. Delete with etcdctl del --prefix {prefix} first",
            EXIT_INVALID_INPUT,
        )


def clean_up(
    first: Client,
    args: argparse.Namespace,
    endpoints: list[str],
    connect: Callable[..., Client],
    say: Callable[[str], None],
) -> None:
    """After a check's load, as etcdctl: delete the prefix, then compact at that revision and
    defragment every endpoint if asked (``--auto-compact``, ``--auto-defrag``)."""
    deleted = first.call(ops.delete(args.prefix, prefix=True), timeout=CLEANUP_TIMEOUT_S)
    if args.auto_compact:
        rev = deleted.header.revision
        say(f"Compacting with revision {rev}")
        # etcdctl compacts physically (WithCompactPhysical)
        first.call(CompactionRequest(revision=rev, physical=True), timeout=CLEANUP_TIMEOUT_S)
        say(f"Compacted with revision {rev}")
    if args.auto_defrag:
        for endpoint in endpoints:
            say(f"Defragmenting {go_quote(endpoint)}")
            with connect([endpoint]) as client:
                client.defragment()
            say(f"Defragmented {go_quote(endpoint)}")


def run(
    args: argparse.Namespace,
    endpoints: list[str],
    connect: Callable[..., Client],
    stdout: IO[bytes],
) -> int:
    """``check perf``: the exit code; errors of the setup and the cleanup raise (``Error: ...``
    as every etcdzctl command prints them)."""
    load = perf_load(args.load, args.duration)
    prefix = args.prefix

    def write(text: str) -> None:
        stdout.write(text.encode())
        stdout.flush()

    with connect(endpoints) as first:
        refuse_used_prefix(first, prefix)
        stats = _load(first, endpoints, load, prefix.encode(), write, stdout.isatty())
        clean_up(first, args, endpoints, connect, lambda line: write(line + "\n"))
    lines, ok = verdict(stats, load.limit)
    write("".join(line + "\n" for line in lines))
    return 0 if ok else 1


def _load(
    first: Client,
    endpoints: list[str],
    load: PerfLoad,
    prefix: bytes,
    write: Callable[[str], None],
    tty: bool,
) -> PerfStats:
    """Run the workload: a producer paced by the limiter feeds ``load.clients`` worker threads
    through a queue as deep as the number of workers (etcdctl's channel); the bar runs beside."""
    connections = [first] + [
        first.clone(endpoints=endpoints[i % len(endpoints) :] + endpoints[: i % len(endpoints)])
        for i in range(1, min(load.clients, MAX_CONNECTIONS))
    ]
    requests: queue.Queue[Any] = queue.Queue(maxsize=load.clients)
    latencies: list[list[float]] = [[] for _ in range(load.clients)]
    errors: list[dict[str, int]] = [{} for _ in range(load.clients)]
    value = bytes(VALUE_SIZE)

    def worker(i: int) -> None:
        client, mine, failed = connections[i % len(connections)], latencies[i], errors[i]
        while (request := requests.get()) is not None:
            started = time.perf_counter()
            try:
                client.call(request)
            except Exception as exc:  # every failure is a result (pkg/report): the worker goes on
                message = exc.message if isinstance(exc, EtcdzError) else str(exc)
                failed[message] = failed.get(message, 0) + 1
                continue
            mine.append(time.perf_counter() - started)

    def produce() -> None:
        limiter, rng = RateLimiter(load.limit), random.Random()
        deadline = time.monotonic() + load.duration_s
        while True:
            now = time.monotonic()
            at = limiter.reserve(now, deadline)
            if at is None:
                break
            if at > now:
                time.sleep(at - now)
            requests.put(ops.put(perf_key(prefix, rng.randrange(2**63 - 1)), value))
        for _ in range(load.clients):
            requests.put(None)

    bar = threading.Thread(target=_progress, args=(load.duration_s, write, tty), daemon=True)
    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(load.clients)]
    try:
        bar.start()
        for t in workers:
            t.start()
        began = time.perf_counter()
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        for t in workers:
            t.join()
        total_s = time.perf_counter() - began
        producer.join()
        bar.join()
    finally:
        for client in connections[1:]:
            client.close()
    merged: dict[str, int] = {}
    for failed in errors:
        for message, count in failed.items():
            merged[message] = merged.get(message, 0) + count
    return perf_stats([lat for mine in latencies for lat in mine], merged, total_s)


def _progress(total: int, write: Callable[[str], None], tty: bool) -> None:
    """The bar: one step a second, redrawn every 200 ms, then the time taken and a newline; as
    wide as the terminal, without the bar itself when stdout is not one."""
    term = shutil.get_terminal_size((0, 0)).columns if tty else 0
    started = time.monotonic()
    current, changed_s = 0, 0.0
    while True:
        elapsed_s = time.monotonic() - started
        if elapsed_s >= total:
            break
        if int(elapsed_s) != current:
            current, changed_s = int(elapsed_s), elapsed_s
        write("\r" + progress_line(current, total, elapsed_s, changed_s, False, term))
        time.sleep(min(REFRESH_S, total - elapsed_s))
    write("\r" + progress_line(total, total, time.monotonic() - started, total, True, term) + "\n")
