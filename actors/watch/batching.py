"""The hub's outbox as sends: responses to one client packed together, replies to a request
alone; and their encoding. The core gives a run of a stream's watchers that get the same one
``SharedWatchResponse`` (``delivery.py``); a client that reads those (it says so in its pings)
gets it as it is, so a put seen by 500 watchers of one stream is encoded, sent and decoded
once. For any other client it becomes one response per watcher again, as before (sized,
batched and rewound one by one), each the encoding of the first with another watch id (a
template: a concatenation per watcher)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.watch.watchers import RESPONSE_OVERHEAD, event_size
from proto_schemas.codec import Encoded, Template, encode
from proto_schemas.watch import SharedWatchResponse, WatchResponse, WatchResponses


@dataclass
class Batch:
    """One send to one client: ``body`` carries ``items`` (what goes back to ``stalled`` if the
    send fails)."""

    route: bytes
    reply_to: int
    body: Any
    items: list[tuple[int, Any]]


def batched(
    to_client: list[tuple[bytes, int, Any]], max_bytes: int, grouped: frozenset[bytes] = frozenset()
) -> list[Batch]:
    """The outbox as sends: per route, consecutive responses (``in_reply_to`` 0) share one
    ``WatchResponses`` of about ``max_bytes`` at most (a larger response goes alone); replies
    to a request go alone. Order within a route is kept; routes are independent. A shared
    response to a route not in ``grouped`` (its client reads none) becomes one per watcher."""
    by_route: dict[bytes, list[tuple[int, Any]]] = {}
    for route, reply_to, body in to_client:
        items = by_route.setdefault(route, [])
        if isinstance(body, SharedWatchResponse) and route not in grouped:
            items.extend((reply_to, r) for r in body.each())
        else:
            items.append((reply_to, body))
    sends: list[Batch] = []
    for route, items in by_route.items():
        run: list[tuple[int, Any]] = []
        size = 0
        for reply_to, body in items:
            if reply_to or not isinstance(body, WatchResponse | SharedWatchResponse):
                sends += _send_of(route, run)
                sends.append(Batch(route, reply_to, body, [(reply_to, body)]))
                size = 0
                continue
            n = response_size(body)
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
    if len(items) == 1 and not isinstance(items[0][1], SharedWatchResponse):  # clients read those in a batch
        return [Batch(route, items[0][0], items[0][1], items)]
    return [Batch(route, 0, WatchResponses(responses=[b for _, b in items]), items)]


def response_size(body: WatchResponse | SharedWatchResponse) -> int:
    """About the bytes of an events response on the wire (a shared one: once, plus its ids)."""
    if isinstance(body, SharedWatchResponse):
        return response_size(body.response) + 9 * len(body.watch_ids)
    return RESPONSE_OVERHEAD + sum(event_size(e) for e in body.events)


def encode_sharing(body: Any, shared: dict[tuple[Any, ...], Template]) -> bytes:
    """Encode a send; responses that differ only in their watch id are encoded once, as a
    template, per flush (``shared`` is keyed by the ids of the response's parts: the objects
    stay alive until the flush ends). Shared responses are encoded as they are."""
    if isinstance(body, WatchResponses):
        parts = [Encoded(_encoded(r, shared)) for r in body.responses]
        return encode(WatchResponses(responses=parts))  # type: ignore[arg-type]
    return _encoded(body, shared)


def _encoded(body: Any, shared: dict[tuple[Any, ...], Template]) -> bytes:
    if isinstance(body, WatchResponse):
        return _template(body, shared).encode(body.watch_id)
    return encode(body)


def _template(resp: WatchResponse, shared: dict[tuple[Any, ...], Template]) -> Template:
    key = (
        id(resp.header),
        resp.created,
        resp.canceled,
        resp.compact_revision,
        resp.cancel_reason,
        resp.fragment,
        *map(id, resp.events),
    )
    template = shared.get(key)
    if template is None:
        template = shared[key] = Template(resp, "watch_id")
    return template
