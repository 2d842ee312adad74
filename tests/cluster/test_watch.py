"""Watchers on three hubs under a write load while a hub and a backend are killed: every
watcher's stream is checked against the backend's history (ordered, unique, no gap, atomic
revisions, bookmarks never ahead). Among them, an asyncio client's watches, whose hub is the one
killed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from etcdz import Client
from etcdz.aio import AsyncClient, AsyncWatch
from proto_schemas.watch import FilterType, WatchResponse
from tools.cluster import LocalCluster, running
from tools.watch_check import Collector, Spec, check, history
from tools.workload import Writer

WATCHERS, STREAMS, KEYS = 1000, 20, 50
AIO_SPECS: list[tuple[Spec, tuple[str], dict[str, Any]]] = [
    (Spec(key=b"/w/07"), ("/w/07",), {}),
    (Spec(key=b"/w/", range_end=b"/w0"), ("/w/",), {"prefix": True}),
    (Spec(key=b"/w/1", range_end=b"/w/2"), ("/w/1",), {"range_end": "/w/2", "prev_kv": True}),
]


class AioWatchers:
    """The asyncio client's watches, on a loop of their own: ``hub`` is the hub its stream
    uses (set once it has one); ``final`` set, they read until complete up to it."""

    def __init__(self, endpoints: list[str], start_revision: int) -> None:
        self.got: list[list[WatchResponse]] = [[] for _ in AIO_SPECS]
        self.hub = ""
        self.final = 0
        self.complete = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(endpoints, start_revision), daemon=True)
        self._thread.start()

    def _run(self, endpoints: list[str], start_revision: int) -> None:
        try:
            asyncio.run(self._watch(endpoints, start_revision))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    async def _watch(self, endpoints: list[str], start_revision: int) -> None:
        async with AsyncClient(endpoints, timeout=5) as client:
            watches = [client.watch(*args, start_revision=start_revision, **kw) for _, args, kw in AIO_SPECS]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while loop.time() < deadline:
                self.hub = self.hub or client.watch_stream().hub
                await asyncio.gather(*(self._read(w, got) for w, got in zip(watches, self.got, strict=True)))
                if self.final and all(w.revision >= self.final for w in watches):
                    self.complete.set()
                    return
                if self.final:
                    client.request_progress()

    @staticmethod
    async def _read(w: AsyncWatch, got: list[WatchResponse]) -> None:
        resp = await w.get(timeout=0.5)
        while resp is not None:
            got.append(resp)
            resp = await w.get(timeout=0.01)


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running(str(tmp_path_factory.mktemp("watch")), 3) as c:
        yield c


def test_a_thousand_watchers_keep_every_guarantee_through_hub_and_backend_kills(
    cluster: LocalCluster,
) -> None:
    rng = random.Random(4)
    with cluster.client() as c:
        for i in range(KEYS):
            c.put(f"/w/{i:02d}", "seed")
        start_rev = c.get("/w/00").header.revision - KEYS // 2  # half start in the past
    clients = [
        Client(cluster.endpoints[i % 3 :] + cluster.endpoints[: i % 3], timeout=5) for i in range(STREAMS)
    ]
    watchers: list[tuple[Spec, Collector]] = []
    for n in range(WATCHERS):
        client = clients[n % STREAMS]
        kind = n % 4
        if kind == 0:
            key = f"/w/{rng.randrange(KEYS):02d}"
            spec = Spec(key=key.encode())
            collector = Collector(client, key, start_revision=start_rev)
        elif kind == 1:
            spec = Spec(key=b"/w/", range_end=b"/w0")
            collector = Collector(client, "/w/", prefix=True, start_revision=start_rev)
        elif kind == 2:
            spec = Spec(key=b"/w/3", range_end=b"\0", filters=[FilterType.NOPUT])
            collector = Collector(
                client, "/w/3", from_key=True, start_revision=start_rev, filters=[FilterType.NOPUT]
            )
        else:
            spec = Spec(key=b"/w/1", range_end=b"/w/2")
            collector = Collector(client, "/w/1", range_end="/w/2", start_revision=start_rev, prev_kv=True)
        spec.start_revision = start_rev
        watchers.append((spec, collector))
    aio = AioWatchers(cluster.endpoints, start_rev)
    writers = [Writer(cluster.endpoints, f"/load{i}") for i in range(2)]
    for wr in writers:
        wr.start()
    stop = threading.Event()

    def churn() -> None:  # puts, deletes and txns on the watched keys
        with Client(cluster.endpoints, timeout=5) as c:
            while not stop.is_set():
                key = f"/w/{rng.randrange(KEYS):02d}"
                try:
                    if rng.random() < 0.7:
                        c.put(key, str(rng.random()))
                    else:
                        c.delete(key)
                except Exception:  # noqa: BLE001 - a kill makes some fail; the history is the truth
                    time.sleep(0.05)

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    time.sleep(3)
    deadline = time.monotonic() + 60
    while not aio.hub and time.monotonic() < deadline:
        time.sleep(0.1)
    # The hub the asyncio client's stream uses dies; the blocking clients are on all three.
    (victim,) = [m for m in cluster.members if m.watch_url == aio.hub]
    os.kill(victim.actor_pids()["watch0"], signal.SIGKILL)
    time.sleep(3)
    os.kill(cluster.members[1].actor_pids()["mvcc"], signal.SIGKILL)  # its member restarts from disk
    time.sleep(5)
    stop.set()
    churner.join(10)
    for wr in writers:
        wr.finish()
    with cluster.client() as c:
        final = c.put("/w/00", "last").header.revision
        events = history(c)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(c.watch.revision >= final for _, c in watchers):
            break
        for client in clients:
            client.request_progress()  # bookmarks: where every quiet watcher is complete to
        time.sleep(1.0)
    aio.final = final
    assert aio.complete.wait(120) and not aio.errors, f"asyncio watches never caught up: {aio.errors}"
    problems = []
    for n, ((spec, _, _), got) in enumerate(zip(AIO_SPECS, aio.got, strict=True)):
        spec.start_revision = start_rev
        problems += [f"asyncio watcher {n} ({spec.key!r}): {problem}" for problem in check(spec, events, got)]
    for n, (spec, collector) in enumerate(watchers):
        for problem in check(spec, events, collector.got):
            problems.append(f"watcher {n} ({spec.key!r}..{spec.range_end!r}): {problem}")
    for client in clients:
        client.close()
    assert not problems, "\n".join(problems[:20])
    late = sum(1 for _, c in watchers if c.watch.revision < final)
    assert late == 0, f"{late} watchers never caught up to revision {final}"
