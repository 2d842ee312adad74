"""The rules of one client's watch stream, without sockets, threads or clocks.

The blocking client runs a stream on a thread (``etcdz.watcher``), the asyncio client as a
task (``etcdz._aio_watch``); both feed this core what they receive and the time, and send what
it returns, so the two cannot drift apart:
- watch ids are chosen here, so a watch keeps its id when the stream moves to another hub;
- a new hub gets a handshake (a ping naming the cluster the client learned from the members)
  and every live watch again, from the last revision it delivered + 1: no gap, and events at
  or below that revision are dropped should any arrive twice (``WatchState._feed``);
- a hub that pongs another cluster's id or refuses the handshake is left at once and not tried
  again until some hub works; a silent one (``DEAD_AFTER_S``) is left alone that long, and one
  that sent a message this SDK cannot read is left too (it may have held events) and tried
  again after ``UNREADABLE_COOL_OFF_S``;
- a hub that answers with a new identity restarted and forgot us, and one that numbers our
  stream anew no longer knows this connection (ZeroMQ connected again under the socket, or it
  dropped the stream for silence): either way every watch is created again;
- a create refused for a token the cluster no longer takes is retried once after a new login.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from etcdz.errors import ClusterIdMismatch, Compacted, EtcdzError, Unavailable, from_reason
from proto_schemas.codec import DecodeError, decode
from proto_schemas.envelope import unpack_header
from proto_schemas.errors import RELOGIN, TEXTS, ErrorCode, ErrorResponse
from proto_schemas.watch import (
    DUPLICATE_WATCH_ID,
    PROGRESS_ALL,
    Event,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchPing,
    WatchPong,
    WatchProgressRequest,
    WatchRequest,
    WatchResponse,
    WatchResponses,
)

PING_S = 1.0
DEAD_AFTER_S = 3.0
UNREADABLE_COOL_OFF_S = PING_S  # a hub that sent what this SDK cannot read: tried again after
FOREIGN = "another cluster's hub"
STOP = object()  # queued for a watch that ended without an error
_LOGIN_CURES = frozenset(TEXTS[c] for c in RELOGIN)  # as for calls: what a fresh login cures


class WatchState:
    """One watch as its stream sees it: where it is complete to, and what the user gets.

    Each finished response (or the error or ``STOP`` ending the watch) goes to ``sink``, or
    to ``_enqueue`` (the blocking ``Watch``'s queue) when there is none."""

    def __init__(self, watch_id: int, request: WatchCreateRequest, sink: Callable[[Any], None] | None = None):
        self.id = watch_id
        self.request = request
        self.revision = request.start_revision - 1 if request.start_revision > 0 else 0
        self.confirmed = False  # the current hub has created it (its progress answers count)
        self.canceling = False  # the user cancelled it: not to be created on another hub
        self._fragments: list[Event] = []
        self._done = False
        self._relogins = 0  # logins for this watch since it was last created
        # Called instead of queueing (the asyncio side); given at creation, so that not even
        # the first response can reach the queue instead.
        self.sink = sink

    def _resume_request(self) -> WatchCreateRequest:
        start = self.revision + 1 if self.revision else self.request.start_revision
        return dataclasses.replace(self.request, start_revision=start, watch_id=self.id)

    def _created(self) -> None:
        """The hub created it, or refused to (the blocking ``Watch`` wakes its creator)."""

    def _feed(self, resp: WatchResponse) -> bool:
        """Take one response from the hub; False once the watch is over."""
        events = resp.events
        if (
            events
            and events[0].kv.mod_revision > self.revision
            and not (self._fragments or resp.fragment or resp.created or resp.canceled)
        ):
            # The usual response, whole and new (its events are in order): handed on as it is.
            self.revision = max(self.revision, resp.header.revision)
            self._put(resp)
            return True
        if resp.created and not resp.canceled:
            self.confirmed = True
            self._relogins = 0
            if not self.revision and self.request.start_revision <= 0:  # a watch from now
                self.revision = resp.header.revision
            self._created()
            return True
        if resp.canceled and resp.cancel_reason == DUPLICATE_WATCH_ID:
            return True  # re-created on a hub that still had it: the watch goes on
        if resp.canceled:
            self._created()
            error = (
                Compacted(resp.cancel_reason) if resp.compact_revision else from_reason(resp.cancel_reason)
            )
            if resp.compact_revision:
                error.compact_revision = resp.compact_revision  # type: ignore[union-attr]
            self._put(error if error is not None else STOP)
            return False
        events = [e for e in resp.events if e.kv.mod_revision > self.revision]
        if resp.events and not events:
            return True  # already delivered before the stream moved
        if self._fragments:  # a revision resent from its first fragment (a stall, a new hub)
            have = {e.kv.key for e in self._fragments}
            events = [e for e in events if e.kv.key not in have]
        if resp.fragment:
            self._fragments.extend(events)
            return True
        whole = len(events) == len(resp.events)  # nothing left out: the hub's response as it is
        if self._fragments:
            events, self._fragments, whole = self._fragments + events, [], False
        self.revision = max(self.revision, resp.header.revision)
        self._put(resp if whole else dataclasses.replace(resp, events=events, fragment=False))
        return True

    def _put(self, item: Any) -> None:
        if self.sink is not None:
            self.sink(item)
        else:
            self._enqueue(item)

    def _enqueue(self, item: Any) -> None:
        raise NotImplementedError("a watch without a sink needs a queue")

    def _take(self, item: Any) -> WatchResponse | None:
        """What the user sees of one queued item: a response, None at the end, or the error."""
        if isinstance(item, EtcdzError):
            self._done = True
            raise item
        if item is STOP:
            self._done = True
            return None
        return item


def ping(cluster_id: int = 0) -> WatchPing:
    """A ping of this SDK's streams: it reads shared responses (one response on the wire for
    many of its watchers, given to each: ``WatchResponses.each``)."""
    return WatchPing(cluster_id=cluster_id, shared=True)


class StreamCore:
    """The watches of one stream and its hub: the shell connects, sends what the methods
    return (request bodies, to be packed with the client's token) and reports the time."""

    def __init__(self, has_user: bool, now: float) -> None:
        self.watches: dict[int, WatchState] = {}
        self.has_user = has_user
        self.hub = ""
        self.hub_id = ""
        self.hub_stream = 0  # the hub's number for our stream, from its pongs
        self.answered = False  # the current hub answered the handshake
        self.last_good = now  # when a hub of this cluster last answered
        self.failed: dict[str, tuple[str, float]] = {}  # hub URL -> (why, left alone until)
        self.relogin_wanted = False  # a hub refused the token: the shell logs in again
        self._recreate = False
        self._relogged: list[WatchState] = []
        self.error: EtcdzError | None = None

    # -- choosing a hub ---------------------------------------------------------------------------
    def candidates(self, urls: list[str], now: float) -> list[str]:
        """The hubs of ``urls`` worth trying now."""
        return [u for u in urls if self.failed.get(u, ("", 0.0))[1] <= now]

    def fail(self, url: str, reason: str, until: float = math.inf) -> None:
        """Leave ``url`` alone until ``until`` (for good: until some hub works)."""
        self.failed[url] = (reason, until)

    def gave_up(self, now: float, timeout: float) -> bool:
        """No hub of this cluster has answered for the client's timeout (+ ``DEAD_AFTER_S``)."""
        return now - self.last_good > timeout + DEAD_AFTER_S

    def no_hub_error(self, urls: list[str]) -> EtcdzError:
        if not urls:
            return Unavailable("no watch hub is serving this cluster")
        why = {u: self.failed[u][0] for u in urls if u in self.failed}
        reasons = "; ".join(f"{u}: {reason}" for u, reason in why.items())
        if len(why) == len(urls) and all(r.startswith(FOREIGN) for r in why.values()):
            return ClusterIdMismatch(f"etcdserver: cluster ID mismatch ({reasons})")
        return Unavailable(f"no watch hub works for this cluster ({reasons or 'none answered'})")

    # -- one hub ----------------------------------------------------------------------------------
    def opened(self, url: str, cluster_id: int) -> list[Any]:
        """A connection to ``url`` is made: the handshake, then every watch from where it is."""
        self.hub = url
        self.failed.pop(url, None)  # its cool-off is over: a fresh chance
        self.hub_id, self.hub_stream = "", 0
        self.answered = False
        return [ping(cluster_id), *self._resume_all()]

    def left(self, now: float, heard: float) -> bool:
        """Whether to leave the current hub: it serves another cluster, or went silent."""
        if self.hub in self.failed:
            return True
        if now - heard > DEAD_AFTER_S:
            self.fail(self.hub, "went silent" if self.answered else "no answer", now + DEAD_AFTER_S)
            return True
        return False

    def _resume_all(self) -> list[Any]:
        for w in [w for w in self.watches.values() if w.canceling]:
            self._end(w, STOP)  # cancelled while no hub had it: over here and now
        for w in self.watches.values():
            w.confirmed = False
        return [WatchRequest(request=w._resume_request()) for w in self.watches.values()]

    # -- the user's commands ----------------------------------------------------------------------
    def create(self, w: WatchState) -> Any:
        self.watches[w.id] = w
        return WatchRequest(request=w._resume_request())

    def cancel(self, w: WatchState) -> Any | None:
        if w.id not in self.watches:
            return None
        w.canceling = True
        return WatchRequest(request=WatchCancelRequest(watch_id=w.id))

    @staticmethod
    def progress() -> Any:
        return WatchRequest(request=WatchProgressRequest())

    # -- what the hub says ------------------------------------------------------------------------
    def receive(self, frames: list[bytes], now: float, cluster_id: int) -> None:
        """One message from the hub (``cluster_id``: the one the client knows); what to send
        in answer comes from ``after_receive`` once the batch is read."""
        try:
            _, body = unpack_header(frames)
            msg = decode(body)
        except DecodeError as exc:
            # It may have held events: skipping it would leave a gap no one sees. The stream
            # moves instead (a new connection, every watch from its last delivered revision).
            self.fail(self.hub, f"sent an unreadable message ({exc})", now + UNREADABLE_COOL_OFF_S)
            return
        if isinstance(msg, ErrorResponse):
            if msg.code == ErrorCode.CLUSTER_ID_MISMATCH:
                self.fail(self.hub, f"{FOREIGN}: {msg.message}")
            return  # else a request this SDK built was refused: a bug, nothing to hand to a watch
        if isinstance(msg, WatchPong):
            self._pong(msg, now, cluster_id)
        elif isinstance(msg, WatchResponses):
            for resp in msg.each():
                self._dispatch(resp)
        elif isinstance(msg, WatchResponse):
            self._dispatch(msg)

    def after_receive(self) -> list[Any]:
        """What to send after a batch of messages: watches to create again."""
        out = []
        if self._recreate:
            self._recreate = False
            out.extend(self._resume_all())
        for w in self._relogged:  # refused for an expired token: to be sent after a new login
            if w.id in self.watches:
                out.append(WatchRequest(request=w._resume_request()))
        self._relogged.clear()
        return out

    def _pong(self, msg: WatchPong, now: float, mine: int) -> None:
        if msg.cluster_id and mine and msg.cluster_id != mine:
            self.fail(self.hub, f"{FOREIGN}: it serves cluster {msg.cluster_id:x}, not {mine:x}")
            return
        self.answered = True
        self.last_good = now
        self.failed.clear()  # a working hub: those that failed may be tried again later
        if self.hub_id and (msg.hub_id, msg.stream) != (self.hub_id, self.hub_stream):
            # The hub restarted at the same address, or holds our stream no more: nothing it
            # says counts for a watch until it has created that watch again.
            self._recreate = True
            for w in self.watches.values():
                w.confirmed = False
        self.hub_id, self.hub_stream = msg.hub_id, msg.stream

    def _dispatch(self, resp: WatchResponse) -> None:
        """One response to its watch (thousands a put: the usual case costs one lookup)."""
        one = self.watches.get(resp.watch_id)
        if one is not None and not resp.canceled:
            if not one._feed(resp):
                del self.watches[one.id]
        elif resp.watch_id == PROGRESS_ALL:  # not for watches this hub has yet to create
            for w in [w for w in self.watches.values() if w.confirmed]:
                self._hand(w, resp)
        elif one is not None:
            self._hand(one, resp)

    def _hand(self, w: WatchState, resp: WatchResponse) -> None:
        if resp.canceled and self._needs_login(w, resp):
            return
        if not w._feed(resp):
            self.watches.pop(w.id, None)

    def _needs_login(self, w: WatchState, resp: WatchResponse) -> bool:
        """Whether the cancel ``resp`` is a create refused for a token the cluster no longer
        takes (expired, a member restarted, older than the auth store) or for want of one (auth
        enabled since this client found it off): log in again and re-create it, once per
        refusal streak."""
        if not (resp.cancel_reason in _LOGIN_CURES and self.has_user):
            return False
        if w._relogins >= 1:
            return False
        w._relogins += 1
        self.relogin_wanted = True
        self._relogged.append(w)
        return True

    # -- the end ----------------------------------------------------------------------------------
    def end_all(self) -> None:
        """The stream is over: every watch ends, with the stream's error if it has one."""
        for w in list(self.watches.values()):
            self._end(w, self.error or STOP)

    def _end(self, w: WatchState, item: Any) -> None:
        self.watches.pop(w.id, None)
        w._put(item)
