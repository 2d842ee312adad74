"""kill -9 of any actor, or of the whole node: serving again, no acknowledged write lost,
nothing applied twice. How fast it serves again is a figure of the recovery benchmark
(``python -m tools.bench recovery``), not of these tests."""

from __future__ import annotations

import os
import signal
import time

import pytest

from actors.runtime.config import ACTORS
from actors.supervisor.node import RESTART_SET
from tools.cluster import LocalCluster
from tools.workload import Writer, check_writes, wait_serving, wait_until


@pytest.mark.parametrize("actor", ["wal", "raft", "mvcc", "apply", "lease", "gateway"])
def test_kill_9_of_one_actor_under_load(node: LocalCluster, actor: str) -> None:
    member = node.members[0]
    writer = Writer(node.endpoints, f"/crash/{actor}")
    writer.start()
    time.sleep(1.0)
    before = len(writer.acked)
    assert before > 0, "no write succeeded before the crash"
    victim = member.actor_pids()[actor]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    wait_serving(node.endpoints, killed_at)
    served = len(writer.acked)
    # The writer acknowledges again (its own put in flight at the kill may wait out its timeout).
    wait_until(lambda: len(writer.acked) > served, timeout=30, what="a write acknowledged after the restart")
    writer.stop.set()
    writer.join(10)
    assert member.actor_pids()[actor] != victim
    with node.client() as c:
        check_writes(c, writer)


@pytest.mark.parametrize("actor", ACTORS)
def test_a_killed_actor_comes_back_with_its_restart_set_only(node: LocalCluster, actor: str) -> None:
    """The actors outside the dead one's restart set keep running (same pids), and the
    restarted ones resync with them without waiting for a change: the node serves, leases
    still expire (the expirer knows it leads) and keep-alives are answered."""
    member = node.members[0]
    with node.client() as c:
        expiring = c.lease_grant(2).id
        c.put("/alone/expiring", "x", lease=expiring)
        kept = c.lease_grant(60).id
    before = member.actor_pids()
    os.kill(before[actor], signal.SIGKILL)

    def restarted() -> bool:
        pids = member.actor_pids()
        return all(pids.get(a) not in (None, before[a]) for a in RESTART_SET[actor])

    wait_until(restarted, 30, f"{actor} restarted")
    after = member.actor_pids()
    others = [a for a in ACTORS if a not in RESTART_SET[actor]]
    assert {a: after.get(a) for a in others} == {a: before[a] for a in others}
    with node.client(timeout=2.0) as c:
        wait_until(lambda: c.put("/alone/after", actor), 30, "a put served")
        assert wait_until(lambda: c.lease_keep_alive_once(kept).ttl > 0, 30, "a keep-alive answered")
        wait_until(lambda: c.get("/alone/expiring").count == 0, 30, "the short lease expired")


def test_kill_9_of_the_whole_node_then_restart(node: LocalCluster) -> None:
    member = node.members[0]
    writer = Writer(node.endpoints, "/crash/node")
    writer.start()
    time.sleep(1.0)
    node.kill(member)
    writer.stop.set()
    writer.join(10)
    assert writer.acked
    node.start(member)
    node.wait_ready(timeout=30)
    with node.client() as c:
        check_writes(c, writer)
        revision = c.get("/none").header.revision
    # A second restart replays the same WAL over the same backend: nothing changes.
    node.stop(member)
    node.start(member)
    node.wait_ready()
    with node.client() as c:
        assert c.get("/none").header.revision == revision
        check_writes(c, writer)


def test_a_killed_watch_hub_is_restarted_alone(node: LocalCluster) -> None:
    member = node.members[0]
    before = member.actor_pids()
    os.kill(before["watch0"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while member.actor_pids().get("watch0") in (None, before["watch0"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    after = member.actor_pids()
    assert after["watch0"] != before["watch0"]
    assert {a: p for a, p in after.items() if a != "watch0"} == {
        a: p for a, p in before.items() if a != "watch0"
    }, "a hub's death must not restart the member"
    with node.client() as c:
        assert c.put("/after-hub", "x").header.revision > 1
