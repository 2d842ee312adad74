"""The apply worker's shell: one inbox (the raft core's ``Apply`` and ``ActorStarted``, the
backend's ``ApplyDone`` and ``BackendState``), outboxes to the backend, the gateway and the raft
core. It holds nothing the backend and the raft core cannot give it again, so it is restarted
alone (see core.py for how it picks up the entries)."""

from __future__ import annotations

import time

import structlog

from actors.apply.core import APPLIED_REFRESH_S, ApplyCore, ApplyOutbox
from actors.runtime import failpoints
from actors.runtime.config import NodeConfig
from actors.runtime.loop import Loop, send
from proto_schemas.internal import ActorStarted, Apply, ApplyDone, BackendState, BackendStateRequest


def build(config: NodeConfig, log: structlog.BoundLogger) -> Loop:
    loop = Loop(log)
    core = ApplyCore()
    inbox = loop.inbox(config.inbox("apply"))
    to_mvcc = loop.outbox(config.inbox("mvcc"))
    to_gateway = loop.outbox(config.inbox("gateway"))
    to_raft = loop.outbox(config.inbox("raft"))
    out = ApplyOutbox()
    send(to_mvcc, BackendStateRequest(reply_to="apply"))

    def handle(msgs: list[object]) -> None:
        for msg in msgs:
            if isinstance(msg, Apply):
                core.on_apply(msg, out)
                if msg.resync:
                    log.info("committed entries resynced", applied=core.applied, up_to=msg.last)
            elif isinstance(msg, ActorStarted):
                core.on_raft_started(out)
            elif isinstance(msg, ApplyDone):
                core.on_apply_done(msg, out, time.monotonic())
            elif isinstance(msg, BackendState):
                core.on_backend_state(msg, out)
                log.info("backend state", consistent_index=msg.consistent_index, revision=msg.revision)

    def flush() -> None:
        core.next_batch(out)
        for msg in out.to_mvcc:
            send(to_mvcc, msg)
        if out.to_mvcc:
            failpoints.hit("apply-mid-batch")
        for msg in out.to_gateway:
            send(to_gateway, msg)
        for msg in out.to_raft:
            send(to_raft, msg)
        out.to_mvcc.clear()
        out.to_gateway.clear()
        out.to_raft.clear()

    loop.on_messages(inbox, handle)
    loop.after_batch(flush)
    loop.every(APPLIED_REFRESH_S, lambda: core.tell_raft(out, time.monotonic()))  # flushed after
    return loop
