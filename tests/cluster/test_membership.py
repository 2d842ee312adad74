"""Membership on real members: add (learner), promote, remove under load, leader transfer,
a member whose data dir was wiped, etcdctl's member commands, and a member that joins by
itself (``etcdz --join``): slowed, killed and restarted while behind, promoted by the leader
only once caught up; joins refused for a wrong token, a name in use or another cluster's data
dir; two joining at once added one after the other."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from etcdz import Client
from etcdz.errors import (
    BadLeaderTransferee,
    MemberNotFound,
    MemberNotLearner,
    NotLeader,
    NotSupportedForLearner,
    PeerURLExists,
)
from proto_schemas.cluster import PeerFaults
from tools import topology
from tools.cluster import LocalCluster, Member, running
from tools.workload import Writer, check_writes, took_effect, wait_until

MAX_LAG = 5  # entries: a learner whose link is slowed by a second is far behind this under load
PROMOTION_FLAGS = ["--auto-promote-max-lag", str(MAX_LAG), "--auto-promote-after", "1s"]


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
    new = cluster.add_member(learner=True, auto_promote=False)  # etcd's manual promotion
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
    assert "etcdz --name=m9 --initial-advertise-peer-urls=tcp://127.0.0.1:1" in added.stdout
    assert "The leader promotes it to a voter once it has caught up." in added.stdout
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


def learners(cluster: LocalCluster) -> list[int]:
    with cluster.client() as c:
        return [m.id for m in c.member_list().members if m.is_learner]


def promotions(cluster: LocalCluster) -> list[tuple[int, int]]:
    """(learner's match, leader's last index) each time a leader proposed a promotion (read
    from its log, where the member's actors write lines side by side)."""
    found = []
    for m in cluster.members:
        with open(m.log_path, encoding="utf-8") as f:
            found += [
                (int(x[0]), int(x[1]))
                for x in re.findall(r'"match": (\d+), "last_index": (\d+)[^\n]*"promoting learner"', f.read())
            ]
    return found


def metric(member: Member, name: str) -> float:
    with urllib.request.urlopen(member.metrics_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_joining_member_is_promoted_only_once_caught_up_even_killed_while_behind(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = str(tmp_path_factory.mktemp("join"))
    # Snapshots every 100 entries, 20 kept: the new member catches up from a snapshot.
    snapshots = ["--snapshot-count", "100", "--experimental-snapshot-catchup-entries", "20"]
    # A learner must be close for 3 s before it is promoted: longer than it takes this test to
    # slow its link once it has joined, so it cannot be promoted (rightly) before that.
    promotion = ["--auto-promote-max-lag", str(MAX_LAG), "--auto-promote-after", "3s"]
    with running(root, 3, extra_args=[*promotion, *snapshots], metrics=True) as cluster:
        writer = Writer(cluster.endpoints, "/join", timeout=7.0, limit_s=240)
        writer.start()
        wait_until(lambda: len(writer.acked) > 150, timeout=60, what="writes before the join")
        new = cluster.add_member(join=True)
        (learner,) = wait_until(lambda: learners(cluster), timeout=60, what="joined as a learner")
        # Its link slowed by a second, under load it stays far behind: never promoted.
        new.inject(PeerFaults(delay_ms=1000))
        with new.client(timeout=1.0) as c:
            wait_until(lambda: c.status().is_learner, timeout=60, what="the learner serving")
        # A learner is a read replica: serializable reads and watches, etcd's refusal otherwise.
        with new.client(timeout=5.0) as c:
            wait_until(lambda: c.get("/join/", prefix=True, serializable=True).count > 150, timeout=30)
            with pytest.raises(NotSupportedForLearner, match="rpc not supported for learner"):
                c.put("/join/refused", "x")
            with pytest.raises(NotSupportedForLearner):
                c.get("/join/000000")  # linearizable
            with c.watch("/join/", prefix=True) as w:
                assert w.created.wait(10)
                events = wait_until(lambda: w.get(timeout=1), timeout=20, what="events on the learner")
                assert events is not None and events.events
        with open(new.log_path, encoding="utf-8") as f:
            assert any('"snapshot restored"' in line for line in f)  # it fetched a snapshot
        until = time.monotonic() + 5
        while time.monotonic() < until:
            assert learners(cluster) == [learner]
            time.sleep(0.2)
        cluster.kill(new)  # killed during its catch-up ...
        assert learners(cluster) == [learner]
        cluster.start(new)  # ... restarted with --join again: its data dir is this cluster's
        wait_until(lambda: not learners(cluster), timeout=90, what="automatic promotion")
        at_promotion = len(writer.acked)
        wait_until(lambda: len(writer.acked) > at_promotion + 20, timeout=30, what="writes after")
        writer.finish()
        assert writer.failed == []  # the join, the kill and the promotion failed no request
        assert new.member_id == learner
        for m in cluster.members:
            with m.client(timeout=7.0) as c:
                check_writes(c, writer)
        proposed = promotions(cluster)
        assert proposed and all(last - match <= MAX_LAG for match, last in proposed)
        leader = cluster.leader()
        assert metric(leader, 'etcdz_learner_promotions_total{how="auto"}') == 1
        with open(new.log_path, encoding="utf-8") as f:
            assert sum('"joined as a learner"' in line for line in f) == 1  # added once, restarted once


def joiner(cluster: LocalCluster, name: str, **env: str) -> Member:
    """A member started with --join to ``cluster`` (not counted among its members)."""
    spec = topology.member(
        name, "", join=",".join(f"tcp://{m.name}:{topology.CLIENT}" for m in cluster.members)
    )
    (run,) = topology.on_loopback({"services": {name: spec}}, cluster.root, cluster._port)
    member = Member(run.instance, {**run.env, **env}, run.command, list(cluster.extra_args))
    cluster.start(member)
    return member


def refused(member: Member, text: str) -> None:
    assert member.proc is not None and member.proc.wait(60) == 1
    with open(member.log_path, encoding="utf-8") as f:
        log = f.read()
    assert text in log, log[-2000:]


def test_joins_are_checked_and_taken_one_after_the_other(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = str(tmp_path_factory.mktemp("joins"))
    with running(root, 1, extra_args=PROMOTION_FLAGS) as cluster:

        def published() -> bool:  # a member publishes its client URLs through raft after its start
            with cluster.client() as c:
                return all(m.client_urls for m in c.member_list().members)

        wait_until(published, timeout=60, what="the member's client URLs published")
        with cluster.client() as c:
            before = c.member_list().members
        refused(joiner(cluster, "stranger", ETCDZ_INITIAL_CLUSTER_TOKEN="other"), "cluster token mismatch")
        refused(joiner(cluster, "dup", ETCDZ_NAME="etcdz-1"), "member name already exists")
        with cluster.client() as c:
            assert c.member_list().members == before  # nothing changed
        # Two at once: one learner at a time, the second added once the first is promoted.
        first, second = cluster.add_member(join=True), cluster.add_member(join=True)
        seen: set[int] = set()

        def both_voters() -> bool:
            with cluster.client() as c:
                members = c.member_list().members
            assert sum(m.is_learner for m in members) <= 1
            seen.update(m.id for m in members if m.is_learner)
            return len(members) == 3 and not any(m.is_learner for m in members)

        wait_until(both_voters, timeout=120, what="both joined and promoted")
        assert seen <= {first.member_id, second.member_id}
        cluster.wait_ready(member=second)
        # A data dir of another cluster is refused before anything changes.
        with running(str(tmp_path_factory.mktemp("other")), 1) as other:
            alien_dir = other.members[0].data_dir
        alien = joiner(cluster, "alien", ETCDZ_DATA_DIR=alien_dir)
        refused(alien, "belongs to cluster")
        with cluster.client() as c:
            assert len(c.member_list().members) == 3
        assert os.path.isdir(alien_dir)
