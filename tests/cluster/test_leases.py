"""Leases on real members: expiry, keep-alive, revoke, and a leader change under kept leases."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from etcdz import Client, Session
from etcdz.errors import EtcdzError, LeaseNotFound
from tools.cluster import LocalCluster, running
from tools.workload import wait_until


def test_a_lease_expires_without_keep_alive_and_stays_with_it(node: LocalCluster) -> None:
    with node.client() as c:
        lone = c.lease_grant(2)
        c.put("/lease/lone", "x", lease=lone.id)
        started = time.monotonic()
        with c.lease(2) as kept:
            c.put("/lease/kept", "x", lease=kept.id)
            wait_until(lambda: c.get("/lease/lone").count == 0, timeout=15, what="expiry")
            gone_after = time.monotonic() - started
            assert gone_after >= 1.5, f"expired after {gone_after:.1f}s, before its TTL of 2 s"
            time.sleep(20 - (time.monotonic() - started))
            assert c.get("/lease/kept").count == 1  # kept alive for 20 s
            ttl = c.lease_time_to_live(kept.id, keys=True)
            assert ttl.granted_ttl == 2 and 0 <= ttl.ttl <= 2 and ttl.keys == [b"/lease/kept"]
        assert c.get("/lease/kept").count == 0  # leaving the block revokes it
        assert c.lease_time_to_live(lone.id).ttl == -1
        with pytest.raises(LeaseNotFound):
            c.lease_keep_alive_once(lone.id)
        with pytest.raises(LeaseNotFound):
            c.put("/lease/late", "x", lease=lone.id)


def test_revoke_deletes_every_attached_key_in_one_revision(node: LocalCluster) -> None:
    with node.client() as c:
        lease = c.lease_grant(60)
        for i in range(5):
            c.put(f"/revoke/{i}", "x", lease=lease.id)
        c.put("/revoke/other", "x")
        before = c.get("/none").header.revision
        c.lease_revoke(lease.id)
        after = c.get("/revoke/", prefix=True)
        assert [kv.key for kv in after.kvs] == [b"/revoke/other"]
        assert after.header.revision == before + 1


def test_a_keep_alive_right_after_its_grant_always_finds_the_lease(node: LocalCluster) -> None:
    # The grant's event reaches the lease expirer from the apply worker, the keep-alive from
    # the gateway: the second must never overtake the first into "lease not found".
    failures: list[str] = []

    def client() -> None:
        with node.client(timeout=10) as c:
            for _ in range(60):
                lease = c.lease_grant(30).id
                try:
                    c.lease_keep_alive_once(lease)
                except EtcdzError as exc:
                    failures.append(f"{lease:x}: {exc}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    with node.client() as c, pytest.raises(LeaseNotFound):
        c.lease_keep_alive_once(0x7E57)  # never granted: refused, after a short wait for a grant


def test_etcdctl_lease_commands(node: LocalCluster) -> None:
    def ctl(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "etcdz.cli", "--endpoints", node.endpoints[0], *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    granted = ctl("lease", "grant", "60")
    assert granted.startswith("lease ") and granted.endswith(" granted with TTL(60s)")
    lease_id = granted.split()[1]
    ctl("put", "--lease", lease_id, "/ctl/k", "v")
    assert ctl("lease", "timetolive", lease_id, "--keys").startswith(
        f"lease {lease_id} granted with TTL(60s), "
    )
    assert ctl("lease", "timetolive", lease_id, "--keys").endswith("attached keys([/ctl/k])")
    assert ctl("lease", "keep-alive", "--once", lease_id) == f"lease {lease_id} keepalived with TTL(60)"
    assert ctl("lease", "list").splitlines() == ["found 1 leases", lease_id]
    assert ctl("lease", "revoke", lease_id) == f"lease {lease_id} revoked"
    assert ctl("lease", "timetolive", lease_id) == f"lease {lease_id} already expired"


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(str(tmp_path_factory.mktemp("leases")), 3) as c:
        yield c


class KeepAlives(threading.Thread):
    """Renews a growing list of leases, every ``every_s``, from one client (followers forward)."""

    def __init__(self, endpoints: list[str], every_s: float) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.lease_ids: list[int] = []
        self.every_s = every_s
        self.stop = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        with Client(self.endpoints, timeout=2.0) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                for lease_id in list(self.lease_ids):
                    try:
                        client.lease_keep_alive_once(lease_id)
                    except EtcdzError:
                        pass  # the next round comes well before the lease could expire
                self.rounds += 1
                self.stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))


def test_a_leader_change_expires_no_kept_lease_and_stopped_ones_expire(cluster: LocalCluster) -> None:
    ttl, count, keys_every = 10, 1000, 50
    endpoints = cluster.endpoints
    keepers = [KeepAlives(endpoints[n:] + endpoints[:n], every_s=2.0) for n in range(len(endpoints))]
    for keeper in keepers:
        keeper.start()

    def grant(n: int) -> None:  # granted in parallel and kept from the moment they exist
        with Client(endpoints, timeout=5.0) as c:
            for i in range(n, count, 8):
                lease_id = c.lease_grant(ttl).id
                keepers[i % len(keepers)].lease_ids.append(lease_id)
                if i % keys_every == 0:
                    c.put(f"/kept/{i}", "x", lease=lease_id)

    granters = [threading.Thread(target=grant, args=(n,)) for n in range(8)]
    for t in granters:
        t.start()
    for t in granters:
        t.join(60)
    assert sum(len(k.lease_ids) for k in keepers) == count
    rounds = [k.rounds for k in keepers]
    wait_until(
        lambda: all(k.rounds >= r + 2 for k, r in zip(keepers, rounds, strict=True)),
        timeout=30,
        what="keep-alive rounds over every lease",
    )
    old = cluster.leader()
    cluster.kill(old)
    survivors = [m for m in cluster.members if m is not old]
    time.sleep(ttl + 3)  # longer than the TTL: only keep-alives (through the new leader) save them
    with survivors[0].client(timeout=5.0) as c:
        assert len(c.leases().leases) == count, "a kept lease expired across the leader change"
        assert c.get("/kept/", prefix=True).count == count // keys_every
    for keeper in keepers:
        keeper.stop.set()
    for keeper in keepers:
        keeper.join(30)
    with survivors[0].client(timeout=5.0) as c:
        # Expired, not held forever: a generous deadline (how soon after the TTL is a figure
        # of python -m tools.lease_expiry, not of this test).
        wait_until(lambda: not c.leases().leases, timeout=ttl + 30, what="every lease expired")
        assert c.get("/kept/", prefix=True).count == 0
    with Session(cluster.running()[0].client_url, ttl=5) as session:
        assert session.id and not session.lost.is_set()
