"""A closed-loop write workload that remembers what was acknowledged, for tests that crash,
partition or reconfigure a cluster and then check that no acknowledged write was lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from etcdz import Client
from etcdz.errors import EtcdzError

T = TypeVar("T")


class Writer(threading.Thread):
    """Puts unique keys in a loop; remembers which were acknowledged and which are unknown
    (an indefinite error: the put may or may not have been applied)."""

    def __init__(
        self, endpoints: list[str], prefix: str, timeout: float = 2.0, limit_s: float = 60.0
    ) -> None:
        super().__init__(daemon=True)
        self.client = Client(endpoints, timeout=timeout)
        self.prefix = prefix
        self.limit_s = limit_s
        self.acked: list[str] = []
        self.unknown: list[str] = []
        self.failed: list[str] = []  # every error seen, as "key: text" (definite ones too)
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        deadline = time.monotonic() + self.limit_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = f"{self.prefix}/{i:06d}"
            i += 1
            try:
                self.client.put(key, key)
                self.acked.append(key)
            except EtcdzError as exc:
                self.failed.append(f"{key}: {exc}")
                if not exc.definite:
                    self.unknown.append(key)
                time.sleep(0.02)
        self.client.close()

    def finish(self) -> None:
        self.stop.set()
        self.join(15)


def check_writes(c: Client, writer: Writer, serializable: bool = False) -> None:
    """Every acknowledged put is there exactly once; nothing appears that was never sent."""
    found = {
        kv.key.decode(): kv for kv in c.get(writer.prefix + "/", prefix=True, serializable=serializable).kvs
    }
    missing = [k for k in writer.acked if k not in found]
    assert not missing, f"acknowledged writes lost: {missing[:5]} ({len(missing)} in all)"
    assert set(found) <= set(writer.acked) | set(writer.unknown)
    assert all(kv.version == 1 for kv in found.values()), "a put was applied twice"
    revisions = sorted(kv.mod_revision for kv in found.values())
    assert len(set(revisions)) == len(revisions)


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` (etcdz errors count as "not yet") until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except EtcdzError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def took_effect(change: Callable[[], object], done: Callable[[], bool]) -> bool:
    """Ask for a change that is not idempotent (a membership change), then let ``done`` say
    whether it took effect: under load an answer can be lost (a timeout) while the change
    applies, and a retry is then refused (peer URL exists, not a learner, member not found)."""
    try:
        change()
    except EtcdzError:
        pass
    return done()


def wait_serving(endpoints: list[str], since: float, limit_s: float = 30.0) -> float:
    """Seconds from ``since`` until a put succeeds again (AssertionError after ``limit_s``)."""
    with Client(endpoints, timeout=0.5) as c:
        while time.monotonic() - since < limit_s:
            try:
                c.put("/probe", "x")
                return time.monotonic() - since
            except EtcdzError:
                time.sleep(0.05)
    raise AssertionError(f"not serving again within {limit_s:.0f} s")
