"""``etcdz.concurrency`` for asyncio: the same recipes (``etcdz._recipes``) run on an
``AsyncClient``, every wait a coroutine.

    from etcdz.aio import AsyncClient
    from etcdz.aio_concurrency import Election, Mutex, Session, stm

    async with AsyncClient(endpoints) as client, Session(client, ttl=10) as session:
        async with Mutex(session, "/locks/db"):
            ...

A task cancelled while it waits for a lock (or campaigns) deletes its key before the
cancellation goes on: nothing is left behind in the store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from etcdz import _recipes as r
from etcdz import ops
from etcdz._recipes import (
    ISOLATIONS,
    READ_COMMITTED,
    REPEATABLE_READS,
    SERIALIZABLE,
    SERIALIZABLE_SNAPSHOT,
    Locked,
    NoLeader,
    NotLeader,
    SessionExpired,
    TooManyClients,
)
from etcdz.aio import AsyncClient, AsyncWatch
from etcdz.errors import EtcdzError, LeaseNotFound
from etcdz.lease import AsyncKeptLease
from proto_schemas.kv import Compare, KeyValue, TxnResponse

__all__ = [
    "ISOLATIONS",
    "READ_COMMITTED",
    "REPEATABLE_READS",
    "SERIALIZABLE",
    "SERIALIZABLE_SNAPSHOT",
    "Barrier",
    "DoubleBarrier",
    "Election",
    "Locked",
    "Mutex",
    "NoLeader",
    "NotLeader",
    "Queue",
    "Session",
    "SessionExpired",
    "Stm",
    "TooManyClients",
    "stm",
]

T = TypeVar("T")
POLL_S = 0.25


class Session:
    """A lease kept alive by a task while the session is open: ``async with Session(client)``
    (or ``await Session(client).start()``)."""

    def __init__(self, client: AsyncClient, ttl: int = 60, lease_id: int = 0) -> None:
        self.client = client
        self._ttl, self._lease_id = ttl, lease_id
        self._lease: AsyncKeptLease | None = None

    async def start(self) -> Session:
        if self._lease is None:
            self._lease = await AsyncKeptLease.grant(self.client, self._ttl, self._lease_id)
        return self

    @property
    def lease(self) -> AsyncKeptLease:
        if self._lease is None:
            raise EtcdzError("the session is not started (use `async with` or `await session.start()`)")
        return self._lease

    @property
    def id(self) -> int:
        return self.lease.id

    @property
    def ttl(self) -> int:
        return self.lease.ttl

    @property
    def done(self) -> bool:
        return self.lease.done

    @property
    def lost(self) -> bool:
        return self.lease.lost.is_set()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self.lease.add_done_callback(fn)

    async def close(self, revoke: bool = True) -> None:
        if self._lease is not None:
            await self._lease.close(revoke=revoke)

    async def __aenter__(self) -> Session:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _drive(
    client: AsyncClient, steps: r.Steps, session: Session | None = None, deadline: float | None = None
) -> AsyncGenerator[Any, None]:
    """Run a recipe's steps on the asyncio client; ``Emit``s are yielded, and the recipe's
    result is handed out as the last item, wrapped in ``_Done``."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(result)
        except StopIteration as stop:
            yield _Done(stop.value)
            return
        result, error = None, None
        try:
            if isinstance(op, r.Call):
                result = await client.call(op.request)
            elif isinstance(op, r.OpenWatch):
                result = client.watch(op.key, prefix=op.prefix, start_revision=op.start_revision)
            elif isinstance(op, r.NextEvents):
                result = await _next_events(op.handle, session if op.session else None, deadline)
            elif isinstance(op, r.CloseWatch):
                op.handle.cancel()
            elif isinstance(op, r.Emit):
                yield op.value
        except BaseException as exc:  # handed to the recipe (a cancellation too): it cleans up
            error = exc


class _Done:
    def __init__(self, value: Any) -> None:
        self.value = value


async def _next_events(w: AsyncWatch, session: Session | None, deadline: float | None) -> list[Any]:
    loop = asyncio.get_running_loop()
    while True:
        if session is not None and session.done:
            raise SessionExpired()
        wait = POLL_S if deadline is None else min(POLL_S, deadline - loop.time())
        if wait <= 0:
            raise TimeoutError("timed out waiting")
        resp = await w.get(timeout=wait)
        if resp is not None and resp.events:
            return list(resp.events)


async def _run(
    client: AsyncClient, steps: r.Steps, session: Session | None = None, timeout: float | None = None
) -> Any:
    """As ``etcdz.concurrency._run``: with a session, ``LeaseNotFound`` is ``SessionExpired``."""
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    driver = _drive(client, steps, session, deadline)
    try:
        async for item in driver:
            if isinstance(item, _Done):
                return item.value
    except LeaseNotFound:
        if session is None:
            raise
        raise SessionExpired() from None
    finally:
        await driver.aclose()
    raise EtcdzError("a recipe ended without a result")  # a bug in this module


def _alive(session: Session) -> None:
    if session.done:
        raise SessionExpired()


class Mutex:
    """As ``etcdz.concurrency.Mutex``; ``async with Mutex(session, name):``."""

    def __init__(self, session: Session, name: ops.Bytes) -> None:
        self.session = session
        self.prefix = r.prefix_of(name)
        self.key: bytes | None = None
        self.revision = 0

    async def lock(self, timeout: float | None = None) -> None:
        await self._hold(False, timeout)

    async def try_lock(self) -> bool:
        try:
            await self._hold(True, None)
        except Locked:
            return False
        return True

    async def _hold(self, try_only: bool, timeout: float | None) -> None:
        _alive(self.session)
        steps = r.acquire(self.prefix, self.session.id, try_only=try_only)
        held = await _run(self.session.client, steps, self.session, timeout)
        self.key, self.revision = held.key, held.revision

    async def unlock(self) -> None:
        if self.key is not None:
            await _run(self.session.client, r.release(self.key))
            self.key, self.revision = None, 0

    def is_owner(self) -> Compare:
        if self.key is None:
            raise EtcdzError("the mutex is not held")
        return ops.CreateRevision(self.key) == self.revision

    async def __aenter__(self) -> Mutex:
        await self.lock()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unlock()


class Election:
    """As ``etcdz.concurrency.Election``; ``async for leader in election.observe()``."""

    def __init__(self, session: Session, name: ops.Bytes) -> None:
        self.session = session
        self.prefix = r.prefix_of(name)
        self._held: r.Held | None = None

    @property
    def key(self) -> bytes | None:
        return self._held.key if self._held else None

    @property
    def revision(self) -> int:
        return self._held.revision if self._held else 0

    async def campaign(self, value: ops.Bytes, timeout: float | None = None) -> None:
        _alive(self.session)
        steps = r.acquire(self.prefix, self.session.id, ops.to_bytes(value))
        self._held = await _run(self.session.client, steps, self.session, timeout)

    async def proclaim(self, value: ops.Bytes) -> None:
        if self._held is None:
            raise NotLeader()
        await _run(self.session.client, r.proclaim(self._held, ops.to_bytes(value), self.session.id))

    async def resign(self) -> None:
        if self._held is not None:
            await _run(self.session.client, r.resign(self._held))
            self._held = None

    async def leader(self) -> KeyValue:
        resp = await _run(self.session.client, r.leader(self.prefix))
        return resp.kvs[0]

    async def observe(self) -> AsyncIterator[KeyValue]:
        driver = _drive(self.session.client, r.observe(self.prefix))
        try:
            async for item in driver:
                yield item
        finally:
            await driver.aclose()


class Stm:
    def __init__(self, client: AsyncClient, state: r.StmState) -> None:
        self._client = client
        self._state = state

    async def get(self, key: ops.Bytes) -> bytes:
        k = ops.to_bytes(key)
        known, value = self._state.cached(k)
        if known:
            return value
        return self._state.record(k, await self._client.call(self._state.read_request(k)))

    async def rev(self, key: ops.Bytes) -> int:
        k = ops.to_bytes(key)
        await self.get(k)
        kv = self._state.reads.get(k)
        return kv.mod_revision if kv is not None else 0

    def put(self, key: ops.Bytes, value: ops.Bytes) -> None:
        self._state.put(ops.to_bytes(key), ops.to_bytes(value))

    def delete(self, key: ops.Bytes) -> None:
        self._state.delete(ops.to_bytes(key))


async def stm(
    client: AsyncClient,
    apply: Callable[[Stm], Awaitable[T]],
    isolation: str = SERIALIZABLE_SNAPSHOT,
    max_attempts: int = 100,
) -> T:
    """As ``etcdz.concurrency.stm``, with ``apply`` a coroutine function."""
    state = r.StmState(isolation)
    for _ in range(max_attempts):
        state.reset()
        result = await apply(Stm(client, state))
        resp: TxnResponse = await client.call(state.commit_request())
        if resp.succeeded:
            return result
    raise EtcdzError(f"stm: gave up after {max_attempts} conflicting attempts")


class Barrier:
    def __init__(self, client: AsyncClient, key: ops.Bytes) -> None:
        self.client = client
        self.key = ops.to_bytes(key)

    async def hold(self) -> None:
        await self.client.put(self.key, b"")

    async def release(self) -> None:
        await self.client.delete(self.key)

    async def wait(self, timeout: float | None = None) -> None:
        await _run(self.client, r.barrier_wait(self.key), timeout=timeout)


class DoubleBarrier:
    def __init__(self, session: Session, key: ops.Bytes, count: int) -> None:
        self.session = session
        self.key = ops.to_bytes(key)
        self.count = count

    async def enter(self, timeout: float | None = None) -> None:
        _alive(self.session)
        steps = r.double_enter(self.key, self.count, self.session.id)
        await _run(self.session.client, steps, self.session, timeout)

    async def leave(self, timeout: float | None = None) -> None:
        await _run(self.session.client, r.double_leave(self.key, self.session.id), self.session, timeout)


class Queue:
    def __init__(self, client: AsyncClient, key: ops.Bytes) -> None:
        self.client = client
        self.prefix = r.prefix_of(key)

    async def enqueue(self, value: ops.Bytes) -> bytes:
        steps = r.enqueue(self.prefix, ops.to_bytes(value), uuid.uuid4().hex.encode())
        return await _run(self.client, steps)

    async def dequeue(self, timeout: float | None = None) -> bytes:
        return await _run(self.client, r.dequeue(self.prefix), timeout=timeout)
