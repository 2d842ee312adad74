"""The linearizability checker on hand-made histories that are and are not linearizable, and
on large generated ones (a simulated store with overlapping calls and lost replies)."""

from __future__ import annotations

import random

from tools.linearizability import Op, check, linearizable


def put(c: int, key: str, value: str, t0: float, t1: float | None, rev: int = 0) -> Op:
    return Op(c, "put", key, t0, t1, value=value, revision=rev)


def get(c: int, key: str, t0: float, t1: float, found: str | None, mod: int = 0, rev: int = 0) -> Op:
    return Op(c, "get", key, t0, t1, found=found, mod_revision=mod, revision=max(rev, mod))


def cas(
    c: int, key: str, expect: str | None, value: str, t0: float, t1: float | None, ok: bool, rev: int
) -> Op:
    return Op(c, "cas", key, t0, t1, value=value, expect=expect, succeeded=ok, revision=rev)


def test_a_sequential_history_is_linearizable() -> None:
    h = [
        get(1, "k", 0, 1, None, rev=1),
        put(1, "k", "a", 2, 3, rev=2),
        get(2, "k", 4, 5, "a", mod=2),
        Op(1, "delete", "k", 6, 7, deleted=1, revision=3),
        get(2, "k", 8, 9, None, rev=3),
    ]
    assert check(h).ok


def test_a_read_concurrent_with_a_put_may_see_either_value() -> None:
    before = [put(1, "k", "a", 0, 1, rev=2)]
    for seen, mod in (("a", 2), ("b", 3)):
        h = [*before, put(1, "k", "b", 2, 5, rev=3), get(2, "k", 3, 4, seen, mod=mod, rev=mod)]
        assert check(h).ok, seen


def test_a_stale_read_after_a_write_returned_is_caught_with_its_window() -> None:
    h = [
        put(1, "k", "a", 0, 1, rev=2),
        put(1, "k", "b", 2, 3, rev=3),
        get(2, "k", 4, 5, "a", mod=2, rev=3),
        put(1, "other", "x", 6, 7, rev=4),
    ]
    verdict = check(h)
    assert not verdict.ok and verdict.key == "k"
    assert [op.kind for op in verdict.window] == ["put", "get"]  # b was written, then a read
    assert "not linearizable" in verdict.report() and "'k'" in verdict.report()


def test_the_search_backtracks_out_of_a_wrong_first_choice() -> None:
    h = [
        put(1, "k", "a", 0, 10, rev=3),
        put(2, "k", "b", 0, 10, rev=2),
        get(3, "k", 1, 2, "b", mod=2),
        get(3, "k", 3, 4, "a", mod=3),
        get(3, "k", 11, 12, "a", mod=3),
    ]
    assert check(h).ok
    assert not check([*h, get(3, "k", 13, 14, "b", mod=2, rev=3)]).ok


def test_an_unknown_put_may_have_happened_or_not_but_only_once() -> None:
    lost = put(1, "k", "a", 0, None)
    assert check([lost, get(2, "k", 5, 6, "a", mod=2)]).ok  # it happened
    assert check([lost, get(2, "k", 5, 6, None, rev=1)]).ok  # or not (yet)
    flicker = [lost, get(2, "k", 5, 6, "a", mod=2), get(2, "k", 7, 8, None, rev=2)]
    assert not check(flicker).ok  # seen, then gone without a delete


def test_two_compare_and_swaps_from_one_value_cannot_both_succeed() -> None:
    start = put(1, "k", "v0", 0, 1, rev=2)
    both = [start, cas(1, "k", "v0", "x", 2, 4, True, 3), cas(2, "k", "v0", "y", 2, 4, True, 4)]
    assert not check(both).ok
    one = [start, cas(1, "k", "v0", "x", 2, 4, True, 3), cas(2, "k", "v0", "y", 2, 4, False, 3)]
    assert check(one).ok


def test_a_delete_must_report_what_was_there() -> None:
    assert not check([Op(1, "delete", "k", 0, 1, deleted=1, revision=2)]).ok
    assert check([Op(1, "delete", "k", 0, 1, deleted=0, revision=1)]).ok


def test_revisions_must_follow_real_time_across_keys() -> None:
    h = [put(1, "a", "x", 0, 1, rev=5), put(2, "b", "y", 2, 3, rev=4)]
    verdict = check(h)
    assert not verdict.ok and verdict.revision_order is not None
    assert "revision goes back" in verdict.report()


def test_a_key_cannot_get_an_older_revision() -> None:
    h = [put(1, "k", "a", 0, 1, rev=5), put(1, "k", "b", 2, 3, rev=4)]
    assert not linearizable(sorted(h, key=lambda op: op.invoke))


def simulated(n: int, seed: int, keys: int = 5, clients: int = 8, lose: float = 0.02) -> list[Op]:
    """A history of a linearizable store: each call takes effect at a random instant inside its
    interval; some replies are lost (the op may or may not have happened)."""
    rng = random.Random(seed)
    calls = []
    free_at = [0.0] * clients
    for i in range(n):
        c = rng.randrange(clients)
        t0 = free_at[c] + rng.random()
        t1 = t0 + rng.random() * 3
        free_at[c] = t1
        calls.append((rng.uniform(t0, t1), i, c, t0, t1))
    store: dict[str, tuple[str, int]] = {}
    revision = 1
    ops = []
    for _, i, c, t0, t1 in sorted(calls):
        key = f"k{rng.randrange(keys)}"
        kind = rng.choice(["put", "put", "get", "get", "delete", "cas"])
        lost = rng.random() < lose
        if lost and kind != "get" and rng.random() < 0.5:
            ops.append(Op(c, kind, key, t0, None, value=f"v{i}", expect=f"v{i - 1}"))  # never applied
            continue
        current = store.get(key)
        if kind == "put":
            revision += 1
            store[key] = (f"v{i}", revision)
            op = Op(c, kind, key, t0, t1, value=f"v{i}", revision=revision)
        elif kind == "get":
            op = Op(
                c,
                kind,
                key,
                t0,
                t1,
                found=current and current[0],
                mod_revision=current[1] if current else 0,
                revision=revision,
            )
        elif kind == "delete":
            if current:
                revision += 1
                del store[key]
            op = Op(c, kind, key, t0, t1, deleted=1 if current else 0, revision=revision)
        else:
            expect = current[0] if current and rng.random() < 0.5 else f"v{rng.randrange(max(i, 1))}"
            ok = current is not None and current[0] == expect
            if ok:
                revision += 1
                store[key] = (f"v{i}", revision)
            op = Op(c, kind, key, t0, t1, value=f"v{i}", expect=expect, succeeded=ok, revision=revision)
        if lost:
            op = Op(c, kind, key, t0, None, value=op.value, expect=op.expect)
        ops.append(op)
    return ops


def test_large_generated_histories_are_linearizable() -> None:
    for seed in range(3):
        history = simulated(3000, seed)
        assert check(history).ok, check(history).report()


def test_a_single_corrupted_read_in_a_large_history_is_found() -> None:
    history = simulated(3000, 7)
    reads = [i for i, op in enumerate(history) if op.kind == "get" and op.known and op.found is not None]
    victim = history[reads[len(reads) // 2]]
    history[reads[len(reads) // 2]] = Op(
        victim.client,
        "get",
        victim.key,
        victim.invoke,
        victim.ret,
        found="never written",
        mod_revision=victim.mod_revision,
        revision=victim.revision,
    )
    verdict = check(history)
    assert not verdict.ok and verdict.key == victim.key
    assert any(op.found == "never written" for op in verdict.window)
