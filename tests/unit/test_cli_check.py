"""``check perf``'s pure parts: the limiter, the statistics, the verdict and the progress bar,
against lines captured from etcdctl 3.4.23's ``check perf`` on a real etcd."""

from __future__ import annotations

import math

import pytest

from etcdz import _cli_check as check
from etcdz import _cli_format as fmt
from etcdz._cli_check import PerfStats
from etcdz.cli import parser


def test_limiter_starts_full_then_spaces_tokens_by_the_rate() -> None:
    limiter = check.RateLimiter(150)
    assert limiter.reserve(10.0) == 10.0  # the first token is there
    assert limiter.reserve(10.0) == pytest.approx(10.0 + 1 / 150)
    assert limiter.reserve(10.0) == pytest.approx(10.0 + 2 / 150)


def test_limiter_saves_at_most_its_burst() -> None:
    limiter = check.RateLimiter(10)
    limiter.reserve(0.0)
    assert limiter.reserve(5.0) == 5.0  # idle for 50 tokens' time: only one saved
    assert limiter.reserve(5.0) == pytest.approx(5.1)


def test_limiter_refuses_past_the_deadline_and_keeps_its_token() -> None:
    limiter = check.RateLimiter(2)
    assert limiter.reserve(0.0, deadline=1.0) == 0.0
    assert limiter.reserve(0.0, deadline=1.0) == pytest.approx(0.5)
    assert limiter.reserve(0.0, deadline=0.9) is None  # would act at 1.0
    assert limiter.reserve(0.0, deadline=1.0) == pytest.approx(1.0)  # the refusal took nothing
    assert limiter.reserve(1.0, deadline=1.0) is None


def test_a_paced_producer_gets_the_limit_per_second() -> None:
    """The producer's loop on a simulated clock: it acts when told, the deadline ends it."""
    limiter, now, taken = check.RateLimiter(150), 0.0, 0
    while (at := limiter.reserve(now, deadline=3.0)) is not None:
        now, taken = at, taken + 1
    assert taken == 3 * 150 + 1  # the full bucket's token, then 150 a second up to the deadline


def test_perf_stats_as_etcds_report() -> None:
    stats = check.perf_stats([0.1, 0.2, 0.3, 0.2], {"boom": 1}, total_s=2.0)
    assert stats.requests == 4 and stats.rps == 2.0
    assert stats.slowest_s == 0.3 and stats.average_s == pytest.approx(0.2)
    assert stats.stddev_s == pytest.approx(math.sqrt(0.02 / 4))
    assert stats.errors == (("boom", 1),)
    empty = check.perf_stats([], {}, total_s=3.0)
    assert (empty.rps, empty.slowest_s) == (0.0, 0.0) and math.isnan(empty.stddev_s)


def _stats(rps: float, slowest: float, stddev: float, errors: dict[str, int] | None = None) -> PerfStats:
    return PerfStats(
        requests=int(rps * 60),
        total_s=60.0,
        rps=rps,
        slowest_s=slowest,
        average_s=0.01,
        stddev_s=stddev,
        errors=tuple(sorted((errors or {}).items())),
    )


def test_verdict_of_a_pass_as_etcdctl_prints_it() -> None:
    lines, ok = check.verdict(_stats(150.2, 0.030731, 0.001009), limit=150)
    assert ok
    assert lines == [  # etcdctl 3.4.23, check perf --load s, on an idle etcd
        "PASS: Throughput is 151 writes/s",
        "PASS: Slowest request took 0.030731s",
        "PASS: Stddev is 0.001009s",
        "PASS",
    ]
    assert check.verdict(_stats(149.9, 0.04, 0.0015), 150)[0][0] == "PASS: Throughput is 150 writes/s"


def test_verdict_of_a_fail_in_etcdctls_words() -> None:
    lines, ok = check.verdict(_stats(135.0, 0.6, 0.25, {"etcdserver: request timed out": 3}), limit=150)
    assert not ok
    assert lines == [
        "FAIL: too many errors",
        "FAIL: ERROR(etcdserver: request timed out) -> 3",
        "FAIL: Throughput too low: 136 writes/s",  # 90% exactly is too low
        "Slowest request took too long: 0.600000s",  # etcdctl prints no FAIL: on these two
        "Stddev too high: 0.250000s",
        "FAIL",
    ]
    assert check.verdict(_stats(135.01, 0.5, 0.1), 150) == (
        [
            "PASS: Throughput is 136 writes/s",
            "PASS: Slowest request took 0.500000s",
            "PASS: Stddev is 0.100000s",
            "PASS",
        ],
        True,
    )


def test_verdict_with_no_success_prints_go_nan() -> None:
    lines, ok = check.verdict(check.perf_stats([], {"no leader": 5}, 3.0), limit=150)
    assert not ok and lines[2:] == [
        "FAIL: Throughput too low: 1 writes/s",
        "PASS: Slowest request took 0.000000s",
        "PASS: Stddev is NaNs",  # Go: NaN > 0.1 is false
        "FAIL",
    ]


def test_keys_are_etcdctls_varint_in_256_bytes() -> None:
    assert check.perf_key(b"/p/", 1) == b"/p/\x02" + bytes(255)
    assert check.perf_key(b"/p/", 300) == b"/p/\xd8\x04" + bytes(254)  # zig-zag 600
    assert len(check.perf_key(b"/p/", 2**63 - 2)) == 3 + check.KEY_SIZE


def test_loads_and_their_aliases() -> None:
    assert check.perf_load("s") == check.PerfLoad(limit=150, clients=50, duration_s=60)
    assert check.perf_load("medium") == check.PerfLoad(limit=1000, clients=200, duration_s=60)
    assert check.perf_load("large") == check.PerfLoad(limit=8000, clients=500, duration_s=60)
    assert check.perf_load("xLarge", 3) == check.PerfLoad(limit=15000, clients=1000, duration_s=3)
    with pytest.raises(fmt.ExitError) as refused:
        check.perf_load("zz")
    assert (refused.value.message, refused.value.code) == ("unknown load option zz", 4)


def test_progress_lines_as_etcdctl_draws_them_without_a_terminal() -> None:
    assert check.progress_line(0, 60, 0.2, 0.0, False) == " 0 / 60    0.00%"
    assert check.progress_line(1, 60, 1.0, 1.0, False) == " 1 / 60    1.67% 00m59s"
    assert check.progress_line(1, 60, 1.4, 1.0, False) == " 1 / 60    1.67% 00m58s"
    assert check.progress_line(59, 60, 59.2, 59.0, False) == " 59 / 60   98.33%"  # under 1 s left
    assert check.progress_line(60, 60, 60.001, 60.0, True) == " 60 / 60  100.00% 1m0s"
    assert check.progress_line(3, 3, 3.0, 3.0, True) == " 3 / 3  100.00% 3s"


def test_progress_bar_fills_a_terminal() -> None:
    half = check.progress_line(30, 60, 30.0, 30.0, False, width=50)
    assert half == " 30 / 60 B" + "o" * 11 + "m" + " " * 12 + "!  50.00% 00m30s"
    assert len(half) == 50
    done = check.progress_line(60, 60, 60.0, 60.0, True, width=40)
    assert done == " 60 / 60 B" + "o" * 16 + "! 100.00% 1m0s" and len(done) == 40
    assert check.progress_line(0, 60, 0.0, 0.0, False, width=30) == " 0 / 60 B" + " " * 12 + "!   0.00%"


def test_durations_in_pbs_and_gos_words() -> None:
    assert [check.pb_duration(s) for s in (59, 61, 3601)] == ["00m59s", "01m01s", "1h00m01s"]
    assert [check.go_duration(s) for s in (0, 3, 60, 3605)] == ["0s", "3s", "1m0s", "1h0m5s"]


def test_cli_flags_and_the_hidden_duration() -> None:
    args = parser().parse_args(["check", "perf", "--load", "m", "--prefix", "/x/", "--auto-compact"])
    assert (args.command, args.action, args.load, args.prefix) == ("check", "perf", "m", "/x/")
    assert args.auto_compact and not args.auto_defrag and args.duration is None
    assert parser().parse_args(["check", "perf", "--duration", "3"]).duration == 3
    perf = parser()._subparsers._group_actions[0].choices["check"]  # type: ignore[union-attr,index]
    help_text = perf._subparsers._group_actions[0].choices["perf"].format_help()
    assert "--auto-defrag" in help_text and "--duration" not in help_text
