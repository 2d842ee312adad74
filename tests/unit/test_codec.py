"""The codec: round trips, and every kind of bad input becomes a DecodeError."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import uuid
from decimal import Decimal
from fractions import Fraction

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
from tools.fuzz import shared_txns


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
    assert decode(cbor2.dumps([104, b"k"])) == PutRequest(key=b"k")
    assert decode(cbor2.dumps([109, [], [[104, b"k"]]])) == TxnRequest(success=[PutRequest(key=b"k")])


def test_a_message_is_a_plain_array_and_the_old_tagged_form_is_still_read() -> None:
    """Messages are written as ``[type_id, fields...]``; what earlier versions wrote (each
    message inside tag 27001: WAL entries, backend values, snapshots) decodes to the same."""
    txn = TxnRequest(
        compare=[Compare(key=b"a", target=CompareTarget.VERSION, version=3)],
        success=[PutRequest(key=b"a", value=b"1"), TxnRequest(success=[RangeRequest(key=b"b")])],
    )
    raw = encode(txn)
    assert cbor2.loads(raw)[0] == 109 and b"\xd9\x69\x79" not in raw

    def tagged(value: object) -> object:
        if isinstance(value, list) and value and type(value[0]) is int:
            return cbor2.CBORTag(codec.MESSAGE_TAG, [value[0], *map(tagged, value[1:])])
        return [tagged(v) for v in value] if isinstance(value, list) else value

    old = cbor2.dumps(tagged(cbor2.loads(raw)))
    assert old != raw and decode(old) == txn


@pytest.mark.parametrize(
    "value, fragment",
    [
        ([109, [[104, b"k"]]], "expected a Compare message, got PutRequest"),
        ([109, [], [[108, b"k"]]], "value of type Compare not allowed"),
        # a union field of a message with every field: the refusal names the field all the same
        ([300, 1, [108, b"k"], None, 0, 0, 0, 0], "InternalRequest.request: value of type Compare"),
        ([109, [], [[99999]]], "unknown message type 99999"),
        ([109, [], [[]]], "not allowed"),
        ([109, [], [b"k"]], "not allowed"),
        ([105, [100, 1, 2, 3, 4, 5]], "expected 4 fields, got 5"),
        ([105, [b"x"]], "expected a ResponseHeader message, got list"),
        ([105, 7], "expected ResponseHeader, got int"),
    ],
)
def test_a_nested_message_of_the_wrong_type_or_shape_is_refused(value: list[object], fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        decode(cbor2.dumps(value))


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\xff\x00", "malformed CBOR"),
        (b"", "malformed CBOR"),
        (cbor2.dumps([99999, b"k"]), "unknown message type"),
        (cbor2.dumps([104, "k"]), "expected bytes"),
        (cbor2.dumps([104]), "expected 6 fields"),
        (cbor2.dumps([104, b"k", b"v", 1, 1]), "expected a bool"),
        (cbor2.dumps([102, b"k", b"", 0, 0, 9]), "not a valid"),
        (cbor2.dumps([104, b"k", b"", -(2**64)]), "out of 64-bit"),
        (cbor2.dumps([104, b"k", b"", 2**70]), "tag 2 is not allowed"),
        (cbor2.dumps(cbor2.CBORTag(123, [1])), "tag 123 is not allowed"),
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
@given(
    st.integers(1, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.text(),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)
def test_the_call_headers_made_and_read_without_the_codec_are_the_codecs(
    msg_id: int, in_reply_to: int, token: str, client_id: int, acked: int
) -> None:
    assert envelope.request_header(msg_id, token) == encode(envelope.Header(msg_id=msg_id, token=token))
    made = envelope.request_header(msg_id, token, client_id, acked)
    assert made == encode(envelope.Header(msg_id=msg_id, token=token, client_id=client_id, acked=acked))
    assert envelope.reply_to(encode(envelope.Header(in_reply_to=in_reply_to))) == in_reply_to
    if in_reply_to:  # a member's reply header
        assert envelope.pack(b"b", in_reply_to=in_reply_to)[0] == encode(
            envelope.Header(in_reply_to=in_reply_to)
        )
    for other in (  # anything else is left to the codec
        envelope.Header(in_reply_to=in_reply_to, token=token or "t"),
        envelope.Header(msg_id=msg_id, in_reply_to=in_reply_to),
        envelope.Header(version=2, in_reply_to=in_reply_to),
        envelope.Header(in_reply_to=in_reply_to, client_id=client_id or 1),
        envelope.Header(in_reply_to=in_reply_to, acked=acked or 1),
    ):
        assert envelope.reply_to(encode(other)) == -1
    assert envelope.reply_to(encode(envelope.Header(in_reply_to=in_reply_to))[:-1]) == -1


def test_a_header_without_a_write_session_still_decodes() -> None:
    """Clients made before exactly-once writes send five fields: no session, the rest as ever."""
    old = cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [1, envelope.PROTOCOL_VERSION, 7, 0, "tok"]))
    header, body = envelope.unpack_header([old, b"b"])
    assert (header.msg_id, header.token, header.client_id, header.acked, body) == (7, "tok", 0, 0, b"b")


def test_sizes_are_checked_before_anything_is_decoded() -> None:
    body = b"\x80" * 5000  # would decode to thousands of lists
    with pytest.raises(envelope.TooLarge) as caught:
        envelope.unpack_header([encode(envelope.Header(msg_id=9)), body], max_body=4096)
    assert caught.value.header.msg_id == 9  # named, so that the refusal can answer it
    with pytest.raises(envelope.TooLarge):
        envelope.unpack_header([body], max_body=4096)
    assert envelope.unpack_header([body], max_body=5000)[1] == body
    huge = b"\x9a" + (1 << 20).to_bytes(4, "big") + b"\x80" * (1 << 20)
    with pytest.raises(DecodeError, match="header of"):  # refused by its size, never decoded
        envelope.unpack_header([huge, b"\x00"])


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
            lambda tid, rest, old: cbor2.CBORTag(codec.MESSAGE_TAG, [tid, *rest]) if old else [tid, *rest],
            st.sampled_from(sorted(codec.registered())),
            st.lists(children, max_size=6),
            st.booleans(),  # the message as written now, or in the old tagged form
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
    # Whatever decoded as a message re-encodes identically. (Plain data at the top holding
    # messages in the old tagged form decodes too, but only a message is written back.)
    if dataclasses.is_dataclass(msg):
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
    assert codec.peek(cbor2.dumps([360, 1, 2, 3]), EventBatch, 3) == [1, 2, 3]  # the rest left out
    for bad in (b"\xff\x00", encode(kv), cbor2.dumps([361, 1, 2, 3]), cbor2.dumps([360, 1, 2]), body[:-3]):
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


_RACE = """
import sys, threading
from proto_schemas import codec
sys.setswitchinterval(1e-6)  # a thread switch anywhere: the compile race shows at once
raws = [bytes.fromhex(h) for h in sys.argv[1:]]
errors = []
barrier = threading.Barrier(8)

def reader():
    barrier.wait()
    for raw in raws:
        try:
            codec.decode(raw)
        except Exception as exc:
            errors.append(repr(exc))

threads = [threading.Thread(target=reader) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(errors), errors[:3])
"""


def test_threads_meeting_a_message_type_first_together_all_decode_it() -> None:
    """The SDK decodes on several threads (a watch stream each, the caller's): each message
    class is compiled the first time any thread meets it, and a thread meeting it meanwhile
    must wait for that, not find the type unknown (a watch response dropped as undecodable is
    an event lost). A fresh interpreter, eight threads, messages of types none has seen."""
    from proto_schemas.lease import LeaseGrantRequest, LeaseKeepAliveResponse
    from proto_schemas.watch import SharedWatchResponse, WatchResponses

    header = ResponseHeader(revision=2)
    event = Event(type=EventType.PUT, kv=KeyValue(key=b"k", value=b"v", mod_revision=2))
    shared = SharedWatchResponse(watch_ids=[1, 2], response=WatchResponse(header=header, events=[event]))
    messages = [
        WatchResponses(responses=[shared, WatchResponse(header=header, watch_id=3, created=True)]),
        PutRequest(key=b"k", value=b"v"),
        LeaseGrantRequest(ttl=5, id=7),
        LeaseKeepAliveResponse(header=header, id=7, ttl=5),
    ]
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", _RACE, *(encode(m).hex() for m in messages)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert done.stdout.strip() == "0 []"


def _in_put(item: bytes) -> bytes:
    """A PutRequest whose value field is the raw CBOR ``item``."""
    return b"\xd9\x69\x79\x83\x18\x68\x41k" + item


@pytest.mark.parametrize(
    "number", [*codec.NATIVE_TAGS, 6, 24, 26, 27, 32, 33, 1000, 27000, 27002, 2**32, 2**64 - 1]
)
def test_only_the_message_tag_is_decoded(number: int) -> None:
    for content in (0, [0], b"\x00" * 8, "x", [b"", b""], [1, 3], [0, [0]]):
        raw = cbor2.dumps(cbor2.CBORTag(number, content))
        with pytest.raises(DecodeError, match=f"tag {number} is not allowed"):
            decode(raw)
        with pytest.raises(DecodeError):
            decode(_in_put(raw))
        with pytest.raises(DecodeError, match=f"tag {number} is not allowed"):
            codec.count_items(raw, 1 << 20)  # the pre-scan refuses it too


def test_no_tag_but_the_message_tag_gets_past_the_decoder() -> None:
    """Guards NATIVE_TAGS: a cbor2 that decodes a tag itself (not calling the hook) would let
    it through; every small tag number and a few large ones must be refused."""
    passed = []
    for number in [*range(0, 1 << 16), 55799, 0xD9D9F7, 2**32, 2**63]:
        if number == codec.MESSAGE_TAG:
            continue
        for content in (0, [0]):
            try:
                decode(cbor2.dumps(cbor2.CBORTag(number, content)))
            except DecodeError:
                continue
            passed.append(number)
    assert passed == []


def test_shared_references_are_refused_before_anything_is_walked() -> None:
    bomb = shared_txns(12, fanout=10)  # 10**11 txns to check for whoever follows the references
    assert len(bomb) < 500
    with pytest.raises(DecodeError, match="tag 2[89] is not allowed"):
        decode(bomb)


def test_rationals_bignums_and_other_built_in_tags_are_refused() -> None:
    big = 1 << 100_000
    for value in (
        Fraction(big, big - 1),
        big,
        -big,
        Decimal("1e-100000"),
        {1, 2},
        re.compile("a"),
        uuid.uuid4(),
    ):
        with pytest.raises(DecodeError, match="is not allowed"):
            decode(cbor2.dumps(value))


def test_maps_and_indefinite_lengths_are_refused() -> None:
    for raw in (b"\xa0", b"\xa1\x00\x00", cbor2.dumps(cbor2.CBORTag(codec.MESSAGE_TAG, [104, {}]))):
        with pytest.raises(DecodeError, match="map"):
            decode(raw)
        with pytest.raises(DecodeError, match="maps are not allowed"):
            codec.count_items(raw, 1 << 20)
    for raw in (b"\x9f\x00\xff", b"\x5f\x41a\xff", b"\x7f\x61a\xff", _in_put(b"\x5f\x41a\xff")):
        with pytest.raises(DecodeError, match="indefinite"):
            decode(raw)
        with pytest.raises(DecodeError, match="indefinite"):
            codec.count_items(raw, 1 << 20)


def test_huge_declared_lengths_fail_fast() -> None:
    for head in (b"\x9b", b"\x5b", b"\x7b"):
        for length in (2**32, 2**63, 2**64 - 1):
            raw = head + length.to_bytes(8, "big") + b"\x00"
            with pytest.raises(DecodeError):
                decode(raw)
            with pytest.raises(DecodeError):
                decode(raw, max_items=0)


def test_input_from_the_network_is_one_message_and_nothing_after_it() -> None:
    """cbor2 reads the first item and ignores the rest; a client's frame holding more than its
    message is malformed, not quietly cut short."""
    put = encode(PutRequest(key=b"k"))
    assert decode(put, max_items=64) == PutRequest(key=b"k")
    for extra in (b"\x00", put, b"\xff"):
        with pytest.raises(DecodeError, match="bytes after the message"):
            decode(put + extra, max_items=64)


def test_an_item_budget_bounds_what_a_frame_may_expand_to() -> None:
    flood = b"\x9a" + (1 << 20).to_bytes(4, "big") + b"\x80" * (1 << 20)  # a million empty lists
    with pytest.raises(DecodeError, match="more than 4096 CBOR items"):
        decode(flood, max_items=4096)
    # Big values are few items: a frame longer than the budget is walked, not refused.
    put = PutRequest(key=b"k", value=b"\x80" * 100_000)
    assert decode(encode(put), max_items=64) == put
    assert codec.count_items(encode(put), 64) == 8  # array, type id and six fields
    txn = TxnRequest(success=[PutRequest(key=b"k%d" % i, value=b"v") for i in range(128)])
    assert decode(encode(txn), max_items=len(encode(txn)) - 1) == txn


_FIELD_VALUES = (
    st.sampled_from(
        [
            0,
            7,
            -1,
            2**64 - 1,
            -(2**63),
            2**64,
            -(2**63) - 1,
            True,
            False,
            None,
            b"",
            b"k",
            "",
            "s",
            1.5,
            (),
            [],
        ]
        + [(b"x",), 1, 2, 3]
    )
    | st.builds(lambda: (KeyValue(key=b"k"),))
    | st.builds(lambda: ResponseHeader(revision=3))
    # messages as received now (100 ResponseHeader, 101 KeyValue): lists, right or wrong for
    # the field, whole or cut short
    | st.builds(lambda: [101, b"k"])
    | st.builds(lambda: [100])
    | st.builds(lambda: [[101, b"k", 1, 2, 3, b"v", 0]])
    | st.builds(lambda: [100, 1, 2, 3, 4])
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(codec.registered())), st.data())
def test_a_message_carrying_every_field_is_checked_as_any_other(type_id: int, data: st.DataObject) -> None:
    """A message with all its fields takes the generated builder (the usual case checked inline):
    it accepts and refuses exactly what the field checkers do, and builds the same message."""
    spec = codec._spec_of(type_id)
    assert spec is not None
    # Each field keeps its default or takes one of many values, right or wrong for its type.
    values = [
        data.draw(_FIELD_VALUES if f.default is dataclasses.MISSING else st.just(f.default) | _FIELD_VALUES)
        for f in dataclasses.fields(spec.cls)
    ]
    try:
        expected = spec.cls(
            **{n: check(v, 0) for n, check, v in zip(spec.names, spec.checkers, values, strict=True)}
        )
    except (DecodeError, TypeError, ValueError):
        expected = None
    try:
        built = codec._message((type_id, *values))
    except DecodeError:
        built = None
    assert built == expected
    if built is not None:
        assert all(type(getattr(built, n)) is type(getattr(expected, n)) for n in spec.names)
