"""Coordination on one real node: many calls in flight on one connection (blocking and
asyncio), the concurrency recipes (locks, elections, STM isolation, barriers, queues), bad
input, clean close, and etcdzctl lock/elect against etcdctl's behaviour."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from etcdz import Client
from etcdz import aio_concurrency as aconc
from etcdz import concurrency as conc
from etcdz.aio import AsyncClient
from etcdz.errors import EtcdzError, RequestTimedOut
from tools.cluster import LocalCluster
from tools.workload import wait_until

WAIT_S = 15.0
ETCDCTL = shutil.which("etcdctl")  # the real etcd runs in the `etcd` fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def c(shared_node: LocalCluster) -> Iterator[Client]:
    client = shared_node.client()
    yield client
    client.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _keys(c: Client, prefix: bytes | str) -> list[bytes]:
    return [kv.key for kv in c.get(prefix, prefix=True, keys_only=True).kvs]


# -- many calls in flight --------------------------------------------------------------------
def test_many_threads_share_one_blocking_client(c: Client) -> None:
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            for j in range(30):
                c.put(f"/mt/{i}", str(j))
                assert c.get(f"/mt/{i}").kvs[0].value == str(j).encode()
        except Exception as exc:  # reported below: a thread's assertion is not the test's
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert c.get("/mt/", prefix=True).count == 16


def test_asyncio_client_has_thousands_of_calls_in_flight_on_one_connection(shared_node: LocalCluster) -> None:
    """More calls at once than a member takes from one connection (1,000): the client queues
    the rest, every reply reaches its own call."""

    async def scenario() -> None:
        async with AsyncClient(shared_node.endpoints, timeout=60) as client:
            await asyncio.gather(*(client.put(f"/aio/many/{i}", str(i)) for i in range(1500)))
            replies = await asyncio.gather(*(client.get(f"/aio/many/{i}") for i in range(1500)))
            assert [r.kvs[0].value for r in replies] == [str(i).encode() for i in range(1500)]
            # Served straight by the backend, many to a message (ReadBatch): each its own answer.
            replies = await asyncio.gather(
                *(client.get(f"/aio/many/{i}", serializable=True) for i in range(1499, -1, -1))
            )
            assert [r.kvs[0].value for r in replies] == [str(i).encode() for i in range(1499, -1, -1)]
            assert len(client._background) == 0

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_asyncio_client_has_the_whole_api(shared_node: LocalCluster) -> None:
    async def scenario() -> None:
        async with AsyncClient(shared_node.endpoints) as client:
            assert (await client.status()).leader
            assert (await client.member_list()).members
            assert (await client.auth_status()).enabled is False
            assert (await client.alarms()).alarms == []
            txn = await client.txn([], [client_ops_put("/aio/api", "1")])
            assert txn.succeeded
            async with await client.lease(5) as lease:
                await client.put("/aio/api/leased", "x", lease=lease.id)
                assert (await client.lease_time_to_live(lease.id, keys=True)).keys == [b"/aio/api/leased"]
            assert (await client.get("/aio/api/leased")).count == 0  # revoked on leaving
            chunks = [kv.key async for kv in client.get_stream("/aio/many/", prefix=True, chunk_bytes=512)]
            assert len(chunks) == (await client.get("/aio/many/", prefix=True, count_only=True)).count

    asyncio.run(asyncio.wait_for(scenario(), 60))


def client_ops_put(key: str, value: str) -> object:
    from etcdz import ops

    return ops.put(key, value)


def test_asyncio_calls_to_a_silent_member_end_at_their_deadline() -> None:
    """A member that takes requests and never answers: reads time out (definite), a write may
    have happened (indefinite), each at its deadline, with hundreds in flight."""
    ctx = zmq.Context()
    silent = ctx.socket(zmq.ROUTER)
    port = silent.bind_to_random_port("tcp://127.0.0.1")

    async def scenario() -> list[object]:
        async with AsyncClient([f"tcp://127.0.0.1:{port}"], timeout=1) as client:
            calls = [client.put("/silent", "x"), *(client.get(f"/silent/{i}") for i in range(300))]
            return list(await asyncio.gather(*calls, return_exceptions=True))

    try:
        write, *reads = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        silent.close(linger=0)
        ctx.term()
    assert isinstance(write, RequestTimedOut) and not write.definite
    assert all(isinstance(r, RequestTimedOut) and r.definite for r in reads)


# -- locks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [b"\x00\xff/lock", "/l\u00f6ck/\u2603", b"/a b\n/c"])
def test_a_lock_with_any_bytes_in_its_name_excludes_and_hands_over_in_order(
    c: Client, name: bytes | str
) -> None:
    with conc.Session(c, ttl=10) as s1, conc.Session(c, ttl=10) as s2, conc.Session(c, ttl=10) as s3:
        first = conc.Mutex(s1, name)
        first.lock()
        assert not conc.Mutex(s2, name).try_lock()
        order: list[int] = []

        def take(m: conc.Mutex, i: int) -> None:
            m.lock(WAIT_S)
            order.append(i)
            m.unlock()

        threads = []
        for i, m in enumerate([conc.Mutex(s2, name), conc.Mutex(s3, name)]):
            threads.append(threading.Thread(target=take, args=(m, i)))
            threads[-1].start()
            wait_until(lambda: len(_keys(c, first.prefix)) == len(threads) + 1, WAIT_S, "the waiter's key")
        assert order == []
        first.unlock()
        for t in threads:
            t.join(WAIT_S)
        assert order == [0, 1]  # revision order
        assert _keys(c, first.prefix) == []


def test_a_fenced_write_fails_once_the_lock_is_lost(c: Client) -> None:
    from etcdz import ops

    with conc.Session(c, ttl=10) as s:
        m = conc.Mutex(s, "/fence")
        m.lock()
        assert c.txn([m.is_owner()], [ops.put("/fence-counter", "1")]).succeeded
        c.lease_revoke(s.id)  # the session's lease ends behind its back
        assert not c.txn([m.is_owner()], [ops.put("/fence-counter", "2")]).succeeded
        wait_until(lambda: s.done, WAIT_S, "the session noticing its lease is gone")
        assert s.lost


def test_an_expired_session_is_refused_clearly_and_leaves_nothing(c: Client) -> None:
    s = conc.Session(c, ttl=10)
    c.lease_revoke(s.id)
    wait_until(lambda: s.done, WAIT_S, "the session noticing its lease is gone")
    with pytest.raises(conc.SessionExpired):
        conc.Mutex(s, "/expired").lock()
    with pytest.raises(conc.SessionExpired):
        conc.Election(s, "/expired-e").campaign("x")
    s.close()
    assert _keys(c, "/expired") == []
    with pytest.raises(ValueError):
        conc.Mutex(s, "")


def test_a_lease_that_ended_before_the_session_noticed_is_an_expired_session(c: Client) -> None:
    """The cluster refuses the lease (``LeaseNotFound``) before the keep-alive has said so:
    the same ``SessionExpired``, and nothing is written."""
    with conc.Session(c, ttl=30) as s:
        c.lease_revoke(s.id)
        for attempt in (
            lambda: conc.Mutex(s, b"/unnoticed\xff").lock(WAIT_S),
            lambda: conc.Mutex(s, b"/unnoticed\xff").try_lock(),
            lambda: conc.Election(s, b"/unnoticed\x00e").campaign("x"),
            lambda: conc.DoubleBarrier(s, "/unnoticed-db", 2).enter(WAIT_S),
        ):
            with pytest.raises(conc.SessionExpired):
                attempt()
    assert _keys(c, "/unnoticed") == []

    async def scenario() -> None:
        async with AsyncClient(c.endpoints) as client:
            session = await aconc.Session(client, ttl=30).start()
            await client.lease_revoke(session.id)
            with pytest.raises(conc.SessionExpired):
                await aconc.Mutex(session, b"/unnoticed\xff").lock(WAIT_S)
            with pytest.raises(conc.SessionExpired):
                await aconc.Election(session, b"/unnoticed\x00e").campaign("x")
            with pytest.raises(conc.SessionExpired):
                await aconc.DoubleBarrier(session, "/unnoticed-db", 2).enter(WAIT_S)
            await session.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert _keys(c, "/unnoticed") == []


def test_a_waiter_whose_session_ends_stops_waiting_and_deletes_nothing_of_others(c: Client) -> None:
    with conc.Session(c, ttl=10) as holder:
        m = conc.Mutex(holder, "/lost-waiter")
        m.lock()
        waiter = conc.Session(c, ttl=10)
        raised: list[BaseException] = []

        def wait() -> None:
            try:
                conc.Mutex(waiter, "/lost-waiter").lock(WAIT_S)
            except BaseException as exc:  # reported below
                raised.append(exc)

        t = threading.Thread(target=wait)
        t.start()
        wait_until(lambda: len(_keys(c, "/lost-waiter/")) == 2, WAIT_S, "the waiter's key")
        c.lease_revoke(waiter.id)
        t.join(WAIT_S)
        assert raised and isinstance(raised[0], conc.SessionExpired)
        assert _keys(c, "/lost-waiter/") == [m.key]
        waiter.close()
        m.unlock()


def test_a_lock_wait_times_out_and_removes_its_key(c: Client) -> None:
    with conc.Session(c, ttl=10) as s1, conc.Session(c, ttl=10) as s2:
        m = conc.Mutex(s1, "/timeout")
        m.lock()
        with pytest.raises(TimeoutError):
            conc.Mutex(s2, "/timeout").lock(timeout=0.5)
        assert _keys(c, "/timeout/") == [m.key]
        m.unlock()


def test_an_asyncio_task_cancelled_while_waiting_leaves_no_key(shared_node: LocalCluster) -> None:
    async def scenario() -> None:
        async with AsyncClient(shared_node.endpoints) as client:
            async with aconc.Session(client, ttl=10) as s1, aconc.Session(client, ttl=10) as s2:
                holder = aconc.Mutex(s1, b"/cancel\xff")
                await holder.lock()
                task = asyncio.create_task(aconc.Mutex(s2, b"/cancel\xff").lock())
                for _ in range(200):
                    if (await client.get(b"/cancel\xff/", prefix=True)).count == 2:
                        break
                    await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                keys = [kv.key for kv in (await client.get(b"/cancel\xff/", prefix=True)).kvs]
                assert keys == [holder.key]
                async with aconc.Mutex(s2, b"/other"):  # the session is still good
                    pass
                await holder.unlock()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_closed_client_says_so(shared_node: LocalCluster, c: Client) -> None:
    """Calls, sessions and the recipes of a session whose client was closed under it."""
    client = shared_node.client()
    session = conc.Session(client, ttl=5)
    client.close()
    with pytest.raises(EtcdzError, match="closed"):
        client.get("k")
    with pytest.raises(EtcdzError, match="closed"):
        conc.Session(client, ttl=5)
    with pytest.raises(EtcdzError, match="closed"):
        conc.Mutex(session, "/closed/lock").lock(WAIT_S)
    with pytest.raises(EtcdzError, match="closed"):
        conc.Election(session, "/closed/election").campaign("x")
    with pytest.raises(EtcdzError, match="closed"):
        client.watch("/closed/")

    async def scenario() -> None:
        aclient = AsyncClient(shared_node.endpoints)
        asession = await aconc.Session(aclient, ttl=5).start()
        await aclient.close()
        with pytest.raises(EtcdzError, match="closed"):
            await aclient.get("k")
        with pytest.raises(EtcdzError, match="closed"):
            await aconc.Session(aclient, ttl=5).start()
        with pytest.raises(EtcdzError, match="closed"):
            await aconc.Mutex(asession, "/closed/lock").lock(WAIT_S)
        with pytest.raises(EtcdzError, match="closed"):
            await aconc.Election(asession, "/closed/election").campaign("x")
        with pytest.raises(EtcdzError, match="closed"):
            aclient.watch("/closed/")

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert _keys(c, "/closed/") == []


def test_clients_close_cleanly_with_no_thread_socket_or_task_left(shared_node: LocalCluster) -> None:
    threads, fds = threading.active_count(), _open_fds()
    for _ in range(3):
        with Client(shared_node.endpoints) as client:
            with conc.Session(client, ttl=5) as session, conc.Mutex(session, "/clean"):
                w = client.watch("/clean/")
                assert w.created.wait(WAIT_S)
            pool = [threading.Thread(target=client.get, args=("k",)) for _ in range(8)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()

        async def scenario() -> None:
            async with AsyncClient(shared_node.endpoints) as aclient:
                async with aconc.Session(aclient, ttl=5) as session:
                    async with aconc.Mutex(session, "/clean"):
                        await asyncio.gather(*(aclient.get("k") for _ in range(50)))
                async with aclient.watch("/clean/"):
                    pass
            assert asyncio.all_tasks() == {asyncio.current_task()}

        asyncio.run(scenario())
    wait_until(lambda: threading.active_count() <= threads, WAIT_S, "every client thread ended")
    assert _open_fds() <= fds


# -- elections ---------------------------------------------------------------------------------
def test_an_election_hands_over_and_observers_see_every_leader_once_in_order(c: Client) -> None:
    name = b"/elect\x00ion"
    seen: list[bytes] = []

    def observe() -> None:
        for kv in conc.observe(c, name):
            seen.append(kv.value)
            if len(seen) == 4:
                return

    observer = threading.Thread(target=observe)
    observer.start()
    with conc.Session(c, ttl=10) as s1, conc.Session(c, ttl=10) as s2:
        e1, e2 = conc.Election(s1, name), conc.Election(s2, name)
        with pytest.raises(conc.NoLeader):
            e1.leader()
        e1.campaign("one")
        e1.proclaim("one-b")
        assert e1.leader().value == b"one-b"
        t = threading.Thread(target=e2.campaign, args=("two",))
        t.start()
        wait_until(lambda: len(_keys(c, e1.prefix)) == 2, WAIT_S, "the second candidate")
        with pytest.raises(conc.NotLeader):
            e2.proclaim("not yet")
        e1.resign()
        t.join(WAIT_S)
        assert e2.leader().value == b"two"
        t = threading.Thread(target=e1.campaign, args=("three",))  # behind e2
        t.start()
        wait_until(lambda: len(_keys(c, e1.prefix)) == 2, WAIT_S, "the candidate behind e2")
        e2.resign()
        t.join(WAIT_S)
        assert e1.leader().value == b"three"
        observer.join(WAIT_S)
        e1.resign()
    assert seen == [b"one", b"one-b", b"two", b"three"]


# -- STM ---------------------------------------------------------------------------------------
def _interfered(c: Client, isolation: str, reads: list[str], write_outside: str) -> tuple[int, list[bytes]]:
    """Run an STM whose first attempt sees ``write_outside`` changed between its reads and
    its commit; returns (attempts, what the last attempt read)."""
    attempts = 0
    got: list[bytes] = []

    def apply(stm: conc.Stm) -> None:
        nonlocal attempts, got
        attempts += 1
        got = [stm.get(k) for k in reads]
        if attempts == 1:
            c.put(write_outside, f"outside-{time.monotonic()}")
        stm.put("/stm/out", b"+".join(got))

    conc.stm(c, apply, isolation=isolation)
    return attempts, got


@pytest.mark.parametrize(
    ("isolation", "retries_on_read_key", "retries_on_written_key"),
    [
        (conc.SERIALIZABLE_SNAPSHOT, True, True),
        (conc.SERIALIZABLE, True, False),
        (conc.REPEATABLE_READS, True, False),
        (conc.READ_COMMITTED, False, False),
    ],
)
def test_stm_isolation_levels_retry_on_the_conflicts_they_promise_to_prevent(
    c: Client, isolation: str, retries_on_read_key: bool, retries_on_written_key: bool
) -> None:
    c.put("/stm/a", "a0")
    c.put("/stm/b", "b0")
    attempts, _ = _interfered(c, isolation, ["/stm/a"], "/stm/a")
    assert (attempts > 1) is retries_on_read_key
    attempts, _ = _interfered(c, isolation, ["/stm/a"], "/stm/out")  # a key it only writes
    assert (attempts > 1) is retries_on_written_key


def test_stm_snapshot_reads_are_of_one_revision_and_repeatable_reads_repeat(c: Client) -> None:
    c.put("/stm/x", "x0")
    c.put("/stm/y", "y0")

    def snapshot(stm: conc.Stm) -> tuple[bytes, bytes]:
        x = stm.get("/stm/x")
        if c.get("/stm/y").kvs[0].value == b"y0":
            c.put("/stm/y", "y1")  # after the snapshot: not seen (and the attempt conflicts)
        return x, stm.get("/stm/y")

    calls: list[tuple[bytes, bytes]] = []

    def record(stm: conc.Stm) -> None:
        calls.append(snapshot(stm))

    conc.stm(c, record, isolation=conc.SERIALIZABLE)
    assert calls[0][1] == b"y0"  # the snapshot's y, though y1 was committed before the read

    def repeat(stm: conc.Stm) -> tuple[bytes, bytes]:
        first = stm.get("/stm/x")
        c.put("/stm/x", f"changed-{time.monotonic()}")
        return first, stm.get("/stm/x")

    first, again = conc.stm(c, repeat, isolation=conc.READ_COMMITTED)
    assert first != again  # read committed sees the newer value
    seen: list[tuple[bytes, bytes]] = []

    def repeat_once(stm: conc.Stm) -> None:
        if not seen:
            seen.append(repeat(stm))  # the outside write makes this attempt conflict
        else:
            seen.append((stm.get("/stm/x"), stm.get("/stm/x")))

    conc.stm(c, repeat_once, isolation=conc.REPEATABLE_READS)
    assert len(seen) == 2 and all(a == b for a, b in seen)


def test_stm_counter_is_exact_under_contention(c: Client) -> None:
    c.delete("/stm/counter")

    def increment(stm: conc.Stm) -> None:
        stm.put("/stm/counter", str(int(stm.get("/stm/counter") or b"0") + 1))

    threads = [threading.Thread(target=lambda: [conc.stm(c, increment) for _ in range(10)]) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert c.get("/stm/counter").kvs[0].value == b"60"


def test_asyncio_stm_counter(shared_node: LocalCluster) -> None:
    async def scenario() -> bytes:
        async with AsyncClient(shared_node.endpoints) as client:
            await client.delete("/stm/acounter")

            async def increment(stm: aconc.Stm) -> None:
                stm.put("/stm/acounter", str(int(await stm.get("/stm/acounter") or b"0") + 1))

            await asyncio.gather(*(aconc.stm(client, increment) for _ in range(30)))
            return (await client.get("/stm/acounter")).kvs[0].value

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == b"30"


# -- contrib recipes ---------------------------------------------------------------------------
def test_barrier_holds_waiters_until_released(c: Client) -> None:
    barrier = conc.Barrier(c, "/barrier")
    barrier.wait(timeout=1)  # not held: passes at once
    barrier.hold()
    passed: list[int] = []

    def wait(i: int) -> None:
        barrier.wait(WAIT_S)
        passed.append(i)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    with pytest.raises(TimeoutError):
        barrier.wait(timeout=0.5)
    assert passed == []
    barrier.release()
    for t in threads:
        t.join(WAIT_S)
    assert sorted(passed) == [0, 1, 2]


def test_double_barrier_enters_and_leaves_together(c: Client) -> None:
    sessions = [conc.Session(c, ttl=10) for _ in range(3)]
    log: list[str] = []
    lock = threading.Lock()

    def member(s: conc.Session) -> None:
        b = conc.DoubleBarrier(s, "/double", 3)
        b.enter(WAIT_S)
        with lock:
            log.append("in")
        b.leave(WAIT_S)
        with lock:
            log.append("out")

    threads = [threading.Thread(target=member, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(30)
    assert log == ["in"] * 3 + ["out"] * 3
    assert _keys(c, "/double") == []
    with pytest.raises(conc.TooManyClients):
        extra = [conc.DoubleBarrier(s, "/double-full", 1) for s in sessions[:2]]
        extra[0].enter(WAIT_S)
        extra[1].enter(WAIT_S)
    for s in sessions:
        s.close()


def test_queue_is_fifo_and_each_item_is_taken_once(c: Client) -> None:
    q = conc.Queue(c, b"/queue\xfe")
    for i in range(5):
        q.enqueue(str(i))
    assert [q.dequeue(WAIT_S) for _ in range(2)] == [b"0", b"1"]
    taken: list[bytes] = []
    lock = threading.Lock()

    def consume() -> None:
        for _ in range(4):
            v = q.dequeue(WAIT_S)
            with lock:
                taken.append(v)

    consumers = [threading.Thread(target=consume) for _ in range(2)]
    for t in consumers:
        t.start()
    for i in range(5, 10):
        q.enqueue(str(i))
    for t in consumers:
        t.join(30)
    assert sorted(taken, key=int) == [str(i).encode() for i in range(2, 10)]
    with pytest.raises(TimeoutError):
        q.dequeue(timeout=0.3)


# -- etcdzctl lock / elect -----------------------------------------------------------------------
def _ctl(endpoint: str, *args: str, tool: str = "etcdzctl") -> subprocess.Popen[bytes]:
    if tool == "etcdzctl":
        argv = [sys.executable, "-m", "etcdz.cli", "--endpoints", endpoint, *args]
    else:
        assert ETCDCTL is not None
        argv = [ETCDCTL, "--endpoints", endpoint, *args]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "ETCDCTL_API": "3"}
    )


def _lock_transcript(endpoint: str, tool: str) -> list[object]:
    """What a user sees of lock: held and printed, a second lock's command waiting, then run
    with the lock's key and revision, and its failure reported; bad arguments."""
    name = f"/t-{tool}-lock"
    holder = _ctl(endpoint, "lock", name, tool=tool)
    assert holder.stdout is not None
    first = holder.stdout.readline()
    assert first.startswith(f"{name}/".encode())
    script = 'echo "$ETCD_LOCK_KEY" "$ETCD_LOCK_REV"; exit 3'
    runner = _ctl(endpoint, "lock", name, "--", "sh", "-c", script, tool=tool)
    time.sleep(0.5)
    assert runner.poll() is None  # waiting for the holder
    holder.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=30)
    key, rev = out.decode().split()
    holder.communicate(timeout=30)  # (etcdctl's empty value line may or may not come before it)
    bad = _ctl(endpoint, "lock", tool=tool)
    bad_err = bad.communicate(timeout=30)[1]
    return [
        holder.returncode,
        key.startswith(f"{name}/") and key.encode() != first.strip(),
        rev.isdigit(),
        runner.returncode,
        err,
        bad.returncode,
        bad_err,
    ]


def test_lock_behaves_and_prints_as_etcdctl(shared_node: LocalCluster, etcd: str) -> None:
    assert _lock_transcript(shared_node.endpoints[0], "etcdzctl") == _lock_transcript(etcd, "etcdctl")


def _elect_transcript(endpoint: str, tool: str) -> list[object]:
    """What a user sees of elect: a leader printed, a second campaign taking over when the first
    resigns, an observer printing each leader in turn and nothing more; bad arguments. The
    observer's lines are read as they come (a slow start only delays them)."""
    name = f"/t-{tool}-elect"
    observer = _ctl(endpoint, "elect", "-l", name, tool=tool)
    assert observer.stdout is not None
    first = _ctl(endpoint, "elect", name, "p1", tool=tool)
    assert first.stdout is not None
    shown = [first.stdout.readline(), first.stdout.readline()]
    seen = [observer.stdout.readline(), observer.stdout.readline()]
    second = _ctl(endpoint, "elect", name, "p2", tool=tool)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)
    assert second.stdout is not None
    shown += [second.stdout.readline(), second.stdout.readline()]
    seen += [observer.stdout.readline(), observer.stdout.readline()]
    second.send_signal(signal.SIGINT)
    second.communicate(timeout=30)
    time.sleep(0.5)  # room for a line the observer should not print
    observer.send_signal(signal.SIGINT)
    observed = b"".join(seen) + observer.communicate(timeout=30)[0]
    return [
        [b"KEY\n" if line.startswith(f"{name}/".encode()) else line for line in shown],
        observed == b"".join(shown),
        first.returncode,
        second.returncode,
        observer.returncode,
        [
            _ctl(endpoint, *args, tool=tool).communicate(timeout=30)[1]
            for args in (["elect", "x"], ["elect", "-l", "x", "y"])
        ],
    ]


def test_elect_behaves_and_prints_as_etcdctl(shared_node: LocalCluster, etcd: str) -> None:
    mine = _elect_transcript(shared_node.endpoints[0], "etcdzctl")
    assert mine == _elect_transcript(etcd, "etcdctl")
    assert mine[0] == [b"KEY\n", b"p1\n", b"KEY\n", b"p2\n"]
