"""The hub's outbox as sends: responses to one client packed together, replies to a request
alone; and their encoding, where responses that differ only in their watch id (one revision
for many watchers) cost one encoding, and for a client that reads them, one response on the
wire (``SharedWatchResponse``) for a run of such responses: a put seen by 500 watchers of one
stream is then encoded, sent and decoded once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.watch.watchers import RESPONSE_OVERHEAD, event_size, replace
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


def encode_sharing(body: Any, shared: dict[tuple[Any, ...], Template], grouped: bool = False) -> bytes:
    """Encode a send; responses that differ only in their watch id are encoded once, as a
    template, per flush (``shared`` is keyed by the ids of the response's parts: the objects
    stay alive until the flush ends). With ``grouped`` (the client reads shared responses), a
    run of such responses in a batch goes as one ``SharedWatchResponse``: only neighbours are
    joined, so each watcher's own responses keep their order."""
    if isinstance(body, WatchResponses):
        if grouped:
            return encode(WatchResponses(responses=_grouped(body.responses)))
        parts = [
            Encoded(_shared(r, shared) if isinstance(r, WatchResponse) else encode(r)) for r in body.responses
        ]
        return encode(WatchResponses(responses=parts))  # type: ignore[arg-type]
    if isinstance(body, WatchResponse):
        return _shared(body, shared)
    return encode(body)


def _key(resp: WatchResponse) -> tuple[Any, ...]:
    return (
        id(resp.header),
        resp.created,
        resp.canceled,
        resp.compact_revision,
        resp.cancel_reason,
        resp.fragment,
        *map(id, resp.events),
    )


def _shared(resp: WatchResponse, shared: dict[tuple[Any, ...], Template]) -> bytes:
    key = _key(resp)
    template = shared.get(key)
    if template is None:
        template = shared[key] = Template(resp, "watch_id")
    return template.encode(resp.watch_id)


def _grouped(responses: list[Any]) -> list[Any]:
    """Neighbouring responses alike but for their watch id, as one shared response each."""
    out: list[Any] = []
    run: list[WatchResponse] = []
    run_key: tuple[Any, ...] = ()
    for resp in responses:
        key = _key(resp)
        if run and key != run_key:
            out.append(_one_of(run))
            run = []
        run.append(resp)
        run_key = key
    if run:
        out.append(_one_of(run))
    return out


def _one_of(run: list[WatchResponse]) -> Any:
    if len(run) == 1:
        return run[0]
    return SharedWatchResponse(watch_ids=[r.watch_id for r in run], response=replace(run[0], watch_id=0))
