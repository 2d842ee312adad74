"""Three real members on 127.0.0.1: replication, leader failure, partitions, snapshots.

Every test starts its own cluster (free ports, own data dirs) and stops it by pid.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pytest

from etcdz.errors import EtcdzError
from tools.cluster import LocalCluster, Member, running
from tools.workload import Writer, check_writes, wait_until


def _cluster(root: str, extra_args: list[str] | None = None) -> Iterator[LocalCluster]:
    with running(root, 3, extra_args=extra_args) as cluster:
        yield cluster


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from _cluster(str(tmp_path_factory.mktemp("c3")))


def test_writes_through_any_member_are_read_on_every_member(cluster: LocalCluster) -> None:
    for i, m in enumerate(cluster.members):
        with m.client() as c:
            c.put(f"/rep/{i}", m.name)
    for m in cluster.members:
        with m.client() as c:
            resp = c.get("/rep/", prefix=True)
            assert [kv.value for kv in resp.kvs] == [b"etcdz-1", b"etcdz-2", b"etcdz-3"]
    leaders = set()
    for m in cluster.members:
        with m.client() as c:
            st = c.status()
            leaders.add(st.leader)
            assert st.raft_term >= 2 and not st.is_learner
    assert len(leaders) == 1
    # Every member published its name and client URL through raft.
    with cluster.client() as c:
        members = wait_until(
            lambda: (ms := c.member_list().members) and all(m.client_urls for m in ms) and ms,
            what="all members published",
        )
        assert members
    assert sorted(m.name for m in members) == ["etcdz-1", "etcdz-2", "etcdz-3"]
    assert {u for m in members for u in m.client_urls} == set(cluster.endpoints)
    assert LocalCluster.hashes_agree(cluster.members)


def test_killed_leader_is_replaced_quickly_and_loses_no_acknowledged_write(cluster: LocalCluster) -> None:
    writer = Writer(cluster.endpoints, "/failover")
    writer.start()
    wait_until(lambda: len(writer.acked) > 5, what="writes before the crash")
    old = cluster.leader()
    cluster.kill(old)
    survivors = [m for m in cluster.members if m is not old]

    def new_leader() -> int:
        ids = set()
        for m in survivors:
            with m.client(timeout=0.3) as c:
                ids.add(c.status().leader)
        return ids.pop() if len(ids) == 1 and 0 not in ids and old.member_id not in ids else 0

    # How fast is a figure of the benchmarks (python -m tools.bench actor-kill: the whole
    # leader), not of this test: a loaded machine may take longer than a quiet one.
    wait_until(new_leader, timeout=30, what="a new leader")
    at_election = len(writer.acked)
    wait_until(lambda: len(writer.acked) > at_election + 5, timeout=15, what="writes after failover")
    writer.finish()
    for m in survivors:
        with m.client() as c:
            check_writes(c, writer)
    # The old leader comes back with its data dir and catches up.
    cluster.start(old)
    cluster.wait_ready(member=old)
    with old.client() as c:
        check_writes(c, writer)
    assert LocalCluster.hashes_agree(cluster.members)


def test_partitioned_leader_serves_nothing_stale_and_the_cluster_converges(cluster: LocalCluster) -> None:
    old = cluster.leader()
    majority = [m for m in cluster.members if m is not old]
    with cluster.client() as c:
        c.put("/part/k", "before")
    cluster.partition([old], majority)
    # The majority elects a leader among itself and goes on.
    wait_until(
        lambda: cluster_leader_among(majority) not in (0, old.member_id), timeout=10, what="majority leader"
    )
    with majority[0].client(timeout=3.0) as c:
        wait_until(lambda: c.put("/part/k", "after"), timeout=10, what="majority write")
    # The isolated old leader refuses linearizable reads and writes (no stale "before").
    with old.client(timeout=2.0) as c:
        with pytest.raises(EtcdzError):
            c.get("/part/k")
        with pytest.raises(EtcdzError):
            c.put("/part/other", "x")
        assert c.get("/part/k", serializable=True).kvs[0].value == b"before"  # local, may be stale
    cluster.heal()
    with old.client(timeout=3.0) as c:
        assert wait_until(lambda: c.get("/part/k").kvs[0].value == b"after", what="healed read")
    wait_until(lambda: LocalCluster.hashes_agree(cluster.members), what="equal hashes")


def cluster_leader_among(members: list[Member]) -> int:
    ids = set()
    for m in members:
        with m.client(timeout=0.5) as c:
            ids.add(c.status().leader)
    return ids.pop() if len(ids) == 1 else 0


def test_a_member_far_behind_catches_up_by_snapshot(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = str(tmp_path_factory.mktemp("snap"))
    for cluster in _cluster(root, ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "5"]):
        leader = cluster.leader()
        lagging = next(m for m in cluster.members if m is not leader)
        cluster.stop(lagging)
        with cluster.client() as c:
            for i in range(300):
                c.put(f"/snap/{i:04d}", "v" * 100)
        assert glob.glob(os.path.join(leader.data_dir, "member", "snap", "*.snap")), "no snapshot taken"
        cluster.start(lagging)
        cluster.wait_ready(member=lagging)
        with lagging.client() as c:
            assert c.get("/snap/", prefix=True, count_only=True).count == 300
        with open(lagging.log_path, encoding="utf-8") as f:
            assert "snapshot installed" in f.read()
        assert LocalCluster.hashes_agree(cluster.members)
        # It restarts from its own snapshot and WAL.
        cluster.stop(lagging)
        cluster.start(lagging)
        cluster.wait_ready(member=lagging)
        with lagging.client() as c:
            assert c.get("/snap/", prefix=True, count_only=True).count == 300
        # A new member joins after the log was compacted: by snapshot too.
        joiner = cluster.add_member()
        cluster.wait_ready(member=joiner, timeout=30)
        with joiner.client() as c:
            assert c.get("/snap/", prefix=True, count_only=True).count == 300
            assert len(c.member_list().members) == 4
        with open(joiner.log_path, encoding="utf-8") as f:
            assert "snapshot installed" in f.read()
