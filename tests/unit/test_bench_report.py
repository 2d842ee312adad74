"""The benchmark's report computes and prints what etcd's benchmark does (its pkg/report)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from etcdz.errors import RequestTimedOut
from tools.bench import run_load
from tools.bench_report import (
    PERCENTILES,
    Progress,
    format_histogram,
    format_summary,
    histogram,
    percentile_index,
    percentiles,
    progress_line,
    summary,
)


def etcd_percentile_indexes(n: int) -> list[int | None]:
    """etcd's loop, word for word: the index each percentile takes (None: etcd leaves it out)."""
    found: list[int | None] = [None] * len(PERCENTILES)
    j = 0
    for i in range(n):
        if j < len(PERCENTILES) and i * 100.0 / n >= PERCENTILES[j]:
            found[j] = i
            j += 1
    return found


def test_percentiles_take_the_index_etcd_takes_and_the_slowest_past_the_end() -> None:
    """From five latencies on (below, etcd's loop gives one index to one percentile only, so
    two percentiles that share an index shift the rest)."""
    for n in range(5, 1200):
        for p, want in zip(PERCENTILES, etcd_percentile_indexes(n), strict=True):
            assert percentile_index(n, p) == (n - 1 if want is None else want), (n, p)


def test_percentiles_of_a_hundred_latencies() -> None:
    got = percentiles([float(i) for i in range(100)])
    assert got == {"p10": 10, "p25": 25, "p50": 50, "p75": 75, "p90": 90, "p95": 95, "p99": 99, "p99.9": 99}


def test_histogram_has_ten_steps_from_fastest_to_slowest_counting_under_the_first_bound_not_below() -> None:
    buckets = histogram([0.0, 0.5, 1.0, 1.0, 2.5, 9.5, 10.0])
    assert [bound for bound, _ in buckets] == [float(k) for k in range(11)]
    assert [count for _, count in buckets] == [1, 3, 0, 1, 0, 0, 0, 0, 0, 0, 2]


def test_histogram_of_equal_latencies_puts_all_under_the_first_bound() -> None:
    buckets = histogram([0.002] * 5)
    assert len(buckets) == 11 and buckets[0] == (0.002, 5)
    assert sum(count for _, count in buckets) == 5


def test_histogram_bars_are_scaled_to_forty_of_the_largest_count() -> None:
    text = format_histogram([[0.001, 1], [0.0015, 3], [0.002, 0]])
    assert text == (
        f"\nResponse time histogram:\n  0.0010 [1]\t|{'∎' * 13}\n  0.0015 [3]\t|{'∎' * 40}\n  0.0020 [0]\t|\n"
    )


def test_summary_is_json_with_a_histogram_of_every_request() -> None:
    latencies = [0.001 * (i % 7 + 1) for i in range(40)]
    s = summary(latencies, {"etcdserver: request timed out": 2}, elapsed_s=0.5)
    assert json.loads(json.dumps(s)) == s
    assert s["requests"] == 40 and s["requests_per_s"] == 80.0
    assert s["fastest_s"] == 0.001 and s["slowest_s"] == 0.007
    assert sum(count for _, count in s["histogram"]) == 40
    assert s["histogram"][0][0] == s["fastest_s"] and s["histogram"][-1][0] == s["slowest_s"]
    assert s["fastest_s"] <= s["percentiles_s"]["p50"] <= s["percentiles_s"]["p99.9"] <= s["slowest_s"]


def test_summary_text_reads_as_etcds() -> None:
    text = format_summary(summary([0.001, 0.002, 0.003], {"boom": 1}, elapsed_s=1.0))
    assert text.startswith("\nSummary:\n  Total:\t1.0000 secs.\n  Slowest:\t0.0030 secs.\n")
    assert "  Requests/sec:\t3.0000\n\nResponse time histogram:\n  0.0010 [1]\t|" in text
    assert "\nLatency distribution:\n  10% in 0.0020 secs.\n" in text
    assert "  99.9% in 0.0030 secs.\n" in text
    assert text.endswith("\nError distribution:\n  [1]\tboom\n")
    assert format_summary(summary([], {}, 1.0)) == "\nSummary:\n  no successful requests\n"


def test_progress_line_of_a_total() -> None:
    assert progress_line(50, 200, 2.0, 0) == f" 50 / 200 [{'=' * 10}>{' ' * 29}]  25.0% 25.0 req/s"
    assert progress_line(200, 200, 4.0, 0) == f"200 / 200 [{'=' * 40}] 100.0% 50.0 req/s"
    assert progress_line(0, 200, 0.0, 0) == f"  0 / 200 [{' ' * 40}]   0.0% 0.0 req/s"


def test_progress_line_of_a_duration() -> None:
    line = progress_line(300, 0, 1.5, 3.0)
    assert line == f"  1.5s / 3s [{'=' * 20}>{' ' * 19}]  50.0% 300 requests, 200.0 req/s"
    assert "] 100.0% " in progress_line(900, 0, 3.1, 3.0)  # the last draw, a little late


def test_progress_redraws_one_line_and_ends_it() -> None:
    stream, done = io.StringIO(), [0]
    with Progress(lambda: done[0], 10, 0, stream):
        done[0] = 10
    out = stream.getvalue()
    assert out.startswith("\r") and out.endswith("\n") and out.count("\n") == 1
    assert out.rstrip().rsplit("\r", 1)[-1].startswith("10 / 10 [")


def test_a_request_failing_in_any_way_is_counted_by_its_kind() -> None:
    calls = iter(range(10))

    def make_op(conn: object, rng: object, i: int) -> Callable[[], object]:
        def op() -> object:
            n = next(calls)
            if n % 3 == 1:
                raise RequestTimedOut()
            if n % 3 == 2:
                raise KeyError("a client bug")
            return n

        return op

    result, _ = run_load([object()], clients=1, seconds=5, total=9, make_op=make_op)  # type: ignore[list-item]
    assert len(result.latencies) == 3
    assert result.errors == {RequestTimedOut().message: 3, "KeyError: 'a client bug'": 3}
