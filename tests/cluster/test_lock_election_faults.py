"""Locks and elections on a real 3-member cluster under faults: mutual exclusion while a member
is killed and restarted and holders' leases expire under them, and an election that moves on
when its leader's session is lost, seen once and in order by every observer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from etcdz import Client, ops
from etcdz import concurrency as conc
from etcdz.errors import EtcdzError
from tools.cluster import LocalCluster, running
from tools.workload import wait_until

WORKERS, ROUNDS, TTL = 5, 20, 2
LOCK, COUNTER, HOLDER, DONE = "/mx/lock", "/mx/counter", "/mx/holder", "/mx/done/"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(str(tmp_path_factory.mktemp("coordination")), 3) as c:
        yield c


def _critical_section(c: Client, m: conc.Mutex, me: str) -> str:
    """One turn, every write fenced by the lock: 'done', 'lost' (the fence failed: the lock
    was lost, nothing of this turn counts) or 'overlap' (another live holder was inside)."""
    assert m.key is not None
    tag = f"{m.key.hex()}:{m.revision}"
    enter = c.txn([m.is_owner()], [ops.put(HOLDER, tag, prev_kv=True), ops.get(COUNTER)])
    if not enter.succeeded:
        return "lost"
    prev = enter.responses[0].prev_kv  # type: ignore[union-attr]
    if prev is not None and prev.value:  # who was inside last: is its lock key still live?
        key_hex, rev = prev.value.decode().split(":")
        still = c.get(bytes.fromhex(key_hex), revision=enter.header.revision)
        if still.kvs and still.kvs[0].create_revision == int(rev) and still.kvs[0].key != m.key:
            return "overlap"
    counter = enter.responses[1].kvs  # type: ignore[union-attr]
    value = int(counter[0].value) if counter else 0
    mod = counter[0].mod_revision if counter else 0
    leave = c.txn(
        [m.is_owner(), ops.ModRevision(COUNTER) == mod],
        [ops.put(COUNTER, str(value + 1)), ops.put(HOLDER, ""), ops.put(DONE + me, str(value + 1))],
    )
    return "done" if leave.succeeded else "lost"


def _count(c: Client) -> int:
    kvs = c.get(COUNTER).kvs
    return int(kvs[0].value) if kvs else 0


def worker(endpoints: list[str], index: int) -> None:
    """ROUNDS turns of the lock; worker 0 and 1 once stop renewing their session while they
    hold the lock, so its lease expires under them and the next waiter takes over."""
    result = {"done": 0, "lost": 0, "overlap": 0, "errors": 0}
    with Client(endpoints, timeout=5) as c:
        turn = 0
        while turn < ROUNDS:
            me = f"{index}-{turn}"
            try:
                if c.get(DONE + me).count:  # an indefinite answer (an error) that did commit
                    result["done"] += 1
                    turn += 1
                    continue
                with conc.Session(c, ttl=TTL) as session:
                    m = conc.Mutex(session, LOCK)
                    m.lock(timeout=60)
                    if index < 2 and turn == ROUNDS // 2 and not result["lost"]:
                        session.close(revoke=False)  # a stalled holder: its lease runs out
                        wait_until(lambda: c.lease_time_to_live(session.id).ttl == -1, 30, "expiry")
                    outcome = _critical_section(c, m, me)
                    result[outcome] += 1
                    if outcome == "done":
                        turn += 1
                    if not session.done:
                        m.unlock()
            except (EtcdzError, TimeoutError):
                result["errors"] += 1
                time.sleep(0.2)
    print(json.dumps(result))


def test_a_lock_never_has_two_holders_and_every_waiter_gets_it_under_faults(cluster: LocalCluster) -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, json.dumps(cluster.endpoints), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(WORKERS)
    ]
    with cluster.client() as c:
        wait_until(lambda: _count(c) >= 15, 120, "the first turns")
        victim = next(m for m in cluster.members if m is not cluster.leader())
        cluster.kill(victim)
        wait_until(lambda: _count(c) >= 40, 120, "turns with a member down")
        cluster.start(victim)
        cluster.wait_ready(60, victim)
        results = []
        for w in workers:
            out, err = w.communicate(timeout=300)
            assert w.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out.decode().splitlines()[-1]))
        assert all(r["overlap"] == 0 for r in results), results
        assert all(r["done"] == ROUNDS for r in results), results
        assert sum(r["lost"] for r in results) >= 2, results  # the stalled holders were fenced off
        assert _count(c) == WORKERS * ROUNDS
        assert c.get(DONE, prefix=True).count == WORKERS * ROUNDS
        wait_until(lambda: c.get(LOCK, prefix=True).count == 0, 30, "no lock key left")


def test_an_election_moves_on_when_the_leader_session_is_lost_and_observers_see_it_once(
    cluster: LocalCluster,
) -> None:
    name = "/coord/election"
    observed: list[list[bytes]] = [[], []]

    def observe(into: list[bytes]) -> None:
        with cluster.client() as oc:
            for kv in conc.observe(oc, name):
                into.append(kv.value)
                if len(into) == 3:
                    return

    observers = [threading.Thread(target=observe, args=(o,)) for o in observed]
    for t in observers:
        t.start()
    clients = [cluster.client() for _ in range(3)]
    sessions = [conc.Session(c, ttl=TTL) for c in clients]
    elections = [conc.Election(s, name) for s in sessions]
    try:
        elections[0].campaign("first")
        campaigns = [
            threading.Thread(target=e.campaign, args=(f"next-{i}",)) for i, e in enumerate(elections)
        ]
        for t in campaigns[1:]:
            t.start()
        with clients[0] as c:
            wait_until(lambda: c.get(name + "/", prefix=True).count == 3, 30, "three candidates")
            sessions[0].close(revoke=False)  # the leader stops renewing: its lease expires
            wait_until(lambda: elections[0].leader().value != b"first", 30, "a new leader")
            second = elections[0].leader()
            winner = 1 if second.value == b"next-1" else 2
            campaigns[winner].join(30)
            elections[winner].resign()
            campaigns[3 - winner].join(30)
            third = elections[3 - winner].leader()
            for t in observers:
                t.join(30)
        expected = [b"first", second.value, third.value]
        assert observed == [expected, expected]
    finally:
        for s in sessions[1:]:
            s.close()
        for c in clients[1:]:
            c.close()


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]), int(sys.argv[2]))
