"""Metrics without sockets: the registry's families, Prometheus text (merged across processes),
the board's health verdict and the bit of HTTP the metrics process parses."""

from __future__ import annotations

import pytest

from actors.metrics.core import BadHttp, Connections, HttpRequest, MetricsBoard, answer, parse_request
from actors.metrics.exposition import render
from actors.runtime.metrics import Registry
from proto_schemas.codec import decode, encode
from proto_schemas.internal import MetricFamily, MetricSample, MetricsReport


def report(actor: str, registry: Registry) -> MetricsReport:
    return decode(encode(MetricsReport(actor=actor, families=registry.families())), MetricsReport)


def test_counters_gauges_and_histograms_render_as_prometheus_text() -> None:
    r = Registry()
    r.counter("req_total", "Requests.", ["op", "code"]).inc(op="Put", code="OK")
    r.gauge("g", 'A "gauge"\nwith two lines.').set(2.5)
    h = r.histogram("lat_seconds", "Latency.", buckets=[0.1, 1.0])
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    text = render(report("a", r).families)
    assert text.splitlines() == [  # prometheus_client's writing: names and labels as registered
        '# HELP g A "gauge"\\nwith two lines.',
        "# TYPE g gauge",
        "g 2.5",
        "# HELP lat_seconds Latency.",
        "# TYPE lat_seconds histogram",
        'lat_seconds_bucket{le="0.1"} 1.0',
        'lat_seconds_bucket{le="1"} 2.0',
        'lat_seconds_bucket{le="+Inf"} 3.0',
        "lat_seconds_sum 5.55",
        "lat_seconds_count 3.0",
        "# HELP req_total Requests.",
        "# TYPE req_total counter",
        'req_total{code="OK",op="Put"} 1.0',  # labels in name order
    ]
    with pytest.raises(ValueError):
        r.counter("req_total", "twice")
    with pytest.raises(ValueError, match="must be named"):
        r.counter("requests", "a counter without _total would be written back under another name")


def test_a_family_prometheus_has_no_words_for_is_left_out() -> None:
    good = MetricFamily(name="ok_total", kind="counter", samples=[MetricSample(name="ok_total", value=1)])
    bad = [MetricFamily(name="odd", kind="sparkline", samples=[MetricSample(name="odd", value=1)])]
    assert render([*bad, good]).splitlines() == [
        "# HELP ok_total ",
        "# TYPE ok_total counter",
        "ok_total 1.0",
    ]


def test_the_same_family_from_several_processes_is_summed() -> None:
    hubs = []
    for n in (3, 4):
        r = Registry()
        r.gauge("watchers", "Watchers.").set(n)
        hubs.append(report(f"watch{n}", r))
    board = MetricsBoard()
    for msg in hubs:
        board.report(msg, now=0.0)
    assert "watchers 7.0" in board.exposition(now=1.0).splitlines()
    assert board.exposition(now=100.0) == ""  # stale reports are left out


def board_with(has_leader: float, alarms: dict[str, float], now: float = 0.0) -> MetricsBoard:
    raft, mvcc = Registry(), Registry()
    raft.gauge("etcd_server_has_leader", "").set(has_leader)
    g = mvcc.gauge("etcdz_alarms", "", ["alarm"])
    for name, v in alarms.items():
        g.set(v, alarm=name)
    board = MetricsBoard()
    board.report(report("raft", raft), now)
    board.report(report("mvcc", mvcc), now)
    return board


def test_health_needs_a_leader_no_alarm_and_a_live_raft_core() -> None:
    assert board_with(1, {"NOSPACE": 0}).health(1.0) == (True, "")
    assert board_with(0, {}).health(1.0) == (False, "RAFT NO LEADER")
    assert board_with(1, {"NOSPACE": 1, "CORRUPT": 0}).health(1.0) == (False, "ALARM NOSPACE")
    assert board_with(1, {}).health(60.0) == (False, "RAFT NOT RUNNING")
    assert MetricsBoard().health(0.0) == (False, "RAFT NOT RUNNING")


def test_a_learner_is_healthy_but_not_ready_for_client_traffic() -> None:
    board = board_with(1, {})
    assert board.ready(1.0) == (True, "")
    raft = Registry()
    raft.gauge("etcd_server_has_leader", "").set(1)
    raft.gauge("etcd_server_is_learner", "").set(1)
    board.report(report("raft", raft), now=0.0)
    assert board.health(1.0) == (True, "") and board.ready(1.0) == (False, "LEARNER")
    out = answer(board, HttpRequest("GET", "/readyz"), 1.0)
    assert out.startswith(b"HTTP/1.1 503") and out.endswith(b'{"health":"false","reason":"LEARNER"}')
    assert answer(board, HttpRequest("GET", "/health"), 1.0).startswith(b"HTTP/1.1 200")


def test_a_member_with_a_watch_hub_down_is_not_healthy() -> None:
    board = board_with(1, {})
    gateway = Registry()
    down = gateway.gauge("etcdz_watch_hubs_down", "")
    board.report(report("gateway", gateway), 0.0)
    assert board.health(1.0) == (True, "")
    down.set(1)
    board.report(report("gateway", gateway), 0.5)
    assert board.health(1.0) == (False, "WATCH HUB DOWN")


def test_http_heads_are_parsed_once_complete_and_bounded() -> None:
    assert parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n") is None
    assert parse_request(b"GET /health?x=1 HTTP/1.1\r\nHost: x\r\n\r\n") == HttpRequest("GET", "/health")
    for bad in (b"GET /\r\n\r\n", b"x" * 9000):
        with pytest.raises(BadHttp):
            parse_request(bad)


def test_answers() -> None:
    board = board_with(1, {})
    ok = answer(board, HttpRequest("GET", "/health"), 0.0)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b'\r\n\r\n{"health":"true"}')
    head = answer(board, HttpRequest("HEAD", "/metrics"), 0.0)
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert answer(board, HttpRequest("GET", "/x"), 0.0).startswith(b"HTTP/1.1 404")
    assert answer(board, HttpRequest("DELETE", "/metrics"), 0.0).startswith(b"HTTP/1.1 405")
    sick = answer(board_with(0, {}), HttpRequest("GET", "/health"), 0.0)
    assert sick.startswith(b"HTTP/1.1 503") and sick.endswith(b'{"health":"false","reason":"RAFT NO LEADER"}')


def test_connections_that_never_finish_a_request_are_closed_and_never_block_new_ones() -> None:
    conns = Connections(max_connections=3, idle_timeout_s=5.0)
    for i in range(3):
        assert conns.opened(b"c%d" % i, float(i)) == []
    assert conns.received(b"c0", b"GET /hea", 3.0) is None  # half a request: still waiting
    assert conns.opened(b"c3", 4.0) == [b"c0"]  # full: the oldest makes room
    assert conns.received(b"c0", b"lth HTTP/1.1\r\n\r\n", 4.0) is None  # closed by us: ignored
    assert conns.received(b"c3", b"GET /health HTTP/1.1\r\n\r\n", 4.0) == HttpRequest("GET", "/health")
    assert b"c3" not in conns  # answered: the answer closes it
    assert conns.expired(5.9) == []
    assert conns.expired(6.0) == [b"c1"]  # opened at 1.0: five seconds without a request
    conns.received(b"c2", b"GET / HTTP/1.1\r\n", 6.5)  # data does not reset the clock
    assert conns.expired(7.0) == [b"c2"] and len(conns) == 0
    conns.opened(b"c4", 8.0)
    with pytest.raises(BadHttp):
        conns.received(b"c4", b"x" * 9000, 8.0)
    assert b"c4" not in conns
