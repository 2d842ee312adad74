"""What grpcio itself costs per call here: the floor under the gRPC door's cost.

    python -m tools.grpc_floor --seconds 8 [--door]

Serves etcd's ``KV.Put`` on a free loopback port with grpcio's asyncio server (the door's),
answering every call with a canned ``PutResponse`` and no work at all, drives it with
``tools.bench put --protocol grpc`` (16 clients), and prints the server's CPU per call. With
``--door`` the calls go through the door's own handlers (protobuf parsing, translation to
etcdz's messages and back, header filling) to a link that answers at once: the door's cost
without the member behind it. Compare with the gateway's CPU per put through the ZeroMQ SDK
(``tools.cpu_census``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
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


async def measure(seconds: float, door: bool) -> dict[str, Any]:
    config = DoorConfig(name="floor", listen_urls=[], gateway_url="")
    calls = [0]
    if door:
        handlers = Door(config, AnsweringLink(), zmq.asyncio.Context(), structlog.get_logger()).handlers()
    else:
        answer = rpc_pb2.PutResponse(header=rpc_pb2.ResponseHeader(revision=3)).SerializeToString()

        async def put(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            rpc_pb2.PutRequest.FromString(raw)
            calls[0] += 1
            return answer

        methods = {"Put": grpc.unary_unary_rpc_method_handler(put)}
        handlers = [grpc.method_handlers_generic_handler("etcdserverpb.KV", methods)]
    server = grpc.aio.server(handlers=handlers, options=server_options(config))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    bench = [sys.executable, "-m", "tools.bench", "put", "--protocol", "grpc", "--endpoints"]
    bench += [f"http://127.0.0.1:{port}", "--clients", "16", "--seconds", str(seconds), "-o", "json"]
    before = cpu_s()
    proc = await asyncio.create_subprocess_exec(*bench, stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    used = cpu_s() - before
    await server.stop(0)
    n = AnsweringLink.calls if door else calls[0]
    summary = json.loads(out)
    return {
        "calls": n,
        "requests_per_s": summary.get("requests_per_s"),
        "server_us_per_call": round(used / max(1, n) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.grpc_floor")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--door", action="store_true", help="through the door's handlers")
    args = p.parse_args(argv)
    sys.stdout.write(json.dumps(asyncio.run(measure(args.seconds, args.door))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
