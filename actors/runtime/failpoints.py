"""Crash points and unsafe behaviours armed by environment, as etcd's gofail failpoints, for the
robustness tests: ``ETCDZ_FAILPOINTS="wal-before-fsync=5,apply-mid-batch=20"`` kills the process
(SIGKILL: no cleanup, no flush) the 5th time the WAL writer is about to fsync, and the 20th time
the apply worker has handed a batch to the backend but told nobody else. A point named without
a count (``gateway-skip-read-index``) switches a behaviour on. Unset, each point costs a dict
lookup.

Points: ``wal-before-fsync``, ``wal-after-fsync`` (synced, not yet acknowledged to raft),
``apply-mid-batch`` (the backend has the batch, the gateway and raft do not know),
``mvcc-after-commit`` (the batch is in LevelDB, no event published, nothing acknowledged), and
``gateway-skip-read-index`` (a deliberately broken build: linearizable reads served from the
local backend without ReadIndex, which the linearizability checker must catch).
"""

from __future__ import annotations

import os
import signal
import sys

VARIABLE = "ETCDZ_FAILPOINTS"


def parse(text: str) -> dict[str, int]:
    """``name=N,name`` -> {name: N, name: 0} (0: a behaviour, not a countdown)."""
    armed: dict[str, int] = {}
    for part in text.split(","):
        name, _, count = part.strip().partition("=")
        if name:
            armed[name] = int(count) if count else 0
    return armed


_armed = parse(os.environ.get(VARIABLE, ""))


def enabled(name: str) -> bool:
    return name in _armed


def hit(name: str) -> None:
    """Count one pass through crash point ``name``; the armed pass kills the process."""
    left = _armed.get(name)
    if left is None or left == 0:
        return
    if left > 1:
        _armed[name] = left - 1
        return
    sys.stderr.write(f'{{"event": "failpoint fired", "failpoint": "{name}", "pid": {os.getpid()}}}\n')
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
