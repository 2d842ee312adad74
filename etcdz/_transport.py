"""What the SDK's parts built over a client need of it: the watch stream, kept leases,
snapshots, locks and elections call members through these interfaces, never through
``etcdz.client`` or ``etcdz.aio``.

The clients offer those parts as conveniences (``client.watch``, ``client.lease``,
``client.lock``, ``client.snapshot``), so they import the parts; the parts importing the clients
back would close a circle. With the interfaces here the layers run clients -> parts ->
transport, and a part can be driven by anything that calls a member as a client does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import zmq

    from etcdz.ops import Bytes
    from proto_schemas.kv import DeleteRangeResponse, PutResponse
    from proto_schemas.lease import LeaseGrantResponse, LeaseKeepAliveResponse, LeaseRevokeResponse


class Transport(Protocol):
    """A blocking client (``etcdz.Client``) as the parts built on it use it."""

    timeout: float
    cluster_id: int
    user: str | None
    watch_endpoints: list[str]

    def call(self, request: Any, timeout: float | None = None) -> Any:
        """Send any request message, return its response message (or raise EtcdzError)."""
        ...

    def secure(self, sock: zmq.Socket[Any]) -> None: ...

    def auth_token(self) -> str: ...

    def relogin(self) -> None: ...

    def watch_hubs(self) -> list[str]: ...

    def clone(self, **changes: Any) -> Transport:
        """A client of its own with the same settings (a kept lease renews over one)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Transport: ...

    def __exit__(self, *exc: object) -> None: ...

    def put(self, key: Bytes, value: Bytes, **options: Any) -> PutResponse: ...

    def delete(self, key: Bytes, **options: Any) -> DeleteRangeResponse: ...

    def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse: ...

    def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse: ...

    def lease_keep_alive_once(self, lease_id: int) -> LeaseKeepAliveResponse: ...

    def lease(self, ttl: int, lease_id: int = 0) -> Any:
        """An ``etcdz.lease.KeptLease`` (a part above this module)."""
        ...

    def watch(self, key: Bytes, range_end: Bytes | None = None, **options: Any) -> Any:
        """An ``etcdz.watcher.Watch`` (a part above this module)."""
        ...


class AsyncTransport(Protocol):
    """The asyncio client (``etcdz.aio.AsyncClient``) as a kept lease uses it."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    async def call(self, request: Any, timeout: float | None = None) -> Any: ...

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse: ...

    async def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse: ...


class AsyncWatchTransport(Protocol):
    """The asyncio client (``etcdz.aio.AsyncClient``) as its watch stream uses it."""

    timeout: float
    cluster_id: int
    user: str | None
    watch_endpoints: list[str]

    async def call(self, request: Any, timeout: float | None = None) -> Any: ...

    async def watch_hubs(self) -> list[str]: ...

    def secure(self, sock: zmq.Socket[Any]) -> None: ...

    def relogin(self) -> None: ...

    async def _logged_in(self, deadline: float) -> str: ...
