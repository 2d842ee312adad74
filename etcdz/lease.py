"""Leases kept alive from the client: ``with client.lease(ttl) as lease:`` (and
``async with await aclient.lease(ttl) as lease:``); ``etcdz.session.Session`` is one over a
client of its own.

A kept lease is renewed every third of its TTL, by a thread of its own over its own
connection (blocking client) or by a task on the client's one connection (asyncio, where no
call waits behind another), retrying soon when a renewal fails. It is *lost* when the cluster
says it no longer exists, or when no renewal has succeeded for a whole TTL (the cluster may
have expired it: a holder of a lock must assume it did). Then ``lost`` is set, renewals stop
and the callbacks given to ``add_done_callback`` run (as they do when the lease is closed).
Leaving the block (or ``close()``) stops the renewals and revokes the lease, so the keys
attached to it go at once instead of at expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from etcdz._transport import AsyncTransport, Transport
from etcdz.errors import EtcdzError, LeaseNotFound


class Renewal:
    """When to renew next and when to give the lease up (no clock here: ``now`` is given)."""

    def __init__(self, ttl: int, now: float) -> None:
        self.ttl = ttl
        self.expires = now + ttl  # as far as this client can tell

    def renewed(self, ttl: int, now: float) -> float | None:
        """After an answer granting ``ttl`` more seconds: the delay to the next renewal, None
        if the answer says the lease is gone (etcd answers TTL 0 for an unknown lease)."""
        if ttl <= 0:
            return None
        self.expires = now + ttl
        return ttl / 3

    def failed(self, exc: EtcdzError, now: float) -> float | None:
        """After a failed renewal: the delay to the next try, None when the lease is lost."""
        if isinstance(exc, LeaseNotFound) or now >= self.expires:
            return None
        return min(0.5, self.ttl / 3, self.expires - now)


class _Ending:
    """``done``/``lost`` and the done callbacks, shared by both kinds of kept lease."""

    id: int

    def _init_ending(self) -> None:
        self._callbacks: list[Callable[[Any], None]] = []
        self._callbacks_lock = threading.Lock()
        self._ended = False

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(lease)`` when the lease ends, lost or closed (at once if it has); check
        ``lease.lost`` to tell which."""
        with self._callbacks_lock:
            if not self._ended:
                self._callbacks.append(fn)
                return
        fn(self)

    def _end(self) -> None:
        with self._callbacks_lock:
            if self._ended:
                return
            self._ended = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    @property
    def done(self) -> bool:
        """The lease has ended (lost, or closed by this client)."""
        return self._ended


class KeptLease(_Ending):
    def __init__(self, client: Transport, ttl: int, lease_id: int = 0) -> None:
        """``client``: a connection of its own, closed with the lease."""
        self._client = client
        granted = self._client.lease_grant(ttl, lease_id)
        self.id: int = granted.id
        self.ttl: int = granted.ttl
        self.lost = threading.Event()
        self._init_ending()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.id:x}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        renewal = Renewal(self.ttl, time.monotonic())
        with self._client.clone(timeout=max(1.0, self.ttl / 3)) as keeper:
            delay: float | None = self.ttl / 3
            while delay is not None and not self._stop.wait(delay):
                try:
                    delay = renewal.renewed(keeper.lease_keep_alive_once(self.id).ttl, time.monotonic())
                except EtcdzError as exc:
                    delay = renewal.failed(exc, time.monotonic())
            if delay is None:
                self.lost.set()
                self._end()

    def close(self, revoke: bool = True) -> None:
        """Stop renewing and (with ``revoke``) end the lease now; closing again does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=self.ttl)
        try:
            if revoke and not self.lost.is_set():
                self._client.lease_revoke(self.id)
        except LeaseNotFound:
            pass
        finally:
            self._client.close()
            self._end()

    def __enter__(self) -> KeptLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncKeptLease(_Ending):
    """The asyncio kept lease: ``async with await client.lease(ttl) as lease:``."""

    def __init__(self, client: AsyncTransport, lease_id: int, ttl: int) -> None:
        self._client = client
        self.id = lease_id
        self.ttl = ttl
        self.lost = asyncio.Event()
        self._init_ending()
        self._task = client.spawn(self._renew(), name=f"lease-{lease_id:x}")

    @classmethod
    async def grant(cls, client: AsyncTransport, ttl: int, lease_id: int = 0) -> AsyncKeptLease:
        granted = await client.lease_grant(ttl, lease_id)
        return cls(client, granted.id, granted.ttl)

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        renewal = Renewal(self.ttl, loop.time())
        delay: float | None = self.ttl / 3
        while delay is not None:
            await asyncio.sleep(delay)
            try:
                resp = await self._client.call(
                    _keep_alive_request(self.id),
                    timeout=max(1.0, min(self.ttl / 3, renewal.expires - loop.time())),
                )
                delay = renewal.renewed(resp.ttl, loop.time())
            except EtcdzError as exc:
                delay = renewal.failed(exc, loop.time())
        self.lost.set()
        self._end()

    async def close(self, revoke: bool = True) -> None:
        if self._task.done() and self.done:
            return  # closed already (or lost)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        try:
            if revoke and not self.lost.is_set():
                await self._client.lease_revoke(self.id)
        except LeaseNotFound:
            pass
        finally:
            self._end()

    async def __aenter__(self) -> AsyncKeptLease:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _keep_alive_request(lease_id: int) -> Any:
    import proto_schemas.lease

    return proto_schemas.lease.LeaseKeepAliveRequest(id=lease_id)
