"""kill -9 of any actor, or of the whole node: serving again, no acknowledged write lost,
nothing applied twice, and a client that waits long enough sees no error at all (a write in
flight at the kill is sent again by the SDK or proposed again by the gateway, and answered
once). How fast it serves again is a figure of the recovery benchmark (``python -m tools.bench
recovery``), not of these tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time

import pytest

from actors.runtime.config import ACTORS
from actors.supervisor.node import RESTART_SET
from etcdz.aio import AsyncClient
from tools.cluster import LocalCluster
from tools.workload import Writer, check_writes, wait_serving, wait_until


@pytest.mark.parametrize("actor", ["wal", "raft", "mvcc", "apply", "lease", "gateway"])
def test_kill_9_of_one_actor_under_load(node: LocalCluster, actor: str) -> None:
    member = node.members[0]
    writer = Writer(node.endpoints, f"/crash/{actor}", timeout=60.0)
    writer.start()
    wait_until(lambda: len(writer.acked) > 5, timeout=30, what="writes before the crash")
    victim = member.actor_pids()[actor]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    wait_serving(node.endpoints, killed_at)
    served = len(writer.acked)
    wait_until(
        lambda: len(writer.acked) > served + 5, timeout=60, what="writes acknowledged after the restart"
    )
    writer.finish()
    assert member.actor_pids()[actor] != victim
    assert writer.failed == []  # the put in flight at the kill was answered, not failed
    with node.client() as c:
        check_writes(c, writer)


def test_an_asyncio_client_with_many_writes_in_flight_loses_none_to_a_gateway_kill(
    node: LocalCluster,
) -> None:
    """Every write in flight on the dropped connection is sent again on the new one (the
    same session and numbers) and answered once."""
    acked: list[str] = []
    numbers = itertools.count()

    async def writing(client: AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            key = f"/crash/aio/{next(numbers):06d}"
            await client.put(key, key)
            acked.append(key)

    async def run() -> None:
        stop = asyncio.Event()
        async with AsyncClient(node.endpoints, timeout=60.0) as client:
            tasks = [asyncio.create_task(writing(client, stop)) for _ in range(16)]
            for _ in range(600):  # bounded: 60 s
                if len(acked) > 50:
                    break
                await asyncio.sleep(0.1)
            os.kill(node.members[0].actor_pids()["gateway"], signal.SIGKILL)
            served = len(acked)
            for _ in range(600):
                if len(acked) > served + 50:
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*tasks)  # raises if any put failed

    asyncio.run(run())
    sent = next(numbers)
    assert len(acked) > 100 and len(acked) == sent
    with node.client() as c:
        found = {kv.key.decode(): kv for kv in c.get("/crash/aio/", prefix=True).kvs}
    assert set(found) == set(acked)
    assert all(kv.version == 1 for kv in found.values()), "a put was applied twice"


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
