"""A benchmark connection over etcd's gRPC API (``tools.bench --protocol grpc``): one gRPC
channel to an etcdz member's gRPC door or to a real etcd, behind the same methods as the SDK
connection, so that a load measures the protocol and not a different client. A failed call
raises ``EtcdzError`` with the status's text, which the benchmark counts as the SDK's."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from etcdz.errors import EtcdzError
from proto_schemas.etcdpb import rpc_pb2, rpc_pb2_grpc

T = TypeVar("T")

TIMEOUT_S = 10.0


def counted(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as exc:
            raise EtcdzError(f"{exc.code().name}: {exc.details()}") from None

    return call


class GrpcConn:
    def __init__(self, endpoint: str) -> None:
        target = endpoint.removeprefix("http://").removeprefix("tcp://")
        self.channel = grpc.insecure_channel(target)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)

    @counted
    def put(self, key: bytes, value: bytes) -> object:
        return self.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=TIMEOUT_S)

    @counted
    def get(self, key: bytes, *, range_end: bytes = b"", serializable: bool = False) -> object:
        request = rpc_pb2.RangeRequest(key=key, range_end=range_end, serializable=serializable)
        return self.kv.Range(request, timeout=TIMEOUT_S)

    @counted
    def txn_put(self, pairs: list[tuple[bytes, bytes]]) -> object:
        ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=v)) for k, v in pairs]
        return self.kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=TIMEOUT_S)

    @counted
    def cas(self, key: bytes, mod_revision: int, value: bytes) -> int:
        compare = rpc_pb2.Compare(
            key=key, target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=mod_revision
        )
        request = rpc_pb2.TxnRequest(
            compare=[compare],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))],
        )
        resp = self.kv.Txn(request, timeout=TIMEOUT_S)
        if resp.succeeded:
            return int(resp.header.revision)
        kvs = resp.responses[0].response_range.kvs
        return int(kvs[0].mod_revision) if kvs else 0

    @counted
    def lease_grant(self, ttl: int) -> int:
        return int(self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=TIMEOUT_S).ID)

    @counted
    def lease_keep_alive_once(self, lease_id: int) -> object:
        stream = self.lease.LeaseKeepAlive(
            iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]), timeout=TIMEOUT_S
        )
        return next(stream)

    def close(self) -> None:
        self.channel.close()
