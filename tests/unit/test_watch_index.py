"""The watch hub's interval index against the scan it replaces: for any watchers added and
removed (single keys, prefixes, from-key and other ranges, empty ones), a key matches exactly
the watchers whose range holds it, each once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.watch.index import WatchIndex, prefix_end
from actors.watch.watchers import Cohort

ALPHABET = [b"", b"\x00", b"\x01", b"a", b"b", b"\xfe", b"\xff"]
keys = st.lists(st.sampled_from(ALPHABET[1:]), max_size=4).map(b"".join)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[bytes, bytes]:
    key = draw(keys)
    kind = draw(st.sampled_from(["key", "prefix", "from", "range"]))
    if kind == "key":
        return key, b""
    if kind == "prefix":
        return key, prefix_end(key)
    if kind == "from":
        return key, b"\0"
    return key, draw(keys.filter(lambda end: end not in (b"", b"\0")))


def scan(watchers: dict[int, tuple[bytes, bytes]], key: bytes) -> list[int]:
    def holds(start: bytes, end: bytes) -> bool:
        return Cohort(route=b"", ids={0: None}, key=start, range_end=end, cursor=0).wants_key(key)

    return sorted(ref for ref, (start, end) in watchers.items() if holds(start, end))


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), ranges())), max_size=60),
    probes=st.lists(keys, min_size=1, max_size=12),
)
def test_a_key_matches_exactly_the_watchers_whose_range_holds_it(
    steps: list[tuple[int, tuple[bytes, bytes] | None]], probes: list[bytes]
) -> None:
    index: WatchIndex[int] = WatchIndex()
    model: dict[int, tuple[bytes, bytes]] = {}
    for i, (ref, where) in enumerate(steps):
        if where is None:
            index.remove(ref)
            model.pop(ref, None)
        else:
            index.add(ref, *where)
            model[ref] = where
        if i % 7 == 0:  # match between changes too: the lazy structures must follow them
            for key in probes[:2]:
                assert sorted(index.match(key)) == scan(model, key)
    assert len(index) == len(model)
    for key in probes:
        found = list(index.match(key))
        assert len(found) == len(set(found))
        assert sorted(found) == scan(model, key)


def test_prefix_ends_are_etcds() -> None:
    assert prefix_end(b"a") == b"b" and prefix_end(b"a\xff") == b"b" and prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


def test_many_watchers_of_one_kind_each() -> None:
    index: WatchIndex[int] = WatchIndex()
    for i in range(1000):
        index.add(i, b"/k/%04d" % i, b"")
    for i in range(1000, 1100):
        index.add(i, b"/k/%02d" % (i - 1000), prefix_end(b"/k/%02d" % (i - 1000)))
    index.add(2000, b"/k/0500", b"/k/0600")
    assert sorted(index.match(b"/k/0512")) == [512, 1005, 2000]
    index.remove(2000)
    assert sorted(index.match(b"/k/0512")) == [512, 1005]
