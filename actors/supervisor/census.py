"""What the supervisor knows of its actors, without processes or a clock: each one's starts,
restarts and the cause of the last, whether it is up, and which ones hang.

A hung actor (stopped, deadlocked, looping) is alive to ``waitpid`` but serves nothing: every
actor's loop touches a heartbeat file every ``BEAT_S`` (``Loop.beat``), and one whose file is
older than ``HUNG_AFTER_S`` -- past the same grace after its start -- is killed by the
supervisor and then restarted as a dead one is. The census is written into the run directory as
the supervisor's own metrics report (``etcdz_actor_up``, ``etcdz_actor_restarts_total``,
``etcdz_actor_last_restart_timestamp_seconds`` with the cause), which the metrics process
serves, and from which ``/health`` says a member with an actor down is not healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proto_schemas.internal import MetricFamily, MetricSample, MetricsReport

BEAT_S = 1.0
HUNG_AFTER_S = 10.0


@dataclass
class _Actor:
    started_at: float  # monotonic
    up: bool = True
    restarts: int = 0
    last_cause: str = ""
    last_restart_wall: float = 0.0


@dataclass
class Census:
    actors: dict[str, _Actor] = field(default_factory=dict)

    def started(self, name: str, now: float, wall: float) -> None:
        actor = self.actors.get(name)
        if actor is None:
            self.actors[name] = _Actor(started_at=now)
            return
        if not actor.up:  # a start after a death is a restart
            actor.restarts += 1
            actor.last_restart_wall = wall
        actor.started_at, actor.up = now, True

    def died(self, name: str, cause: str) -> None:
        actor = self.actors.get(name)
        if actor is not None and actor.up:
            actor.up, actor.last_cause = False, cause

    def lived(self, name: str, now: float) -> float:
        """Seconds since ``name`` last started (0 for one never started)."""
        actor = self.actors.get(name)
        return now - actor.started_at if actor is not None else 0.0

    def hung(self, now: float, beats: dict[str, float]) -> list[str]:
        """Running actors whose heartbeat (monotonic time of the file's last touch, or absent)
        is older than ``HUNG_AFTER_S``, once they have run that long."""
        out = []
        for name, actor in self.actors.items():
            if not actor.up or now - actor.started_at < HUNG_AFTER_S:
                continue
            beat = beats.get(name)
            if beat is None or now - beat > HUNG_AFTER_S:
                out.append(name)
        return sorted(out)

    def report(self) -> MetricsReport:
        up, restarts, last = [], [], []
        for name, actor in sorted(self.actors.items()):
            up.append(MetricSample(name="etcdz_actor_up", labels=["actor", name], value=int(actor.up)))
            restarts.append(
                MetricSample(name="etcdz_actor_restarts_total", labels=["actor", name], value=actor.restarts)
            )
            if actor.restarts:
                last.append(
                    MetricSample(
                        name="etcdz_actor_last_restart_timestamp_seconds",
                        labels=["actor", name, "cause", actor.last_cause],
                        value=actor.last_restart_wall,
                    )
                )
        return MetricsReport(
            actor="supervisor",
            families=[
                MetricFamily(
                    name="etcdz_actor_up", kind="gauge", help="Whether the actor is running.", samples=up
                ),
                MetricFamily(
                    name="etcdz_actor_restarts_total",
                    kind="counter",
                    help="How many times the supervisor started the actor again.",
                    samples=restarts,
                ),
                MetricFamily(
                    name="etcdz_actor_last_restart_timestamp_seconds",
                    kind="gauge",
                    help="When the actor was last started again, labelled with what ended it.",
                    samples=last,
                ),
            ],
        )
