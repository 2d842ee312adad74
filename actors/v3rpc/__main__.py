"""The gRPC door: ``python -m actors.v3rpc --config PATH`` when the ``etcdz`` supervisor starts
it beside a member (``--listen-grpc-urls``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from actors.runtime.config import NodeConfig
from actors.runtime.logs import configure
from actors.runtime.loop import EXIT_FATAL
from actors.v3rpc.shell import DoorConfig, ListenError, serve


def gateway_url(config: NodeConfig) -> str:
    """The member's client endpoint, as a client on this host reaches it. Not the node's
    private socket: the gateway trusts what arrives there (its own hubs) without checking
    auth, and the door's requests are its clients' and must be checked as theirs."""
    url = config.listen_client_urls[0]
    return url.replace("//0.0.0.0:", "//127.0.0.1:", 1).replace("//[::]:", "//[::1]:", 1)


def from_node(config: NodeConfig) -> DoorConfig:
    return DoorConfig(
        name=config.name,
        listen_urls=config.listen_grpc_urls,
        advertise_urls=config.advertise_grpc_urls or None,
        gateway_url=gateway_url(config),
        gateway_curve=config.client_curve(),
        cluster_id=config.cluster_id,
        member_id=config.member_id,
        hub_curve=config.client_curve(),
        max_request_bytes=config.max_request_bytes,
        request_timeout_s=config.request_timeout_ms / 1000,
        max_inflight=config.max_client_inflight,
        heartbeat_path=config.heartbeat_path("grpc"),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="etcdz-grpc")
    p.add_argument("--config", required=True)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    node = NodeConfig.load(args.config)
    log = configure(node.name, "grpc", node.log_format, node.log_level)
    door = from_node(node)
    try:
        asyncio.run(serve(door, log, lambda urls: log.info("serving etcd's gRPC API", urls=urls)))
    except ListenError as exc:
        log.error("actor failed", error=str(exc), fatal=True)
        return EXIT_FATAL
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.error("actor failed", error=str(exc), error_type=type(exc).__name__, exc_info=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
