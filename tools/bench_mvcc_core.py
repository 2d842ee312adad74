"""The backend's apply alone: what a put costs it, without sockets or other processes.

    python -m tools.bench_mvcc_core --puts 40000 --batch 7
    python -m tools.bench_mvcc_core --key-size 276 --val-size 1024 --key-space 0   # check perf's shape
    python -m tools.bench_mvcc_core --puts 10000 --txn-ops 4   # bench's txn-put: txns of 4 puts

Builds the committed entries the backend receives (``Committed`` of ``--batch`` puts each, as
the raft core encodes them; keys from ``--key-space`` keys, 0: every put a new key; with
``--txn-ops N`` each request is a txn of N puts of distinct keys, and ``--puts`` counts txns), then has an
``MvccStore`` on a fresh LevelDB apply them as the backend's shell does: decode the entries,
apply them in one write batch, take the events (made only with ``--events``, as a backend
makes them only while a watch hub subscribes), encode the ``Results``. The first half of the
batches fills the store; the second half is timed (``tools/core_timing.py``: the best and the
median of six parts of this process's CPU time, per put). The census (``tools.cpu_census``) gives the
backend's cost in a cluster, which adds receiving, sending and a busy machine's cache misses;
this one isolates the store's own work, so a change to it can be compared within a few percent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from typing import Any

import plyvel

from actors.mvcc.store import MvccStore
from actors.mvcc.verified import Verified
from proto_schemas.codec import decode, encode
from proto_schemas.internal import Committed, InternalRequest, Results
from proto_schemas.kv import PutRequest, TxnRequest
from proto_schemas.raft import Entry, EntryType
from tools.core_timing import cpu_per_item

CLIENTS = 16  # write sessions the puts come from


def batches(
    puts: int, batch: int, key_size: int, key_space: int, val_size: int, txn_ops: int = 0
) -> list[bytes]:
    rng = random.Random(1)
    value = os.urandom(val_size)
    ops = max(1, txn_ops)  # puts per request
    out = []
    for first in range(1, puts + 1, batch):
        entries = []
        for index in range(first, min(first + batch, puts + 1)):
            if key_space:
                ns = rng.sample(range(key_space), ops)
            else:
                ns = [index * ops + j for j in range(ops)]
            writes = [PutRequest(key=b"%0*d" % (key_size, n), value=value) for n in ns]
            req = InternalRequest(
                request_id=index,
                request=TxnRequest(success=list(writes)) if txn_ops else writes[0],
                client_id=1 + index % CLIENTS,
                seq=index,
                acked=max(0, index - CLIENTS),
            )
            entries.append(Entry(index=index, term=1, type=EntryType.NORMAL, data=encode(req)))
        out.append(encode(Committed(entries=entries)))
    return out


def apply_all(store: MvccStore, raws: list[bytes]) -> None:
    for raw in raws:
        entries = decode(raw, Committed).entries
        requests = [(e.index, e.term, decode(e.data, InternalRequest)) for e in entries]
        results = store.apply(requests, last_index=entries[-1].index)
        store.take_events()
        encode(Results(applied_index=entries[-1].index, results=results, revision=store.current_revision))


def run(
    puts: int,
    batch: int,
    key_size: int,
    key_space: int,
    val_size: int,
    events: bool = False,
    txn_ops: int = 0,
) -> dict[str, Any]:
    raws = batches(puts, batch, key_size, key_space, val_size, txn_ops)
    with tempfile.TemporaryDirectory(prefix="etcdz-mvcc-core-") as path:
        db = plyvel.DB(path, create_if_missing=True)
        try:
            store = MvccStore(Verified(db), cluster_id=1, member_id=1)
            store.events_wanted = events
            best, median = cpu_per_item(raws, batch, lambda _i, raw: apply_all(store, [raw]))
        finally:
            db.close()
    return {
        "puts": puts,
        "batch": batch,
        "events": events,
        "txn_ops": txn_ops,
        "us_per_put_best": best,
        "us_per_put_median": median,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_mvcc_core")
    p.add_argument("--puts", type=int, default=40_000)
    p.add_argument("--batch", type=int, default=7, help="puts per apply batch")
    p.add_argument("--key-size", type=int, default=8)
    p.add_argument("--key-space", type=int, default=10_000, help="0: every put a new key")
    p.add_argument("--val-size", type=int, default=256)
    p.add_argument("--events", action="store_true", help="make the events, as for a subscribed hub")
    p.add_argument("--txn-ops", type=int, default=0, help="each request a txn of this many puts (0: a put)")
    args = p.parse_args(argv)
    result = run(
        args.puts, args.batch, args.key_size, args.key_space, args.val_size, args.events, args.txn_ops
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
