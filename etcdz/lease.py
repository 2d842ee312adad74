"""Keeping leases alive from the client: ``with client.lease(ttl) as lease:`` and ``Session``.

A background thread renews the lease every third of its TTL over its own connection (so a slow
call on the main client never delays a renewal) and retries on the next endpoint when one
fails. If the lease is lost (expired or revoked elsewhere) ``lost`` is set and renewals stop.
Leaving the block (or ``close()``) stops the renewals and revokes the lease, so the keys
attached to it go at once instead of at expiry.
"""

from __future__ import annotations

import threading
from typing import Any

from etcdz.client import Client
from etcdz.errors import EtcdzError, LeaseNotFound


class KeptLease:
    def __init__(self, client: Client, ttl: int, lease_id: int = 0) -> None:
        """``client``: a connection of its own, closed with the lease."""
        self._client = client
        granted = self._client.lease_grant(ttl, lease_id)
        self.id: int = granted.id
        self.ttl: int = granted.ttl
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{self.id:x}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        with self._client.clone(timeout=max(1.0, self.ttl / 3)) as keeper:
            delay = self.ttl / 3
            while not self._stop.wait(delay):
                try:
                    keeper.lease_keep_alive_once(self.id)
                    delay = self.ttl / 3
                except LeaseNotFound:
                    self.lost.set()
                    return
                except EtcdzError:
                    delay = min(0.5, self.ttl / 3)  # e.g. a leader change: try again soon

    def close(self, revoke: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=self.ttl)
        try:
            if revoke and not self.lost.is_set():
                self._client.lease_revoke(self.id)
        except LeaseNotFound:
            pass
        finally:
            self._client.close()

    def __enter__(self) -> KeptLease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Session(KeptLease):
    """A lease kept alive for as long as this process holds it, as clientv3's concurrency
    ``Session``: attach keys with ``put(key, value, lease=session.id)``; they vanish when the
    session is closed or, if this process dies, when the lease expires (``ttl`` seconds)."""

    def __init__(
        self, endpoints: list[str] | str, ttl: int = 60, timeout: float = 7.0, **options: Any
    ) -> None:
        """``options``: as ``Client``'s (``user``, ``password``, ...)."""
        super().__init__(Client(endpoints, timeout=timeout, **options), ttl)
