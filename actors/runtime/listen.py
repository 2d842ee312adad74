"""Binding a server socket to the addresses its flag names, and saying so clearly when it
cannot: a member must never run on while one of its listeners is missing (its clients would
reach whatever else holds that port -- another cluster's hub -- or nothing at all).

A port of 0 asks the OS for a free port; ``bind_all`` returns what was actually bound, which
is what the process advertises (``tcp://host:0`` is never advertised).
"""

from __future__ import annotations

import zmq

from actors.runtime.loop import FatalError


class ListenError(FatalError):
    """A listener that cannot bind: fatal for the process (retrying in a loop hides it)."""


def bind_all(sock: zmq.Socket[bytes], urls: list[str], flag: str) -> list[str]:
    """Bind ``sock`` to every URL of ``--flag``; the endpoints bound, ports resolved."""
    bound: list[str] = []
    for url in urls:
        try:
            sock.bind(url)
        except zmq.ZMQError as exc:
            raise ListenError(f"cannot listen on {flag} {url}: {exc.strerror}") from exc
        bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    return bound


def with_port(url: str, port: str) -> str:
    """``url`` (``tcp://host:0``) with the port the OS chose."""
    head, _, _ = url.rpartition(":")
    return f"{head}:{port}"


def port_of(url: str) -> str:
    return url.rpartition(":")[2]


def resolve_advertised(advertise: list[str], listen: list[str], bound: list[str]) -> list[str]:
    """The advertised URLs with each ``:0`` port replaced by what the listener at the same
    position bound (the first one's when there are more advertised than listened)."""
    if not bound:
        return advertise
    out = []
    for i, url in enumerate(advertise):
        if url.startswith("tcp://") and port_of(url) == "0":
            j = i if i < len(bound) else 0
            url = with_port(url, port_of(bound[j]))
        out.append(url)
    return out
