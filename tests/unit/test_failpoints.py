"""Failpoints: the environment's syntax, and a crash point that kills its process on the armed
pass (a real child process, SIGKILL seen by its parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from actors.runtime.failpoints import VARIABLE, parse


def test_counts_and_switches() -> None:
    assert parse("") == {}
    assert parse("wal-before-fsync=5, gateway-skip-read-index") == {
        "wal-before-fsync": 5,
        "gateway-skip-read-index": 0,
    }


def test_the_armed_pass_kills_the_process() -> None:
    code = (
        "from actors.runtime import failpoints\n"
        "for i in range(5):\n"
        "    print(i, flush=True)\n"
        "    failpoints.hit('apply-mid-batch')\n"
        "    failpoints.hit('not-armed')\n"
    )
    env = {**os.environ, VARIABLE: "apply-mid-batch=3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["0", "1", "2"]
    assert '"failpoint fired", "failpoint": "apply-mid-batch"' in done.stderr
