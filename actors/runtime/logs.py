"""structlog set-up for actors: JSON lines in production, key=value on a terminal, and every
line bound to the node's and the actor's names so an operator can follow one write across
processes."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(node: str, actor: str, log_format: str = "json", level: str = "info") -> structlog.BoundLogger:
    renderer: structlog.types.Processor
    if log_format == "console" or (log_format == "auto" and sys.stderr.isatty()):
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(node=node, actor=actor)
