"""A watch never goes silently blind: members started with etcd's flags alone side by side on
one host (their hubs bind free ports), a hub that cannot bind (unhealthy member, a watch that
ends with an error), a client or announcement aimed at the wrong cluster (refused)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from etcdz import Client
from etcdz.errors import ClusterIdMismatch, EtcdzError, PermissionDenied, Unavailable
from proto_schemas.codec import decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.errors import ErrorCode, ErrorResponse
from proto_schemas.watch import HubAnnounce, WatchHubsRequest, WatchPing
from tools import topology
from tools.cluster import LocalCluster, Member, free_port
from tools.workload import wait_until


def etcd_style(name: str, **more: str) -> dict[str, Any]:
    """A single-member cluster configured with etcd's flags only (as ``ETCDZ_*``)."""
    env = {
        "ETCDZ_NAME": name,
        "ETCDZ_DATA_DIR": topology.DATA_DIR,
        "ETCDZ_LISTEN_CLIENT_URLS": f"tcp://{name}:2379",
        "ETCDZ_ADVERTISE_CLIENT_URLS": f"tcp://{name}:2379",
        "ETCDZ_LISTEN_PEER_URLS": f"tcp://{name}:2380",
        "ETCDZ_INITIAL_ADVERTISE_PEER_URLS": f"tcp://{name}:2380",
        "ETCDZ_INITIAL_CLUSTER": f"{name}=tcp://{name}:2380",
        **more,
    }
    return {"environment": env}


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Clusters ``a`` and ``b`` (etcd's flags alone) and ``c``, whose hub has a fixed port and
    which serves /health, all on one host."""
    doc = {
        "services": {
            "a": etcd_style("a"),
            "b": etcd_style("b"),
            "c": etcd_style(
                "c",
                ETCDZ_LISTEN_WATCH_URLS="tcp://c:2381",
                ETCDZ_LISTEN_METRICS_URLS="http://c:2383",
            ),
        }
    }
    clusters = LocalCluster(str(tmp_path_factory.mktemp("sidebyside")), doc=doc)
    clusters.start()
    try:
        clusters.wait_ready(timeout=60)
        yield clusters
    finally:
        clusters.stop()


def member(clusters: LocalCluster, name: str) -> Member:
    return next(m for m in clusters.members if m.name == name)


def hubs_of(m: Member) -> list[str]:
    with Client([m.client_url], timeout=5) as c:
        return wait_until(c.watch_hubs, timeout=60, what=f"{m.name}'s hub announced")


def test_two_clusters_with_etcd_flags_only_each_watch_sees_exactly_its_own_events(
    side_by_side: LocalCluster,
) -> None:
    a, b = member(side_by_side, "a"), member(side_by_side, "b")
    hub_a, hub_b = hubs_of(a), hubs_of(b)
    assert len(hub_a) == len(hub_b) == 1 and hub_a != hub_b
    assert not any(u.endswith(":0") for u in hub_a + hub_b)  # advertised as bound
    with Client([a.client_url], timeout=5) as ca, Client([b.client_url], timeout=5) as cb:
        assert ca.status().header.cluster_id != cb.status().header.cluster_id
        with ca.watch("own", prefix=True) as wa, cb.watch("own", prefix=True) as wb:
            assert wa.created.wait(30) and wb.created.wait(30)
            ca.put("own-a", "1")
            cb.put("own-b", "2")
            got_a, got_b = wa.get(timeout=30), wb.get(timeout=30)
            assert got_a is not None and [e.kv.key for e in got_a.events] == [b"own-a"]
            assert got_b is not None and [e.kv.key for e in got_b.events] == [b"own-b"]
            assert got_a.header.cluster_id == ca.cluster_id and got_b.header.cluster_id == cb.cluster_id
            assert wa.get(timeout=2) is None and wb.get(timeout=2) is None  # nothing of the other


def test_a_client_pointed_at_another_clusters_hub_is_refused(side_by_side: LocalCluster) -> None:
    a, b = member(side_by_side, "a"), member(side_by_side, "b")
    (hub_b,) = hubs_of(b)
    with Client([a.client_url], timeout=3, watch_endpoints=[hub_b]) as c:
        w = c.watch("own", prefix=True)
        with pytest.raises(ClusterIdMismatch, match="cluster ID mismatch"):
            w.get(timeout=60)
    # The hub itself refuses a handshake naming another cluster (any later request too).
    with Client([a.client_url], timeout=5) as c:
        c.status()
        mine = c.cluster_id
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(hub_b)
        sock.send_multipart(pack(WatchPing(cluster_id=mine), msg_id=1))
        assert sock.poll(30_000)
        _, body = unpack_header(sock.recv_multipart())
        refused = decode(body)
        assert isinstance(refused, ErrorResponse) and refused.code == ErrorCode.CLUSTER_ID_MISMATCH
    finally:
        sock.close()
    # An announced URL the SDK cannot use ends the watch with an error, never silently.
    with Client([a.client_url], timeout=2, watch_endpoints=["tcp://no port here"]) as c:
        with pytest.raises(Unavailable, match="invalid hub URL"):
            c.watch("own").get(timeout=60)


def test_only_hubs_may_announce_over_the_client_port(side_by_side: LocalCluster) -> None:
    a = member(side_by_side, "a")
    with Client([a.client_url], timeout=5) as c:
        with pytest.raises(PermissionDenied):
            c.call(HubAnnounce(hub_id="rogue", urls=["tcp://127.0.0.1:1"]))
        listed = c.call(WatchHubsRequest())
        assert "tcp://127.0.0.1:1" not in listed.urls and listed.events_urls == []


def health(m: Member) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(m.metrics_url + "/health", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_hub_that_restarts_at_its_fixed_port_gets_its_watches_back(side_by_side: LocalCluster) -> None:
    c_member = member(side_by_side, "c")
    hubs_of(c_member)
    with Client([c_member.client_url], timeout=5) as c:
        with c.watch("restart/", prefix=True) as w:
            assert w.created.wait(30)
            os.kill(c_member.actor_pids()["watch0"], signal.SIGKILL)
            c.put("restart/1", "x")  # while the hub is down: read from history on its return
            got = w.get(timeout=60)
            assert got is not None and [e.kv.key for e in got.events] == [b"restart/1"]
    wait_until(lambda: not status_errors(c_member), timeout=60, what="hub serving")


def status_errors(m: Member) -> list[str]:
    with m.client(timeout=5) as c:
        return list(c.status().errors)


def test_a_hub_whose_port_is_taken_makes_the_member_unhealthy_and_the_watch_fails(
    side_by_side: LocalCluster,
) -> None:
    c_member = member(side_by_side, "c")
    (hub,) = hubs_of(c_member)
    port = int(hub.rpartition(":")[2])
    with Client([c_member.client_url], timeout=3) as c:
        watch = c.watch("k")
        assert watch.created.wait(30)
        held = take_over(c_member, port)
        try:
            wait_until(lambda: c.status().errors, timeout=60, what="member reports its hub down")
            assert c.status().errors == ["watch hub watch0 is down"]
            assert wait_until(lambda: health(c_member)[0] == 503, timeout=30, what="/health 503")
            assert "WATCH HUB DOWN" in health(c_member)[1]
            assert c.watch_hubs() == []  # no longer advertised
            with pytest.raises(EtcdzError, match="no watch hub"):
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    watch.get(timeout=1)
            ctl = subprocess.run(
                [sys.executable, "-m", "etcdz.cli", "--endpoints", c_member.client_url, "endpoint", "health"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ctl.returncode == 1 and "watch hub watch0 is down" in ctl.stderr
            wait_until(lambda: failing(c_member), timeout=90, what="the supervisor gives up")
        finally:
            held.close()
        # The port is free again: the hub's next restart takes it and the member is healthy.
        wait_until(lambda: not c.status().errors, timeout=90, what="hub back")
        assert wait_until(lambda: health(c_member)[0] == 200, timeout=30, what="/health 200")
    with open(c_member.log_path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.startswith("{")]
    errors = {(line["event"], line.get("actor")) for line in lines if line.get("level") == "error"}
    assert ("watch hub down: member unhealthy", "gateway") in errors
    assert ("side process keeps failing", "supervisor") in errors
    assert any(
        f"cannot listen on --listen-watch-urls tcp://127.0.0.1:{port}" in str(line.get("error"))
        for line in lines
    )


def failing(m: Member) -> bool:
    with open(m.log_path, encoding="utf-8") as f:
        return "side process keeps failing" in f.read()


def take_over(m: Member, port: int) -> socket.socket:
    """Kill the member's hub and bind its port before the supervisor starts it again (the
    new hub needs far longer to start than this does; tried again if it won anyway)."""
    for _ in range(5):
        pid = m.actor_pids()["watch0"]
        os.kill(pid, signal.SIGKILL)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its clients' connections linger
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                return sock
            except OSError:
                time.sleep(0.001)
        sock.close()
        wait_until(lambda: "watch0" in m.actor_pids(), timeout=30, what="hub restarted")
    raise AssertionError("the restarted hub always took its port first")


def test_a_member_whose_hub_cannot_bind_at_start_exits_naming_flag_and_address(
    tmp_path: Any,
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        client, peer = free_port(), free_port()
        argv = [
            sys.executable,
            "-m",
            "actors.supervisor",
            "--name=x",
            f"--data-dir={tmp_path / 'x'}",
            f"--listen-client-urls=tcp://127.0.0.1:{client}",
            f"--listen-peer-urls=tcp://127.0.0.1:{peer}",
            f"--initial-cluster=x=tcp://127.0.0.1:{peer}",
            f"--listen-watch-urls=tcp://127.0.0.1:{taken}",
            "--log-format=console",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert f"cannot listen on --listen-watch-urls tcp://127.0.0.1:{taken}" in done.stderr + done.stdout
