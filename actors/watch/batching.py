"""The hub's outbox as sends: responses to one client packed together, replies to a request alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.watch.watchers import RESPONSE_OVERHEAD, event_size
from proto_schemas.watch import WatchResponse, WatchResponses


@dataclass
class Batch:
    """One send to one client: ``body`` carries ``items`` (what goes back to ``stalled`` if the
    send fails)."""

    route: bytes
    reply_to: int
    body: Any
    items: list[tuple[int, Any]]


def batched(to_client: list[tuple[bytes, int, Any]], max_bytes: int) -> list[Batch]:
    """The outbox as sends: per route, consecutive responses (``in_reply_to`` 0) share one
    ``WatchResponses`` of about ``max_bytes`` at most (a larger response goes alone); replies
    to a request go alone. Order within a route is kept; routes are independent."""
    by_route: dict[bytes, list[tuple[int, Any]]] = {}
    for route, reply_to, body in to_client:
        by_route.setdefault(route, []).append((reply_to, body))
    sends: list[Batch] = []
    for route, items in by_route.items():
        run: list[tuple[int, Any]] = []
        size = 0
        for reply_to, body in items:
            if reply_to or not isinstance(body, WatchResponse):
                sends += _send_of(route, run)
                sends.append(Batch(route, reply_to, body, [(reply_to, body)]))
                size = 0
                continue
            n = RESPONSE_OVERHEAD + sum(event_size(e) for e in body.events)
            if run and size + n > max_bytes:
                sends += _send_of(route, run)
                size = 0
            run.append((reply_to, body))
            size += n
        sends += _send_of(route, run)
    return sends


def _send_of(route: bytes, run: list[tuple[int, Any]]) -> list[Batch]:
    """The send for a run of responses (emptied): alone if it is one, else together."""
    items = list(run)
    run.clear()
    if not items:
        return []
    if len(items) == 1:
        return [Batch(route, items[0][0], items[0][1], items)]
    return [Batch(route, 0, WatchResponses(responses=[b for _, b in items]), items)]
