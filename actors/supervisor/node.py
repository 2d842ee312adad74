"""Starts the actors of one node as OS processes and keeps them running.

Each actor is restarted according to what it holds (as an OTP supervisor chooses a strategy per
child): with the smallest set of actors that must start again with it (``RESTART_SET``), while
the rest of the node serves on. Every actor resynchronises with the neighbours that ran on:
- the gateway asks the raft core for its status and the backend for auth state and revision;
  the lease expirer asks the backend for the lease table and the raft core for its status
  (leases get a fresh TTL, as after an election): each restarts alone (one_for_one);
- the apply worker asks the backend for its consistent index and the raft core for the
  committed entries after it (``ApplyFrom``): it restarts alone;
- the backend reopens LevelDB, which holds every batch it committed; the batch in flight died
  with it, so the apply worker restarts with it and resyncs as above (rest_for_one);
- the raft core loads the log from the running WAL writer, which keeps what a replay would
  find in memory (and drops what the dead core sent after the new one loaded), then hands the
  apply worker what it had already (skipped): it restarts alone;
- the raft core's appends not yet acknowledged die with the WAL writer: the two restart
  together, the new writer replaying the WAL for the new core.
The gateway fails what it asked of a restarted raft core (read index rounds) or backend
(reads) at once, with errors the SDK retries, and proposes again the writes it had proposed
to a restarted raft core (a copy of a write the log has already is answered, not applied:
actors/mvcc/sessions.py). An actor whose restart set died quickly
``ESCALATE_AFTER`` times in a row restarts the whole node from disk (one_for_all: SIGTERM,
then SIGKILL after a grace period), which needs only the WAL and the backend. Restarts that
keep failing back off (as circus does), and give up after ``MAX_QUICK_FAILURES`` node starts
that did not last ``STABLE_AFTER_S``.

Side processes are outside that rule: watch hubs, the metrics server and the corruption
checker hold no state a restart could lose (a hub's clients re-create watches from the last
revision they saw; actors report their metrics again within a second; the checker just checks
again), so a dead one is restarted alone, with a backoff (sides.py), and a member restart
leaves them running (hubs resync from history). A side that cannot bind at its first start
stops the member, as an actor that cannot does: the member never runs without what it
advertises.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import time

import structlog

from actors.runtime.config import ACTORS, NodeConfig
from actors.runtime.loop import EXIT_FATAL
from actors.supervisor import listeners
from actors.supervisor.census import HUNG_AFTER_S, Census
from actors.supervisor.sides import SideRestarts
from actors.supervisor.spawn import Forked, fork_actor, preload
from proto_schemas.codec import encode

Command = tuple[str, list[str]]  # an actor's module and its arguments (``python -m MODULE ARGS``)
STOP_GRACE_S = 3.0
STABLE_AFTER_S = 10.0
MAX_QUICK_FAILURES = 8
# The actors started again when one dies (see the module's docstring for why each).
RESTART_SET: dict[str, tuple[str, ...]] = {
    "gateway": ("gateway",),
    "lease": ("lease",),
    "apply": ("apply",),
    "mvcc": ("mvcc", "apply"),
    "wal": ("wal", "raft"),
    "raft": ("raft",),
}
ESCALATE_AFTER = 3  # quick deaths in a row of an actor's restart set: restart the node instead
WATCHED_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def private_dir(path: str) -> int:
    """Create ``path`` as a directory only this user may enter (etcd wants 0700 data dirs; the
    socket directory may be under a shared temp dir, where someone else could have made it
    first). Returns the mode it had if it had to be tightened, else 0."""
    make_dirs_durably(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise DataDirError(f"{path} is not a directory of this user: refusing to use it")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
        return stat.S_IMODE(st.st_mode)
    return 0


def make_dirs_durably(path: str, mode: int) -> list[str]:
    """``os.makedirs`` whose result survives a power cut: each directory created is fsynced
    with its parent, so a first start's data dir (and ``member/`` in it) cannot vanish after
    the WAL inside was fsynced. Returns the directories created, outermost first."""
    missing = []
    here = os.path.abspath(path)
    while not os.path.isdir(here):
        missing.append(here)
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    created = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else (checked by the caller)
        created.append(directory)
        for synced in (directory, os.path.dirname(directory)):
            fd = os.open(synced, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return created


class DataDirError(RuntimeError):
    """The data dir (or the socket dir) cannot be used."""


class DataDirLocked(DataDirError):
    pass


class SideFailed(RuntimeError):
    """A side process could not start at all (it cannot bind what the member advertises)."""


class NodeSupervisor:
    def __init__(self, config: NodeConfig, log: structlog.BoundLogger) -> None:
        self.config = config
        self.log = log
        self.procs: dict[str, Forked] = {}
        self.sides: dict[str, Forked] = {}
        self.census = Census()
        self.quick_deaths: dict[str, int] = {}  # of an actor whose restart set was restarted, in a row
        self.config_path = os.path.join(config.run_dir, "config.json")
        self._lock_fd = -1
        self.side_restarts = SideRestarts()

    def prepare(self) -> None:
        for path in (
            self.config.data_dir,
            os.path.dirname(self.config.wal_dir),
            self.config.run_dir,
            os.path.dirname(self.config.heartbeat_path("-")),
            self.config.socket_dir,
        ):
            changed = private_dir(path)
            if changed:
                self.log.warning("directory was open to others: made private", path=path, mode=oct(changed))
        self._lock_fd = os.open(os.path.join(self.config.data_dir, "lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirLocked(f"data dir {self.config.data_dir} is in use by another etcdz") from None
        tmp = self.config_path + ".tmp"
        with os.fdopen(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
        ) as f:
            f.write(self.config.to_json())
        os.replace(tmp, self.config_path)

    def actor_command(self, actor: str) -> Command:
        return f"actors.{actor}", ["--config", self.config_path]

    def start_actors(self) -> None:
        for actor in ACTORS:
            self.procs[actor] = self.spawn(actor, self.actor_command(actor))
        self.log.info("actors started", pids={a: p.pid for a, p in self.procs.items()})

    def side_commands(self) -> dict[str, Command]:
        """The side processes this member runs, by name, with their modules and arguments."""
        config = ["--config", self.config_path]
        sides = {
            f"watch{i}": ("actors.watch", [*config, "--index", str(i)]) for i in range(self.config.watch_hubs)
        }
        if self.config.listen_metrics_urls:
            sides["metrics"] = ("actors.metrics", config)
        if self.config.initial_corrupt_check or self.config.corrupt_check_ms > 0:
            sides["corruption"] = ("actors.corruption", config)
        return sides

    def start_sides(self) -> None:
        """Start the side processes that are not running: all at first, a dead one once its
        backoff is over. Raises ``SideFailed`` when one could not start at all."""
        now = time.monotonic()
        for name, command in self.side_commands().items():
            proc = self.sides.get(name)
            code = None if proc is None else proc.poll()
            if proc is not None and code is None:
                self.side_restarts.lived_stable(name, now)
                continue
            if code is not None and not self.side_restarts.waiting(name):
                verdict = self.side_restarts.died(name, code, EXIT_FATAL, now)
                self._died(name, code)
                if verdict.fatal:
                    raise SideFailed(f"{name} cannot start (see its error above)")
                self.log.warning(
                    "side process died, restarting it",
                    process=name,
                    exit_code=code,
                    restart_in_s=round(verdict.restart_at - now, 2),
                )
                if verdict.failing:
                    self.log.error("side process keeps failing", process=name, exit_code=code)
            if proc is not None and name not in self.side_restarts.due(now):
                continue
            self.sides[name] = self.spawn(name, command)
            self.side_restarts.started(name, now)

    def spawn(self, name: str, command: Command) -> Forked:
        """``python -m MODULE ARGS`` as a fork of this warm process (see spawn.py)."""
        module, args = command
        proc = fork_actor(name, module, args, close_fds=[self._lock_fd])
        self.census.started(name, time.monotonic(), time.time())
        self._publish_census()
        return proc

    def _died(self, name: str, code: int | None) -> None:
        """Note a death (or a stop the supervisor made) in the census, with its cause."""
        cause = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self.census.died(name, cause)
        self._publish_census()

    def _publish_census(self) -> None:
        """The census as the supervisor's metrics report, for the metrics process (a file:
        the supervisor holds no socket, so that its forks inherit none)."""
        tmp = self.config.census_path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(encode(self.census.report()))
            os.replace(tmp, self.config.census_path)
        except OSError as exc:
            self.log.warning("census not written", error=str(exc))

    def _kill_hung(self) -> None:
        """SIGKILL actors whose loop stopped turning; they are then restarted as dead ones."""
        now, wall = time.monotonic(), time.time()
        beats: dict[str, float] = {}
        for name in {*self.procs, *self.sides}:
            try:
                beats[name] = now - (wall - os.stat(self.config.heartbeat_path(name)).st_mtime)
            except OSError:
                continue
        killed = False
        for name in self.census.hung(now, beats):
            proc = self.procs.get(name) or self.sides.get(name)
            if proc is None or proc.poll() is not None:
                continue
            self.log.error("actor hung: no heartbeat, killing it", actor=name, after_s=HUNG_AFTER_S)
            self.census.died(name, f"hung (no heartbeat for {HUNG_AFTER_S:.0f} s)")
            proc.kill()
            killed = True
        if killed:
            self._publish_census()

    def stop_actors(self) -> None:
        _stop_all(self.procs, self.log)

    def stop_sides(self) -> None:
        _stop_all(self.sides, self.log)

    def dead_actor(self) -> tuple[str, int] | None:
        for actor, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                return actor, code
        return None

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED_SIGNALS)
        self.prepare()
        preload()
        self.log.info(
            "starting member",
            member_id=f"{self.config.member_id:x}",
            cluster_id=f"{self.config.cluster_id:x}",
            client_urls=self.config.advertise_client_urls,
            data_dir=self.config.data_dir,
        )
        if self.config.listen_events_urls and not self.config.key_file:
            self.log.warning(
                "the event stream is open: anyone reaching --listen-events-urls reads every key "
                "and value; give --key-file so that only hubs holding the members' key subscribe",
                urls=self.config.listen_events_urls,
            )
        try:
            listeners.check(self.config)
        except listeners.ListenerTaken as exc:
            self.log.error("member cannot start", error=str(exc))
            return 1
        quick_failures = 0
        try:
            while True:
                started = time.monotonic()
                self.start_actors()
                while True:  # until the node as a whole must start again
                    try:
                        self.start_sides()
                        stop = self._wait_for_event()
                    except SideFailed as exc:
                        self.log.error("member cannot start", error=str(exc))
                        return 1
                    if stop:
                        self.log.info("stopping member")
                        return 0
                    actor, code = self.dead_actor() or ("?", -1)
                    self._died(actor, code)
                    if code == EXIT_FATAL:
                        self.log.error(
                            "member cannot start: an actor failed in a way a restart cannot cure "
                            "(see its error above: unusable data, an address it cannot bind)",
                            actor=actor,
                        )
                        return 1
                    if not self._restart_set(actor, code):
                        break
                lived = time.monotonic() - started
                quick_failures = quick_failures + 1 if lived < STABLE_AFTER_S else 0
                self.log.warning(
                    "actor died, restarting node from disk",
                    actor=actor,
                    exit_code=code,
                    lived_s=round(lived, 2),
                    quick_failures=quick_failures,
                )
                for other in self.procs:
                    self.census.died(other, f"node restarted: {actor} died")
                self.stop_actors()
                if quick_failures >= MAX_QUICK_FAILURES:
                    self.log.error("actors keep failing at start, giving up", actor=actor)
                    return 1
                if quick_failures > 1:
                    self._sleep_or_stop(min(5.0, 0.2 * 2 ** (quick_failures - 2)))
        finally:
            self.stop_actors()
            self.stop_sides()

    def _restart_set(self, actor: str, code: int) -> bool:
        """Start a dead actor again with its ``RESTART_SET`` (the others of the set are stopped
        first), with a backoff when it dies quickly again; False when the whole node must
        restart instead: after ``ESCALATE_AFTER`` quick deaths in a row (then what it
        resyncs from may be what is wrong)."""
        now = time.monotonic()
        quick = self.census.lived(actor, now) < STABLE_AFTER_S
        deaths = self.quick_deaths.get(actor, 0) + 1 if quick else 1
        if deaths >= ESCALATE_AFTER:
            self.quick_deaths.pop(actor, None)
            self.log.warning("actor keeps dying when restarted", actor=actor, exit_code=code)
            return False
        self.quick_deaths[actor] = deaths
        restarted = [a for a in ACTORS if a in RESTART_SET[actor]]
        self.log.warning(
            "actor died, restarting it",
            actor=actor,
            exit_code=code,
            restarting=restarted,
            quick_failures=deaths,
        )
        siblings = {a: self.procs.pop(a) for a in restarted if a != actor}
        for sibling, proc in siblings.items():
            # No grace: a sibling keeps nothing a crash would lose (what it owns is durable
            # in the WAL or the backend, which it resyncs from), and a stop that flushes to
            # the dead actor only delays the restart.
            self.census.died(sibling, f"restarted with {actor}")
            proc.kill()
            proc.wait()
        if deaths > 1:
            self._sleep_or_stop(min(2.0, 0.2 * 2 ** (deaths - 2)))
        for name in restarted:
            self.procs[name] = self.spawn(name, self.actor_command(name))
        return True

    def _wait_for_event(self) -> bool:
        """Block until an actor dies (False) or we are asked to stop (True)."""
        while True:
            if self.dead_actor() is not None:
                return False
            self._kill_hung()
            self.start_sides()
            info = signal.sigtimedwait(WATCHED_SIGNALS, 1.0)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return True

    def _sleep_or_stop(self, seconds: float) -> None:
        info = signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, seconds)
        if info is not None:
            raise SystemExit(0)


def _stop_all(procs: dict[str, Forked], log: structlog.BoundLogger) -> None:
    """SIGTERM to each, then SIGKILL to whoever is still there after the grace period."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for actor, proc in procs.items():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("actor did not stop, killing", actor=actor, pid=proc.pid)
            proc.kill()
            proc.wait()
    procs.clear()
