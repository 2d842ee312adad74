"""``etcdz``: run one member (``etcdz --help`` lists etcd's flags), ``etcdz watch-hub ...``:
one more watch hub for a cluster, on any host, ``etcdz grpc-gateway ...``: etcd's gRPC API in
front of a cluster, on any host, ``etcdz snapshot restore FILE ...``: a member's data dir
from a snapshot, ``etcdz snapshot status FILE``, ``etcdz defrag --data-dir DIR``: offline, on
files and a stopped member's data dir (etcdutl's commands), or ``etcdz keygen DIR NAME...``:
CurveZMQ certificates (``NAME.key`` public, ``NAME.key_secret`` private, 0600) for ``--key-file``,
``--peer-key-file``, trusted-keys directories and clients."""

from __future__ import annotations

import os
import sys

from zmq.auth import create_certificates

from actors.runtime.logs import configure
from actors.supervisor.flags import resolve
from actors.supervisor.identity import JoinError, resolve_identity
from actors.supervisor.node import DataDirError, NodeSupervisor
from actors.wal.records import WalCorruptError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch-hub"]:
        from actors.watch.__main__ import main as watch_hub

        return watch_hub(argv[1:])
    if argv[:1] == ["grpc-gateway"]:
        from actors.v3rpc.__main__ import main as grpc_gateway

        return grpc_gateway(argv[1:])
    if argv[:1] == ["snapshot"]:
        from actors.supervisor.offline import snapshot_main

        return snapshot_main(argv[1:])
    if argv[:1] == ["defrag"]:
        from actors.supervisor.offline import defrag_main

        return defrag_main(argv[1:])
    if argv[:1] == ["keygen"]:
        return keygen(argv[1:])
    try:
        config = resolve(argv)
    except ValueError as exc:
        sys.stderr.write(f"etcdz: {exc}\n")
        return 2
    log = configure(config.name, "supervisor", config.log_format, config.log_level)
    try:
        config = resolve_identity(config, log)
        return NodeSupervisor(config, log).run()
    except (DataDirError, JoinError, WalCorruptError) as exc:
        log.error("cannot start", error=str(exc))
        return 1


def keygen(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: etcdz keygen DIR NAME [NAME...]\n")
        return 2
    directory, names = argv[0], argv[1:]
    os.makedirs(directory, mode=0o700, exist_ok=True)
    umask = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        for name in names:
            public, secret = create_certificates(directory, name)
            os.chmod(public, 0o644)
            sys.stdout.write(f"{public}\n{secret}\n")
    finally:
        os.umask(umask)
    return 0


if __name__ == "__main__":
    sys.exit(main())
