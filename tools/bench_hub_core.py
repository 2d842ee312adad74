"""The watch hub's core alone: what creating watches, a put and a tick cost it, without sockets,
codec or clients (``actors.watch.core.HubCore`` driven in this process).

    python -m tools.bench_hub_core --watchers 10000 --streams 20 --keys 1 --puts 400

``--watchers`` watches spread over ``--streams`` client streams (watch n on stream n mod
streams), watch n on key n mod ``--keys``; then ``--puts`` live batches of one put each, put i
on key i mod keys (so each reaches watchers / keys watches), and 100 ticks. Prints the time to
create every watch (asked, checked, created), per put (the batch, the delivery, the outbox
taken) and per tick. The end-to-end figures (sockets, codec, receiving clients) are
``tools.bench_hubs``'; this one isolates the core's own cost as the watches grow.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from actors.watch.core import HubCore
from proto_schemas.auth import AuthCheckResponse
from proto_schemas.kv import EventType, KeyValue, ResponseHeader
from proto_schemas.watch import Event, EventBatch, WatchCreateRequest, WatchPing, WatchRequest

START = 10  # the revision the hub starts at


def run(watchers: int, streams: int, keys: int, puts: int) -> dict[str, Any]:
    hub = HubCore()
    hub.live(EventBatch(first_revision=START + 1, revision=START), 0.0)
    routes = [b"stream-%d" % i for i in range(streams)]
    began = time.perf_counter()
    for route in routes:
        hub.client(route, 1, WatchPing(shared=True), 0.0)
    for n in range(watchers):
        create = WatchCreateRequest(key=b"key-%d" % (n % keys))
        hub.client(routes[n % streams], 2, WatchRequest(request=create), 0.0, token="")
    answer = AuthCheckResponse(header=ResponseHeader(revision=START))
    for check_id, _ in list(hub.out.to_backend):
        hub.checked(check_id, answer, 0.0)
    hub.take_outbox()
    created = time.perf_counter()
    for i in range(puts):
        rev = START + 1 + i
        event = Event(
            type=EventType.PUT, kv=KeyValue(key=b"key-%d" % (i % keys), value=b"v", mod_revision=rev)
        )
        hub.live(EventBatch(first_revision=rev, revision=rev, events=[event]), 0.001 * i)
        hub.take_outbox()
    put = time.perf_counter()
    for k in range(100):
        hub.tick(1.0 + 0.05 * k)
    ticked = time.perf_counter()
    if hub.watcher_count != watchers:
        raise SystemExit(f"{hub.watcher_count} of {watchers} watches were created")
    return {
        "watchers": watchers,
        "streams": streams,
        "keys": keys,
        "create_s": round(created - began, 3),
        "us_per_put": round((put - created) / puts * 1e6, 1),
        "us_per_tick": round((ticked - put) / 100 * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_hub_core", description=__doc__)
    p.add_argument("--watchers", type=int, default=10_000)
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--keys", type=int, default=1)
    p.add_argument("--puts", type=int, default=400)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = p.parse_args(argv)
    r = run(args.watchers, args.streams, args.keys, args.puts)
    if args.output == "json":
        sys.stdout.write(json.dumps(r) + "\n")
    else:
        sys.stdout.write(
            f"{r['watchers']} watchers, {r['streams']} streams, {r['keys']} keys: created in "
            f"{r['create_s']} s, {r['us_per_put']} us a put, {r['us_per_tick']} us a tick\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
