"""``Session``: a kept lease over a client of its own, for a process's own keys.

Apart from ``etcdz.lease`` because it makes a ``Client``, whose ``lease()`` makes kept leases:
the lease module does not import the client back.
"""

from __future__ import annotations

from typing import Any

from etcdz.client import Client
from etcdz.lease import KeptLease


class Session(KeptLease):
    """A lease kept alive for as long as this process holds it, over a client of its own:
    attach keys with ``put(key, value, lease=session.id)``; they vanish when the session is
    closed or, if this process dies, when the lease expires (``ttl`` seconds). For locks and
    elections see ``etcdz.concurrency.Session``, made from a client."""

    def __init__(
        self, endpoints: list[str] | str, ttl: int = 60, timeout: float = 7.0, **options: Any
    ) -> None:
        """``options``: as ``Client``'s (``user``, ``password``, ...)."""
        super().__init__(Client(endpoints, timeout=timeout, **options), ttl)
