"""The standalone gRPC door: ``etcdz grpc-gateway --endpoints ... --listen-grpc-urls ...`` runs
one anywhere, in front of the members' client URLs (more doors, more gRPC clients; etcd's
``grpc-proxy`` in spirit). A member's own door (``--listen-grpc-urls``) runs in its gateway's
process instead (actors/gateway/grpc_door.py)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

from actors.runtime import tls
from actors.runtime.curve import door_secret, for_node
from actors.runtime.flagtable import Table, parser, read, urls
from actors.runtime.logs import configure
from actors.runtime.loop import EXIT_FATAL
from actors.runtime.tls import GRPC_TLS_FLAGS, grpc_urls
from actors.v3rpc.shell import DoorConfig, ListenError, serve

# The standalone door's flags (env ETCDZ_* as the member's; the shared names mean the same).
DOOR_FLAGS: Table = {
    "name": (str, "grpc-gateway", "name of this door in logs"),
    "endpoints": (str, "", "members' client URLs, comma-separated (required)"),
    "listen-grpc-urls": (
        str,
        "http://127.0.0.1:2384",
        "http://host:port or https://host:port (TLS: --grpc-cert-file) URLs to serve etcd's gRPC API on",
    ),
    **GRPC_TLS_FLAGS,
    "key-file": (
        str,
        "",
        "the members' client CurveZMQ secret certificate (to reach members and hubs; with "
        "--grpc-client-cert-auth, the members then take a client certificate's Common Name as its user)",
    ),
    "max-request-bytes": (int, 1536 * 1024, "largest request (gRPC's limit is this plus 512 KiB)"),
    "request-timeout-ms": (int, 7000, "how long a request may wait for its member's answer"),
    "log-format": (str, "json", "json or console"),
    "log-level": (str, "info", "debug, info, warn, error"),
}


def standalone(argv: list[str], environ: Mapping[str, str]) -> tuple[DoorConfig, str, str, list[str]]:
    """``etcdz grpc-gateway`` flags and ``ETCDZ_*`` environment -> the door's config (and its
    log format and level, and warnings to log)."""
    p = parser(DOOR_FLAGS, "etcdz grpc-gateway", "Serve etcd's v3 gRPC API in front of an etcdz cluster.")
    values = read(p, DOOR_FLAGS, argv, environ)
    endpoints = urls(str(values["endpoints"]))
    if not endpoints:
        raise ValueError("--endpoints: the members' client URLs are required")
    listen = grpc_urls(str(values["listen-grpc-urls"]), "--listen-grpc-urls")
    if not listen:
        raise ValueError("--listen-grpc-urls: at least one URL is required")
    given = tls.files(values)
    tls.check(given, listen)
    secured = for_node(str(values["key-file"]), False, "")
    warnings = [w for w in [tls.plaintext_warning(listen, given)] if w]
    if given.client_cert_auth and secured is None:
        warnings.append(
            "--grpc-client-cert-auth without --key-file: client certificates are checked, but "
            "only a door holding the members' key may name a request's user by one"
        )
    door = DoorConfig(
        name=str(values["name"]),
        listen_urls=listen,
        gateway_url=",".join(endpoints),
        gateway_curve=secured,
        hub_curve=secured,
        max_request_bytes=int(values["max-request-bytes"]),  # type: ignore[call-overload]
        request_timeout_s=int(values["request-timeout-ms"]) / 1000,  # type: ignore[call-overload]
        tls=given.load() if any(url.startswith("https://") for url in listen) else None,
        cert_secret=door_secret(secured),
    )
    return door, str(values["log-format"]), str(values["log-level"]), warnings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        door, log_format, log_level, warnings = standalone(argv, os.environ)
    except ValueError as exc:
        sys.stderr.write(f"etcdz grpc-gateway: {exc}\n")
        return 2
    log = configure(door.name, "grpc", log_format, log_level)
    for warning in warnings:
        log.warning(warning)
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
