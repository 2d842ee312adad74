"""etcd's Watch API through the SDK (blocking and asyncio) against one real node: backend,
events stream, watch hub and client stream all real processes and sockets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
import zmq

from actors.watch.watchers import SLOW_STREAM
from etcdz import Client, ops
from etcdz.aio import AsyncClient
from etcdz.errors import Compacted
from etcdz.watcher import Watch
from proto_schemas.codec import decode
from proto_schemas.envelope import pack, unpack_header
from proto_schemas.kv import EventType
from proto_schemas.watch import (
    FilterType,
    WatchCreateRequest,
    WatchPing,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)
from tools.cluster import LocalCluster, free_ports, running
from tools.workload import wait_until

WAIT_S = 10.0


@pytest.fixture(scope="module")
def c(shared_node: LocalCluster) -> Iterator[Client]:
    client = shared_node.client()
    yield client
    client.close()


def created(w: Watch) -> Watch:
    assert w.created.wait(WAIT_S), "the hub never confirmed the watch"
    return w


def events_of(w: Watch, count: int) -> list[tuple[int, bytes, bytes, int]]:
    """The next ``count`` events as (type, key, value, mod_revision)."""
    got: list[tuple[int, bytes, bytes, int]] = []
    while len(got) < count:
        resp = w.get(timeout=WAIT_S)
        assert resp is not None, f"only {got} arrived"
        got += [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in resp.events]
    return got


def test_a_key_watch_sees_puts_and_deletes_with_versions_and_previous_values(c: Client) -> None:
    w = created(c.watch("/api/k", prev_kv=True))
    first = c.put("/api/k", "1").header.revision
    c.put("/api/other", "x")
    c.put("/api/k", "2")
    c.delete("/api/k")
    resps = [w.get(timeout=WAIT_S) for _ in range(3)]
    events = [e for r in resps if r is not None for e in r.events]
    assert [(e.type, e.kv.value) for e in events] == [
        (EventType.PUT, b"1"),
        (EventType.PUT, b"2"),
        (EventType.DELETE, b""),
    ]
    put1, put2, delete = events
    assert (put1.kv.create_revision, put1.kv.mod_revision, put1.kv.version) == (first, first, 1)
    assert (put2.kv.create_revision, put2.kv.mod_revision, put2.kv.version) == (first, first + 2, 2)
    assert put1.prev_kv is None and put2.prev_kv is not None and put2.prev_kv.value == b"1"
    assert delete.kv.mod_revision == first + 3 and delete.prev_kv is not None
    assert delete.prev_kv.value == b"2"
    w.cancel()


def test_prefix_from_key_and_filters(c: Client) -> None:
    prefix = created(c.watch("/api/p/", prefix=True))
    from_key = created(c.watch("/api/p/m", from_key=True, filters=[FilterType.NOPUT]))
    no_delete = created(c.watch("/api/p/", prefix=True, filters=[FilterType.NODELETE]))
    c.put("/api/p/a", "1")
    c.put("/api/p/z", "2")
    c.delete("/api/p/", prefix=True)
    assert [(t, k) for t, k, _, _ in events_of(prefix, 4)] == [
        (EventType.PUT, b"/api/p/a"),
        (EventType.PUT, b"/api/p/z"),
        (EventType.DELETE, b"/api/p/a"),
        (EventType.DELETE, b"/api/p/z"),
    ]
    assert [(t, k) for t, k, _, _ in events_of(from_key, 1)] == [(EventType.DELETE, b"/api/p/z")]
    assert [(t, k) for t, k, _, _ in events_of(no_delete, 2)] == [
        (EventType.PUT, b"/api/p/a"),
        (EventType.PUT, b"/api/p/z"),
    ]
    for w in (prefix, from_key, no_delete):
        w.cancel()


def test_past_and_future_start_revisions(c: Client) -> None:
    revs = [c.put("/api/s", str(i)).header.revision for i in range(3)]
    past = c.watch("/api/s", start_revision=revs[1])
    assert [v for _, _, v, _ in events_of(past, 2)] == [b"1", b"2"]
    future = created(c.watch("/api/s", start_revision=revs[2] + 3))
    c.put("/api/s", "3")
    c.put("/api/s", "4")
    # revs[2] + 1 and + 2 are before the start; only later ones arrive.
    assert future.get(timeout=0.5) is None
    c.put("/api/s", "5")
    got = events_of(future, 1)
    assert got[0][2] == b"5" and got[0][3] == revs[2] + 3
    past.cancel()
    future.cancel()
    everything = c.watch("/api/s", start_revision=1)  # the first revision of a store, as etcdctl --rev 1
    assert [v for _, _, v, _ in events_of(everything, 6)] == [b"0", b"1", b"2", b"3", b"4", b"5"]
    everything.cancel()


def test_a_txn_arrives_as_one_response_at_one_revision(c: Client) -> None:
    w = created(c.watch("/api/t/", prefix=True))
    resp = c.txn([], [ops.put("/api/t/a", "1"), ops.put("/api/t/b", "2"), ops.put("/api/t/c", "3")])
    got = w.get(timeout=WAIT_S)
    assert got is not None
    assert [e.kv.key for e in got.events] == [b"/api/t/a", b"/api/t/b", b"/api/t/c"]
    assert {e.kv.mod_revision for e in got.events} == {resp.header.revision}
    w.cancel()


def test_cancel_ends_the_iteration(c: Client) -> None:
    w = created(c.watch("/api/c"))
    c.put("/api/c", "before")
    w.cancel()
    seen = list(w)  # ends once the hub confirms the cancel
    assert [e.kv.value for r in seen for e in r.events] in ([b"before"], [])


def test_a_compacted_start_revision_raises_with_the_compact_revision(c: Client) -> None:
    old = c.put("/api/old", "1").header.revision
    now = c.put("/api/old", "2").header.revision
    c.compact(now)
    w = c.watch("/api/old", start_revision=old)
    with pytest.raises(Compacted) as err:
        w.get(timeout=WAIT_S)
    assert err.value.compact_revision == now  # type: ignore[attr-defined]
    assert "required revision has been compacted" in str(err.value)


def test_progress_on_request_says_how_far_a_quiet_watch_is_complete(c: Client) -> None:
    with Client(c.endpoints) as own:  # progress answers cover a whole stream
        w = created(own.watch("/api/quiet"))
        rev = c.put("/api/noise", "x").header.revision
        resp = None
        for _ in range(20):  # the hub may not have seen ``rev`` at the first request
            own.request_progress()
            resp = w.get(timeout=1.0)
            if resp is not None and resp.header.revision >= rev:
                break
        assert resp is not None and resp.events == [] and resp.header.revision >= rev
        assert w.revision >= rev


def test_a_revision_larger_than_a_response_arrives_in_fragments(c: Client) -> None:
    big = "v" * (700 * 1024)
    for i in range(4):
        c.put(f"/api/f/{i}", big)
    plain = created(c.watch("/api/f/", prefix=True, prev_kv=True))
    fragmented = created(c.watch("/api/f/", prefix=True, prev_kv=True, fragment=True))
    rev = c.delete("/api/f/", prefix=True).header.revision
    for w in (plain, fragmented):  # the SDK joins fragments: one response either way
        resp = w.get(timeout=WAIT_S)
        assert resp is not None and not resp.fragment
        assert len(resp.events) == 4 and {e.kv.mod_revision for e in resp.events} == {rev}
        assert all(e.prev_kv is not None and len(e.prev_kv.value) == len(big) for e in resp.events)
        w.cancel()


def test_many_watches_share_one_stream_each_with_its_own_id(c: Client) -> None:
    watches = [created(c.watch(f"/api/m/{i}")) for i in range(50)]
    assert len({w.id for w in watches}) == 50
    for i in range(0, 50, 7):
        c.put(f"/api/m/{i}", str(i))
    for i in range(0, 50, 7):
        assert events_of(watches[i], 1)[0][1:3] == (f"/api/m/{i}".encode(), str(i).encode())
    assert all(w.get(timeout=0) is None for i, w in enumerate(watches) if i % 7)
    for w in watches:
        w.cancel()


def test_asyncio_watch(shared_node: LocalCluster) -> None:
    async def scenario() -> list[WatchResponse]:
        async with AsyncClient(shared_node.endpoints) as client:
            start = (await client.put("/api/aio", "0")).header.revision
            got: list[WatchResponse] = []
            async with client.watch("/api/aio", start_revision=start) as w:
                await client.put("/api/aio", "1")
                async for resp in w:
                    got.append(resp)
                    if sum(len(r.events) for r in got) >= 2:
                        break
                assert await w.get(timeout=0.2) is None
            await client.compact(start)
            with pytest.raises(Compacted):
                async for _ in client.watch("/api/aio", start_revision=1):
                    pass
            return got

    got = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [e.kv.value for r in got for e in r.events] == [b"0", b"1"]


def test_asyncio_watches_cancel_and_report_progress_on_the_loop_alone(shared_node: LocalCluster) -> None:
    """No thread: the stream is a task of the client's loop (ZeroMQ's own I/O threads are not
    Python's), and a cancelled watch's iteration ends."""

    async def scenario() -> None:
        before = set(threading.enumerate())
        async with AsyncClient(shared_node.endpoints) as client:
            start = (await client.put("/api/aio2/a", "0")).header.revision
            quiet = client.watch("/api/aio2/quiet")
            busy = client.watch_prefix("/api/aio2/", start_revision=start)
            assert (await busy.__anext__()).kv.value == b"0"
            noise = (await client.put("/api/aio2-noise", "x")).header.revision
            resp = None
            for _ in range(20):  # the hub may not have seen ``noise`` at the first request
                client.request_progress()
                resp = await quiet.get(timeout=1.0)
                if resp is not None and resp.header.revision >= noise:
                    break
            assert resp is not None and resp.events == [] and quiet.revision >= noise
            quiet.cancel()
            assert [r.events async for r in quiet if r.events] == []  # over once the hub confirms
            async with busy:
                await client.put("/api/aio2/b", "1")
                assert (await busy.__anext__()).kv.value == b"1"
            assert set(threading.enumerate()) == before
        assert set(threading.enumerate()) == before

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_client_dropped_unclosed_with_a_watch_lets_the_interpreter_exit(shared_node: LocalCluster) -> None:
    """Its stream thread is stopped at exit, not left frozen holding what finalization needs."""
    script = (
        "import sys\n"
        "from etcdz import Client\n"
        "c = Client(sys.argv[1:])\n"
        "assert c.watch('/api/exit').created.wait(30)\n"
        "lost = Client(['tcp://127.0.0.1:9'], timeout=30)\n"  # its stream is still looking
        "lost.watch('/api/exit')\n"
        "del c, lost\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *shared_node.endpoints], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_a_client_that_stops_reading_does_not_slow_others_and_misses_nothing(
    shared_node: LocalCluster, c: Client
) -> None:
    """A raw stream with 200 watchers stops reading while 300 revisions go by: the hub's queue
    for it fills, the hub rewinds instead of buffering, an SDK watcher meanwhile gets every
    event at once, and the stalled stream, read again, gets every revision once, in order."""
    slow = _slow_stream(shared_node.watch_urls[0])
    fast = created(c.watch("/slow/", prefix=True))
    value = "x" * 1024
    revs = []
    for i in range(300):
        revs.append(c.put(f"/slow/{i % 10}", value).header.revision)
    assert [e[3] for e in events_of(fast, 300)] == revs  # not held back by the stalled stream
    with open(shared_node.members[0].log_path) as log:
        assert "client stream stalled" in log.read()
    seen: dict[int, list[int]] = {n: [] for n in range(1, 201)}
    deadline = time.monotonic() + 60
    while any(len(v) < 300 for v in seen.values()) and time.monotonic() < deadline:
        if slow.poll(1000):
            for r in _responses(slow.recv_multipart()):
                seen[r.watch_id] += [e.kv.mod_revision for e in r.events]
    assert all(v == revs for v in seen.values())
    slow.close()
    fast.cancel()


def test_a_client_that_never_reads_but_keeps_asking_loses_its_watches_with_a_reason(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Pings keep a stream alive, so a client that sends but never reads would make the hub
    queue replies for it forever: past ``--max-watch-queue-bytes`` its watches are canceled
    (it learns why once it reads) and the hub goes on serving the others."""
    root = str(tmp_path_factory.mktemp("unread"))
    (port,) = free_ports(1)
    metrics = f"http://127.0.0.1:{port}/metrics"
    args = ["--max-watch-queue-bytes", "4000", "--listen-metrics-urls", metrics.removesuffix("/metrics")]
    with running(root, 1, extra_args=args) as node, node.client() as c:
        slow = _slow_stream(node.watch_urls[0])
        for i in range(300):  # enough to stall the stream: the hub rewinds its watchers
            c.put(f"/slow/{i % 10}", "x" * 1024)
        log_path = node.members[0].log_path
        deadline = time.monotonic() + 60
        more = itertools.count(1000)
        while "watch stream not read" not in open(log_path).read():
            assert time.monotonic() < deadline, "the hub kept queueing for a client that never reads"
            # A client asking for more while never reading: pings (their answers replace one
            # another) and creates, whose answers must all be kept (a progress notification
            # would be dropped from the queue of a stalled stream, a later one saying as much).
            for _ in range(20):
                slow.send_multipart(pack(WatchPing(), msg_id=1), zmq.NOBLOCK)
                extra = WatchCreateRequest(key=b"/unwritten/", range_end=b"/unwritten0", watch_id=next(more))
                slow.send_multipart(pack(WatchRequest(request=extra)), zmq.NOBLOCK)
            time.sleep(0.2)
        with created(c.watch("/slow/", prefix=True)) as fast:  # others are served
            rev = c.put("/slow/after", "1").header.revision
            assert [e[3] for e in events_of(fast, 1)] == [rev]
        reasons: dict[int, str] = {}
        deadline = time.monotonic() + 60
        while not set(range(1, 201)) <= set(reasons) and time.monotonic() < deadline:  # reading at last
            if slow.poll(1000):
                for r in _responses(slow.recv_multipart()):
                    if r.canceled:
                        reasons[r.watch_id] = r.cancel_reason
        assert set(range(1, 201)) <= set(reasons) and set(reasons.values()) == {SLOW_STREAM}
        slow.close()

        def counted() -> bool:
            with urllib.request.urlopen(metrics, timeout=5) as resp:
                return "etcdz_watch_streams_overflowed_total 1" in resp.read().decode()

        wait_until(counted, WAIT_S, "the overflow is not counted in the metrics")


def _slow_stream(hub_url: str) -> zmq.Socket[bytes]:
    """A raw watch stream with 200 watchers on ``/slow/`` whose client reads as little as
    ZeroMQ lets it (one message queued, a 4 KiB socket buffer)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    slow = ctx.socket(zmq.DEALER)
    slow.setsockopt(zmq.RCVHWM, 1)
    slow.setsockopt(zmq.RCVBUF, 4096)
    slow.setsockopt(zmq.LINGER, 0)
    slow.connect(hub_url)
    for watch_id in range(1, 201):
        create = WatchCreateRequest(key=b"/slow/", range_end=b"/slow0", watch_id=watch_id)
        slow.send_multipart(pack(WatchRequest(request=create), msg_id=watch_id))
    confirmed = 0
    while confirmed < 200:
        assert slow.poll(int(WAIT_S * 1000)), f"only {confirmed} watchers created"
        confirmed += sum(r.created for r in _responses(slow.recv_multipart()))
    return slow


def _responses(frames: list[bytes]) -> list[WatchResponse]:
    _, body = unpack_header(frames)
    msg = decode(body)
    if isinstance(msg, WatchResponses):
        return msg.each()
    return [msg] if isinstance(msg, WatchResponse) else []


class Relay:
    """A TCP relay on 127.0.0.1 in front of ``target`` whose connections can be cut while both
    ends live on: the client's ZeroMQ socket then connects again through it, to the same hub."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("tcp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            hub = socket.create_connection(self.target, timeout=WAIT_S)
            with self.lock:
                self.pairs.append((client, hub))
            for a, b in ((client, hub), (hub, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Close every connection made so far (the listener stays); how many there were."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        return len(pairs)

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_watch_survives_its_connection_to_the_hub_being_cut_and_made_again(
    shared_node: LocalCluster,
) -> None:
    """ZeroMQ connects again under the SDK's socket, to the same hub: the hub holds the watch
    under the old connection, so the SDK must notice (the hub numbers the new stream anew in
    its pong) and create the watch again from where it was, or it would wait in silence."""
    with shared_node.client() as probe:
        (hub_url, *_) = probe.watch_hubs()
    relay = Relay(hub_url)
    try:
        with Client(shared_node.endpoints, timeout=5, watch_endpoints=[relay.url]) as client:
            w = created(client.watch(b"relay/k"))
            client.put(b"relay/k", b"1")
            assert [e[2] for e in events_of(w, 1)] == [b"1"]
            assert relay.cut() == 1
            wait_until(lambda: len(relay.pairs) == 1, WAIT_S, "ZeroMQ connecting again")
            # Put at once: the event reaches nobody on the wire, and arrives only if the watch
            # is created again (from the revision after the last it delivered) once the SDK's
            # next ping (within a second) is answered with the new stream's number.
            client.put(b"relay/k", b"2")
            assert [e[2] for e in events_of(w, 1)] == [b"2"]
            w.cancel()
    finally:
        relay.close()


def test_an_asyncio_watch_survives_its_hub_connection_being_cut_and_made_again(
    shared_node: LocalCluster,
) -> None:
    """The same for the asyncio client, whose stream is a task around the same stream rules."""
    with shared_node.client() as probe:
        (hub_url, *_) = probe.watch_hubs()
    relay = Relay(hub_url)

    async def scenario() -> list[bytes]:
        async with AsyncClient(shared_node.endpoints, timeout=5, watch_endpoints=[relay.url]) as client:
            start = (await client.put("relay/aio", "0")).header.revision
            values: list[bytes] = []
            async with client.watch("relay/aio", start_revision=start) as w:
                first = await w.get(timeout=WAIT_S)
                values += [e.kv.value for e in (first.events if first else [])]
                assert relay.cut() == 1
                await asyncio.to_thread(wait_until, lambda: len(relay.pairs) == 1, WAIT_S, "reconnecting")
                await client.put("relay/aio", "1")
                second = await w.get(timeout=WAIT_S)
                values += [e.kv.value for e in (second.events if second else [])]
            return values

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [b"0", b"1"]
    finally:
        relay.close()
