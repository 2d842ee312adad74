"""An actor process's entry: ``python -m actors.<name> --config PATH`` -> config, logs, loop.

Apart from the loop so that the loop, which the node's config needs (through Curve's ZAP
handler), does not need the config back: the layers run entry -> config -> curve -> loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import structlog

from actors.runtime.config import NodeConfig
from actors.runtime.logs import configure
from actors.runtime.loop import Loop, run_actor, with_metrics


def actor_main(actor: str, build: Callable[[NodeConfig, structlog.BoundLogger], Loop]) -> None:
    """Entry point shared by every ``python -m actors.<name> --config PATH``."""
    parser = argparse.ArgumentParser(prog=f"etcdz-{actor}")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = NodeConfig.load(args.config)
    log = configure(config.name, actor, config.log_format, config.log_level)
    raise SystemExit(
        run_actor(log, lambda: with_metrics(build(config, log), config, actor), f"{config.name}-{actor}")
    )
