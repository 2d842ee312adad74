"""A real etcd cluster (the ``etcd`` binary, 3.4) on 127.0.0.1 with free ports: the reference
that the conformance tests and the benchmark comparison run against.

Members are named ``e0``..``eN-1``; each gets a client and a peer port and its own data dir
under ``data_dir``. ``start`` waits until every member answers ``/health`` through its JSON
gateway; ``stop`` terminates the processes it started (by pid) and waits for them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

from tools.cluster import free_port

ETCD = shutil.which("etcd")
READY_TIMEOUT_S = 30.0
POLL_S = 0.2


class EtcdCluster:
    def __init__(self, data_dir: str, members: int = 1, etcd: str | None = ETCD) -> None:
        if not etcd:
            raise FileNotFoundError("etcd is not installed (Debian: apt-get install etcd-server)")
        self.etcd = etcd
        self.data_dir = data_dir
        ports = [(free_port(), free_port()) for _ in range(members)]
        self.client_urls = [f"http://127.0.0.1:{c}" for c, _ in ports]
        self.peer_urls = [f"http://127.0.0.1:{p}" for _, p in ports]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def endpoints(self) -> str:
        return ",".join(self.client_urls)

    def _argv(self, i: int) -> list[str]:
        initial = ",".join(f"e{j}={url}" for j, url in enumerate(self.peer_urls))
        return [
            self.etcd,
            "--name", f"e{i}",
            "--data-dir", os.path.join(self.data_dir, f"e{i}"),
            "--listen-client-urls", self.client_urls[i],
            "--advertise-client-urls", self.client_urls[i],
            "--listen-peer-urls", self.peer_urls[i],
            "--initial-advertise-peer-urls", self.peer_urls[i],
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
        ]  # fmt: skip

    def start(self) -> EtcdCluster:
        os.makedirs(self.data_dir, exist_ok=True)
        for i in range(len(self.client_urls)):
            log = open(os.path.join(self.data_dir, f"e{i}.log"), "wb")  # noqa: SIM115 - the child keeps it
            self.procs.append(subprocess.Popen(self._argv(i), stdout=log, stderr=subprocess.STDOUT))
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(_healthy(url) for url in self.client_urls):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"etcd did not become healthy (logs in {self.data_dir})")
            time.sleep(POLL_S)
        return self

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.procs = []

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
            return bool(json.loads(r.read()).get("health") == "true")
    except (OSError, ValueError):
        return False
