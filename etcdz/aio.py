"""The SDK for asyncio programs: ``AsyncClient`` and its ``AsyncWatch``.

A watch is fed by the client's watch stream thread (the same one the blocking SDK uses, with
its failover and resume rules); each response is handed to the event loop with
``call_soon_threadsafe``, so ``async for`` never blocks the loop. Unary calls run the blocking
client in a worker thread: they do not block the loop, but one client sends them one at a
time, as the blocking client does — open more clients for more calls in flight.

    async with AsyncClient(["tcp://127.0.0.1:2379"]) as client:
        async with client.watch("/config/", prefix=True) as watch:
            async for resp in watch:
                for event in resp.events: ...
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from etcdz import ops
from etcdz.client import DEFAULT_ENDPOINT, Client
from etcdz.watcher import Watch, create_request
from proto_schemas.kv import (
    CompactionResponse,
    DeleteRangeResponse,
    PutResponse,
    RangeResponse,
    StatusResponse,
    TxnResponse,
)
from proto_schemas.lease import (
    LeaseGrantResponse,
    LeaseKeepAliveResponse,
    LeaseLeasesResponse,
    LeaseRevokeResponse,
    LeaseTimeToLiveResponse,
)
from proto_schemas.watch import Event, WatchResponse

T = TypeVar("T")


class AsyncWatch:
    """One watch: ``async for resp in watch`` (events of one revision always together) until
    ``cancel()``; a compacted start revision raises ``Compacted`` from the iteration."""

    def __init__(self, client: Client, key: ops.Bytes, range_end: ops.Bytes | None, options: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        request = create_request(key, range_end, **options)
        self._watch: Watch = client.watch_stream().watch(request, sink=self._from_stream)

    def _from_stream(self, item: Any) -> None:
        """On the stream thread: hand the item to the loop (gone if the loop has closed)."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to read this watch

    @property
    def id(self) -> int:
        return self._watch.id

    @property
    def revision(self) -> int:
        """The revision this watch is complete up to."""
        return self._watch.revision

    async def get(self, timeout: float | None = None) -> WatchResponse | None:
        """The next response, or None after ``timeout`` seconds / once the watch is over."""
        if self._watch._done:
            return None
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        return self._watch._take(item)

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> WatchResponse:
        resp = await self.get()
        if resp is None:
            raise StopAsyncIteration
        return resp

    async def events(self) -> AsyncIterator[Event]:
        """Every event, one at a time (an async generator)."""
        async for resp in self:
            for event in resp.events:
                yield event

    def cancel(self) -> None:
        self._watch.cancel()

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class AsyncClient:
    """The etcdz client for asyncio: the blocking ``Client``'s calls as coroutines, and
    ``watch()`` as an async iterator."""

    def __init__(
        self, endpoints: str | list[str] = DEFAULT_ENDPOINT, timeout: float = 7.0, dial_timeout: float = 2.0
    ) -> None:
        self.sync = Client(endpoints, timeout=timeout, dial_timeout=dial_timeout)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def call(self, request: Any, timeout: float | None = None) -> Any:
        return await self._run(self.sync.call, request, timeout)

    async def get(self, key: ops.Bytes, **options: Any) -> RangeResponse:
        return await self._run(self.sync.get, key, **options)

    async def put(self, key: ops.Bytes, value: ops.Bytes, **options: Any) -> PutResponse:
        return await self._run(self.sync.put, key, value, **options)

    async def delete(self, key: ops.Bytes, **options: Any) -> DeleteRangeResponse:
        return await self._run(self.sync.delete, key, **options)

    async def txn(
        self,
        compare: list[Any] | None = None,
        success: list[Any] | None = None,
        failure: list[Any] | None = None,
    ) -> TxnResponse:
        return await self._run(self.sync.txn, compare, success, failure)

    async def compact(self, revision: int, physical: bool = False) -> CompactionResponse:
        return await self._run(self.sync.compact, revision, physical)

    async def status(self) -> StatusResponse:
        return await self._run(self.sync.status)

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse:
        return await self._run(self.sync.lease_grant, ttl, lease_id)

    async def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse:
        return await self._run(self.sync.lease_revoke, lease_id)

    async def lease_keep_alive_once(self, lease_id: int) -> LeaseKeepAliveResponse:
        return await self._run(self.sync.lease_keep_alive_once, lease_id)

    async def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseTimeToLiveResponse:
        return await self._run(self.sync.lease_time_to_live, lease_id, keys)

    async def leases(self) -> LeaseLeasesResponse:
        return await self._run(self.sync.leases)

    def watch(self, key: ops.Bytes, range_end: ops.Bytes | None = None, **options: Any) -> AsyncWatch:
        """As ``Client.watch``; iterate with ``async for``. Call it from a running loop."""
        return AsyncWatch(self.sync, key, range_end, options)

    def request_progress(self) -> None:
        """Ask for a progress notification on every watch of this client (does not wait)."""
        self.sync.request_progress()

    async def close(self) -> None:
        await self._run(self.sync.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["AsyncClient", "AsyncWatch"]
