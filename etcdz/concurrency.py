"""Coordination on etcdz, as etcd's clientv3/concurrency and contrib/recipes offer it.

    from etcdz import Client
    from etcdz.concurrency import Election, Mutex, Session, stm

    with Client(endpoints) as client, Session(client, ttl=10) as session:
        with Mutex(session, "/locks/db"):           # held until the block ends
            ...
        election = Election(session, "/leader")
        election.campaign("node-1")                 # returns once this session leads
        for leader in election.observe(): ...       # every leader change, in order

- ``Session``: a lease kept alive in the background; ``done``/``lost`` once it ends, and
  every lock and leadership held through it ends with it (the keys carry the lease).
- ``Mutex``: ``lock()`` waits in create-revision order, each waiter watching only its
  predecessor's key; ``try_lock()``; ``is_owner()`` is the compare that fences a write;
  ``unlock()``. A wait that fails (timeout, lost session, Ctrl-C) deletes its key.
- ``Election``: ``campaign``, ``proclaim``, ``resign``, ``leader``, ``observe``.
- ``stm(client, apply, isolation=...)``: runs ``apply(stm)`` and commits its writes only if
  its reads are still valid, retrying on conflict.
- ``Barrier``, ``DoubleBarrier``, ``Queue``: etcd's contrib recipes.

Names are bytes or str, any bytes but empty. The logic lives in ``etcdz._recipes``, shared
with the asyncio twin ``etcdz.aio_concurrency``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator
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
from etcdz._transport import Transport
from etcdz.errors import EtcdzError, LeaseNotFound
from etcdz.lease import KeptLease
from etcdz.watcher import Watch
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
    "SessionLock",
    "Stm",
    "TooManyClients",
    "observe",
    "stm",
]

T = TypeVar("T")
POLL_S = 0.25  # how often a wait looks at its session and deadline


class Session:
    """A lease kept alive while the session is open (clientv3's ``concurrency.Session``).

    ``ttl``: seconds the cluster keeps the session's keys after this process stops renewing
    (it dies, or loses the cluster). ``lease_id``: resume a lease granted before."""

    def __init__(self, client: Transport, ttl: int = 60, lease_id: int = 0) -> None:
        self.client = client
        self._lease: KeptLease = client.lease(ttl, lease_id)

    @property
    def id(self) -> int:
        return self._lease.id

    @property
    def ttl(self) -> int:
        return self._lease.ttl

    @property
    def done(self) -> bool:
        """The session has ended (lease lost, or closed): its locks and leaderships are gone."""
        return self._lease.done

    @property
    def lost(self) -> bool:
        return self._lease.lost.is_set()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._lease.add_done_callback(fn)

    def close(self, revoke: bool = True) -> None:
        """End the session; with ``revoke`` (the default) its keys are deleted at once,
        without it they live until the lease expires (clientv3's ``Orphan``)."""
        self._lease.close(revoke=revoke)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drive(
    client: Transport, steps: r.Steps, session: Session | None = None, deadline: float | None = None
) -> Generator[Any, None, Any]:
    """Run a recipe's steps on the blocking client; ``Emit``s are yielded to the caller."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.throw(error) if error is not None else steps.send(result)
        except StopIteration as stop:
            return stop.value
        result, error = None, None
        try:
            if isinstance(op, r.Call):
                result = client.call(op.request)
            elif isinstance(op, r.OpenWatch):
                result = client.watch(op.key, prefix=op.prefix, start_revision=op.start_revision)
            elif isinstance(op, r.NextEvents):
                result = _next_events(op.handle, session if op.session else None, deadline)
            elif isinstance(op, r.CloseWatch):
                op.handle.cancel()
            elif isinstance(op, r.Emit):
                yield op.value
        except BaseException as exc:  # handed to the recipe, which cleans up and re-raises
            error = exc


def _next_events(w: Watch, session: Session | None, deadline: float | None) -> list[Any]:
    while True:
        if session is not None and session.done:
            raise SessionExpired()
        wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
        if wait <= 0:
            raise TimeoutError("timed out waiting")
        resp = w.get(timeout=wait)
        if resp is not None and resp.events:
            return list(resp.events)


def _run(
    client: Transport, steps: r.Steps, session: Session | None = None, timeout: float | None = None
) -> Any:
    """Run a recipe to its result; with a session, a lease the cluster no longer has (it
    expired before the session noticed) is ``SessionExpired``, as a lease known lost is."""
    deadline = None if timeout is None else time.monotonic() + timeout
    driver = _drive(client, steps, session, deadline)
    try:
        next(driver)
    except StopIteration as stop:
        return stop.value
    except LeaseNotFound:
        if session is None:
            raise
        raise SessionExpired() from None
    raise EtcdzError("a recipe emitted where none should")  # a bug in this module


def _alive(session: Session) -> None:
    if session.done:
        raise SessionExpired()


class Mutex:
    """A distributed lock on ``name`` held through ``session``; a context manager."""

    def __init__(self, session: Session, name: ops.Bytes) -> None:
        self.session = session
        self.prefix = r.prefix_of(name)
        self.key: bytes | None = None
        self.revision = 0  # the lock key's create revision while held: the fencing token

    def lock(self, timeout: float | None = None) -> None:
        """Wait until this session holds the lock (``TimeoutError`` after ``timeout`` s)."""
        self._hold(False, timeout)

    def try_lock(self) -> bool:
        """Take the lock if nobody holds it, without waiting; False if another does."""
        try:
            self._hold(True, None)
        except Locked:
            return False
        return True

    def _hold(self, try_only: bool, timeout: float | None) -> None:
        _alive(self.session)
        steps = r.acquire(self.prefix, self.session.id, try_only=try_only)
        held = _run(self.session.client, steps, self.session, timeout)
        self.key, self.revision = held.key, held.revision

    def unlock(self) -> None:
        if self.key is not None:
            _run(self.session.client, r.release(self.key))
            self.key, self.revision = None, 0

    def is_owner(self) -> Compare:
        """The compare that holds only while this mutex is held: put it in a txn to fence a
        write (it fails once the lock was lost, even if this process does not know yet)."""
        if self.key is None:
            raise EtcdzError("the mutex is not held")
        return ops.CreateRevision(self.key) == self.revision

    def __enter__(self) -> Mutex:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


class SessionLock:
    """A ``Mutex`` with a session of its own, made on ``acquire`` and ended on ``release``
    (python-etcd3's ``client.lock(name, ttl)``)."""

    def __init__(self, client: Transport, name: ops.Bytes, ttl: int = 60) -> None:
        self.client = client
        self.name = name
        self.ttl = ttl
        self.session: Session | None = None
        self.mutex: Mutex | None = None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock (False after ``timeout`` seconds without it)."""
        session = Session(self.client, self.ttl)
        mutex = Mutex(session, self.name)
        try:
            mutex.lock(timeout)
        except TimeoutError:
            session.close()
            return False
        except BaseException:
            session.close()
            raise
        self.session, self.mutex = session, mutex
        return True

    def release(self) -> None:
        if self.session is not None:
            self.session.close()  # revoking the lease deletes the key
            self.session = self.mutex = None

    @property
    def is_acquired(self) -> bool:
        return self.session is not None and not self.session.done

    def __enter__(self) -> SessionLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Election:
    """Leader election on ``name`` (clientv3's ``concurrency.Election``)."""

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

    def campaign(self, value: ops.Bytes, timeout: float | None = None) -> None:
        """Return once this session is the leader, its value ``value``."""
        _alive(self.session)
        steps = r.acquire(self.prefix, self.session.id, ops.to_bytes(value))
        self._held = _run(self.session.client, steps, self.session, timeout)

    def proclaim(self, value: ops.Bytes) -> None:
        """Announce a new value as the leader (``NotLeader`` if this session is not)."""
        if self._held is None:
            raise NotLeader()
        _run(self.session.client, r.proclaim(self._held, ops.to_bytes(value), self.session.id))

    def resign(self) -> None:
        """Give up leadership (or the candidacy); a new leader is elected from the others."""
        if self._held is not None:
            _run(self.session.client, r.resign(self._held))
            self._held = None

    def leader(self) -> KeyValue:
        """The current leader's key and value (``NoLeader`` if there is none)."""
        resp = _run(self.session.client, r.leader(self.prefix))
        return resp.kvs[0]

    def observe(self) -> Iterator[KeyValue]:
        """Every leader (and proclaimed value), in order, each once, until the loop stops."""
        return _drive(self.session.client, r.observe(self.prefix))


def observe(client: Transport, name: ops.Bytes) -> Iterator[KeyValue]:
    """``Election.observe`` without a session of one's own (an observer campaigns for nothing)."""
    return _drive(client, r.observe(r.prefix_of(name)))


class Stm:
    """What ``apply`` sees inside ``stm``: reads and writes of one attempt."""

    def __init__(self, client: Transport, state: r.StmState) -> None:
        self._client = client
        self._state = state

    def get(self, key: ops.Bytes) -> bytes:
        """The key's value (b"" if it does not exist), as the isolation level says."""
        k = ops.to_bytes(key)
        known, value = self._state.cached(k)
        if known:
            return value
        return self._state.record(k, self._client.call(self._state.read_request(k)))

    def rev(self, key: ops.Bytes) -> int:
        """The key's mod revision as read (0 if it does not exist)."""
        k = ops.to_bytes(key)
        self.get(k)
        kv = self._state.reads.get(k)
        return kv.mod_revision if kv is not None else 0

    def put(self, key: ops.Bytes, value: ops.Bytes) -> None:
        self._state.put(ops.to_bytes(key), ops.to_bytes(value))

    def delete(self, key: ops.Bytes) -> None:
        self._state.delete(ops.to_bytes(key))


def stm(
    client: Transport,
    apply: Callable[[Stm], T],
    isolation: str = SERIALIZABLE_SNAPSHOT,
    max_attempts: int = 100,
) -> T:
    """Run ``apply`` until its writes commit with its reads still valid; returns what the
    successful attempt returned. An exception from ``apply`` aborts (nothing is written)."""
    state = r.StmState(isolation)
    for _ in range(max_attempts):
        state.reset()
        result = apply(Stm(client, state))
        resp: TxnResponse = client.call(state.commit_request())
        if resp.succeeded:
            return result
    raise EtcdzError(f"stm: gave up after {max_attempts} conflicting attempts")


class Barrier:
    """Blocks waiters until the holder releases it (contrib/recipes ``Barrier``)."""

    def __init__(self, client: Transport, key: ops.Bytes) -> None:
        self.client = client
        self.key = ops.to_bytes(key)

    def hold(self) -> None:
        self.client.put(self.key, b"")

    def release(self) -> None:
        self.client.delete(self.key)

    def wait(self, timeout: float | None = None) -> None:
        """Return once the barrier is not held."""
        _run(self.client, r.barrier_wait(self.key), timeout=timeout)


class DoubleBarrier:
    """``count`` members enter together and leave together (contrib/recipes)."""

    def __init__(self, session: Session, key: ops.Bytes, count: int) -> None:
        self.session = session
        self.key = ops.to_bytes(key)
        self.count = count

    def enter(self, timeout: float | None = None) -> None:
        _alive(self.session)
        _run(
            self.session.client, r.double_enter(self.key, self.count, self.session.id), self.session, timeout
        )

    def leave(self, timeout: float | None = None) -> None:
        _run(self.session.client, r.double_leave(self.key, self.session.id), self.session, timeout)


class Queue:
    """A FIFO queue of values under ``key`` (contrib/recipes ``Queue``): many producers,
    many consumers, each value taken once."""

    def __init__(self, client: Transport, key: ops.Bytes) -> None:
        self.client = client
        self.prefix = r.prefix_of(key)

    def enqueue(self, value: ops.Bytes) -> bytes:
        """Add ``value`` at the tail; returns its key."""
        steps = r.enqueue(self.prefix, ops.to_bytes(value), uuid.uuid4().hex.encode())
        return _run(self.client, steps)

    def dequeue(self, timeout: float | None = None) -> bytes:
        """Take the value at the head, waiting for one if the queue is empty."""
        return _run(self.client, r.dequeue(self.prefix), timeout=timeout)
