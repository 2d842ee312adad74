"""The benchmarks run end to end against a real node (tiny loads: they must work, not be fast)."""

from __future__ import annotations

import json

import pytest

from tools import bench, bench_recovery, bench_watch
from tools.cluster import LocalCluster


def test_put_and_range_benchmarks_report_every_request(
    shared_node: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoints = ",".join(shared_node.endpoints)
    for command in (["put"], ["range"], ["range", "--consistency", "s", "--prefix"]):
        args = [*command, "--endpoints", endpoints, "--clients", "2", "--total", "40", "-o", "json"]
        assert bench.main(args) == 0
        s = json.loads(capsys.readouterr().out)
        assert s["requests"] == 40 and s["errors"] == {}, command
        assert s["fastest_s"] <= s["percentiles_s"]["p50"] <= s["slowest_s"]


def test_watch_benchmark_delivers_every_event_to_every_watcher(shared_node: LocalCluster) -> None:
    s = bench_watch.run(
        shared_node.endpoints, watchers=40, streams=4, procs=2, put_rate=20, seconds=1, val_size=64
    )
    assert s["puts"] >= 10 and s["hubs"] == 1
    assert s["events_delivered"] == s["events_expected"] == s["puts"] * 40
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] <= s["latency_ms"]["max"]


def test_recovery_benchmark_measures_each_kill() -> None:
    summary = bench_recovery.run(["gateway"], rounds=1)
    assert 0 < summary["gateway"]["median_s"] <= summary["gateway"]["max_s"] < 60
