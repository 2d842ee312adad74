"""Membership on real members: add (learner), promote, remove under load, leader transfer,
a member whose data dir was wiped, and etcdctl's member commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from etcdz import Client
from etcdz.errors import (
    BadLeaderTransferee,
    MemberNotFound,
    MemberNotLearner,
    NotLeader,
    PeerURLExists,
)
from tools.cluster import LocalCluster, running
from tools.workload import Writer, check_writes, took_effect, wait_until


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(str(tmp_path_factory.mktemp("members")), 3) as c:
        yield c


def ctl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "etcdz.cli",
            "--endpoints",
            ",".join(m.client_url for m in cluster.running()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_add_a_learner_promote_it_and_remove_an_old_member_under_load(cluster: LocalCluster) -> None:
    writer = Writer(cluster.endpoints, "/members")
    writer.start()
    wait_until(lambda: len(writer.acked) > 5, what="writes before the change")
    new = cluster.add_member(learner=True)
    with new.client(timeout=3.0) as c:
        # A learner replicates: its local (serializable) view catches up with the leader's.
        wait_until(lambda: c.get("/members/", prefix=True, serializable=True).count >= 5, timeout=20)
        assert c.status().is_learner
    with cluster.client() as c:
        members = c.member_list().members
        assert [m.is_learner for m in members].count(True) == 1
        with pytest.raises(MemberNotLearner):
            c.member_promote(cluster.members[0].member_id)

        def promoted() -> bool:
            return took_effect(
                lambda: c.member_promote(new.member_id),
                lambda: not any(m.is_learner for m in c.member_list().members),
            )

        wait_until(promoted, timeout=20, what="promotion")
    # Remove the current leader: it steps down, the other three elect a new one.
    old = cluster.leader()
    with next(m for m in cluster.members if m is not old).client(timeout=7.0) as c:

        def removed() -> bool:
            return took_effect(
                lambda: c.member_remove(old.member_id),
                lambda: old.member_id not in {m.id for m in c.member_list().members},
            )

        wait_until(removed, timeout=30, what="removal")
    assert old.proc is not None
    assert old.proc.wait(30) == 1  # a removed member stops for good
    rest = [m for m in cluster.members if m is not old]
    writer.client = Client([m.client_url for m in rest], timeout=2.0)
    at_removal = len(writer.acked)
    wait_until(lambda: len(writer.acked) > at_removal + 5, timeout=20, what="writes after removal")
    writer.finish()
    for m in rest:
        with m.client(timeout=5.0) as c:
            check_writes(c, writer)
            assert sorted(x.id for x in c.member_list().members) == sorted(x.member_id for x in rest)
    assert wait_until(lambda: LocalCluster.hashes_agree(rest), what="equal hashes")
    with open(old.log_path, encoding="utf-8") as f:
        assert "permanently removed" in f.read()


def test_member_changes_are_checked(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        with pytest.raises(PeerURLExists):
            c.member_add([cluster.members[0].peer_url])
        with pytest.raises(MemberNotFound):
            c.member_remove(0x1234)
        leader = cluster.leader()
        follower = next(m for m in cluster.members if m is not leader)
    with follower.client() as c:
        with pytest.raises(NotLeader):
            c.move_leader(leader.member_id)
    with leader.client() as c:
        with pytest.raises(BadLeaderTransferee):
            c.move_leader(0x1234)


def test_move_leader_and_member_commands_as_etcdctl(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    target = next(m for m in cluster.members if m is not leader)
    done = ctl(cluster, "move-leader", f"{target.member_id:x}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"Leadership transferred from {leader.member_id:x} to {target.member_id:x}"
    assert cluster.leader() is target
    with cluster.client() as c:
        wait_until(lambda: all(m.client_urls for m in c.member_list().members), what="all published")
    listed = ctl(cluster, "member", "list")
    assert listed.returncode == 0, listed.stderr
    lines = sorted(listed.stdout.strip().splitlines())
    expected = sorted(
        f"{m.member_id:x}, started, {m.name}, {m.peer_url}, {m.client_url}, false" for m in cluster.members
    )
    assert lines == expected
    as_json = json.loads(ctl(cluster, "member", "list", "-w", "json").stdout)
    assert sorted(m["name"] for m in as_json["members"]) == ["etcdz-1", "etcdz-2", "etcdz-3"]
    table = ctl(cluster, "member", "list", "-w", "table").stdout
    assert "| IS LEARNER |" in table.replace("  ", " ") or "IS LEARNER" in table
    status = ctl(cluster, "endpoint", "status", "--cluster", "-w", "json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert sorted(r["Endpoint"] for r in rows) == sorted(cluster.endpoints)
    assert {r["Status"]["leader"] for r in rows} == {target.member_id}
    added = ctl(cluster, "member", "add", "m9", "--peer-urls", "tcp://127.0.0.1:1", "--learner")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("learner ") or added.stdout.startswith("Member ")
    assert 'ETCDZ_INITIAL_CLUSTER_STATE="existing"' in added.stdout
    new_id = added.stdout.split()[1]
    removed = ctl(cluster, "member", "remove", new_id)
    assert removed.stdout.strip().startswith(f"Member {new_id} removed from cluster")


def test_a_member_whose_data_dir_was_wiped_is_refused(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    victim = next(m for m in cluster.members if m is not leader)
    with cluster.client() as c:
        c.put("/wiped", "x")
    cluster.stop(victim)
    shutil.rmtree(victim.data_dir)
    cluster.start(victim)
    assert victim.proc is not None
    assert victim.proc.wait(30) == 1
    with open(victim.log_path, encoding="utf-8") as f:
        assert "data dir was lost" in f.read()
