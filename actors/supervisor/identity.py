"""Which member this is, and of which cluster, decided once before any actor starts.

- A data dir with a WAL: the ids the WAL recorded (as etcd, a restarted member ignores the
  ``--initial-cluster*`` flags).
- A new cluster: ids derived from the flags (``member_id_for``/``cluster_id_for``), equal on
  every member.
- Joining an existing cluster (``--initial-cluster-state existing``) with an empty data dir:
  ``member add`` chose the id, so ask the members named by ``--initial-cluster`` which member
  has our peer URLs (a ``JoinQuery`` on their peer port).
- ``--join``: the member adds itself, or checks that its data dir is of that cluster (join.py).
"""

from __future__ import annotations

import dataclasses
import time

import structlog
import zmq

from actors.runtime import curve
from actors.runtime.config import NodeConfig
from actors.runtime.curve import Curve
from actors.wal.replay import read_identity
from proto_schemas.cluster import JoinInfo, JoinQuery
from proto_schemas.codec import DecodeError, decode, encode

ASK_TIMEOUT_S = 1.0
DISCOVERY_LIMIT_S = 30.0


class JoinError(RuntimeError):
    pass


def resolve_identity(config: NodeConfig, log: structlog.BoundLogger) -> NodeConfig:
    recorded = read_identity(config.wal_dir)
    if config.join:
        from actors.supervisor.join import JoinRefused, join

        try:
            return join(config, recorded, log)
        except JoinRefused as exc:
            raise JoinError(str(exc)) from None
    if recorded is not None:
        member_id, cluster_id = recorded
    elif config.initial_cluster_state == "existing":
        member_id, cluster_id = discover(config)
    else:
        return config
    return dataclasses.replace(config, member_id=member_id, cluster_id=cluster_id)


def discover(config: NodeConfig) -> tuple[int, int]:
    mine = set(config.initial_advertise_peer_urls)
    others = [u for urls in config.initial_cluster.values() for u in urls if u not in mine]
    if not others:
        raise JoinError("--initial-cluster-state existing needs the existing members in --initial-cluster")
    # A context of its own, closed before the supervisor forks its actors (see spawn.py).
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    deadline = time.monotonic() + DISCOVERY_LIMIT_S
    last_error = "no member answered"
    try:
        while time.monotonic() < deadline:
            for url in others:
                info = _ask(ctx, url, config.initial_advertise_peer_urls, config.peer_curve())
                if info is None:
                    continue
                if info.error:
                    last_error = info.error
                    continue
                return info.member_id, info.cluster_id
            time.sleep(0.5)
    finally:
        ctx.term()
    raise JoinError(f"cannot join the cluster at {','.join(others)}: {last_error}")


def _ask(
    ctx: zmq.Context[zmq.Socket[bytes]], url: str, peer_urls: list[str], peer_curve: Curve | None
) -> JoinInfo | None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    curve.connect_as(sock, peer_curve)
    try:
        sock.connect(url)
        sock.send(encode(JoinQuery(peer_urls=list(peer_urls))))
        if not sock.poll(int(ASK_TIMEOUT_S * 1000)):
            return None
        try:
            return decode(sock.recv(), expect=JoinInfo)
        except DecodeError:
            return None
    finally:
        sock.close()
