"""Which of a hub connection's answers belong to the gRPC watch stream using it.

A finished stream's hub connection serves the next stream (links.HubPool), and a hub may still
send answers of the former stream after it was handed on. Pure: fed the answers, says yes or no.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proto_schemas.watch import PROGRESS_ALL, WatchResponse


@dataclass
class StreamWatchers:
    """A watch stream's own watchers, so that on a reused hub connection nothing of the former
    stream reaches this one: the hub answers creates in order, one ``created`` each, so a
    ``created`` with no create of ours pending, or any other answer for a watch id we never
    created, is the former stream's."""

    ids: set[int] = field(default_factory=set)
    creating: int = 0

    def ours(self, resp: WatchResponse) -> bool:
        if resp.created:
            if self.creating == 0:
                return False
            self.creating -= 1
            if not resp.canceled:
                self.ids.add(resp.watch_id)
            return True
        if resp.watch_id == PROGRESS_ALL:
            return True
        if resp.watch_id not in self.ids:
            return False
        if resp.canceled:
            self.ids.discard(resp.watch_id)
        return True
