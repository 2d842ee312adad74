"""The metrics endpoint of a real node: Prometheus text whose counters move with the traffic,
/health as etcd's (a leader and no alarm), and HTTP the server survives being abused with."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from etcdz.errors import FutureRevision
from proto_schemas.maintenance import AlarmType
from tools.cluster import LocalCluster, free_ports, running
from tools.workload import wait_until


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, str]]:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    with running(str(tmp_path_factory.mktemp("metrics")), 1, extra_args=["--listen-metrics-urls", url]) as c:
        yield c, url


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def scrape(url: str, until: dict[str, float] | None = None, timeout: float = 10.0) -> dict[str, float]:
    """The metrics, once every series named in ``until`` reached at least its value."""
    deadline = time.monotonic() + timeout
    while True:
        status, text = fetch(url + "/metrics")
        assert status == 200
        got = samples(text)
        if not until or all(got.get(k, -1) >= v for k, v in until.items()) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def proposals(got: dict[str, float]) -> float:
    return sum(v for k, v in got.items() if k.startswith("etcdz_group_commit_proposals_total{"))


def test_counters_move_with_the_traffic(node: tuple[LocalCluster, str]) -> None:
    cluster, url = node
    # Every actor has reported once (each does within a second of its start).
    reported: dict[str, float] = {
        "etcd_server_has_leader": 1,
        "etcd_server_proposals_applied_total": 0,
        "etcd_disk_wal_fsync_duration_seconds_count": 0,
        "etcd_disk_backend_commit_duration_seconds_count": 0,
    }
    before = scrape(url, reported)
    puts = 'etcdz_server_requests_total{code="OK",op="Put"}'
    future = 'etcdz_server_requests_total{code="FUTURE_REV",op="Range"}'
    with cluster.client() as c:
        for i in range(20):
            c.put(f"k{i}", "v")
        with pytest.raises(FutureRevision):
            c.get("k0", revision=10_000)
        lease = c.lease_grant(60).id
        with c.watch("k", prefix=True) as w:
            want = {
                puts: before.get(puts, 0) + 20,
                future: before.get(future, 0) + 1,
                "etcd_server_proposals_applied_total": before["etcd_server_proposals_applied_total"] + 21,
                "etcd_disk_wal_fsync_duration_seconds_count": before[
                    "etcd_disk_wal_fsync_duration_seconds_count"
                ]
                + 1,
                "etcd_debugging_mvcc_watcher_total": 1,
                "etcdz_leases_active": before.get("etcdz_leases_active", 0) + 1,
            }
            after = scrape(url, want)
            assert w is not None
        c.lease_revoke(lease)
    for name, value in want.items():
        assert after.get(name, -1) >= value, name
    # Every proposal the leader stepped is counted, at once or held for company (group commit).
    deadline = time.monotonic() + 10
    while proposals(after) < proposals(before) + 20 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = scrape(url)
    assert proposals(after) >= proposals(before) + 20
    assert after["etcd_server_is_leader"] == 1 and after["etcd_server_leader_changes_seen_total"] >= 1
    assert (
        after["etcd_disk_backend_commit_duration_seconds_count"]
        > before["etcd_disk_backend_commit_duration_seconds_count"]
    )
    assert (
        after['etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}']
        == after["etcd_disk_wal_fsync_duration_seconds_count"]
    )
    assert (
        after["etcd_debugging_mvcc_current_revision"] >= 21 and after["etcd_mvcc_db_total_size_in_bytes"] > 0
    )
    logs = open(cluster.members[0].log_path, encoding="utf-8").read()
    assert '"leader changed"' in logs


def test_health_follows_leader_and_alarms(node: tuple[LocalCluster, str]) -> None:
    cluster, url = node
    assert fetch(url + "/health") == (200, '{"health":"true"}')
    with cluster.client() as c:
        member = c.status().header.member_id
        c.alarm_raise(member, AlarmType.NOSPACE)
        deadline = time.monotonic() + 10
        while fetch(url + "/health")[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = fetch(url + "/health")
        assert status == 503 and json.loads(body) == {"health": "false", "reason": "ALARM NOSPACE"}
        c.alarm_disarm()
    deadline = time.monotonic() + 10
    while fetch(url + "/health")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fetch(url + "/health") == (200, '{"health":"true"}')
    logs = open(cluster.members[0].log_path, encoding="utf-8").read()
    assert '"alarm raised"' in logs and '"alarm cleared"' in logs


def test_bad_http_gets_an_answer_and_the_server_goes_on(node: tuple[LocalCluster, str]) -> None:
    _, url = node
    assert fetch(url + "/nothing-here")[0] == 404
    host, port = url.removeprefix("http://").split(":")
    for raw in (b"GARBAGE\r\n\r\n", b"\x00\xff" * 5000, b"POST /metrics HTTP/1.1\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(raw)
            answer = s.recv(200)
        assert answer.startswith(b"HTTP/1.1 4"), answer
    with socket.create_connection((host, int(port)), timeout=5):
        pass  # connected and gone without a word
    assert fetch(url + "/health")[0] == 200


def test_half_sent_requests_never_keep_health_from_answering(node: tuple[LocalCluster, str]) -> None:
    """An orchestrator must get its /health answer although 300 connections hold half-sent
    requests (more than the server keeps open), and those are closed after the idle timeout."""
    _, url = node
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    try:
        for _ in range(300):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
            stalled.append(s)
        assert fetch(url + "/health") == (200, '{"health":"true"}')
        last = stalled[-1]  # not evicted by the others: closed by the idle timeout
        last.settimeout(30)
        assert last.recv(100) == b""
    finally:
        for s in stalled:
            s.close()


def test_a_hung_actor_is_killed_restarted_and_counted(node: tuple[LocalCluster, str]) -> None:
    """SIGSTOP of the lease expirer (a process alive to waitpid, serving nothing): the
    supervisor sees its heartbeat stop, kills it and starts it again alone; the metrics count
    the restart with its cause, and the member is healthy again."""
    cluster, url = node
    member = cluster.members[0]
    victim = member.actor_pids()["lease"]
    others = {
        a: p for a, p in member.actor_pids().items() if a in ("wal", "raft", "mvcc", "apply", "gateway")
    }
    os.kill(victim, signal.SIGSTOP)
    try:
        wait_until(
            lambda: member.actor_pids().get("lease") not in (None, victim), 60, "the hung expirer replaced"
        )
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass  # killed, as it should be
    restarts = 'etcdz_actor_restarts_total{actor="lease"}'
    got = scrape(url, {restarts: 1})
    assert got.get(restarts, 0) >= 1
    assert any(k.startswith("etcdz_actor_last_restart_timestamp_seconds") and "hung" in k for k in got)
    assert {a: p for a, p in member.actor_pids().items() if a in others} == others  # restarted alone
    wait_until(lambda: fetch(url + "/health")[0] == 200, 30, "healthy again")
