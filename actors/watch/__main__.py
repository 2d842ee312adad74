"""A watch hub process: ``python -m actors.watch --config PATH --index N`` when the ``etcdz``
supervisor starts it next to a member, or ``etcdz watch-hub --endpoints ... --listen-watch-urls
...`` to run one anywhere (more hubs, more watchers)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping

from actors.runtime.config import NodeConfig
from actors.runtime.curve import for_node
from actors.runtime.flagtable import (
    WATCH_LIMIT_FLAGS,
    Table,
    boolean,
    parse_duration_ms,
    parser,
    read,
    urls,
    watch_limits,
)
from actors.runtime.logs import configure
from actors.watch.shell import HubConfig, build


def shifted(url: str, by: int) -> str:
    """``tcp://host:port`` with the port moved up by ``by`` (the N-th hub of a member); port 0
    (a free port chosen at bind) stays 0."""
    head, _, port = url.rpartition(":")
    return f"{head}:{int(port) + by}" if by and port != "0" else url


def from_node(config: NodeConfig, index: int) -> HubConfig:
    return HubConfig(
        name=f"{config.name}-hub{index}",
        listen_urls=[shifted(u, index) for u in config.listen_watch_urls],
        advertise_urls=[shifted(u, index) for u in config.advertise_watch_urls],
        endpoints=[config.local_client_url],
        events_urls=[config.events_url],
        progress_interval_s=config.watch_progress_notify_ms / 1000,
        max_response_bytes=config.max_request_bytes,
        cluster_id=config.cluster_id,
        member_id=config.member_id,
        curve=config.client_curve(),  # its member's gateway is reached on the private socket
        **config.watch_limits,  # type: ignore[arg-type]
        slot=f"watch{index}",
    )


# The standalone hub's flags (env ETCDZ_* as the member's; the shared names mean the same).
HUB_FLAGS: Table = {
    "name": (str, "watch-hub", "name of this hub in logs"),
    "endpoints": (str, "", "members' client URLs, comma-separated (required)"),
    "listen-watch-urls": (
        str,
        "tcp://127.0.0.1:0",
        "URLs to serve watchers on (port 0: a free port, announced as bound)",
    ),
    "advertise-watch-urls": (
        str,
        "",
        "URLs clients reach this hub at (default: the listen URLs, 0.0.0.0 as this host's address; "
        "port 0: the port bound)",
    ),
    "backend-events": (str, "", "members' event stream URLs (default: asked of the endpoints)"),
    "experimental-watch-progress-notify-interval": (str, "10m", "duration of progress notifications"),
    "user": (str, "", "user (with the root role) to log in as when the members have auth enabled"),
    "key-file": (
        str,
        "",
        "the members' client CurveZMQ secret certificate (serves watchers, reaches members)",
    ),
    "client-cert-auth": (boolean, False, "accept only watchers whose public key is in --trusted-keys-dir"),
    "trusted-keys-dir": (str, "", "directory of the public certificates (*.key) of trusted clients"),
    "password": (str, "", "that user's password (better given as ETCDZ_PASSWORD than on the command line)"),
    **WATCH_LIMIT_FLAGS,
    "log-format": (str, "json", "json or console"),
    "log-level": (str, "info", "debug, info, warn, error"),
}


def advertised(listen: list[str]) -> list[str]:
    """A hub listening on every interface advertises this host's address: one service
    definition then serves every replica of a scaled hub (each in its own container)."""
    if not any("//0.0.0.0:" in url for url in listen):
        return listen
    try:
        here = socket.gethostbyname(socket.gethostname())
    except OSError as exc:
        raise ValueError(f"cannot tell this host's address ({exc}): give --advertise-watch-urls") from None
    return [url.replace("//0.0.0.0:", f"//{here}:", 1) for url in listen]


def standalone(argv: list[str], environ: Mapping[str, str]) -> HubConfig:
    """``etcdz watch-hub`` flags and ``ETCDZ_*`` environment -> the hub's config."""
    p = parser(HUB_FLAGS, "etcdz watch-hub", "Run a watch hub for an etcdz cluster.")
    values = read(p, HUB_FLAGS, argv, environ)
    endpoints = urls(str(values["endpoints"]))
    if not endpoints:
        raise ValueError("--endpoints: the members' client URLs are required")
    listen = urls(str(values["listen-watch-urls"]))
    key_file = str(values["key-file"])
    if values["client-cert-auth"] and not key_file:
        raise ValueError("--client-cert-auth needs --key-file")
    secured = for_node(key_file, bool(values["client-cert-auth"]), str(values["trusted-keys-dir"]))
    return HubConfig(
        name=str(values["name"]),
        listen_urls=listen,
        advertise_urls=urls(str(values["advertise-watch-urls"])) or advertised(listen),
        endpoints=endpoints,
        events_urls=urls(str(values["backend-events"])),
        progress_interval_s=parse_duration_ms(str(values["experimental-watch-progress-notify-interval"]))
        / 1000,
        log_format=str(values["log-format"]),
        log_level=str(values["log-level"]),
        user=str(values["user"]),
        password=str(values["password"]),
        curve=secured,
        members_curve=secured,
        **watch_limits(values),  # type: ignore[arg-type]
        hub_credential=secured is not None,
    )


def main(argv: list[str] | None = None) -> int:
    from actors.runtime.loop import run_actor, with_metrics

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--config"]:
        p = argparse.ArgumentParser(prog="etcdz-watch")
        p.add_argument("--config", required=True)
        p.add_argument("--index", type=int, default=0)
        args = p.parse_args(argv)
        node = NodeConfig.load(args.config)
        hub = from_node(node, args.index)
        actor = f"watch{args.index}"
        log = configure(node.name, actor, node.log_format, node.log_level)
        return run_actor(log, lambda: with_metrics(build(hub, log), node, actor), f"{node.name}-{actor}")
    try:
        hub = standalone(argv, os.environ)
    except ValueError as exc:
        sys.stderr.write(f"etcdz watch-hub: {exc}\n")
        return 2
    log = configure(hub.name, "watch", hub.log_format, hub.log_level)
    return run_actor(log, lambda: build(hub, log), f"{hub.name}-watch")


if __name__ == "__main__":
    sys.exit(main())
