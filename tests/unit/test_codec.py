"""The codec: round trips, and every kind of bad input becomes a DecodeError."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto_schemas import codec, envelope
from proto_schemas.codec import DecodeError, Template, decode, encode
from proto_schemas.kv import (
    Compare,
    CompareTarget,
    EventType,
    KeyValue,
    PutRequest,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    TxnRequest,
)
from proto_schemas.watch import Event, EventBatch, WatchResponse


def test_round_trip_nested_txn() -> None:
    txn = TxnRequest(
        compare=[Compare(key=b"a", target=CompareTarget.VERSION, version=3)],
        success=[PutRequest(key=b"a", value=b"1"), TxnRequest(success=[RangeRequest(key=b"b")])],
        failure=[RangeRequest(key=b"a", sort_order=SortOrder.DESCEND)],
    )
    back = decode(encode(txn))
    assert back == txn
    assert isinstance(back.success[1].success[0], RangeRequest)
    assert back.failure[0].sort_order is SortOrder.DESCEND


def test_defaults_may_be_omitted_on_the_wire() -> None:
    raw = cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [104, b"k"]))
    assert decode(raw) == PutRequest(key=b"k")


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\xff\x00", "malformed CBOR"),
        (b"", "malformed CBOR"),
        (cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [99999, b"k"])), "unknown message type"),
        (cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [104, "k"])), "expected bytes"),
        (cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [104])), "expected 6 fields"),
        (cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [104, b"k", b"v", 1, 1])), "expected a bool"),
        (cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [102, b"k", b"", 0, 0, 9])), "not a valid"),
        (cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [104, b"k", b"", 2**70])), "out of 64-bit"),
        (cbor2.dumps(cbor2.CBORTag(123, [1])), "unknown CBOR tag"),
        (b"\x81" * 5000 + b"\x00", "nesting depth"),
    ],
)
def test_bad_input_is_a_decode_error(raw: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        decode(raw)


def test_expect_narrows_the_type() -> None:
    with pytest.raises(DecodeError, match="unexpected message type"):
        decode(encode(PutRequest(key=b"k")), RangeRequest)


def test_envelope_frames() -> None:
    frames = envelope.pack(PutRequest(key=b"k"), msg_id=7, in_reply_to=3)
    header, body = envelope.unpack_header(frames)
    assert (header.msg_id, header.in_reply_to) == (7, 3)
    assert decode(body) == PutRequest(key=b"k")
    assert envelope.unpack_header(frames[1:]) == (envelope.PLAIN_HEADER, body)  # a lone frame is a body
    with pytest.raises(DecodeError, match="protocol version"):
        envelope.unpack_header([encode(envelope.Header(version=99)), body])


def test_the_empty_header_is_not_sent_and_reads_as_any_other() -> None:
    plain = envelope.pack(b"body")
    assert plain == [b"body"]  # one frame: the empty header is implied
    assert envelope.unpack_header(plain) == (envelope.Header(), b"body")
    assert envelope.unpack_header(plain)[0] is envelope.PLAIN_HEADER
    assert (
        envelope.unpack_header([encode(envelope.Header()), b"b"])[0] is envelope.PLAIN_HEADER
    )  # sent anyway
    with pytest.raises(DecodeError, match="expected 1 or 2 frames"):
        envelope.unpack_header([b"h", b"b", b"x"])
    header, _ = envelope.unpack_header(envelope.pack(b"body", token="t"))
    assert header == envelope.Header(token="t")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_other_exceptions(raw: bytes) -> None:
    try:
        decode(raw)
    except DecodeError:
        pass


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=8) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.builds(
            lambda tid, rest: cbor2.CBORTag(codec.MESSAGE_TAG, [tid, *rest]),
            st.sampled_from(sorted(codec.registered())),
            st.lists(children, max_size=6),
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(cbor_values)
def test_valid_cbor_of_wrong_shapes_is_rejected_or_well_typed(value: object) -> None:
    try:
        msg = decode(cbor2.dumps(value))
    except DecodeError:
        return
    # Whatever decoded is either plain data or a message whose fields re-encode identically.
    assert decode(encode(msg)) == msg


def test_response_with_many_kvs_round_trips() -> None:
    resp = RangeResponse(
        header=ResponseHeader(revision=9),
        kvs=[KeyValue(key=b"k%d" % i, value=b"v" * 10, mod_revision=i) for i in range(50)],
        count=50,
    )
    assert decode(encode(resp)) == resp


def test_a_template_encodes_as_the_message_would() -> None:
    kv = KeyValue(key=b"k", value=b"v" * 300, mod_revision=7)
    events = [Event(type=EventType.PUT, kv=kv)]
    resp = WatchResponse(header=ResponseHeader(revision=7), watch_id=0, events=events)
    template = Template(resp, "watch_id")
    for watch_id in (0, 1, 23, 24, 255, 65_536, 2**40, -1, -(2**40)):
        assert template.encode(watch_id) == codec.encode(dataclasses.replace(resp, watch_id=watch_id))


def test_peek_reads_a_messages_leading_ints_and_refuses_anything_else() -> None:
    kv = KeyValue(key=b"k", create_revision=7, mod_revision=7, version=1, value=b"v")
    event = Event(type=EventType.PUT, kv=kv)
    body = encode(EventBatch(first_revision=7, revision=9, compact_revision=2, events=[event]))
    assert codec.peek(body, EventBatch, 3) == [7, 9, 2]
    for bad in (b"\xff\x00", encode(kv), cbor2.dumps([360, 1, 2, 3]), body[:-3]):
        with pytest.raises(DecodeError):
            codec.peek(bad, EventBatch, 3)
    wrong = cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [360, "1", 2, 3, []]))
    with pytest.raises(DecodeError, match="expected ints"):
        codec.peek(wrong, EventBatch, 3)


def test_every_type_id_lies_in_its_modules_block() -> None:
    """The decoder imports a protocol module by the block its type ids are in: an id defined
    outside its module's block would be unknown to a process that has not imported it yet."""
    for type_id, cls in codec.registered().items():
        assert codec.module_of(type_id) == cls.__module__, (type_id, cls.__name__)


def test_a_message_of_a_module_not_yet_imported_decodes() -> None:
    """A fresh interpreter that imported only the codec decodes any message: the module that
    defines it is imported on the way."""
    from proto_schemas.lease import LeaseGrantRequest

    raw = encode(LeaseGrantRequest(ttl=5, id=7))
    script = (
        "import sys; from proto_schemas import codec; "
        "before = 'proto_schemas.lease' in sys.modules; "
        "m = codec.decode(bytes.fromhex(sys.argv[1])); "
        "print(before, type(m).__name__, m.ttl, m.id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, raw.hex()], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "LeaseGrantRequest", "5", "7"]
