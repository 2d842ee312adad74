"""The coordination recipes as plain steps, run by a blocking and an asyncio driver.

Each recipe (lock, campaign, observe, barriers, queue) is a generator that *yields* what it
needs done — a request (``Call``), a watch opened, its next events awaited, a value handed to
the user (``Emit``) — and is sent the result back (or has the error thrown in). It never
touches a socket, a thread or a clock, so ``etcdz.concurrency`` and ``etcdz.aio_concurrency``
run exactly the same logic, and a failure while waiting (a timeout, a lost session, a
cancelled task, Ctrl-C) reaches the recipe, which cleans up (deletes the key it made) before
the error goes on.

The rules are those of etcd's clientv3/concurrency and contrib/recipes:
- a waiter's key is ``<prefix>/<lease id in hex>``, written with its session's lease in a txn
  that only creates it (a session taking the same lock twice reuses its key);
- waiters are ordered by the key's create revision; each waits only for the deletion of the
  newest key created before its own (its predecessor): no thundering herd on release;
- owning means no key under the prefix has a smaller create revision; a writer can fence its
  writes with ``CreateRevision(key) == rev`` in a txn (``Mutex.is_owner()``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

from etcdz import ops
from etcdz.errors import EtcdzError
from proto_schemas.kv import (
    DeleteRangeRequest,
    EventType,
    KeyValue,
    PutRequest,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)


class SessionExpired(EtcdzError):
    """The session's lease ended (expired, revoked or closed) before or while the call ran."""

    def __init__(self, message: str = "session: lease is expired or closed") -> None:
        super().__init__(message)


class Locked(EtcdzError):
    """``try_lock`` found the mutex held by another session."""

    def __init__(self, message: str = "mutex: Locked by another session") -> None:
        super().__init__(message)


class NotLeader(EtcdzError):
    """Proclaim or resign by a candidate that is not (or no longer) the leader."""

    def __init__(self, message: str = "election: not leader") -> None:
        super().__init__(message)


class NoLeader(EtcdzError):
    """The election has no leader."""

    def __init__(self, message: str = "election: no leader") -> None:
        super().__init__(message)


class TooManyClients(EtcdzError):
    def __init__(self, message: str = "etcdz: too many clients") -> None:
        super().__init__(message)


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    request: Any


@dataclasses.dataclass(frozen=True, slots=True)
class OpenWatch:
    """A watch from ``start_revision``; the driver answers with a handle."""

    key: bytes
    prefix: bool = False
    start_revision: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class NextEvents:
    """The next events of a watch (a non-empty list). ``session``: raise ``SessionExpired``
    into the recipe if the session ends meanwhile."""

    handle: Any
    session: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class CloseWatch:
    handle: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Emit:
    """A value for the user (an observer's next leader)."""

    value: Any


Steps = Generator[Any, Any, Any]


def prefix_of(name: ops.Bytes) -> bytes:
    """``name`` as the recipes' prefix: any bytes, with the ``/`` that separates waiters' keys."""
    raw = ops.to_bytes(name)
    if not raw:
        raise ValueError("a lock, election or barrier name must not be empty")
    return raw + b"/"


def key_for(prefix: bytes, lease: int) -> bytes:
    return prefix + b"%x" % lease


def first_by_create(prefix: bytes) -> RangeRequest:
    """The oldest key under ``prefix`` (the owner, the leader, the head of the queue)."""
    return ops.get(prefix, prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND, limit=1)


def _predecessor(prefix: bytes, rev: int) -> RangeRequest:
    """The newest key under ``prefix`` created before ``rev``."""
    return ops.get(
        prefix,
        prefix=True,
        sort_target=SortTarget.CREATE,
        sort_order=SortOrder.DESCEND,
        limit=1,
        max_create_revision=rev - 1,
    )


def _wait_deleted(key: bytes, revision: int) -> Steps:
    """Until ``key`` (present at ``revision``) is deleted."""
    handle = yield OpenWatch(key, start_revision=revision + 1)
    try:
        while True:
            events = yield NextEvents(handle)
            if any(e.type == EventType.DELETE for e in events):
                return
    finally:
        yield CloseWatch(handle)


def wait_predecessors(prefix: bytes, rev: int) -> Steps:
    """Until no key under ``prefix`` has a create revision below ``rev``, watching only the
    newest such key each time (its deletion may reveal an older one still there)."""
    while True:
        resp: RangeResponse = yield Call(_predecessor(prefix, rev))
        if not resp.kvs:
            return resp.header
        yield from _wait_deleted(resp.kvs[0].key, resp.header.revision)


def _claim(key: bytes, value: bytes, lease: int, prefix: bytes) -> TxnRequest:
    """Create ``key`` unless it exists (then read it), and read the owner, in one revision."""
    return ops.txn(
        [ops.CreateRevision(key) == 0],
        [ops.put(key, value, lease=lease), first_by_create(prefix)],
        [ops.get(key), first_by_create(prefix)],
    )


@dataclasses.dataclass(slots=True)
class Held:
    key: bytes
    revision: int  # the key's create revision: the fencing token
    header: Any = None


def acquire(prefix: bytes, lease: int, value: bytes = b"", try_only: bool = False) -> Steps:
    """Lock (or campaign): returns ``Held``. On any error while waiting the key is deleted."""
    key = key_for(prefix, lease)
    try:
        resp: TxnResponse = yield Call(_claim(key, value, lease, prefix))
    except BaseException:  # cancelled, or no answer: the key may have been made
        yield from _discard(key)
        raise
    created = resp.succeeded
    if created:
        rev = resp.header.revision
    else:
        mine: KeyValue = resp.responses[0].kvs[0]  # type: ignore[union-attr]
        rev = mine.create_revision
        if mine.value != value and value:
            yield Call(ops.put(key, value, lease=lease))  # a campaign again with a new value
    owner = resp.responses[1].kvs  # type: ignore[union-attr]
    if not owner or owner[0].create_revision == rev:
        return Held(key, rev, resp.header)
    if try_only:
        if created:
            yield Call(ops.delete(key))
        raise Locked()
    try:
        header = yield from wait_predecessors(prefix, rev)
        still: RangeResponse = yield Call(ops.get(key))
        if not still.kvs or still.kvs[0].create_revision != rev:
            raise SessionExpired()  # the lease ended while we waited: the key went with it
    except BaseException:
        yield from _discard(key)
        raise
    return Held(key, rev, header)


def _discard(key: bytes) -> Steps:
    """Delete a waiter's key on the way out of a failed wait, best effort: if the cluster
    cannot be reached now, the session's lease takes the key at the latest."""
    try:
        yield Call(ops.delete(key))
    except Exception:
        pass


def release(key: bytes) -> Steps:
    yield Call(ops.delete(key))


def proclaim(held: Held, value: bytes, lease: int) -> Steps:
    resp: TxnResponse = yield Call(
        ops.txn([ops.CreateRevision(held.key) == held.revision], [ops.put(held.key, value, lease=lease)])
    )
    if not resp.succeeded:
        raise NotLeader()


def resign(held: Held) -> Steps:
    resp: TxnResponse = yield Call(
        ops.txn([ops.CreateRevision(held.key) == held.revision], [ops.delete(held.key)])
    )
    return resp.succeeded


def leader(prefix: bytes) -> Steps:
    resp: RangeResponse = yield Call(first_by_create(prefix))
    if not resp.kvs:
        raise NoLeader()
    return resp


def _next_created(prefix: bytes, revision: int) -> Generator[Any, Any, KeyValue]:
    """The first key created under ``prefix`` after ``revision``."""
    handle = yield OpenWatch(prefix, prefix=True, start_revision=revision + 1)
    try:
        while True:
            events = yield NextEvents(handle, session=False)
            for e in events:
                if e.type == EventType.PUT and e.kv.version == 1:
                    return e.kv
    finally:
        yield CloseWatch(handle)


def observe(prefix: bytes) -> Steps:
    """Emit the leader's kv at every change (a new leader, or a proclaimed value), once each,
    in order; forever (the driver stops it)."""
    while True:
        resp: RangeResponse = yield Call(first_by_create(prefix))
        # No leader: the next key created under the prefix is the leader.
        kv = resp.kvs[0] if resp.kvs else (yield from _next_created(prefix, resp.header.revision))
        yield Emit(kv)
        handle = yield OpenWatch(kv.key, start_revision=kv.mod_revision + 1)
        try:
            gone = False
            while not gone:
                events = yield NextEvents(handle, session=False)
                for e in events:
                    if e.type == EventType.DELETE:
                        gone = True
                        break
                    kv = e.kv
                    yield Emit(kv)
        finally:
            yield CloseWatch(handle)


# -- contrib/recipes ---------------------------------------------------------------------------
def barrier_wait(key: bytes) -> Steps:
    resp: RangeResponse = yield Call(ops.get(key))
    if resp.kvs:
        yield from _wait_deleted(key, resp.header.revision)


def _wait_created(key: bytes, revision: int) -> Steps:
    handle = yield OpenWatch(key, start_revision=revision + 1)
    try:
        while True:
            events = yield NextEvents(handle)
            if any(e.type == EventType.PUT for e in events):
                return
    finally:
        yield CloseWatch(handle)


def double_enter(key: bytes, count: int, lease: int) -> Steps:
    """Wait until ``count`` members have entered (the last one writes ``<key>/ready``)."""
    mine = key + b"/waiters/" + b"%x" % lease
    yield Call(ops.put(mine, b"", lease=lease))
    waiters: RangeResponse = yield Call(ops.get(key + b"/waiters/", prefix=True, keys_only=True))
    if waiters.count > count:
        yield Call(ops.delete(mine))
        raise TooManyClients()
    if waiters.count == count:
        yield Call(ops.put(key + b"/ready", b""))
        return
    ready: RangeResponse = yield Call(ops.get(key + b"/ready"))
    if not ready.kvs:
        yield from _wait_created(key + b"/ready", ready.header.revision)


def double_leave(key: bytes, lease: int) -> Steps:
    """Wait until every member has left; the last one out removes ``<key>/ready``."""
    mine = key + b"/waiters/" + b"%x" % lease
    while True:
        resp: RangeResponse = yield Call(
            ops.get(
                key + b"/waiters/", prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND
            )
        )
        if not resp.kvs:
            return
        lowest, highest = resp.kvs[0], resp.kvs[-1]
        if len(resp.kvs) == 1 and lowest.key == mine:
            yield Call(ops.txn([], [ops.delete(key + b"/ready"), ops.delete(mine)]))
            return
        if lowest.key == mine:
            yield from _wait_deleted(highest.key, resp.header.revision)
        else:
            yield Call(ops.delete(mine))
            yield from _wait_deleted(lowest.key, resp.header.revision)


def enqueue(prefix: bytes, value: bytes, unique: bytes) -> Steps:
    """Add ``value`` at the tail (order: create revision); ``unique`` names the item."""
    key = prefix + unique
    resp: TxnResponse = yield Call(ops.txn([ops.CreateRevision(key) == 0], [ops.put(key, value)]))
    if not resp.succeeded:
        raise EtcdzError(f"queue item {key!r} exists already")
    return key


def dequeue(prefix: bytes) -> Steps:
    """Take the head's value, waiting for an item if the queue is empty; an item taken by
    another consumer first is left to it."""
    while True:
        resp: RangeResponse = yield Call(first_by_create(prefix))
        head = resp.kvs[0] if resp.kvs else (yield from _next_created(prefix, resp.header.revision))
        taken: TxnResponse = yield Call(
            ops.txn([ops.ModRevision(head.key) == head.mod_revision], [ops.delete(head.key)])
        )
        if taken.succeeded:
            return head.value


# -- STM ---------------------------------------------------------------------------------------
SERIALIZABLE_SNAPSHOT = "serializable-snapshot"
SERIALIZABLE = "serializable"
REPEATABLE_READS = "repeatable-reads"
READ_COMMITTED = "read-committed"
ISOLATIONS = (SERIALIZABLE_SNAPSHOT, SERIALIZABLE, REPEATABLE_READS, READ_COMMITTED)


class StmState:
    """One attempt of a software transaction: what it read (and at which revisions), what it
    will write, and the txn that commits it only if no read went stale.

    - serializable-snapshot (the default): every read at the first read's revision; commits
      only if no key read *or written* changed since that revision;
    - serializable: reads at the first read's revision; commits only if the keys read are
      unchanged (writes may race: write skew on keys only written is possible);
    - repeatable-reads: each key read once (later reads return the same value), at the latest
      revision; commits only if the keys read are unchanged;
    - read-committed: reads of committed data, no check at commit.
    """

    def __init__(self, isolation: str = SERIALIZABLE_SNAPSHOT) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"unknown isolation {isolation!r} (one of {', '.join(ISOLATIONS)})")
        self.isolation = isolation
        self.reset()

    def reset(self) -> None:
        self.reads: dict[bytes, KeyValue | None] = {}
        self.read_revision: dict[bytes, int] = {}
        self.writes: dict[bytes, PutRequest | DeleteRangeRequest] = {}
        self.revision = 0  # the snapshot (serializable levels), 0 until the first read

    def cached(self, key: bytes) -> tuple[bool, bytes]:
        """(known, value) for a read this attempt can answer itself."""
        if key in self.writes:
            w = self.writes[key]
            return True, w.value if isinstance(w, PutRequest) else b""
        if key in self.reads and self.isolation != READ_COMMITTED:
            kv = self.reads[key]
            return True, kv.value if kv is not None else b""
        return False, b""

    def read_request(self, key: bytes) -> RangeRequest:
        pinned = self.isolation in (SERIALIZABLE_SNAPSHOT, SERIALIZABLE)
        return ops.get(key, revision=self.revision if pinned else 0)

    def record(self, key: bytes, resp: RangeResponse) -> bytes:
        kv = resp.kvs[0] if resp.kvs else None
        self.reads[key] = kv
        self.read_revision[key] = resp.header.revision
        if not self.revision:
            self.revision = resp.header.revision
        return kv.value if kv is not None else b""

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = ops.put(key, value)

    def delete(self, key: bytes) -> None:
        self.writes[key] = ops.delete(key)

    def commit_request(self) -> TxnRequest:
        compares = []
        if self.isolation != READ_COMMITTED:
            for key, kv in self.reads.items():
                compares.append(ops.ModRevision(key) == (kv.mod_revision if kv is not None else 0))
        if self.isolation == SERIALIZABLE_SNAPSHOT and self.revision:
            compares += [
                ops.ModRevision(key) < self.revision + 1 for key in self.writes if key not in self.reads
            ]
        return ops.txn(compares, list(self.writes.values()))
