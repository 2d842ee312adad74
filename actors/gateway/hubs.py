"""What a member knows of the watch hubs: which announced URLs it may advertise, and whether
its own hubs are up.

A member's own hubs (``--watch-hubs``) announce on the node's private socket with their slot
name (``watch0``...). A slot not heard from within ``HUB_DOWN_S`` -- after ``START_GRACE_S``
for a slot never heard from -- is down: the member reports itself unhealthy (``status``
errors, ``/health``, a metric) instead of serving watches it cannot serve. A hub that stopped
announcing is no longer advertised (``HUB_TTL_S`` in the core).
"""

from __future__ import annotations

from proto_schemas.watch import HubAnnounce

HUB_DOWN_S = 5.0
START_GRACE_S = 20.0  # a member's hubs start (python, zmq) well within this
MAX_HUB_URLS = 8
MAX_HUB_URL_BYTES = 256
MAX_HUB_ID_BYTES = 64


def hub_problem(hub: HubAnnounce) -> str:
    """Why an announcement cannot be taken ("" if it can): a hub id and URLs a client could
    connect to (``tcp://host:port`` with a real port, or ``ipc://path``)."""
    if not hub.hub_id or len(hub.hub_id.encode()) > MAX_HUB_ID_BYTES:
        return f"hub_id must be 1 to {MAX_HUB_ID_BYTES} bytes"
    if not hub.urls or len(hub.urls) > MAX_HUB_URLS:
        return f"a hub announces 1 to {MAX_HUB_URLS} URLs"
    for url in hub.urls:
        if len(url.encode()) > MAX_HUB_URL_BYTES:
            return f"hub URL longer than {MAX_HUB_URL_BYTES} bytes"
        if url.startswith("ipc://") and len(url) > len("ipc://"):
            continue
        host, _, port = url.removeprefix("tcp://").rpartition(":")
        if not url.startswith("tcp://") or not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f"invalid hub URL {url!r} (want tcp://host:port)"
        if any(c.isspace() for c in host):
            return f"invalid hub URL {url!r}"
    return ""


class LocalHubs:
    """The member's own hub slots and when each last announced."""

    def __init__(self, slots: int) -> None:
        self.slots = [f"watch{i}" for i in range(slots)]
        self._heard: dict[str, float] = {}
        self._started: float | None = None

    def heard(self, name: str, now: float) -> None:
        if name in self.slots:
            self._heard[name] = now

    def down(self, now: float) -> list[str]:
        """The slots that are not serving now."""
        if self._started is None:
            self._started = now
        out = []
        for slot in self.slots:
            last = self._heard.get(slot)
            if last is None:
                if now - self._started > START_GRACE_S:
                    out.append(slot)
            elif now - last > HUB_DOWN_S:
                out.append(slot)
        return out
