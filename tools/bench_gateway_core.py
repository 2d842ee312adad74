"""The gateway's core alone: what a put or a serializable get costs it, without sockets.

    python -m tools.bench_gateway_core --requests 40000 --batch 7
    python -m tools.bench_gateway_core --op get

A leader's ``GatewayCore`` gets ``--batch`` requests at a time from 16 clients (each with its
write session, framed as the SDK frames them), and its outbox is encoded as the shell would
send it (the ``Propose`` or ``ReadBatch``, the replies' frames); then the backend's answer
comes back (one ``Results`` with a ``PutResponse`` per put, or one ``ReadResults``, encoded
here: the backend's share, counted in too) and the replies are framed. The first half of the
batches warms up; the second half is timed (``tools/core_timing.py``: best and median part per
request). For a figure that does not move with the machine's other tenants,
count instructions instead (docs/performance.md, "Counting instructions instead of time").
The census (``tools.cpu_census``) gives the gateway's cost in a cluster, which adds ZeroMQ's
sends and receives.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from actors.gateway.core import GatewayCore
from actors.gateway.requests import batched_reads
from proto_schemas.codec import decode, encode
from proto_schemas.envelope import pack
from proto_schemas.internal import (
    ApplyResult,
    BackendState,
    BackendStateRequest,
    Propose,
    RaftStatus,
    ReadBatch,
    ReadRequest,
    ReadResult,
    ReadResults,
    Results,
)
from proto_schemas.kv import KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader
from tools.core_timing import cpu_per_item

CLIENTS = 16
LEADER = RaftStatus(member_id=1, cluster_id=2, term=3, leader=1, commit=10, applied=10)


def leader_core() -> GatewayCore:
    core = GatewayCore(
        member_id=1,
        cluster_id=2,
        max_request_bytes=1536 * 1024,
        max_txn_ops=128,
        request_timeout_s=7.0,
        max_gap=5000,
        boot_nonce=5,
    )
    (probe,) = core.take_outbox().to_mvcc
    assert isinstance(probe, BackendStateRequest)
    state = BackendState(
        read_id=probe.read_id, consistent_index=0, revision=1, compact_revision=0, db_size=0, db_size_in_use=0
    )
    core.internal(state, 0.0)
    core.internal(LEADER, 0.0)
    core.take_outbox()
    return core


def requests(n: int, op: str, val_size: int) -> list[tuple[bytes, list[bytes]]]:
    """(route, frames) of ``n`` requests as the SDK frames them, client i % 16 each."""
    value = b"v" * val_size
    out = []
    for i in range(1, n + 1):
        client = i % CLIENTS
        key = b"%08d" % (i % 10_000)
        if op == "put":
            frames = pack(PutRequest(key=key, value=value), msg_id=i, client_id=100 + client, acked=i)
        else:
            frames = pack(RangeRequest(key=key, serializable=True), msg_id=i)
        out.append((b"C" + bytes([client]), frames))
    return out


def answer(core: GatewayCore, sent: list[Any], value: bytes, revision: int) -> None:
    """The backend's answer to what the core sent (as bytes, as it arrives)."""
    header = ResponseHeader(cluster_id=2, member_id=1, revision=revision, raft_term=3)
    for msg in sent:
        if isinstance(msg, Propose):
            put = encode(PutResponse(header=header))
            results = [ApplyResult(request_id=rid, body=put) for rid in msg.request_ids]
            core.internal(
                decode(encode(Results(applied_index=revision, results=results, revision=revision))), 0.0
            )
        elif isinstance(msg, ReadBatch | ReadRequest):
            reads = msg.reads if isinstance(msg, ReadBatch) else [msg]
            kv = KeyValue(key=b"k", create_revision=2, mod_revision=revision, version=1, value=value)
            body = encode(RangeResponse(header=header, kvs=[kv], count=1))
            got = [ReadResult(read_id=r.read_id, body=body) for r in reads]
            core.internal(decode(encode(ReadResults(results=got))), 0.0)


def turn(core: GatewayCore, batch: list[tuple[bytes, list[bytes]]], value: bytes, revision: int) -> None:
    for route, frames in batch:
        core.client_message(route, frames, 0.0)
    out = core.take_outbox()
    sent = out.to_raft + batched_reads(out.to_mvcc)
    for msg in sent:
        encode(msg)
    answer(core, sent, value, revision)
    for _route, reply_to, body in core.take_outbox().to_client:
        pack(body, in_reply_to=reply_to)


def run(total: int, batch: int, op: str, val_size: int) -> dict[str, Any]:
    core = leader_core()
    reqs = requests(total, op, val_size)
    batches = [reqs[i : i + batch] for i in range(0, len(reqs), batch)]
    value = b"v" * val_size
    best, median = cpu_per_item(batches, batch, lambda i, b: turn(core, b, value, i + 2))
    return {
        "op": op,
        "requests": total,
        "batch": batch,
        "us_per_request_best": best,
        "us_per_request_median": median,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_gateway_core")
    p.add_argument("--requests", type=int, default=40_000)
    p.add_argument("--batch", type=int, default=7, help="requests per turn of the gateway's loop")
    p.add_argument("--op", choices=["put", "get"], default="put")
    p.add_argument("--val-size", type=int, default=256)
    args = p.parse_args(argv)
    sys.stdout.write(json.dumps(run(args.requests, args.batch, args.op, args.val_size)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
