"""Start and stop a local etcdz deployment on loopback: ``python -m tools.cluster up --members 3
--watch-hubs 2``; ``python -m tools.cluster compose`` prints the same deployment as the
docker-compose file (deploy/docker-compose.yml), ``python -m tools.cluster kubernetes`` as
Kubernetes manifests (deploy/kubernetes/etcdz.yaml).

Used by ``make run`` and by the process tests, so what a developer runs by hand is what the tests
run and what the compose file declares. Services get counted ports (service i's client port at
``base + 10*i``, its other ports next to it) or, in tests, free ports drawn from the OS; they are
stopped by pid.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import zmq

from actors.runtime.config import member_id_for, socket_dir_for
from actors.runtime.loop import send
from actors.wal.replay import read_identity
from etcdz import Client
from etcdz.errors import EtcdzError, PermissionDenied, UserEmpty
from proto_schemas.cluster import PeerFaults
from proto_schemas.watch import WatchHubsRequest
from tools import topology
from tools.workload import took_effect, wait_until


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (held open together so none is drawn twice), drawn
    below the kernel's ephemeral range: a port the kernel hands out for port 0 is also what it
    gives the next outgoing connection, which could take it before the member binds it."""
    low = _ephemeral_low()
    socks: list[socket.socket] = []
    try:
        for _ in range(50 * n):
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", random.randrange(max(1024, low - 12_000), low)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        while len(socks) < n:  # a crowded range: what the kernel gives
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _log_tail(s: Service, lines: int = 15) -> str:
    """The end of a service's log, for an error raised about it: the log itself is often in a
    temporary directory that is gone by the time anyone reads the error."""
    try:
        with open(s.log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            tail = f.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return f"log: {s.log_path}"
    return f"log: {s.log_path}, ending:\n" + "\n".join(tail)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


@dataclass
class Service:
    """One process of the cluster on loopback, configured by its service's ``ETCDZ_*``
    environment (see tools.topology); ``extra_args`` are flags a test adds, which win."""

    name: str
    env: dict[str, str]
    command: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def actor_pids(self) -> dict[str, int]:
        """The member's actor processes by actor name (read from /proc, Linux only)."""
        pids: dict[str, int] = {}
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children", encoding="ascii") as f:
                children = [int(p) for p in f.read().split()]
        except OSError:
            return pids
        for child in children:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[0].startswith(b"etcdz "):  # a forked actor's title: "etcdz NAME ARGS"
                pids[argv[0].split()[1].decode()] = child
                continue
            for i, arg in enumerate(argv):
                if arg == b"-m" and i + 1 < len(argv) and argv[i + 1].startswith(b"actors."):
                    name = argv[i + 1].decode()[len("actors.") :]
                    if b"--index" in argv:  # a watch hub: watch0, watch1, ...
                        name += argv[argv.index(b"--index") + 1].decode()
                    pids[name] = child
        return pids

    def _first(self, variable: str) -> str:
        return self.env.get(variable, "").split(",")[0]


@dataclass
class Member(Service):
    client_options: dict[str, Any] = field(default_factory=dict)  # Curve keys, credentials

    @property
    def data_dir(self) -> str:
        return self.env["ETCDZ_DATA_DIR"]

    @property
    def client_url(self) -> str:
        return self._first("ETCDZ_ADVERTISE_CLIENT_URLS")

    @property
    def peer_url(self) -> str:
        return self._first("ETCDZ_INITIAL_ADVERTISE_PEER_URLS")

    @property
    def watch_url(self) -> str:
        return self._first("ETCDZ_ADVERTISE_WATCH_URLS")

    @property
    def events_url(self) -> str:
        return self._first("ETCDZ_ADVERTISE_EVENTS_URLS")

    @property
    def metrics_url(self) -> str:
        return self._first("ETCDZ_LISTEN_METRICS_URLS")

    @property
    def grpc_url(self) -> str:
        """Where etcdctl and etcd's client libraries reach this member ("" without the door)."""
        return self._first("ETCDZ_ADVERTISE_GRPC_URLS")

    @property
    def member_id(self) -> int:
        """The id the member runs with (as its WAL records it; ``member add`` chose it for a
        member that joined later)."""
        recorded = read_identity(os.path.join(self.data_dir, "member", "wal"))
        if recorded is not None:
            return recorded[0]
        return member_id_for(self.name, [self.peer_url], self.env["ETCDZ_INITIAL_CLUSTER_TOKEN"])

    def inject(self, faults: PeerFaults) -> None:
        """Hand the member's raft core a fault-injection message (through its own inbox)."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.setsockopt(zmq.SNDTIMEO, 2000)
        try:
            sock.connect(f"ipc://{os.path.join(socket_dir_for(self.data_dir), 'raft')}.sock")
            send(sock, faults)
        finally:
            sock.close()

    def client(self, timeout: float = 2.0) -> Client:
        """A client of this member alone."""
        return Client([self.client_url], timeout=timeout, **self.client_options)


@dataclass
class Hub(Service):
    """A watch hub run as a service of its own (``etcdz watch-hub``)."""

    @property
    def watch_url(self) -> str:
        return self._first("ETCDZ_LISTEN_WATCH_URLS")


class LocalCluster:
    """The services of a compose document (tools.topology) as processes on loopback: members
    on fixed ports counted from ``base_port``, or on ports drawn from the OS."""

    def __init__(
        self,
        root: str,
        members: int = 1,
        *,
        watch_hubs: int = 0,
        member_hubs: int = 1,
        metrics: bool = False,
        grpc: bool = False,
        doc: dict[str, Any] | None = None,
        base_port: int | None = None,
        extra_args: list[str] | None = None,
        log_format: str = "json",
        client_options: dict[str, Any] | None = None,
    ) -> None:
        """``doc`` (a compose document) or else the one rendered for ``members`` members
        running ``member_hubs`` hubs each and a hub service of ``watch_hubs`` replicas.
        ``client_options``: what every client this launcher makes takes (Curve keys...)."""
        self.root = root
        self.client_options = dict(client_options or {})
        self.base_port = base_port
        logs = ["--log-format", log_format]
        self.extra_args = [*logs, *(extra_args or [])]  # for members
        self.doc = doc or topology.compose(
            members, watch_hubs, member_hubs=member_hubs, metrics=metrics, grpc=grpc
        )
        self._ports: dict[tuple[str, int], int] = {}
        self._order = [instance for instance, _ in topology.instances(self.doc)]
        self.members: list[Member] = []
        self.hubs: list[Hub] = []
        for run in topology.on_loopback(self.doc, root, self._port):
            if run.command[:1] == ["watch-hub"]:
                self.hubs.append(Hub(run.instance, run.env, run.command, logs))
            else:
                self.members.append(self._member(run))

    def _member(self, run: topology.Process) -> Member:
        return Member(
            run.instance, run.env, run.command, [*self.extra_args], client_options=self.client_options
        )

    def _port(self, instance: str, container_port: int) -> int:
        """The loopback port of ``instance``'s ``container_port``: counted (instance i at
        ``base_port + 10*i``, the container port's offset from 2379 added) or drawn."""
        if instance not in self._order:
            self._order.append(instance)
        key = (instance, container_port)
        if key not in self._ports:
            if self.base_port:
                offset = container_port - topology.CLIENT
                self._ports[key] = self.base_port + 10 * self._order.index(instance) + offset
            else:
                taken = set(self._ports.values())
                self._ports[key] = next(p for p in iter(free_port, None) if p not in taken)
        return self._ports[key]

    def add_member(self, learner: bool = False, *, auto_promote: bool = True, join: bool = False) -> Member:
        """``member add`` a new member, then start it to join (``--initial-cluster-state
        existing``), or (``join``) start it with ``--join`` naming the running members, so that
        it adds itself as a learner; returns it once it runs (it may still be catching up)."""
        name = topology.member_name(len(self.members))
        spec = topology.member(
            name,
            topology.initial_cluster([*(m.name for m in self.members), name]),
            hubs=int(self.members[0].env["ETCDZ_WATCH_HUBS"]),
            metrics=bool(self.members[0].metrics_url),
            grpc=bool(self.members[0].grpc_url),
            state="existing",
            join=",".join(f"tcp://{m.name}:{topology.CLIENT}" for m in self.running()) if join else "",
        )
        (run,) = topology.on_loopback({"services": {name: spec}}, self.root, self._port)
        member = self._member(run)
        if not join:
            with self.client() as c:
                wait_until(
                    lambda: took_effect(
                        lambda: c.member_add(
                            [member.peer_url], is_learner=learner, auto_promote=auto_promote
                        ),
                        lambda: any(member.peer_url in m.peer_urls for m in c.member_list().members),
                    ),
                    timeout=30,
                    what="member add",
                )
        self.members.append(member)
        self.start(member)
        return member

    def find(self, member_id: int) -> Member:
        for m in self.members:
            if m.member_id == member_id:
                return m
        raise KeyError(f"{member_id:x}")

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def running(self) -> list[Member]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def watch_urls(self) -> list[str]:
        """Every watch hub: the members' own, then the hub services'."""
        return [m.watch_url for m in self.members if m.watch_url] + [h.watch_url for h in self.hubs]

    def services(self, one: Service | None = None) -> list[Service]:
        return [one] if one else [*self.members, *self.hubs]

    def start(self, service: Service | None = None, *, logs_to_files: bool = True) -> None:
        """Start the given service, or all of them (``etcdz`` with its environment)."""
        os.makedirs(self.root, exist_ok=True)
        for s in self.services(service):
            stderr = None
            if logs_to_files:
                s.log_path = os.path.join(self.root, f"{s.name}.log")
                stderr = open(s.log_path, "ab")  # noqa: SIM115 (owned by the child)
            s.proc = subprocess.Popen(
                [sys.executable, "-m", "actors.supervisor", *s.command, *s.extra_args],
                env={**os.environ, **s.env},
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
            if stderr is not None:
                stderr.close()

    def wait_ready(self, timeout: float = 20.0, member: Member | None = None) -> None:
        """Until every (or the given) member reports a leader and answers a read, and the
        members know every hub service."""
        deadline = time.monotonic() + timeout

        def waiting(s: Service, what: str) -> None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{s.name} not {what} after {timeout}s; {_log_tail(s)}")
            if s.proc is not None and s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited with {s.proc.returncode}; {_log_tail(s)}")
            time.sleep(0.1)

        for m in [member] if member else self.members:
            own_hubs = int(m.env.get("ETCDZ_WATCH_HUBS", "0") or 0)
            with m.client(timeout=1.0) as c:
                while True:
                    try:
                        if c.status().leader:
                            c.get("health")
                            break
                    except (UserEmpty, PermissionDenied):
                        break  # auth is enabled: the gateway answered, with a leader behind it
                    except EtcdzError:
                        pass
                    waiting(m, "ready")
                while own_hubs:  # and its own hubs have bound and announced themselves
                    try:
                        if len(c.call(WatchHubsRequest()).urls) >= own_hubs:
                            break
                    except EtcdzError:
                        pass
                    waiting(m, "announcing its watch hubs")
        for h in [] if member else self.hubs:
            with self.client(timeout=1.0) as c:
                while True:
                    try:
                        if h.watch_url in c.watch_hubs():
                            break
                    except EtcdzError:
                        pass
                    waiting(h, "announced")

    def stop(self, service: Service | None = None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        for s in reversed(self.services(service)):
            if s.proc is None or s.proc.poll() is not None:
                continue
            actors = s.actor_pids()
            s.proc.send_signal(sig)
            try:
                s.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
            for pid in actors.values():  # after SIGKILL of the supervisor its actors remain
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def kill(self, member: Member) -> None:
        """kill -9 of the supervisor and every actor of the member: a whole-node crash."""
        actors = member.actor_pids()
        os.kill(member.pid, signal.SIGKILL)
        for pid in actors.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert member.proc is not None
        member.proc.wait()

    def partition(self, *groups: list[Member]) -> None:
        """Cut the network between the groups (a member in no group keeps all its links)."""
        for group in groups:
            others = [m.member_id for g in groups if g is not group for m in g]
            for m in group:
                m.inject(PeerFaults(blocked=others))

    def heal(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.inject(PeerFaults(blocked=[]))

    def leader(self, timeout: float = 10.0) -> Member:
        """The member that reports itself leader (all running members agreeing on it)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = set()
            for m in self.members:
                if m.proc is None or m.proc.poll() is not None:
                    continue
                try:
                    with m.client(timeout=1.0) as c:
                        seen.add(c.status().leader)
                except EtcdzError:
                    seen.add(0)
            if len(seen) == 1 and 0 not in seen:
                (lead,) = seen
                for m in self.members:
                    if m.member_id == lead:
                        return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"no agreed leader after {timeout}s (saw {seen})")
            time.sleep(0.1)

    def client(self, timeout: float = 7.0) -> Client:
        return Client(self.endpoints, timeout=timeout, **self.client_options)

    @staticmethod
    def hashes_agree(members: list[Member]) -> bool:
        """HashKV at one revision is equal on every given member (same applied history)."""
        with members[0].client() as c:
            rev = c.get("/none").header.revision
        seen = set()
        for m in members:
            with m.client() as c:
                c.get("/none")  # linearizable: this member has applied what the leader committed
                seen.add(c.hash_kv(rev).hash)
        return len(seen) == 1


@contextmanager
def running(root: str, members: int = 1, **options: Any) -> Iterator[LocalCluster]:
    """A started cluster that answers, stopped (by pid) when the block ends."""
    cluster = LocalCluster(root, members, **options)
    cluster.start()
    try:
        cluster.wait_ready(timeout=30)
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the deployment's services on loopback and wait for Ctrl-C")
    compose = sub.add_parser("compose", help="print the deployment as a docker-compose file")
    kube = sub.add_parser("kubernetes", help="print the deployment as Kubernetes manifests")
    for p in (up, compose, kube):
        p.add_argument("--members", type=int, default=3)
        p.add_argument("--watch-hubs", type=int, default=2, help="replicas of the watch hub service")
    up.add_argument("--base-port", type=int, default=2379)
    up.add_argument("--data-dir", default="data")
    up.add_argument("--log-format", default="console")
    args = parser.parse_args(argv)
    if args.command == "compose":
        sys.stdout.write(topology.render(topology.compose(args.members, args.watch_hubs)))
        return 0
    if args.command == "kubernetes":
        from tools import kubernetes

        sys.stdout.write(kubernetes.render(kubernetes.manifests(args.members, args.watch_hubs)))
        return 0
    cluster = LocalCluster(
        os.path.abspath(args.data_dir),
        args.members,
        watch_hubs=args.watch_hubs,
        member_hubs=0 if args.watch_hubs else 1,
        metrics=True,
        grpc=True,
        base_port=args.base_port,
        log_format=args.log_format,
    )
    cluster.start(logs_to_files=True)
    try:
        cluster.wait_ready(timeout=30)
        sys.stdout.write(
            f"etcdz: {args.members} member(s) and {len(cluster.hubs)} watch hub(s) ready; "
            f"logs in {cluster.root}/<name>.log\n"
            f"endpoints: {','.join(cluster.endpoints)}\n"
            f"watch hubs: {','.join(cluster.watch_urls)}\n"
            f"metrics: {','.join(m.metrics_url + '/metrics' for m in cluster.members)}\n"
            f"gRPC (etcdctl, etcd clients): {','.join(m.grpc_url for m in cluster.members)}\n"
            f"try: .venv/bin/etcdzctl --endpoints {cluster.endpoints[0]} put greeting hello\n"
        )
        sys.stdout.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
