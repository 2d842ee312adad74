"""A linearizability checker for etcd's key-value model, in the manner of Wing & Gong and Lowe
(the search porcupine does for etcd's robustness tests).

A history is a list of ``Op``: each call with its invoke and return times, or with no return at
all when its outcome is unknown (a timeout: it may or may not have taken effect, at any time
after its invoke). Ops on different keys commute in this model, so each key is checked on its
own (P-compositionality); revisions are global, so a separate sweep checks that they follow
real time across keys.

The search keeps the ops of one key as a list of call and return entries in time order and
linearizes calls one by one; meeting the return of an op not yet linearized means backtracking.
Configurations already explored (the set of linearized ops + the model state) are remembered,
which keeps histories with unique values nearly linear to check.

``check()`` returns a ``Verdict``; when a key fails, ``window`` is the smallest stretch of that
key's history that fails on its own, whatever state it started from.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

INF = float("inf")


class _Any:
    """The state of a key before a window: anything (the first observation says what)."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _Any()
UNKNOWN = -1  # a revision written by an op whose outcome is unknown


@dataclass(frozen=True)
class Op:
    """One call. Inputs: ``kind`` ("put", "get", "delete", "cas", "revoke"), ``key``, ``value``
    (put; the new value of cas; for revoke, the value put with the lease: values are unique, so
    the key still holds it exactly when the lease is still attached), ``expect`` (cas: the
    value compared, None = the key is absent).
    Outputs, for an op that returned: ``revision`` (the response header's), ``found`` and
    ``mod_revision`` (get), ``deleted`` (delete), ``succeeded`` (cas)."""

    client: int
    kind: str
    key: str
    invoke: float
    ret: float | None = None  # None: unknown outcome
    value: str | None = None
    expect: str | None = None
    revision: int = 0
    found: str | None = None
    mod_revision: int = 0
    deleted: int = 0
    succeeded: bool = False

    @property
    def known(self) -> bool:
        return self.ret is not None

    @property
    def writes(self) -> bool:
        """Whether it made a revision (as far as its response tells)."""
        return self.known and (
            self.kind == "put"
            or (self.kind == "delete" and self.deleted > 0)
            or (self.kind == "cas" and self.succeeded)
        )

    def __str__(self) -> str:
        end = f"{self.ret:.4f}" if self.ret is not None else "?"
        args = {
            "put": f"{self.value!r}",
            "revoke": f"lease of {self.value!r}",
            "cas": f"{self.expect!r} -> {self.value!r}",
        }.get(self.kind, "")
        if not self.known:
            out = "unknown"
        elif self.kind == "get":
            out = f"{self.found!r}@{self.mod_revision} (rev {self.revision})"
        elif self.kind == "delete":
            out = f"deleted {self.deleted} (rev {self.revision})"
        elif self.kind == "cas":
            out = f"{'ok' if self.succeeded else 'failed'} (rev {self.revision})"
        else:
            out = f"rev {self.revision}"
        return f"[{self.invoke:.4f}, {end}] c{self.client} {self.kind} {self.key} {args} => {out}".replace(
            "  ", " "
        )


State = tuple[object, int]  # (value or None for absent or ANY, revision of the last write)


def step(state: State, op: Op) -> list[State]:
    """The states the key can be in after ``op`` (none: ``op`` cannot happen here)."""
    value, rev = state
    if not op.known:
        return [state, *_effect(state, op)]  # it may not have happened at all
    if op.kind == "get":
        if value is ANY:
            return [(op.found, op.mod_revision if op.found is not None else UNKNOWN)]
        if op.found != value:
            return []
        if op.found is None or rev == UNKNOWN:
            return [(value, op.mod_revision if op.found is not None else rev)]
        return [state] if op.mod_revision == rev and op.revision >= rev else []
    if op.writes and rev != UNKNOWN and op.revision <= rev:
        return []  # revisions of one key only grow
    if op.kind == "put":
        return [(op.value, op.revision)]
    if op.kind == "delete":
        present = value is not None
        if value is not ANY and present != (op.deleted > 0):
            return []
        return [(None, op.revision)] if op.deleted else [(None, rev)]
    if op.kind == "cas":
        if value is not ANY and (value == op.expect) != op.succeeded:
            return []
        return [(op.value, op.revision)] if op.succeeded else [state]
    if op.kind == "revoke":  # deletes the key if it still holds the value put with the lease
        gone: list[State] = [(None, op.revision)] if rev == UNKNOWN or op.revision > rev else []
        if value is ANY:
            return [*gone, state]
        return gone if value == op.value else [state]
    raise ValueError(f"unknown op kind {op.kind!r}")


def _effect(state: State, op: Op) -> list[State]:
    """The state after an op of unknown outcome, had it taken effect."""
    value, rev = state
    if op.kind == "get":
        return []  # a read changes nothing: "not at all" covers it
    if op.kind == "put":
        return [(op.value, UNKNOWN)]
    if op.kind == "delete":
        return [(None, UNKNOWN)] if value is not None else []
    if op.kind == "cas":
        if value is ANY or value == op.expect:
            return [(op.value, UNKNOWN)]
        return []
    if op.kind == "revoke":
        return [(None, UNKNOWN)] if value is ANY or value == op.value else []
    raise ValueError(f"unknown op kind {op.kind!r}")


# -- the search -------------------------------------------------------------------------------
@dataclass
class _Entry:
    op_id: int
    is_call: bool
    prev: _Entry | None = None
    next: _Entry | None = None
    match: _Entry | None = None  # a call's return entry


def _entries(ops: list[Op]) -> _Entry:
    """A sentinel head before the calls and returns of ``ops`` in time order (a return before
    a call at the same instant: such ops are not concurrent)."""
    events = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 1, i))
        events.append((op.ret if op.ret is not None else INF, 0, i))
    events.sort()
    head = _Entry(-1, False)
    last = head
    calls: dict[int, _Entry] = {}
    for _, kind, i in events:
        entry = _Entry(i, kind == 1, prev=last)
        last.next = entry
        last = entry
        if kind == 1:
            calls[i] = entry
        else:
            calls[i].match = entry
    return head


def _lift(call: _Entry) -> None:
    for e in (call, call.match):
        assert e is not None and e.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev


def _unlift(call: _Entry) -> None:
    for e in (call.match, call):
        assert e is not None and e.prev is not None
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e


def linearizable(ops: list[Op], initial: State = (None, 0)) -> bool:
    """Whether the ops of one key have a linearization from ``initial``."""
    head = _entries(ops)
    state = initial
    done = 0  # bit i: op i is linearized
    seen: set[tuple[int, State]] = set()
    stack: list[tuple[_Entry, State, list[State]]] = []  # (call, state before, untried outcomes)
    entry = head.next
    while entry is not None:
        if entry.is_call:
            call, before, outcomes = entry, state, step(state, ops[entry.op_id])
        elif ops[entry.op_id].ret is None:
            return True  # every known op is linearized; the unknown ones left need not happen
        elif stack:  # the return of an op not linearized: undo the latest choice
            call, before, outcomes = stack.pop()
            _unlift(call)
            done &= ~(1 << call.op_id)
            state = before
        else:
            return False
        after = _untried(call.op_id, outcomes, done, seen)
        if after is None:
            entry = call.next
            continue
        stack.append((call, before, outcomes))
        state, done = after, done | (1 << call.op_id)
        _lift(call)
        entry = head.next
    return True


def _untried(op_id: int, outcomes: list[State], done: int, seen: set[tuple[int, State]]) -> State | None:
    """The next of ``outcomes`` (consumed) that leads to a configuration not explored yet."""
    bits = done | (1 << op_id)
    while outcomes:
        after = outcomes.pop(0)
        if (bits, after) not in seen:
            seen.add((bits, after))
            return after
    return None


# -- whole histories --------------------------------------------------------------------------
@dataclass
class Verdict:
    ok: bool
    checked: int = 0
    key: str = ""  # the key whose history failed
    window: list[Op] = field(default_factory=list)  # the smallest failing stretch of it
    revision_order: tuple[Op, Op] | None = None  # two ops whose revisions contradict real time

    def report(self) -> str:
        if self.ok:
            return f"linearizable: {self.checked} operations"
        if self.revision_order is not None:
            first, second = self.revision_order
            return (
                "not linearizable: a revision goes back in real time\n"
                f"  {first}\n  returned before\n  {second}\n  was invoked"
            )
        lines = [f"not linearizable: key {self.key!r}, {len(self.window)} operations fail on their own:"]
        return "\n".join([*lines, *(f"  {op}" for op in self.window)])


def check(history: Iterable[Op]) -> Verdict:
    # a read whose reply was lost changed nothing and told nothing: it can go
    ops = sorted((op for op in history if op.known or op.kind != "get"), key=lambda op: op.invoke)
    backwards = revision_order(ops)
    if backwards is not None:
        return Verdict(ok=False, checked=len(ops), revision_order=backwards)
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key, key_ops in sorted(by_key.items()):
        if not linearizable(key_ops):
            return Verdict(ok=False, checked=len(ops), key=key, window=smallest_window(key_ops))
    return Verdict(ok=True, checked=len(ops))


def revision_order(ops: list[Op]) -> tuple[Op, Op] | None:
    """Two known ops whose revisions contradict real time: B invoked after A returned, yet B's
    revision is below A's (or equal, when B wrote: every write makes a new revision)."""
    returned: list[tuple[float, int, int]] = []  # (return time, -revision, index)
    highest: tuple[int, int] | None = None  # (revision, index) of the returned op with the most
    known = [op for op in ops if op.known]
    for i, op in enumerate(known):
        assert op.ret is not None  # known: it returned
        heapq.heappush(returned, (op.ret, -op.revision, i))
    by_invoke = sorted(range(len(known)), key=lambda i: known[i].invoke)
    for i in by_invoke:
        op = known[i]
        while returned and returned[0][0] < op.invoke:
            _, neg, j = heapq.heappop(returned)
            if highest is None or -neg > highest[0]:
                highest = (-neg, j)
        if highest is not None:
            rev, j = highest
            if op.revision < rev or (op.writes and op.revision == rev):
                return known[j], op
    return None


def smallest_window(ops: list[Op]) -> list[Op]:
    """The shortest stretch of ``ops`` that is not linearizable from any state: first the
    shortest failing prefix by invoke time (ops still running at its end count as unknown),
    then the latest start that still fails from ANY (ops still running at the start stay in:
    they could explain what follows)."""
    order = sorted(ops, key=lambda op: op.invoke)

    def prefix(n: int) -> list[Op]:
        cut = order[n - 1].invoke
        return [op if op.ret is not None and op.ret <= cut else _unknown(op) for op in order[:n]]

    if linearizable(prefix(len(order))):
        failing = order  # it fails only through ops that returned after the last invoke
    else:
        lo, hi = 1, len(order)
        while lo < hi:  # the first n whose prefix fails
            mid = (lo + hi) // 2
            if linearizable(prefix(mid)):
                lo = mid + 1
            else:
                hi = mid
        failing = prefix(lo)

    def window(s: int) -> list[Op]:
        start = failing[s].invoke
        return [op for i, op in enumerate(failing) if i >= s or op.ret is None or op.ret > start]

    for s in range(len(failing) - 1, 0, -1):
        if not linearizable(window(s), initial=(ANY, UNKNOWN)):
            return window(s)
    return failing


def _unknown(op: Op) -> Op:
    return Op(op.client, op.kind, op.key, op.invoke, None, op.value, op.expect)
