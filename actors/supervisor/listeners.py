"""Before a member starts anything: can it bind every address its flags name?

Each actor binds its own sockets and fails with a clear error when it cannot (see
actors/runtime/listen.py); checking here first makes the common mistake -- a port another
process (another member on this host) already holds -- one line naming the flag and the
address and a non-zero exit, before any actor started. Port 0 (a free port chosen at bind)
needs no check. A port still held by a process that is just exiting (a member restarted
right after a kill) is asked again for ``WAIT_S``.
"""

from __future__ import annotations

import socket
import time

from actors.runtime.config import NodeConfig

WAIT_S = 3.0
RETRY_S = 0.1


class ListenerTaken(RuntimeError):
    """An address of this member's flags is held by another process."""


def addresses(config: NodeConfig) -> list[tuple[str, str]]:
    """(flag, tcp URL) of every fixed port this member will listen on."""
    found = [("--listen-client-urls", u) for u in config.listen_client_urls]
    found += [("--listen-peer-urls", u) for u in config.listen_peer_urls]
    found += [("--listen-events-urls", u) for u in config.listen_events_urls]
    metrics = config.listen_metrics_urls
    found += [("--listen-metrics-urls", "tcp://" + u.removeprefix("http://")) for u in metrics]
    for i in range(config.watch_hubs):
        for url in config.listen_watch_urls:
            head, _, port = url.rpartition(":")
            if port.isdigit() and port != "0":
                found.append(("--listen-watch-urls", f"{head}:{int(port) + i}"))
    return [(flag, url) for flag, url in found if url.startswith("tcp://") and not url.endswith(":0")]


def check(config: NodeConfig) -> None:
    """Raise ``ListenerTaken`` naming the first flag and address that cannot be bound."""
    for flag, url in addresses(config):
        deadline = time.monotonic() + WAIT_S
        while True:
            problem = _try_bind(url)
            if not problem:
                break
            if time.monotonic() >= deadline:
                raise ListenerTaken(f"cannot listen on {flag} {url}: {problem}")
            time.sleep(RETRY_S)


def _try_bind(url: str) -> str:
    """Why ``url`` cannot be bound now ("" if it can, or if this check cannot tell)."""
    host, _, port = url.removeprefix("tcp://").rpartition(":")
    host = host.strip("[]")
    if host in ("*", ""):
        host = "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, ValueError):
        return ""  # an interface name or a host this check cannot resolve: the actor will tell
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""
