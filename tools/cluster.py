"""Start and stop local etcdz members on loopback: ``python -m tools.cluster up --members 3``.

Used by ``make run`` and by the process tests, so what a developer runs by hand is what the tests
run. Members get consecutive ports (client ``base + 10*i``, peer ``base + 10*i + 1``) or, in
tests, free ports picked by the OS; they are stopped by pid.
"""

from __future__ import annotations

import argparse
import os
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
from actors.wal.files import read_identity
from etcdz import Client
from etcdz.errors import EtcdzError
from proto_schemas.cluster import PeerFaults

TOKEN = "etcd-cluster"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now (held open together so none is drawn twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    name: str
    data_dir: str
    client_url: str
    peer_url: str
    watch_url: str = ""
    events_url: str = ""
    metrics_url: str = ""  # http://, when the cluster serves metrics
    extra_args: list[str] = field(default_factory=list)
    state: str = "new"  # --initial-cluster-state: "existing" for a member added later
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""

    def args(self, initial_cluster: str) -> list[str]:
        return [
            "--name",
            self.name,
            "--data-dir",
            self.data_dir,
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            self.state,
            *(["--listen-watch-urls", self.watch_url] if self.watch_url else []),
            *(["--listen-events-urls", self.events_url] if self.events_url else []),
            *(["--listen-metrics-urls", self.metrics_url] if self.metrics_url else []),
            *self.extra_args,
        ]

    @property
    def member_id(self) -> int:
        """The id the member runs with (as its WAL records it; ``member add`` chose it for a
        member that joined later)."""
        recorded = read_identity(os.path.join(self.data_dir, "member", "wal"))
        if recorded is not None:
            return recorded[0]
        return member_id_for(self.name, [self.peer_url], TOKEN)

    def inject(self, faults: PeerFaults) -> None:
        """Hand the member's raft core a fault-injection message (through its own inbox)."""
        ctx = zmq.Context.instance()
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
        return Client([self.client_url], timeout=timeout)

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
            for i, arg in enumerate(argv):
                if arg == b"-m" and i + 1 < len(argv) and argv[i + 1].startswith(b"actors."):
                    name = argv[i + 1].decode()[len("actors.") :]
                    if b"--index" in argv:  # a watch hub: watch0, watch1, ...
                        name += argv[argv.index(b"--index") + 1].decode()
                    pids[name] = child
        return pids


class LocalCluster:
    def __init__(
        self,
        root: str,
        members: int = 1,
        *,
        base_port: int | None = None,
        extra_args: list[str] | None = None,
        log_format: str = "json",
        metrics: bool = False,
    ) -> None:
        self.root = root
        self.base_port = base_port
        self.metrics = metrics
        self.extra_args = ["--log-format", log_format, *(extra_args or [])]
        self.members: list[Member] = []
        for _ in range(members):
            self.members.append(self._new_member())

    def _new_member(self, state: str = "new") -> Member:
        i = len(self.members)
        # client, peer, watch hub, event stream, metrics: base+10i .. base+10i+4 (or free ports)
        client, peer, watch, events, metrics = (
            [self.base_port + 10 * i + k for k in range(5)] if self.base_port else free_ports(5)
        )
        return Member(
            name=f"m{i + 1}",
            data_dir=os.path.join(self.root, f"m{i + 1}"),
            client_url=f"tcp://127.0.0.1:{client}",
            peer_url=f"tcp://127.0.0.1:{peer}",
            watch_url=f"tcp://127.0.0.1:{watch}",
            events_url=f"tcp://127.0.0.1:{events}",
            metrics_url=f"http://127.0.0.1:{metrics}" if self.metrics else "",
            extra_args=list(self.extra_args),
            state=state,
        )

    def add_member(self, learner: bool = False) -> Member:
        """``member add`` a new member, then start it to join (``--initial-cluster-state
        existing``); returns it once it runs (it may still be catching up)."""
        member = self._new_member(state="existing")
        with self.client() as c:
            c.member_add([member.peer_url], is_learner=learner)
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
        return [m.watch_url for m in self.members]

    def start(self, member: Member | None = None, *, logs_to_files: bool = True) -> None:
        for m in [member] if member else self.members:
            os.makedirs(self.root, exist_ok=True)
            stderr = None
            if logs_to_files:
                m.log_path = os.path.join(self.root, f"{m.name}.log")
                stderr = open(m.log_path, "ab")  # noqa: SIM115 (owned by the child)
            m.proc = subprocess.Popen(
                [sys.executable, "-m", "actors.supervisor", *m.args(self.initial_cluster)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
            if stderr is not None:
                stderr.close()

    def wait_ready(self, timeout: float = 20.0, member: Member | None = None) -> None:
        """Until every (or the given) member reports a leader and answers a read."""
        deadline = time.monotonic() + timeout
        for m in [member] if member else self.members:
            with Client([m.client_url], timeout=1.0) as c:
                while True:
                    try:
                        if c.status().leader:
                            c.get("health")
                            break
                    except EtcdzError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{m.name} not ready after {timeout}s; log: {m.log_path}")
                    if m.proc is not None and m.proc.poll() is not None:
                        raise RuntimeError(f"{m.name} exited with {m.proc.returncode}; log: {m.log_path}")
                    time.sleep(0.1)

    def stop(self, member: Member | None = None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        for m in [member] if member else self.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            actors = m.actor_pids()
            m.proc.send_signal(sig)
            try:
                m.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()
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
                    with Client([m.client_url], timeout=1.0) as c:
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
        return Client(self.endpoints, timeout=timeout)

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
    up = sub.add_parser("up", help="start a local cluster and wait for Ctrl-C")
    up.add_argument("--members", type=int, default=3)
    up.add_argument("--base-port", type=int, default=2379)
    up.add_argument("--data-dir", default="data")
    up.add_argument("--log-format", default="console")
    args = parser.parse_args(argv)
    cluster = LocalCluster(
        os.path.abspath(args.data_dir),
        args.members,
        base_port=args.base_port,
        log_format=args.log_format,
        metrics=True,
    )
    cluster.start(logs_to_files=True)
    try:
        cluster.wait_ready(timeout=30)
        sys.stdout.write(
            f"etcdz: {args.members} member(s) ready; logs in {cluster.root}/<name>.log\n"
            f"endpoints: {','.join(cluster.endpoints)}\n"
            f"metrics: {','.join(m.metrics_url + '/metrics' for m in cluster.members)}\n"
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
