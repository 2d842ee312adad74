"""The SDK for asyncio programs: ``AsyncClient``, native on ``zmq.asyncio``.

Every call is a coroutine on one connection shared by all the client's tasks: it gets its own
``msg_id``, so any number of calls are in flight at once and their replies are matched as they
come, in any order (``etcdz._aio_conn``). The request building, failover, login and error rules
are the blocking client's (``etcdz._api``, ``etcdz._calls``): the same methods, awaited.

    async with AsyncClient(["tcp://127.0.0.1:2379"]) as client:
        await client.put("/config/a", "1")
        replies = await asyncio.gather(*(client.get(f"/k/{i}") for i in range(100)))
        async with client.watch("/config/", prefix=True) as watch:
            async for resp in watch:
                for event in resp.events: ...

Watches are served by the watch hubs on one stream per client, a task on the same loop
(``etcdz._aio_watch``) with the blocking client's failover and resume rules
(``etcdz._watch_core``). Lease keep-alives (``client.lease(ttl)``) and the
``etcdz.concurrency`` recipes are tasks too: the asyncio client starts no thread.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import zmq.asyncio

from etcdz import ops
from etcdz._aio_conn import AioConnection
from etcdz._aio_watch import AioWatchStream
from etcdz._api import RequestApi, Settings, disarm_request, disarm_targets, disarmed, next_chunk
from etcdz._calls import (
    NOT_SENT,
    Failover,
    WriteSession,
    cluster_id_of,
    decode_reply,
    is_write,
    login_retry,
    relogin_cures,
)
from etcdz._watch_core import WatchState
from etcdz.auth import AuthApi
from etcdz.client import DEFAULT_ENDPOINT, Txn
from etcdz.errors import EtcdzError
from etcdz.watcher import create_request
from proto_schemas.codec import encode
from proto_schemas.kv import KeyValue, RangeStreamRequest, RangeStreamResponse
from proto_schemas.watch import Event, WatchCreateRequest, WatchHubsRequest, WatchResponse

if TYPE_CHECKING:
    import proto_schemas.maintenance
    from etcdz.lease import AsyncKeptLease

P = ParamSpec("P")
R = TypeVar("R")


def _awaited(
    method: Callable[Concatenate[Any, P], R],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """A method of the shared API as the asyncio client has it: the same body, whose
    ``self.call`` is a coroutine here; typed as returning an awaitable of the same response."""
    return method  # type: ignore[return-value]


class AsyncWatch:
    """One watch: ``async for resp in watch`` (events of one revision always together) until
    ``cancel()``; a compacted start revision raises ``Compacted`` from the iteration."""

    def __init__(self, stream: AioWatchStream, request: WatchCreateRequest) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watch: WatchState = stream.watch(request, sink=self._queue.put_nowait)

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
        self._stream.cancel(self._watch)

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class AsyncEvents:
    """The events of one watch, one at a time; ``cancel()`` or ``async with`` ends it."""

    def __init__(self, watch: AsyncWatch) -> None:
        self.watch = watch
        self._events = watch.events()

    def __aiter__(self) -> AsyncEvents:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    def cancel(self) -> None:
        self.watch.cancel()

    async def __aenter__(self) -> AsyncEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()


class AsyncClient(Settings):
    """The etcdz client for asyncio: the blocking ``Client``'s API as coroutines, any number
    in flight on one connection. Options as ``Client``'s. Use it from one event loop."""

    def __init__(self, endpoints: str | list[str] = DEFAULT_ENDPOINT, *args: Any, **options: Any) -> None:
        super().__init__(endpoints, *args, **options)
        self._ctx = zmq.asyncio.Context()
        self._plain_ctx: zmq.Context[Any] = zmq.Context.shadow(self._ctx.underlying)  # the calls' socket
        self._conn: AioConnection | None = None
        self._ids = itertools.count(1)
        self._session = WriteSession(self._ids)
        self._login_lock = asyncio.Lock()
        self._watch_stream: AioWatchStream | None = None
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()  # keep-alives: ended by close()

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> AioConnection:
        if self._closed:
            raise EtcdzError("the client is closed")
        if self._conn is None:
            self._conn = AioConnection(self._plain_ctx, self._endpoints.current, self.secure)
            self._conn.generation = self._endpoints.generation
        return self._conn

    async def _move(self, seen_generation: int) -> None:
        if self._endpoints.move(seen_generation) and self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    def clone(self, **changes: Any) -> AsyncClient:
        return AsyncClient(**{**self._options, **changes})

    async def close(self) -> None:
        """Close the connection (calls still waiting end as if the member went silent), the
        watch stream, and the ZeroMQ context: no socket, task or thread is left."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        if self._watch_stream is not None:
            await self._watch_stream.close()
        self._ctx.term()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task of this client (a keep-alive), cancelled by ``close()``."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- the one call path -----------------------------------------------------------------
    async def call(self, request: Any, timeout: float | None = None) -> Any:
        """Send any etcdz request message and return its response message (or raise)."""
        loop = asyncio.get_running_loop()
        body = encode(request)
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        seq = self._session.open() if is_write(request) else 0  # the same on every attempt
        try:
            token = await self._logged_in(deadline)
            try:
                return await self._call(body, deadline, seq, token)
            except EtcdzError as exc:
                if not relogin_cures(self.user, exc):
                    raise
            async with self._login_lock:
                if self._token == token:
                    await self._login(deadline)
                token = self._token
            return await self._call(body, deadline, seq, token)
        finally:
            if seq:
                self._session.close(seq)

    async def _logged_in(self, deadline: float) -> str:
        if self._need_login:
            async with self._login_lock:
                if self._need_login:
                    await self._login(deadline)
        return self._token

    async def _login(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._token = ""
        body = encode(self.login_request())
        for attempt in itertools.count():
            try:
                response = await self._call(body, deadline, 0, "")
            except EtcdzError as exc:
                delay = login_retry(exc, attempt, loop.time() >= deadline)
                if delay is None:
                    raise
                if delay < 0:
                    break
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                continue
            self._token = self.token_of(response)
            break
        self._need_login = False

    async def _call(self, body: bytes, deadline: float, seq: int, token: str) -> Any:
        """As the blocking client's: a write keeps its ``seq`` as its msg_id on every attempt."""
        loop = asyncio.get_running_loop()
        attempts = Failover(self._endpoints, bool(seq))
        while True:
            conn = self._connection()
            msg_id, frames = self._session.attempt(body, seq, token)
            got = await conn.exchange(msg_id, frames, deadline, self.dial_timeout)
            if got is NOT_SENT and conn.closed:
                continue  # another call moved the client on before ours left: on the new connection
            outcome = decode_reply(got, conn.url) if isinstance(got, bytes) else got
            self.cluster_id = cluster_id_of(outcome) or self.cluster_id
            step = attempts.step(outcome, loop.time() >= deadline)
            if step.move:
                await self._move(conn.generation)
            if step.error is not None:
                raise step.error
            if step.done:
                return step.response
            if step.delay:
                await asyncio.sleep(min(step.delay, max(0.0, deadline - loop.time())))

    # -- the shared request API (see etcdz._api and etcdz.auth) -----------------------------
    get = _awaited(RequestApi.get)
    put = _awaited(RequestApi.put)
    delete = _awaited(RequestApi.delete)
    txn = _awaited(RequestApi.txn)
    compact = _awaited(RequestApi.compact)
    status = _awaited(RequestApi.status)
    hash_kv = _awaited(RequestApi.hash_kv)
    alarms = _awaited(RequestApi.alarms)
    alarm_raise = _awaited(RequestApi.alarm_raise)
    defragment = _awaited(RequestApi.defragment)
    lease_grant = _awaited(RequestApi.lease_grant)
    lease_revoke = _awaited(RequestApi.lease_revoke)
    lease_keep_alive_once = _awaited(RequestApi.lease_keep_alive_once)
    lease_time_to_live = _awaited(RequestApi.lease_time_to_live)
    leases = _awaited(RequestApi.leases)
    member_list = _awaited(RequestApi.member_list)
    member_add = _awaited(RequestApi.member_add)
    member_remove = _awaited(RequestApi.member_remove)
    member_update = _awaited(RequestApi.member_update)
    member_promote = _awaited(RequestApi.member_promote)
    move_leader = _awaited(RequestApi.move_leader)
    authenticate = _awaited(AuthApi.authenticate)
    auth_enable = _awaited(AuthApi.auth_enable)
    auth_disable = _awaited(AuthApi.auth_disable)
    auth_status = _awaited(AuthApi.auth_status)
    user_add = _awaited(AuthApi.user_add)
    user_get = _awaited(AuthApi.user_get)
    user_list = _awaited(AuthApi.user_list)
    user_delete = _awaited(AuthApi.user_delete)
    user_change_password = _awaited(AuthApi.user_change_password)
    user_grant_role = _awaited(AuthApi.user_grant_role)
    user_revoke_role = _awaited(AuthApi.user_revoke_role)
    role_add = _awaited(AuthApi.role_add)
    role_get = _awaited(AuthApi.role_get)
    role_list = _awaited(AuthApi.role_list)
    role_delete = _awaited(AuthApi.role_delete)
    role_grant_permission = _awaited(AuthApi.role_grant_permission)
    role_revoke_permission = _awaited(AuthApi.role_revoke_permission)

    def transaction(self) -> Txn:
        """``await client.transaction().when(...).then(...).commit()``."""
        return Txn(self)

    async def alarm_disarm(
        self, member_id: int = 0, alarm: proto_schemas.maintenance.AlarmType | None = None
    ) -> proto_schemas.maintenance.AlarmResponse:
        """As ``Client.alarm_disarm``."""
        targets = disarm_targets(member_id, alarm)
        if targets is None:
            targets = (await self.alarms()).alarms
        cleared = [await self.call(disarm_request(m)) for m in targets]
        return disarmed(cleared) if cleared else await self.alarms()

    async def range_stream(
        self, key: ops.Bytes, chunk_bytes: int = 1 << 20, **options: Any
    ) -> AsyncIterator[RangeStreamResponse]:
        """As ``Client.range_stream``: chunks of one range at one revision."""
        request: RangeStreamRequest | None = RangeStreamRequest(
            range=ops.get(key, **options), chunk_bytes=chunk_bytes
        )
        while request is not None:
            chunk: RangeStreamResponse = await self.call(request)
            yield chunk
            request = next_chunk(request, chunk)

    async def get_stream(
        self, key: ops.Bytes, chunk_bytes: int = 1 << 20, **options: Any
    ) -> AsyncIterator[KeyValue]:
        async for chunk in self.range_stream(key, chunk_bytes=chunk_bytes, **options):
            for kv in chunk.kvs:
                yield kv

    # -- leases and watches ----------------------------------------------------------------
    async def lease(self, ttl: int, lease_id: int = 0) -> AsyncKeptLease:
        """A lease kept alive by a task on this client until ``close()`` or the end of an
        ``async with`` block (then revoked); see ``etcdz.lease``."""
        from etcdz.lease import AsyncKeptLease

        return await AsyncKeptLease.grant(self, ttl, lease_id)

    def watch(self, key: ops.Bytes, range_end: ops.Bytes | None = None, **options: Any) -> AsyncWatch:
        """As ``Client.watch``; iterate with ``async for``. Call it from a running loop."""
        return AsyncWatch(self.watch_stream(), create_request(key, range_end, **options))

    def watch_stream(self) -> AioWatchStream:
        """This client's one watch stream (started on first use), shared by all its watches."""
        if self._closed:
            raise EtcdzError("the client is closed")
        if self._watch_stream is None or self._watch_stream.ended:  # ended with an error: afresh
            self._watch_stream = AioWatchStream(self, self._ctx)
        return self._watch_stream

    async def watch_hubs(self) -> list[str]:
        """As ``Client.watch_hubs``."""
        for _ in self._endpoints.urls:
            urls = (await self.call(WatchHubsRequest())).urls
            if urls:
                return list(urls)
            await self._move(self._endpoints.generation)
        return []

    def relogin(self) -> None:
        """Forget the token (a hub refused it): the next call logs in again."""
        self._token = ""
        self._need_login = self.user is not None

    def watch_prefix(self, prefix: ops.Bytes, **options: Any) -> AsyncEvents:
        """Every event under ``prefix``, one at a time: ``async for event in ...``."""
        return AsyncEvents(self.watch(prefix, prefix=True, **options))

    def watch_key(self, key: ops.Bytes, **options: Any) -> AsyncEvents:
        """Every event of one key, one at a time."""
        return AsyncEvents(self.watch(key, **options))

    def request_progress(self) -> None:
        """Ask for a progress notification on every watch of this client (does not wait)."""
        if self._watch_stream is not None:
            self._watch_stream.request_progress()


__all__ = ["AsyncClient", "AsyncEvents", "AsyncWatch"]
