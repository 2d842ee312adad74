"""Checks what a watcher received against the backend's history: etcd's watch guarantees.

- ordered: revisions never go back, and a later response starts past the earlier ones;
- unique: no event twice;
- reliable: between the start revision and the last revision the watcher is complete to, every
  event of the history that matches its key range and filters was received (no gap);
- atomic: the matching events of one revision arrive together (one response, or fragments
  that follow each other);
- bookmarkable: a response saying "complete to R" (its header revision) comes only after every
  matching event up to R;
- resumable follows from the others when a watch was re-created from its last revision + 1.

``history`` is every event of the backend in revision order (``WatchHistoryRequest`` from 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from etcdz import Client
from etcdz.watcher import Watch, create_request
from proto_schemas.kv import EventType
from proto_schemas.watch import Event, FilterType, WatchHistoryRequest, WatchResponse


@dataclass
class Spec:
    key: bytes
    range_end: bytes = b""
    start_revision: int = 1
    filters: list[FilterType] = field(default_factory=list)

    def wants(self, e: Event) -> bool:
        if FilterType.NOPUT in self.filters and e.type == EventType.PUT:
            return False
        if FilterType.NODELETE in self.filters and e.type == EventType.DELETE:
            return False
        k = e.kv.key
        if not self.range_end:
            return k == self.key
        return k >= self.key and (self.range_end == b"\0" or k < self.range_end)


def check(spec: Spec, history: list[Event], received: list[WatchResponse]) -> list[str]:
    """Every broken guarantee, in words (empty: all held)."""
    problems: list[str] = []
    expected: dict[int, list[tuple[bytes, int]]] = {}
    for e in history:
        if e.kv.mod_revision >= spec.start_revision and spec.wants(e):
            expected.setdefault(e.kv.mod_revision, []).append((e.kv.key, e.type))
    seen: set[tuple[int, bytes]] = set()
    got: dict[int, list[tuple[bytes, int]]] = {}
    last_rev = 0
    complete_to = spec.start_revision - 1
    open_revision = 0  # a revision whose fragments are still coming
    for n, resp in enumerate(received):
        revs = [e.kv.mod_revision for e in resp.events]
        if revs and revs != sorted(revs):
            problems.append(f"response {n}: revisions out of order {revs}")
        if revs and revs[0] < last_rev or (revs and revs[0] == last_rev and open_revision != last_rev):
            problems.append(f"response {n}: revision {revs[0]} after {last_rev}")
        for e in resp.events:
            ident = (e.kv.mod_revision, e.kv.key)
            if ident in seen:
                problems.append(f"response {n}: duplicate event {ident}")
            seen.add(ident)
            got.setdefault(e.kv.mod_revision, []).append((e.kv.key, e.type))
        if revs:
            last_rev = revs[-1]
            for rev in set(revs) - ({revs[-1]} if resp.fragment else set()):
                if rev != open_revision and sorted(got.get(rev, [])) != sorted(expected.get(rev, [])):
                    problems.append(f"response {n}: revision {rev} split or incomplete")
            open_revision = revs[-1] if resp.fragment else 0
            if (
                not resp.fragment
                and revs[-1] in expected
                and sorted(got[revs[-1]]) != sorted(expected[revs[-1]])
            ):
                problems.append(f"response {n}: revision {revs[-1]} incomplete")
        if resp.fragment:
            continue
        upto = resp.header.revision
        missing = [r for r in expected if complete_to < r <= upto and r not in got]
        if missing:
            problems.append(f"response {n}: says complete to {upto} but revisions {missing[:5]} never came")
        complete_to = max(complete_to, upto)
    extra = [r for r in got if r not in expected]
    if extra:
        problems.append(f"events that the history does not have (or the filter excludes): {extra[:5]}")
    gaps = [r for r in expected if r <= max(complete_to, last_rev) and r not in got]
    if gaps:
        problems.append(f"gap: revisions {gaps[:5]} missing")
    return problems


def history(c: Client) -> list[Event]:
    """Every event of the backend, in revision order (what ``check`` compares with)."""
    events: list[Event] = []
    start = 1
    while True:
        resp = c.call(WatchHistoryRequest(start_revision=start))
        events += resp.events
        if resp.revision >= resp.header.revision:
            return events
        start = resp.revision + 1


class Collector:
    """What one watch delivered, taken straight from the stream thread (no thread per watch).
    The sink is given at creation: set afterwards, a quick first answer would miss it."""

    def __init__(self, client: Client, key: str, **options: Any) -> None:
        self.got: list[WatchResponse] = []
        self.watch: Watch = client.watch_stream().watch(create_request(key, **options), sink=self.take)

    def take(self, item: object) -> None:
        if isinstance(item, WatchResponse):
            self.got.append(item)
