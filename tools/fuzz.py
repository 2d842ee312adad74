"""Hostile CBOR for fuzzing a port: valid messages mutated in the ways that hurt a decoder.

Each frame is one of the ``shapes`` a message may be given by someone who wants a receiver to
stall, to exhaust its memory or to crash: foreign tags (cbor2's own bignums, rationals, dates,
sets), shared references that make a small frame a huge graph, integers out of range, absurd
nesting, values of the wrong type, indefinite-length items, declared lengths far beyond the
frame, maps, floods of tiny items, and flipped or truncated bytes. The mutation is applied at a
random place of the message (the whole message, a field, an item of a list), so the receiver
meets it at every depth. Seeded: a failure replays from its seed.
"""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from typing import Any

import cbor2

from proto_schemas.codec import MESSAGE_TAG, NATIVE_TAGS

_TAGS = [*NATIVE_TAGS, 6, 24, 32, 1000, MESSAGE_TAG - 1, MESSAGE_TAG + 1, 2**32, 2**64 - 1]


def shared_txns(depth: int, fanout: int = 2) -> bytes:
    """A TxnRequest whose nested txns share one another (tags 28/29): a few hundred bytes that
    decode to ``fanout**depth`` txns to check (shareable indices count from the outside in)."""
    raw = b"\xd8\x1c" + cbor2.dumps([109])  # 109: TxnRequest
    for level in range(1, depth):
        ref = b"\xd8\x1d" + cbor2.dumps(depth - level)
        success = bytes([0x80 + fanout]) + raw + ref * (fanout - 1)
        raw = b"\xd8\x1c\x84\x18\x6d\x80" + success + b"\x80"
    return raw


def _huge_length(rng: random.Random) -> bytes:
    head = rng.choice([b"\x9b", b"\x5b", b"\x7b", b"\xbb"])  # array, bytes, text, map: 8-byte length
    return head + rng.choice([2**32, 2**48, 2**63, 2**64 - 1]).to_bytes(8, "big") + b"\x00" * rng.randrange(4)


def _indefinite(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"\x9f" + b"\x00" * rng.randrange(100) + b"\xff",
            b"\x5f" + b"\x41a" * rng.randrange(1, 100) + b"\xff",
            b"\x7f\x61a\xff",
            b"\xbf\x61a\x00\xff",
            b"\x9f" * rng.randrange(1, 200),  # never closed
        ]
    )


def _raw(rng: random.Random) -> bytes:
    """A raw item the encoder would not write."""
    return rng.choice(
        [
            lambda: shared_txns(rng.randrange(4, 16), rng.randrange(2, 12)),
            lambda: b"\x81" * rng.randrange(50, 5000) + b"\x00",  # deep nesting
            lambda: b"\x9f" * rng.randrange(50, 5000),
            lambda: _huge_length(rng),
            lambda: _indefinite(rng),
            lambda: b"\x9a" + (n := rng.choice([1000, 70_000, 300_000])).to_bytes(4, "big") + b"\x80" * n,
            lambda: b"\xc2\x5a" + (n := rng.choice([100, 10_000, 200_000])).to_bytes(4, "big") + b"\xff" * n,
            lambda: bytes([rng.randrange(0x1C, 0x20)]),  # reserved header bytes
        ]
    )()


def _value(rng: random.Random, node: Any) -> Any:
    """A replacement for ``node``: a foreign tag, a big number or a value of the wrong type."""
    big = 1 << rng.randrange(64, 40_000)
    return rng.choice(
        [
            lambda: cbor2.CBORTag(rng.choice(_TAGS), node),
            lambda: cbor2.CBORTag(rng.choice(_TAGS), rng.choice([0, [0], b"\x00" * 8, "x", [1, 3]])),
            lambda: big,
            lambda: -big,
            lambda: Fraction(big, big - 1),
            lambda: Decimal(f"1e-{rng.randrange(10, 10_000)}"),
            lambda: rng.choice([2**64, -(2**63) - 1, 2**64 - 1, -1, 0, 1.5, float("nan"), True, None]),
            lambda: rng.choice([b"", "", [], [node], [node, node], {}, {"k": node}, {1: 2}, {b"k": [node]}]),
            lambda: frozenset([1, 2]),
        ]
    )()


def _thaw(node: Any) -> Any:
    """The decoded tree with lists where cbor2 made tuples (inside tags), so it can be edited."""
    if isinstance(node, cbor2.CBORTag):
        return cbor2.CBORTag(node.tag, _thaw(node.value))
    if isinstance(node, list | tuple):
        return [_thaw(item) for item in node]
    return node


def _places(tree: Any) -> list[tuple[Any, int]]:
    """Every (container, index) a mutation may replace (a tag's content counts as its list)."""
    found: list[tuple[Any, int]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        items = node.value if isinstance(node, cbor2.CBORTag) else node
        if isinstance(items, list):
            for i, item in enumerate(items):
                found.append((items, i))
                stack.append(item)
    return found


def hostile(rng: random.Random, valid: bytes) -> bytes:
    """``valid`` (an encoded message) mutated once, at a random place."""
    shape = rng.randrange(10)
    if shape == 0:
        return _raw(rng)
    if shape == 1:  # flipped bytes
        out = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if shape == 2:  # truncated, or followed by garbage
        return valid[: rng.randrange(len(valid))] if rng.random() < 0.5 else valid + rng.randbytes(8)
    tree = _thaw(cbor2.loads(valid))  # plain cbor2: the message tags stay tags
    places = _places(tree)
    if not places:
        return _raw(rng)
    container, index = rng.choice(places)
    if shape < 6:
        container[index] = _value(rng, container[index])
        return cbor2.dumps(tree, value_sharing=rng.random() < 0.2)
    marker = rng.randbytes(16)  # spliced: a raw item in place of this one
    container[index] = marker
    return cbor2.dumps(tree).replace(cbor2.dumps(marker), _raw(rng), 1)


def frames(rng: random.Random, valid: list[bytes], count: int) -> list[bytes]:
    """``count`` hostile frames made from the ``valid`` encodings."""
    return [hostile(rng, rng.choice(valid)) for _ in range(count)]
