"""kill -9 of any actor, or of the whole node: serving again within 5 s, no acknowledged write
lost, nothing applied twice."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from etcdz import Client
from etcdz.errors import EtcdzError
from tools.cluster import LocalCluster

RECOVERY_LIMIT_S = 5.0


class Writer(threading.Thread):
    """Puts unique keys in a loop; remembers which were acknowledged and which are unknown."""

    def __init__(self, endpoints: list[str], prefix: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(endpoints, timeout=2.0)
        self.prefix = prefix
        self.acked: list[str] = []
        self.unknown: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = f"{self.prefix}/{i:06d}"
            i += 1
            try:
                self.client.put(key, key)
                self.acked.append(key)
            except EtcdzError as exc:
                if not exc.definite:
                    self.unknown.append(key)
                time.sleep(0.02)
        self.client.close()


def wait_serving(endpoints: list[str], since: float) -> float:
    with Client(endpoints, timeout=0.5) as c:
        while time.monotonic() - since < 30:
            try:
                c.put("/probe", "x")
                return time.monotonic() - since
            except EtcdzError:
                time.sleep(0.05)
    raise AssertionError("node did not serve again within 30 s")


def check_writes(c: Client, writer: Writer) -> None:
    found = {kv.key.decode(): kv for kv in c.get(writer.prefix + "/", prefix=True).kvs}
    missing = [k for k in writer.acked if k not in found]
    assert not missing, f"acknowledged writes lost: {missing[:5]}"
    assert set(found) <= set(writer.acked) | set(writer.unknown)
    assert all(kv.version == 1 for kv in found.values()), "a put was applied twice"
    revisions = sorted(kv.mod_revision for kv in found.values())
    assert len(set(revisions)) == len(revisions)


@pytest.mark.parametrize("actor", ["wal", "raft", "mvcc", "apply", "gateway"])
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
    recovery = wait_serving(node.endpoints, killed_at)
    time.sleep(0.5)
    writer.stop.set()
    writer.join(10)
    assert recovery < RECOVERY_LIMIT_S, f"served again only after {recovery:.1f}s"
    assert member.actor_pids()[actor] != victim
    assert len(writer.acked) > before
    with node.client() as c:
        check_writes(c, writer)


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
    node.wait_ready(timeout=RECOVERY_LIMIT_S * 2)
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
