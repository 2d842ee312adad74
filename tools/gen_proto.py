"""Regenerate the Python modules of etcd's v3 API from proto_schemas/etcdpb/*.proto.

The generated ``*_pb2.py`` / ``*_pb2_grpc.py`` files are checked in so that installing etcdz
needs only the grpcio and protobuf runtimes, not the compiler; run this (``make proto``) after
editing a .proto file. The .proto files import each other by their path from the repository
root, so the generated modules import each other as ``proto_schemas.etcdpb.*``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ("kv.proto", "auth.proto", "rpc.proto")


def main() -> int:
    from grpc_tools import protoc  # the compiler is a developer tool, not a runtime dependency

    rel = [f"proto_schemas/etcdpb/{name}" for name in PROTOS]
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"--python_out={ROOT}",
            f"--pyi_out={ROOT}",
            f"--grpc_python_out={ROOT}",
            *rel,
        ]
    )
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
