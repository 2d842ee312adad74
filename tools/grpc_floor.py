"""What grpcio itself costs per call here: the floor under the gRPC door's cost.

    python -m tools.grpc_floor --seconds 8 [--door | --sync-workers N]

Serves etcd's ``KV.Put`` on a free loopback port with grpcio's asyncio server (the door's),
answering every call with a canned ``PutResponse`` and no work at all, drives it with
``tools.bench put --protocol grpc`` (16 clients), and prints the server's CPU per call. With
``--door`` the calls go through the door's own handlers (protobuf parsing, translation to
etcdz's messages and back, header filling) to a link that answers at once: the door's cost
without the member behind it. With ``--sync-workers N`` the same canned answer comes from
grpcio's synchronous server and a pool of N threads instead (is its floor any lower?). Compare
with the gateway's CPU per put through the ZeroMQ SDK (``tools.cpu_census``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
from concurrent import futures
from typing import Any

import grpc
import structlog
import zmq.asyncio

from actors.v3rpc.links import Link
from actors.v3rpc.shell import Door, DoorConfig, server_options
from proto_schemas.etcdpb import rpc_pb2
from proto_schemas.kv import PutResponse, ResponseHeader

HEADER = ResponseHeader(cluster_id=1, member_id=2, revision=3, raft_term=4)


class AnsweringLink(Link):
    """A gateway that answers every call at once."""

    calls = 0

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def call(self, request: Any, token: str, timeout_s: float) -> Any:
        AnsweringLink.calls += 1
        return PutResponse(header=HEADER)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _canned_put() -> tuple[Any, list[int]]:
    """A ``KV.Put`` handler that parses the request and answers a canned response, and its count."""
    answer = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=3)).SerializeToString()
    calls = [0]

    def put(raw: bytes, context: Any) -> bytes:
        rpc_pb2.PutRequest.FromString(raw)
        calls[0] += 1
        return answer

    return put, calls


def _bench(port: int, seconds: float) -> list[str]:
    bench = [sys.executable, "-m", "tools.bench", "put", "--protocol", "grpc", "--endpoints"]
    return bench + [f"http://127.0.0.1:{port}", "--clients", "16", "--seconds", str(seconds), "-o", "json"]


def _result(calls: int, used_s: float, out: bytes) -> dict[str, Any]:
    return {
        "calls": calls,
        "requests_per_s": json.loads(out).get("requests_per_s"),
        "server_us_per_call": round(used_s / max(1, calls) * 1e6, 1),
    }


async def measure(seconds: float, door: bool) -> dict[str, Any]:
    config = DoorConfig(name="floor", listen_urls=[], gateway_url="")
    if door:
        handlers = Door(config, AnsweringLink(), zmq.asyncio.Context(), structlog.get_logger()).handlers()
        calls = None
    else:
        put, calls = _canned_put()

        async def aput(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return put(raw, context)

        methods = {"Put": grpc.unary_unary_rpc_method_handler(aput)}
        handlers = [grpc.method_handlers_generic_handler("etcdserverpb.KV", methods)]
    server = grpc.aio.server(handlers=handlers, options=server_options(config))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    before = cpu_s()
    proc = await asyncio.create_subprocess_exec(*_bench(port, seconds), stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    used = cpu_s() - before
    await server.stop(0)
    return _result(AnsweringLink.calls if calls is None else calls[0], used, out)


def measure_sync(seconds: float, workers: int) -> dict[str, Any]:
    put, calls = _canned_put()
    methods = {"Put": grpc.unary_unary_rpc_method_handler(put)}
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        handlers=[grpc.method_handlers_generic_handler("etcdserverpb.KV", methods)],
        options=server_options(DoorConfig(name="floor", listen_urls=[], gateway_url="")),
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    before = cpu_s()
    out = subprocess.run(_bench(port, seconds), stdout=subprocess.PIPE, check=False).stdout
    used = cpu_s() - before
    server.stop(0)
    return {"sync_workers": workers, **_result(calls[0], used, out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.grpc_floor")
    p.add_argument("--seconds", type=float, default=8.0)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--door", action="store_true", help="through the door's handlers")
    how.add_argument("--sync-workers", type=int, default=0, help="grpcio's sync server, this many threads")
    args = p.parse_args(argv)
    if args.sync_workers:
        result = measure_sync(args.seconds, args.sync_workers)
    else:
        result = asyncio.run(measure(args.seconds, args.door))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
