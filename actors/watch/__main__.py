"""A watch hub process: ``python -m actors.watch --config PATH --index N`` when the ``etcdz``
supervisor starts it next to a member, or ``etcdz watch-hub --endpoints ... --listen-watch-urls
...`` to run one anywhere (more hubs, more watchers)."""

from __future__ import annotations

import argparse
import sys

from actors.runtime.config import NodeConfig
from actors.runtime.logs import configure
from actors.watch.shell import HubConfig, build


def shifted(url: str, by: int) -> str:
    """``tcp://host:port`` with the port moved up by ``by`` (the N-th hub of a member)."""
    head, _, port = url.rpartition(":")
    return f"{head}:{int(port) + by}" if by else url


def from_node(config: NodeConfig, index: int) -> HubConfig:
    return HubConfig(
        name=f"{config.name}-hub{index}",
        listen_urls=[shifted(u, index) for u in config.listen_watch_urls],
        advertise_urls=[shifted(u, index) for u in config.advertise_watch_urls],
        endpoints=config.advertise_client_urls,
        events_urls=[config.events_url],
        progress_interval_s=config.watch_progress_notify_ms / 1000,
        max_response_bytes=config.max_request_bytes,
        cluster_id=config.cluster_id,
        member_id=config.member_id,
    )


def standalone_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etcdz watch-hub", description="Run a watch hub for an etcdz cluster.")
    p.add_argument("--name", default="watch-hub")
    p.add_argument("--endpoints", required=True, help="members' client URLs, comma-separated")
    p.add_argument("--listen-watch-urls", required=True, help="URLs to serve watchers on")
    p.add_argument("--advertise-watch-urls", default="", help="URLs clients reach this hub at")
    p.add_argument(
        "--backend-events", default="", help="a member's event stream URL (default: asked of the endpoints)"
    )
    p.add_argument("--experimental-watch-progress-notify-interval", default="10m")
    p.add_argument("--log-format", default="json")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    from actors.runtime.loop import run_actor, with_metrics
    from actors.supervisor.flags import parse_duration_ms

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--config"]:
        p = argparse.ArgumentParser(prog="etcdz-watch")
        p.add_argument("--config", required=True)
        p.add_argument("--index", type=int, default=0)
        args = p.parse_args(argv)
        node = NodeConfig.load(args.config)
        hub = from_node(node, args.index)
        log = configure(node.name, f"watch{args.index}", node.log_format, node.log_level)
        return run_actor(log, lambda: with_metrics(build(hub, log), node, f"watch{args.index}"))
    else:
        args = standalone_parser().parse_args(argv)
        split = lambda text: [u.strip() for u in text.split(",") if u.strip()]  # noqa: E731
        listen = split(args.listen_watch_urls)
        try:
            interval_ms = parse_duration_ms(args.experimental_watch_progress_notify_interval)
        except ValueError as exc:
            sys.stderr.write(f"etcdz watch-hub: {exc}\n")
            return 2
        hub = HubConfig(
            name=args.name,
            listen_urls=listen,
            advertise_urls=split(args.advertise_watch_urls) or listen,
            endpoints=split(args.endpoints),
            events_urls=split(args.backend_events),
            progress_interval_s=interval_ms / 1000,
        )
        log = configure(args.name, "watch", args.log_format, args.log_level)
    return run_actor(log, lambda: build(hub, log))


if __name__ == "__main__":
    sys.exit(main())
