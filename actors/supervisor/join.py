"""``etcdz --join=URL,...``: a member adds itself to a running cluster, the scale-up path.

Before any actor starts, the supervisor asks the cluster (through the client URLs given, as any
client would) for its leader and member list, then:
- with an empty data dir, adds itself as a learner that the leader promotes once caught up
  (``member add --learner``), naming itself and its ``--initial-cluster-token``: the cluster
  refuses a token other than its own and a name in use, and nothing changes. A member with our
  peer URLs that never started is ours (an earlier start that stopped before its data dir was
  written, or an initial member starting late): it is taken, not added twice;
- with a data dir (a restart, e.g. after a crash during catch-up), checks that it belongs to
  this cluster and to a member still in it; when no member answers (the whole cluster
  restarting) the data dir is trusted, as without ``--join``;
- named in ``--initial-cluster`` (a StatefulSet's first replicas, all started alike) with an
  empty data dir: if no member with a leader answers, bootstraps that cluster as usual.
Then the member starts as with ``--initial-cluster-state existing``: the leader brings it up to
date by log or snapshot.

A refusal that time cures is retried until ``JOIN_LIMIT_S``: another learner still catching up
(one learner at a time, so two members joining at once are added one after the other), a
membership change pending, no leader, no member reachable.
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
    client = Client(config.join, timeout=3.0)
    try:
        if recorded is not None or config.join_may_bootstrap:
            try:
                found = _cluster(client)
            except _RETRIED:
                found = None
            if recorded is not None:
                return _restarted(config, recorded, found, log)
            if found is None:
                log.info("no member with a leader answers: bootstrapping the initial cluster", cluster=urls)
                return dataclasses.replace(config, join=[])
        deadline = time.monotonic() + JOIN_LIMIT_S
        while True:
            try:
                return _add(config, client, log)
            except _RETRIED as exc:
                if time.monotonic() > deadline:
                    raise JoinRefused(f"cannot join the cluster at {urls}: {exc}") from None
                log.info("join waiting", cluster=urls, reason=str(exc))
                time.sleep(RETRY_S)
            except EtcdzError as exc:
                raise JoinRefused(f"the cluster at {urls} refused this member: {exc}") from None
    finally:
        client.close()


def _cluster(client: Client) -> tuple[int, list[Member]] | None:
    """The cluster's id and members, as a member that has a leader knows them (None: the
    member answering has none, e.g. the cluster is starting)."""
    if not client.status().leader:
        return None
    listed = client.member_list()
    return listed.header.cluster_id, listed.members


def _restarted(
    config: NodeConfig,
    recorded: tuple[int, int],
    found: tuple[int, list[Member]] | None,
    log: structlog.BoundLogger,
) -> NodeConfig:
    member_id, recorded_cluster = recorded
    if found is None:
        log.info("no member with a leader answers: starting from the data dir", cluster=",".join(config.join))
    else:
        cluster_id, members = found
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
    return dataclasses.replace(config, member_id=member_id, cluster_id=recorded_cluster)


def _add(config: NodeConfig, client: Client, log: structlog.BoundLogger) -> NodeConfig:
    found = _cluster(client)
    if found is None:
        raise NoLeader("the member answering has no leader")
    cluster_id, members = found
    mine = sorted(config.initial_advertise_peer_urls)
    ours = next((m for m in members if sorted(m.peer_urls) == mine), None)
    if ours is not None and ours.name:
        lost = ": its data dir was lost; remove it (etcdzctl member remove) and join again"
        raise JoinRefused(
            f"member {ours.id:x} ({ours.name}) already runs with peer URLs {','.join(mine)}"
            + (lost if ours.name == config.name else "")
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
