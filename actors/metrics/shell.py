"""The metrics process's shell: the actors' reports on an inbox, HTTP on a ZeroMQ STREAM socket.

Started by the supervisor as a side process when ``--listen-metrics-urls`` is given (a dead
one is restarted alone; the actors' next reports refill it within a second). One request per
connection: the answer is sent and the connection closed. A connection that has not sent a
whole request head within ``IDLE_TIMEOUT_S`` is closed, and the oldest is closed when
``MAX_CONNECTIONS`` are open, so half-sent requests never keep ``/health`` from answering
(see ``Connections``).
"""

from __future__ import annotations

import time

import structlog
import zmq

from actors.metrics.core import BadHttp, Connections, MetricsBoard, answer, response
from actors.runtime.config import NodeConfig
from actors.runtime.listen import bind_all
from actors.runtime.loop import Loop
from proto_schemas.codec import DecodeError, decode
from proto_schemas.internal import MetricsReport

SWEEP_S = 1.0


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    board = MetricsBoard()
    inbox = loop.inbox(config.inbox("metrics"))
    http = loop.ctx.socket(zmq.STREAM)
    http.setsockopt(zmq.LINGER, 0)
    tcp = ["tcp://" + u.removeprefix("http://") for u in config.listen_metrics_urls]
    bind_all(http, tcp, "--listen-metrics-urls")
    log.info("serving metrics", urls=config.listen_metrics_urls)
    conns = Connections()

    def reports(msgs: list[object]) -> None:
        now = time.monotonic()
        for msg in msgs:
            if isinstance(msg, MetricsReport):
                board.report(msg, now)

    def requests(batch: list[list[bytes]]) -> None:
        now = time.monotonic()
        for frames in batch:
            if len(frames) != 2:
                continue
            conn, data = frames
            if not data:  # a connection opened or closed (ZeroMQ's STREAM notifications; an
                # id is never reused, so a late close of one we dropped only costs a slot until swept)
                if conn in conns:
                    conns.closed(conn)
                else:
                    for old in conns.opened(conn, now):
                        close(old)
                continue
            try:
                request = conns.received(conn, data, now)
            except BadHttp:
                reply(conn, response(400, b"bad request\n"))
                continue
            if request is not None:
                board.census = census()
                reply(conn, answer(board, request, now))

    def census() -> MetricsReport | None:
        """The supervisor's latest report on its actors (see actors/supervisor/census.py)."""
        try:
            with open(config.census_path, "rb") as f:
                return decode(f.read(), MetricsReport)
        except (OSError, DecodeError):
            return None

    def reply(conn: bytes, data: bytes) -> None:
        try:
            http.send_multipart([conn, data], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("metrics reply dropped", error=str(exc))
        close(conn)

    def close(conn: bytes) -> None:
        conns.closed(conn)
        try:
            http.send_multipart([conn, b""], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("metrics connection already gone", error=str(exc))

    def sweep() -> None:
        for conn in conns.expired(time.monotonic()):
            close(conn)

    loop.on_messages(inbox, reports)
    loop.on_frames(http, requests)
    loop.every(SWEEP_S, sweep)
    return loop
