"""The node's metrics process without sockets: the latest report of each actor, the Prometheus
text of them all, ``/health`` as etcd answers it, and the little HTTP it needs.

The text is written by prometheus_client (``exposition.py``, imported by the first scrape rather
than by the node's start), not by hand. The actors keep
their numbers in etcdz's small registry (actors/runtime/metrics.py) rather than in
prometheus_client's metrics: those take a lock per update and, across processes, need its
multiprocess mode's directory of memory-mapped files shared by every process of a node, where
the actors already report over their sockets once a second (and a watch hub on another host
shares no directory with the member).

A report older than ``STALE_S`` (its actor died or hangs) is left out of ``/metrics``; without a
fresh report from the raft core the member is not healthy. Health as etcd's: a leader and no
alarm (and, etcdz's own, none of the member's actors down or hung -- the supervisor's census,
read at each request -- and none of its watch hubs down); ``{"health":"true"}`` with
200, else ``{"health":"false","reason":...}`` with 503. ``/readyz`` answers the same way,
and also 503 (``LEARNER``) while the member is a learner: a load balancer in front of the
members (a Kubernetes Service) sends clients only to members that take writes.

Connections (``Connections``): an orchestrator probes ``/health`` and restarts a member that does
not answer, so connections that never finish their request must not keep it from answering.
Each has ``IDLE_TIMEOUT_S`` from its opening to send a whole request head, then it is closed;
and when ``MAX_CONNECTIONS`` are open the oldest is closed to make room for a new one (a
client slower than the newest 256 is the one that loses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from proto_schemas.internal import MetricFamily, MetricsReport

STALE_S = 5.0
MAX_REQUEST_BYTES = 8192
IDLE_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 256
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the format generate_latest writes


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str


class BadHttp(Exception):
    pass


WRITE_PATH = ("wal", "raft", "mvcc", "apply", "lease", "gateway")  # a member serves with all of them


class MetricsBoard:
    def __init__(self) -> None:
        self._reports: dict[str, tuple[float, list[MetricFamily]]] = {}
        self.census: MetricsReport | None = None  # the supervisor's, read at each request

    def report(self, msg: MetricsReport, now: float) -> None:
        self._reports[msg.actor] = (now, msg.families)

    def _fresh(self, now: float) -> dict[str, list[MetricFamily]]:
        return {a: fams for a, (at, fams) in self._reports.items() if now - at <= STALE_S}

    def exposition(self, now: float) -> str:
        census = self.census.families if self.census is not None else []
        from actors.metrics.exposition import render

        return render([*(f for fams in self._fresh(now).values() for f in fams), *census])

    def _down(self) -> list[str]:
        """Actors of the member that the supervisor reports down (dead, hung, restarting)."""
        if self.census is None:
            return []
        for family in self.census.families:
            if family.name == "etcdz_actor_up":
                return sorted(
                    s.labels[1] for s in family.samples if s.value == 0 and s.labels[1] in WRITE_PATH
                )
        return []

    def value(self, now: float, actor: str, name: str) -> list[tuple[list[str], float]]:
        """The samples of one family as an actor last reported them (empty if stale)."""
        for family in self._fresh(now).get(actor, []):
            if family.name == name:
                return [(s.labels, float(s.value)) for s in family.samples]
        return []

    def health(self, now: float) -> tuple[bool, str]:
        down = self._down()
        if down:
            return False, "ACTOR DOWN " + ",".join(down)
        leader = self.value(now, "raft", "etcd_server_has_leader")
        if not leader:
            return False, "RAFT NOT RUNNING"
        if leader[0][1] < 1:
            return False, "RAFT NO LEADER"
        raised = [labels[1] for labels, v in self.value(now, "mvcc", "etcdz_alarms") if v > 0]
        if raised:
            return False, "ALARM " + ",".join(sorted(raised))
        hubs_down = self.value(now, "gateway", "etcdz_watch_hubs_down")
        if hubs_down and hubs_down[0][1] > 0:
            return False, "WATCH HUB DOWN"
        return True, ""

    def ready(self, now: float) -> tuple[bool, str]:
        """Healthy and a voter: where a load balancer may send clients (a learner refuses
        writes and linearizable reads; it is ready once promoted)."""
        ok, reason = self.health(now)
        if not ok:
            return ok, reason
        learner = self.value(now, "raft", "etcd_server_is_learner")
        if learner and learner[0][1] > 0:
            return False, "LEARNER"
        return True, ""


class Connections:
    """The open HTTP connections: what each has sent so far and when it opened (in order)."""

    def __init__(
        self, max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S
    ) -> None:
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self._open: dict[bytes, tuple[float, bytes]] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, conn: object) -> bool:
        return conn in self._open

    def opened(self, conn: bytes, now: float) -> list[bytes]:
        """A new connection; returns the connections to close to make room for it."""
        evicted = []
        while len(self._open) >= self.max_connections:
            oldest = next(iter(self._open))
            del self._open[oldest]
            evicted.append(oldest)
        self._open[conn] = (now, b"")
        return evicted

    def closed(self, conn: bytes) -> None:
        self._open.pop(conn, None)

    def received(self, conn: bytes, data: bytes, now: float) -> HttpRequest | None:
        """Data on a connection; its request once the head is complete (the connection is then
        forgotten: the answer closes it). Raises BadHttp for a malformed or oversized head."""
        if conn not in self._open:
            return None  # already closed by us (evicted or timed out): what it still sent is moot
        since, buffered = self._open[conn]
        buffered += data
        try:
            request = parse_request(buffered)
        except BadHttp:
            del self._open[conn]  # the caller answers and closes
            raise
        if request is None:
            self._open[conn] = (since, buffered)  # keeps its place: the table stays in opening order
        else:
            del self._open[conn]
        return request

    def expired(self, now: float) -> list[bytes]:
        """The connections open longer than the idle timeout without a whole request (closed)."""
        stale = []
        for conn, (since, _) in self._open.items():
            if now - since < self.idle_timeout_s:
                break  # opened in order: the rest are younger
            stale.append(conn)
        for conn in stale:
            del self._open[conn]
        return stale


def health_body(ok: bool, reason: str) -> bytes:
    doc = {"health": "true"} if ok else {"health": "false", "reason": reason}
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_request(data: bytes) -> HttpRequest | None:
    """The request line of a complete request head (None: not complete yet)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_REQUEST_BYTES:
            raise BadHttp("request head too large")
        return None
    line = data[: data.find(b"\r\n")].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadHttp(f"bad request line {line!r}")
    return HttpRequest(parts[0], parts[1].split("?", 1)[0])


def response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    reasons = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
        503: "Service Unavailable",
    }
    head = (
        f"HTTP/1.1 {status} {reasons[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def answer(board: MetricsBoard, request: HttpRequest, now: float) -> bytes:
    if request.method not in ("GET", "HEAD"):
        return response(405, b"method not allowed\n")
    if request.path == "/metrics":
        body = board.exposition(now).encode()
        out = response(200, body, CONTENT_TYPE)
    elif request.path in ("/health", "/readyz"):
        ok, reason = board.health(now) if request.path == "/health" else board.ready(now)
        out = response(200 if ok else 503, health_body(ok, reason), "application/json")
    else:
        return response(404, b"404 page not found\n")
    if request.method == "HEAD":
        return out[: out.find(b"\r\n\r\n") + 4]
    return out
