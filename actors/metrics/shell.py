"""The metrics process's shell: the actors' reports on an inbox, HTTP on a ZeroMQ STREAM socket.

Started by the supervisor as a side process when ``--listen-metrics-urls`` is given (a dead
one is restarted alone; the actors' next reports refill it within a second). One request per
connection: the answer is sent and the connection closed.
"""

from __future__ import annotations

import time

import structlog
import zmq

from actors.metrics.core import BadHttp, MetricsBoard, answer, parse_request, response
from actors.runtime.config import NodeConfig
from actors.runtime.listen import bind_all
from actors.runtime.loop import Loop
from proto_schemas.internal import MetricsReport

MAX_CONNECTIONS = 256


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    board = MetricsBoard()
    inbox = loop.inbox(config.inbox("metrics"))
    http = loop.ctx.socket(zmq.STREAM)
    http.setsockopt(zmq.LINGER, 0)
    tcp = ["tcp://" + u.removeprefix("http://") for u in config.listen_metrics_urls]
    bind_all(http, tcp, "--listen-metrics-urls")
    log.info("serving metrics", urls=config.listen_metrics_urls)
    buffers: dict[bytes, bytes] = {}

    def reports(msgs: list[object]) -> None:
        now = time.monotonic()
        for msg in msgs:
            if isinstance(msg, MetricsReport):
                board.report(msg, now)

    def requests(batch: list[list[bytes]]) -> None:
        for frames in batch:
            if len(frames) != 2:
                continue
            conn, data = frames
            if not data:  # a connection opened or closed
                buffers.pop(conn, None)
                continue
            if conn not in buffers and len(buffers) >= MAX_CONNECTIONS:
                continue
            buffers[conn] = buffers.get(conn, b"") + data
            try:
                request = parse_request(buffers[conn])
            except BadHttp:
                reply(conn, response(400, b"bad request\n"))
                continue
            if request is not None:
                reply(conn, answer(board, request, time.monotonic()))

    def reply(conn: bytes, data: bytes) -> None:
        buffers.pop(conn, None)
        try:
            http.send_multipart([conn, data], zmq.NOBLOCK)
            http.send_multipart([conn, b""], zmq.NOBLOCK)  # close
        except zmq.ZMQError as exc:
            log.debug("metrics reply dropped", error=str(exc))

    loop.on_messages(inbox, reports)
    loop.on_frames(http, requests)
    return loop
