"""The corruption checker's shell: asks its member and the peers for hashes, raises CORRUPT.

It talks to members as any client does (HashKV, MemberList, Status, Alarm on their client
ports), as etcd's checker uses its peers' HTTP endpoint; the judgement is in core.py. The
supervisor starts it next to the member when ``--experimental-initial-corrupt-check`` or
``--experimental-corrupt-check-time`` asks for a check, and restarts it alone if it dies
(it holds nothing a restart could lose).

- Initial: once the member answers, compare with every peer that has published its client
  URLs (waiting up to ``INITIAL_WAIT_S`` for peers that are down or behind, then judging with
  those that answered).
- Periodic: every ``--experimental-corrupt-check-time``, on the leader only.
An alarm already raised is not raised again.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from actors.corruption.core import HashAt, initial_mismatch, periodic_mismatch
from actors.runtime import curve
from actors.runtime.config import NodeConfig
from actors.runtime.loop import Loop
from etcdz.client import Client
from etcdz.errors import Compacted, EtcdzError
from proto_schemas.maintenance import AlarmType

CALL_TIMEOUT_S = 5.0
INITIAL_RETRY_S = 1.0
INITIAL_WAIT_S = 30.0


class CorruptionChecker:
    def __init__(self, config: NodeConfig, log: structlog.BoundLogger) -> None:
        self.config = config
        self.log = log
        self.own = Client([config.local_client_url], timeout=CALL_TIMEOUT_S)
        # Peers are reached on their client ports, as the node (see curve.node_token).
        self.options: dict[str, Any] = {
            "timeout": CALL_TIMEOUT_S,
            "server_key": config.key_file or None,
            "client_key": config.key_file or None,
            "token": curve.node_token(config.peer_curve()),
        }
        self.peers: dict[int, Client] = {}
        self.initial_due = config.initial_corrupt_check
        self.started = time.monotonic()

    # -- the checks ------------------------------------------------------------------------------
    def initial(self) -> None:
        if not self.initial_due:
            return
        try:
            own = self._own_hash(0)
            peers, missing = self._peer_hashes(own.revision)
        except EtcdzError:
            return  # the member is not serving yet
        if missing and time.monotonic() - self.started < INITIAL_WAIT_S:
            return
        self.initial_due = False
        suspect = initial_mismatch(own, peers)
        if suspect:
            self.log.error(
                "found data inconsistency with peers",
                revision=own.revision,
                hash=own.hash,
                peers_disagreeing=[f"{p:x}" for p in suspect],
            )
            self._raise([self.config.member_id])
        else:
            self.log.info(
                "initial corruption check passed",
                revision=own.revision,
                peers_compared=len(peers),
                peers_unchecked=[f"{p:x}" for p in missing],
            )

    def periodic(self) -> None:
        if self.initial_due:
            return
        try:
            if self.own.status().leader != self.config.member_id:
                return
            first = self._own_hash(0)
            peers, _ = self._peer_hashes(first.revision)
            second = self._own_hash(first.revision)
        except EtcdzError as exc:
            self.log.debug("corruption check skipped", error=str(exc))
            return
        corrupt = periodic_mismatch(first, peers, second)
        if corrupt:
            self.log.error(
                "found hash mismatch", revision=first.revision, corrupt=[f"{m:x}" for m in corrupt]
            )
            self._raise(corrupt)

    # -- talking to members ----------------------------------------------------------------------
    def _own_hash(self, revision: int) -> HashAt:
        resp = self.own.hash_kv(revision)
        revision = revision or resp.header.revision
        return HashAt(self.config.member_id, revision, resp.compact_revision, resp.hash)

    def _peer_hashes(self, revision: int) -> tuple[list[HashAt], list[int]]:
        """Every peer's hash at ``revision``; and the peers that could not give one yet (down,
        not published, or behind). A peer compacted past it cannot be compared and is neither."""
        hashes: list[HashAt] = []
        missing: list[int] = []
        for member in self.own.member_list().members:
            if member.id == self.config.member_id:
                continue
            if not member.client_urls:
                missing.append(member.id)
                continue
            client = self.peers.get(member.id)
            if client is None:
                client = self.peers[member.id] = Client(member.client_urls, **self.options)
            try:
                resp = client.hash_kv(revision)
            except Compacted:
                continue
            except EtcdzError:
                missing.append(member.id)
                continue
            hashes.append(HashAt(member.id, revision, resp.compact_revision, resp.hash))
        return hashes, missing

    def _raise(self, members: list[int]) -> None:
        try:
            raised = {(a.member_id, a.alarm) for a in self.own.alarms().alarms}
            for member_id in members:
                if (member_id, AlarmType.CORRUPT) not in raised:
                    self.own.alarm_raise(member_id, AlarmType.CORRUPT)
                    self.log.error("alarm raised", alarm="CORRUPT", member=f"{member_id:x}")
        except EtcdzError as exc:
            self.log.warning("could not raise the CORRUPT alarm, will try again", error=str(exc))
            if self.config.member_id in members:
                self.initial_due = True  # judged again at the next round


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    checker = CorruptionChecker(config, log)
    if config.initial_corrupt_check:
        loop.every(INITIAL_RETRY_S, checker.initial)
    if config.corrupt_check_ms > 0:
        loop.every(config.corrupt_check_ms / 1000, checker.periodic)
    return loop
