"""A gRPC watch stream's watch ids, as etcd numbers them, over a hub connection's own.

etcd numbers a stream's watchers from 0 (``watch_id`` 0 in a create asks for the next free
one; another asks for that id, refused if taken). A hub numbers from 1 and its connection may
have served a former stream (links.HubPool), so the door asks the hub for ids of its own
choosing, never reused on that connection (``next_hub_id``), and maps them both ways. An
answer whose hub id this stream does not hold is the former stream's, and is dropped. A create
the door refuses itself (a duplicate id) is answered in its turn, after the answers to the
creates sent before it, as etcd answers creates in order. Pure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from proto_schemas.watch import AUTO_WATCH_ID, PROGRESS_ALL, WatchResponse

DUPLICATE = -1  # the watch id etcd's refusal of a duplicate id carries


@dataclass
class StreamWatchers:
    to_hub: dict[int, int] = field(default_factory=dict)  # client id -> hub id (created or asked)
    to_client: dict[int, int] = field(default_factory=dict)
    next_id: int = 0  # etcd's next automatic id
    order: deque[int | WatchResponse] = field(default_factory=deque)  # creates not answered yet

    def create(self, watch_id: int, next_hub_id: Callable[[], int]) -> int | None:
        """The hub id to create the watcher under; None for an id the stream already holds."""
        if watch_id == AUTO_WATCH_ID:
            while self.next_id in self.to_hub:
                self.next_id += 1
            watch_id, self.next_id = self.next_id, self.next_id + 1
        elif watch_id in self.to_hub:
            return None
        hub_id = next_hub_id()
        self.to_hub[watch_id], self.to_client[hub_id] = hub_id, watch_id
        self.order.append(hub_id)
        return hub_id

    def refuse(self, refusal: WatchResponse) -> list[WatchResponse]:
        """The door's own answer to a create: now if no create is waiting, else in its turn."""
        if not self.order:
            return [refusal]
        self.order.append(refusal)
        return []

    def answered(self, hub_id: int) -> list[WatchResponse]:
        """A create was answered (``created``): the refusals whose turn has come."""
        if hub_id in self.order:
            self.order.remove(hub_id)
        due = []
        while self.order and isinstance(self.order[0], WatchResponse):
            refusal = self.order.popleft()
            assert isinstance(refusal, WatchResponse)
            due.append(refusal)
        return due

    def cancel(self, watch_id: int) -> int | None:
        """The hub id to cancel (None: no such watcher, nothing to do, as etcd)."""
        return self.to_hub.get(watch_id)

    def answer(self, resp: WatchResponse) -> int | None:
        """The client's id for this answer of the hub, or None when it is not this stream's."""
        if resp.watch_id == PROGRESS_ALL and not resp.created:
            return PROGRESS_ALL
        watch_id = self.to_client.get(resp.watch_id)
        if watch_id is None:
            return None
        if resp.canceled:
            del self.to_client[resp.watch_id]
            del self.to_hub[watch_id]
        return watch_id

    def hub_ids(self) -> set[int]:
        return set(self.to_client)
