"""When a dead side process (a watch hub, the metrics server, the corruption checker) starts
again, and when its death stops the member -- decided without processes or a clock.

- A side that fails at its very first start with ``EXIT_FATAL`` (it cannot bind the address
  its flag names) stops the member: a member must not run, and say it is healthy, while what
  it advertises is missing.
- Later deaths are restarted with a backoff (``BACKOFF_S`` doubling up to ``MAX_BACKOFF_S``);
  a side that lived ``STABLE_AFTER_S`` starts over from the first step. After
  ``GIVE_UP_AFTER`` quick failures in a row it counts as failing: logged at error level (the
  gateway, which no longer hears that hub, reports the member unhealthy) and still tried at
  the longest backoff, so a port freed later brings it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 10.0
GIVE_UP_AFTER = 5


@dataclass
class _Side:
    started_at: float
    first: bool = True  # still the first run of this side
    quick_failures: int = 0
    restart_at: float | None = None  # dead, to be started again then


@dataclass(frozen=True)
class Verdict:
    """What to do about one death: ``fatal`` stops the member; else restart at ``restart_at``;
    ``failing``: this death made it a side that keeps failing."""

    fatal: bool = False
    restart_at: float = 0.0
    failing: bool = False


@dataclass
class SideRestarts:
    sides: dict[str, _Side] = field(default_factory=dict)

    def started(self, name: str, now: float) -> None:
        side = self.sides.get(name)
        if side is None:
            self.sides[name] = _Side(started_at=now)
        else:
            side.started_at, side.restart_at = now, None

    def died(self, name: str, exit_code: int, fatal_code: int, now: float) -> Verdict:
        side = self.sides.setdefault(name, _Side(started_at=now))
        if side.first and exit_code == fatal_code:
            return Verdict(fatal=True)
        side.first = False
        if now - side.started_at >= STABLE_AFTER_S:
            side.quick_failures = 0
        side.quick_failures += 1
        delay = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (side.quick_failures - 1))
        side.restart_at = now + delay
        return Verdict(restart_at=side.restart_at, failing=side.quick_failures == GIVE_UP_AFTER)

    def due(self, now: float) -> list[str]:
        """Dead sides whose backoff is over."""
        return [n for n, s in self.sides.items() if s.restart_at is not None and s.restart_at <= now]

    def waiting(self, name: str) -> bool:
        side = self.sides.get(name)
        return side is not None and side.restart_at is not None

    def lived_stable(self, name: str, now: float) -> None:
        """Called while it runs: past ``STABLE_AFTER_S`` its first run is over (a later
        ``EXIT_FATAL`` is a failure to restart, not to start)."""
        side = self.sides.get(name)
        if side is not None and side.restart_at is None and now - side.started_at >= STABLE_AFTER_S:
            side.first = False
