"""The corruption checker's shell: asks its member and the peers for hashes, raises CORRUPT.

It asks its own member as a local client does (HashKV, MemberList, Status, Alarm, on the
node's private socket), and the other members on their peer ports (``HashQuery``, as etcd's
checker uses its peers' peer HTTP endpoint): a member-to-member call travels on the peer mesh,
under its Curve keys when they are set, and never needs a credential on a client port. The
judgement is in core.py. The supervisor starts it next to the member when
``--experimental-initial-corrupt-check`` or ``--experimental-corrupt-check-time`` asks for a
check, and restarts it alone if it dies (it holds nothing a restart could lose).

- Initial: once the member answers, compare with every peer (waiting up to ``INITIAL_WAIT_S``
  for peers that are down or behind, then judging with those that answered).
- Periodic: every ``--experimental-corrupt-check-time``, on the leader only.
An alarm already raised is not raised again.
"""

from __future__ import annotations

import itertools
import time

import structlog
import zmq

from actors.corruption.core import HashAt, initial_mismatch, periodic_mismatch
from actors.runtime import curve
from actors.runtime.config import NodeConfig
from actors.runtime.loop import Loop
from etcdz.client import Client
from etcdz.errors import Compacted, EtcdzError, from_response
from proto_schemas.cluster import HashAnswer, HashQuery
from proto_schemas.codec import DecodeError, decode, encode
from proto_schemas.errors import ErrorResponse
from proto_schemas.kv import HashKVResponse
from proto_schemas.maintenance import AlarmType

CALL_TIMEOUT_S = 5.0
INITIAL_RETRY_S = 1.0
INITIAL_WAIT_S = 30.0


class CorruptionChecker:
    def __init__(
        self, config: NodeConfig, log: structlog.BoundLogger, ctx: zmq.Context[zmq.Socket[bytes]]
    ) -> None:
        self.config = config
        self.log = log
        self.own = Client([config.local_client_url], timeout=CALL_TIMEOUT_S)
        self.ctx = ctx
        self.peer_curve = config.peer_curve()
        self.peers: dict[int, tuple[list[str], zmq.Socket[bytes]]] = {}  # member -> (peer URLs, socket)
        self._query_ids = itertools.count(1)
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
        not started, or behind). A peer compacted past it cannot be compared and is neither."""
        hashes: list[HashAt] = []
        missing: list[int] = []
        members = [m for m in self.own.member_list().members if m.id != self.config.member_id]
        for member_id in set(self.peers) - {m.id for m in members}:
            self.peers.pop(member_id)[1].close(linger=0)
        for member in members:
            try:
                resp = self._ask(member.id, member.peer_urls, revision)
            except Compacted:
                continue
            if resp is None:
                missing.append(member.id)
                continue
            hashes.append(HashAt(member.id, revision, resp.compact_revision, resp.hash))
        return hashes, missing

    def _ask(self, member_id: int, peer_urls: list[str], revision: int) -> HashKVResponse | None:
        """A peer's hash at ``revision`` asked on its peer port (None: no answer in time, or an
        error other than a compacted revision, which raises)."""
        known = self.peers.get(member_id)
        if known is None or known[0] != list(peer_urls):
            if known is not None:
                known[1].close(linger=0)
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 4)
            curve.connect_as(sock, self.peer_curve)
            for url in peer_urls:
                sock.connect(url)
            known = self.peers[member_id] = (list(peer_urls), sock)
        sock = known[1]
        query_id = next(self._query_ids)
        query = HashQuery(
            cluster_id=self.config.cluster_id,
            from_=self.config.member_id,
            query_id=query_id,
            revision=revision,
        )
        try:
            sock.send(encode(query), zmq.NOBLOCK)
        except zmq.Again:
            return None
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0 and sock.poll(int(left * 1000) + 1):
            try:
                answer = decode(sock.recv(zmq.NOBLOCK), expect=HashAnswer)
                if answer.query_id != query_id or answer.member_id != member_id:
                    continue  # the late answer to a query that timed out
                body = decode(answer.body, expect=(HashKVResponse, ErrorResponse))
            except (DecodeError, zmq.Again):
                continue
            if isinstance(body, ErrorResponse):
                error = from_response(body)
                if isinstance(error, Compacted):
                    raise error
                self.log.debug("peer refused the hash query", peer=f"{member_id:x}", error=str(error))
                return None
            return body
        return None

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
    checker = CorruptionChecker(config, log, loop.ctx)
    if config.initial_corrupt_check:
        loop.every(INITIAL_RETRY_S, checker.initial)
    if config.corrupt_check_ms > 0:
        loop.every(config.corrupt_check_ms / 1000, checker.periodic)
    return loop
