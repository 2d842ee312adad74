"""Timestamps of a raft core's rounds, for ``tools/round_trace.py``: where a write's latency goes.

A write's time on the raft path is made of stages no profiler shows, because they are waits,
not work: the group-commit hold, the leader's and the followers' WAL round trips, the network
hop to each follower, the commit reaching a follower. With ``TRACE_VARIABLE`` naming a
directory, each raft core appends one line per event to ``<dir>/<member>-<pid>.rounds``:

    <CLOCK_MONOTONIC ns> <kind> <a> <b>

``offered`` (a: requests of one proposal reaching a leader, before any hold), ``appended``
(entries a..b handed to the log: a leader's new proposals, a follower's received entries),
``persisted`` (the WAL writer made the log durable up to a), ``committed`` (entries a..b
handed to the apply worker). CLOCK_MONOTONIC is one clock for every process of the host, so
the members' files line up. Off (the default) it costs one attribute test per Ready.
"""

from __future__ import annotations

import os
import time
from typing import IO

TRACE_VARIABLE = "ETCDZ_ROUND_TRACE_DIR"
OFFERED, APPENDED, PERSISTED, COMMITTED = "offered", "appended", "persisted", "committed"


class RoundTrace:
    def __init__(self, directory: str, member: str) -> None:
        path = os.path.join(directory, f"{member}-{os.getpid()}.rounds")
        self._out: IO[str] = open(path, "a", buffering=1, encoding="ascii")  # noqa: SIM115  # lives with the process

    def record(self, kind: str, a: int, b: int = 0) -> None:
        self._out.write(f"{time.monotonic_ns()} {kind} {a} {b}\n")


def from_environment(member: str) -> RoundTrace | None:
    directory = os.environ.get(TRACE_VARIABLE)
    return RoundTrace(directory, member) if directory else None
