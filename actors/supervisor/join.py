"""``etcdz --join=URL,...``: a member adds itself to a running cluster, the scale-up path.

Before any actor starts, the supervisor asks the cluster (through the client URLs given, as any
client would) for its member list, then:
- with an empty data dir, adds itself as a learner that the leader promotes once caught up
  (``member add --learner``), naming itself and its ``--initial-cluster-token``: the cluster
  refuses a token other than its own and a name in use, and nothing changes. A member with our
  peer URLs that never started is ours from an earlier start that stopped before its data dir
  was written: it is taken, not added twice;
- with a data dir, checks that it belongs to this cluster and to a member still in it (a
  restart, e.g. after a crash during catch-up) and starts as it would without ``--join``.
Then the member starts as with ``--initial-cluster-state existing``: the leader brings it up to
date by log or snapshot.

A refusal that time cures is retried until ``JOIN_LIMIT_S``: another learner still catching up
(one learner at a time, so two members joining at once are added one after the other), a
membership change pending, no leader, a member unreachable.
"""

from __future__ import annotations

import dataclasses
import time

import structlog

from actors.runtime.config import NodeConfig
from etcdz import Client
from etcdz.errors import (
    EtcdzError,
    NoLeader,
    NotSupportedForLearner,
    RequestTimedOut,
    TooManyLearners,
    TooManyRequests,
    Unavailable,
)
from proto_schemas.cluster import Member

JOIN_LIMIT_S = 300.0  # a learner catching up holds the next joiner back: give it time
RETRY_S = 1.0
_RETRIED = (NoLeader, NotSupportedForLearner, RequestTimedOut, TooManyLearners, TooManyRequests, Unavailable)


class JoinRefused(RuntimeError):
    """The cluster will not have this member as it is started (nothing was changed)."""


def join(config: NodeConfig, recorded: tuple[int, int] | None, log: structlog.BoundLogger) -> NodeConfig:
    urls = ",".join(config.join)
    client = Client(config.join, timeout=5.0)
    deadline = time.monotonic() + JOIN_LIMIT_S
    try:
        while True:
            try:
                return _join_once(config, client, recorded, log)
            except _RETRIED as exc:
                if time.monotonic() > deadline:
                    raise JoinRefused(f"cannot join the cluster at {urls}: {exc}") from None
                log.info("join waiting", cluster=urls, reason=str(exc))
                time.sleep(RETRY_S)
            except EtcdzError as exc:
                raise JoinRefused(f"the cluster at {urls} refused this member: {exc}") from None
    finally:
        client.close()


def _join_once(
    config: NodeConfig, client: Client, recorded: tuple[int, int] | None, log: structlog.BoundLogger
) -> NodeConfig:
    listed = client.member_list()
    cluster_id, members = listed.header.cluster_id, listed.members
    if recorded is not None:
        member_id, recorded_cluster = recorded
        if recorded_cluster != cluster_id:
            raise JoinRefused(
                f"the data dir {config.data_dir} belongs to cluster {recorded_cluster:x}, not to "
                f"cluster {cluster_id:x} at {','.join(config.join)}: join with an empty data dir"
            )
        if member_id not in {m.id for m in members}:
            raise JoinRefused(
                f"member {member_id:x} of the data dir {config.data_dir} is no longer in cluster "
                f"{cluster_id:x} (removed): join again with an empty data dir"
            )
        return _joined(config, member_id, cluster_id, members)
    mine = sorted(config.initial_advertise_peer_urls)
    ours = next((m for m in members if sorted(m.peer_urls) == mine), None)
    if ours is not None and ours.name:
        raise JoinRefused(
            f"member {ours.id:x} ({ours.name}) already runs with peer URLs {','.join(mine)}"
            + (
                ": its data dir was lost; remove it (etcdzctl member remove) and join again"
                if ours.name == config.name
                else ""
            )
        )
    if ours is None:
        added = client.member_add(
            mine,
            is_learner=True,
            auto_promote=True,
            name=config.name,
            cluster_token=config.initial_cluster_token,
        )
        ours, cluster_id, members = added.member, added.header.cluster_id, added.members
        log.info("joined as a learner", member=f"{ours.id:x}", cluster=f"{cluster_id:x}")
    return _joined(config, ours.id, cluster_id, members)


def _joined(config: NodeConfig, member_id: int, cluster_id: int, members: list[Member]) -> NodeConfig:
    """The config of a member of an existing cluster: its ids, and every member's peer URLs to
    connect to (a member that has not started yet has no name: its id stands in)."""
    cluster = {(m.name or f"{m.id:x}"): list(m.peer_urls) for m in members if m.id != member_id}
    cluster[config.name] = list(config.initial_advertise_peer_urls)
    return dataclasses.replace(
        config,
        member_id=member_id,
        cluster_id=cluster_id,
        initial_cluster=cluster,
        initial_cluster_state="existing",
    )
