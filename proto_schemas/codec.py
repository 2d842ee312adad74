"""One codec for every message that crosses a process or network boundary.

Rules:
- A message is a frozen, slotted, keyword-only dataclass (``@wire``) registered with
  ``@message(type_id)``.
  The id is part of the wire format: never reuse or renumber one.
- On the wire a message is the CBOR array ``[type_id, field1, field2, ...]``, fields in
  declaration order, nested messages the same way: the schema says which fields hold messages,
  and the type id leading each one tells the members of a union (etcd's ``RequestOp``) apart.
  Decoding builds a message top-down from its fields' types. Earlier versions wrapped every
  message in the CBOR tag ``MESSAGE_TAG``; that form is still read (entries in a WAL, values in
  a backend, snapshots written before), never written: a tag costs cbor2's encoder three
  Python-level ABC checks and its decoder a call back per message.
- Decoding checks every field against its annotation. Anything else -- bytes that are not CBOR,
  an unknown type id, a wrong arity, a wrong type, absurd nesting -- raises ``DecodeError``
  (a definite error: the request never happened). Nothing received is ever unpickled or eval'd
  (the per-class encode and build functions are generated at registration from field names).
- Only plain CBOR (and the old ``MESSAGE_TAG``) is accepted: every other tag (cbor2 would otherwise
  build bignums, fractions, dates, sets, shared and string references from them, some at
  quadratic cost or as graphs that grow exponentially when walked), every map (no message has
  one) and every indefinite-length item is refused while decoding, before it is built.
- A receiver facing the network passes ``max_items``: a frame longer than that many bytes
  (each item takes one at least) is walked first, header by header, and refused when it holds
  more items, so a small frame never turns into a structure many times its size.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import io
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union

import cbor2

MESSAGE_TAG = 27001  # private-use CBOR tag for "etcdz message"
MAX_DEPTH = 64  # nested txns and lists; deeper input is rejected, never recursed into blindly
# The tags cbor2 6 decodes by itself (it calls the tag hook for the others). Each is refused
# here; tests/unit/test_codec.py checks that no other tag gets past the hook, so a cbor2 that
# learns a new tag fails a test instead of opening a door.
NATIVE_TAGS = (
    0,
    1,
    2,
    3,
    4,
    5,
    25,
    28,
    29,
    30,
    35,
    36,
    37,
    52,
    54,
    100,
    256,
    258,
    260,
    261,
    1004,
    43000,
    55799,
)

_T = TypeVar("_T")
Checker = Callable[[Any, int], Any]


class DecodeError(ValueError):
    """Input that is not a well-formed etcdz message (the sender broke the protocol)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    cls: type
    type_id: int
    names: tuple[str, ...]
    checkers: tuple[Checker, ...]
    required: int  # fields without defaults
    payload: Callable[[Any], list[Any]]  # message -> [type_id, field values...]
    build: Callable[[Any], Any]  # all field values, as received -> checked message
    child: Callable[[Any], Any]  # a value received where this class is expected -> message


# Where each block of type ids is defined: a decoder that meets an id of a module not yet
# imported imports it (tests/unit/test_codec.py checks that every id lies in its module's block).
MODULES: tuple[tuple[int, int, str], ...] = (
    (1, 1, "envelope"),
    (90, 99, "errors"),
    (100, 119, "kv"),
    (120, 139, "cluster"),
    (140, 159, "lease"),
    (160, 179, "watch"),
    (180, 199, "maintenance"),
    (200, 209, "raft"),
    (210, 299, "auth"),
    (300, 329, "internal"),
    (330, 349, "cluster"),
    (350, 359, "lease"),
    (360, 369, "watch"),
    (370, 399, "internal"),
)

_BY_ID: dict[int, _Spec] = {}
_BY_CLS: dict[type, _Spec] = {}
# Registered, not yet compiled (each is, the first time it is used). A class leaves it only
# once its spec is published: a thread that finds a class neither here nor compiled can then
# look again and find it compiled. Threads meeting a class together (the SDK decodes on a
# thread per watch stream and on the caller's) may each compile it; the specs are alike.
_PENDING: dict[int, type] = {}


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def wire(cls: type[_T]) -> type[_T]:
    """The dataclass every message is: frozen, slotted, keyword-only. One definition, and one
    that type checkers read as a dataclass (an alias of ``dataclass(...)`` they do not)."""
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


def message(type_id: int) -> Callable[[type[_T]], type[_T]]:
    """Register a dataclass as a wire message with a permanent ``type_id``."""

    def register(cls: type[_T]) -> type[_T]:
        if type_id in _BY_ID or type_id in _PENDING:
            raise RuntimeError(f"message type id {type_id} registered twice")
        cls._type_id = type_id  # type: ignore[attr-defined]
        _PENDING[type_id] = cls
        return cls

    return register


def _resolve() -> None:
    """Compile every class registered so far (for what needs the whole registry)."""
    for cls in list(_PENDING.values()):
        _compile(cls)


def _compile(cls: type) -> _Spec:
    """A class's checkers and its encode and build functions, made when it is first used
    (annotations may name classes defined later; and a process uses few of the classes)."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    checkers = tuple(_checker_for(hints[f.name], f"{cls.__name__}.{f.name}") for f in fields)
    required = sum(
        1 for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    type_id: int = cls._type_id  # type: ignore[attr-defined]
    build = _compile_build(cls, names, checkers, [hints[n] for n in names])
    spec = _Spec(
        cls,
        type_id,
        names,
        checkers,
        required,
        _compile_payload(type_id, [(n, hints[n]) for n in names]),
        build,
        _compile_child(cls, type_id, len(names) + 1, build),
    )
    _BY_ID[spec.type_id] = spec
    _BY_CLS[cls] = spec
    _PENDING.pop(type_id, None)  # after publishing (see _PENDING)
    return spec


def _spec_for(cls: type) -> _Spec | None:
    """The spec of a registered class, compiled if it is not yet."""
    spec = _BY_CLS.get(cls)
    if spec is None:
        pending = _PENDING.get(getattr(cls, "_type_id", None))  # type: ignore[arg-type]
        spec = _compile(cls) if pending is cls else _BY_CLS.get(cls)  # or another thread did
    return spec


def module_of(type_id: int) -> str | None:
    """The protocol module that defines ``type_id`` (by its block), or None."""
    for low, high, name in MODULES:
        if low <= type_id <= high:
            return f"proto_schemas.{name}"
    return None


def _spec_of(type_id: Any) -> _Spec | None:
    """The spec of a type id, importing its protocol module the first time it is met."""
    spec = _BY_ID.get(type_id)
    if spec is None and type(type_id) is int:
        if type_id not in _PENDING:
            module = module_of(type_id)
            if module is not None:
                importlib.import_module(module)
        cls = _PENDING.get(type_id)
        spec = _compile(cls) if cls is not None else _BY_ID.get(type_id)  # or another thread did
    return spec


def load_all() -> None:
    """Import every protocol module (for whatever needs the whole registry)."""
    for name in {name for _, _, name in MODULES}:
        importlib.import_module(f"proto_schemas.{name}")
    _resolve()


_PLAIN = (int, bytes, str, bool, float)
_SCALARS = frozenset({int, bytes, str, bool, float, type(None)})


def _compile_payload(type_id: int, hints: list[Any]) -> Callable[[Any], list[Any]]:
    """``lambda m: [type_id, m.a, int(m.b), t(m.c), ...]`` made once per class: the message
    as the plain CBOR tree cbor2 encodes without calling back (``t`` converts what may hold
    messages); enum fields go out as plain ints (the same CBOR, minus the encoder's slow path
    for int subclasses)."""
    items = ", ".join([str(type_id), *(_payload_of(f"m.{name}", tp) for name, tp in hints)])
    return eval(f"lambda m: [{items}]", {"t": _tree})  # noqa: S307


def _payload_of(value: str, tp: Any) -> str:
    """The expression that puts field ``value`` of type ``tp`` into the CBOR tree: scalars (a
    list of them, an optional one) as they are, cbor2 writes them without calling back; a
    message or a list of messages through ``t`` (an ``Encoded`` one included); a None without
    a call."""
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return f"int({value})"
    if tp in _PLAIN:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and args[0] in _PLAIN:
        return value
    if origin is list:
        return f"[t(e) for e in {value}]"
    if origin in (Union, types.UnionType) and type(None) in args:
        if all(a in _PLAIN or a is type(None) for a in args):
            return value
        return f"(None if {value} is None else t({value}))"
    return f"t({value})"


def _compile_build(
    cls: type, names: tuple[str, ...], checkers: tuple[Checker, ...], hints: list[Any]
) -> Callable[[Any], Any]:
    """A function made once per class that takes the decoded ``[type_id, a, b, ...]`` of a
    message carrying every field (the common case; fewer fields take the generic path) and
    returns the checked message. The usual case of each field is checked inline (``type(x) is
    int``, a small int, a None) and only anything else goes to the field's checker, which
    raises the precise error; the slots are then set directly: the frozen dataclass's
    ``__init__`` (keyword parsing, a ``object.__setattr__`` per field) cost as much as all the
    checks together. What the result holds is exactly what ``cls(**checked)`` would hold."""
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__, "LO": -(2**63), "HI": 2**64}
    lines = ["def build(v):"]
    for i, (name, tp) in enumerate(zip(names, hints, strict=True)):
        scope[f"c{i}"] = checkers[i]
        scope[f"s{i}"] = cls.__dict__[name].__set__  # the slot's own descriptor
        lines += [f"    x{i} = v[{i + 1}]", *_inline_check(i, tp, scope)]
    lines.append("    o = new(cls)")
    lines += [f"    s{i}(o, x{i})" for i in range(len(names))]
    lines.append("    return o")
    exec("\n".join(lines), scope)  # noqa: S102 (built from field names and types only)
    return scope["build"]


def _compile_child(cls: type, type_id: int, arity: int, build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The function that turns a value received where a ``cls`` is expected into one: the
    usual ``[type_id, every field]`` goes straight to ``build``; anything else (fewer fields, a
    message the old tagged form built already, a wrong shape) takes ``_child_slow``."""

    def child(v: Any) -> Any:
        if type(v) is list and len(v) == arity and v[0] == type_id:
            return build(v)
        return _child_slow(v, cls)

    return child


def _child_slow(v: Any, cls: type) -> Any:
    if type(v) is cls:
        return v  # built from the old tagged form
    spec = _spec_for(cls)
    assert spec is not None
    if type(v) is not list or not v or type(v[0]) is not int:
        raise DecodeError(f"expected a {cls.__name__} message, got {type(v).__name__}")
    if v[0] != spec.type_id:
        found = _spec_of(v[0])
        name = found.cls.__name__ if found is not None else f"unknown type {v[0]}"
        raise DecodeError(f"expected a {cls.__name__} message, got {name}")
    return _from_body(spec, v)


def _from_body(spec: _Spec, body: list[Any] | tuple[Any, ...]) -> Any:
    """A message from its ``[type_id, fields...]`` (the id already matched); trailing fields
    left out take their defaults."""
    try:
        if len(body) == len(spec.names) + 1:
            return spec.build(body)
        values = body[1:]
        if not spec.required <= len(values) <= len(spec.names):
            raise DecodeError(f"{spec.cls.__name__}: expected {len(spec.names)} fields, got {len(values)}")
        kwargs = {
            name: check(v, 0) for name, check, v in zip(spec.names, spec.checkers, values, strict=False)
        }
        return spec.cls(**kwargs)
    except DecodeError:
        raise
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{spec.cls.__name__}: {exc}") from None


def _lazy_child(cls: type) -> list[Callable[[Any], Any]]:
    """A cell holding ``cls``'s child function, filled the first time it is called: a class
    is compiled when first used, and a field may name a class that names this one back."""
    cell: list[Callable[[Any], Any]] = []

    def first(v: Any) -> Any:
        spec = _spec_for(cls)
        if spec is None:
            raise TypeError(f"{cls.__name__} is not a registered message")
        cell[0] = spec.child
        return spec.child(v)

    cell.append(first)
    return cell


def _one_of(allowed: frozenset[type], where: str) -> Callable[[Any], Any]:
    """The builder of a field typed as a union of messages: the received list's type id
    says which one."""

    def one_of(v: Any) -> Any:
        spec = _BY_ID.get(v[0]) if v and type(v[0]) is int else None
        if spec is None and v and type(v[0]) is int:
            spec = _spec_of(v[0])
            if spec is None:
                raise DecodeError(f"{where}: unknown message type {v[0]}")
        if spec is None or spec.cls not in allowed:
            got = spec.cls.__name__ if spec is not None else "a list"
            raise DecodeError(f"{where}: value of type {got} not allowed")
        return spec.child(v)

    return one_of


def _inline_check(i: int, tp: Any, scope: dict[str, Any]) -> list[str]:
    """Source lines that leave field ``i``'s checked value in ``x{i}``: the common case inline,
    the rest through checker ``c{i}`` (which raises for what it refuses)."""
    x, slow = f"x{i}", f"x{i} = c{i}(x{i}, 0)"
    if tp is Any:
        return []
    if tp is int:
        return [f"    if type({x}) is not int or not LO <= {x} < HI: {slow}"]
    if tp in (bool, bytes, str, float):
        scope[f"t{i}"] = tp
        return [f"    if type({x}) is not t{i}: {slow}"]
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        scope[f"m{i}"] = dict(tp._value2member_map_)
        return [
            f"    e{i} = m{i}.get({x}) if type({x}) is int else None",
            f"    {x} = c{i}({x}, 0) if e{i} is None else e{i}",
        ]
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if all(_is_message_or_none(a) for a in typing.get_args(tp)):
            scope[f"t{i}"] = frozenset(typing.get_args(tp))
            # a list is built by the checker, whose refusals name the field
            return [f"    if type({x}) is list or type({x}) not in t{i}: {slow}"]
        if type(None) in typing.get_args(tp):
            return [f"    if {x} is not None: {slow}"]
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            scope[f"t{i}"], scope[f"k{i}"] = item, _lazy_child(item)
            return [
                f"    if type({x}) is list: {x} = [k{i}[0](e) for e in {x}]",
                f"    elif type({x}) is tuple and all(type(e) is t{i} for e in {x}): {x} = list({x})",
                f"    else: {slow}",
            ]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        scope[f"t{i}"], scope[f"k{i}"] = tp, _lazy_child(tp)
        return [f"    if type({x}) is list: {x} = k{i}[0]({x})", f"    elif type({x}) is not t{i}: {slow}"]
    return [f"    {slow}"]


def _is_message_or_none(tp: Any) -> bool:
    return tp is type(None) or (isinstance(tp, type) and dataclasses.is_dataclass(tp))


def _checker_for(tp: Any, where: str) -> Checker:
    origin = typing.get_origin(tp)
    if tp is Any:
        return lambda v, d: v
    if origin in (Union, types.UnionType):
        if all(_is_message_or_none(a) for a in typing.get_args(tp)):
            allowed = frozenset(typing.get_args(tp))
            one_of = _one_of(allowed, where)

            def check_one_of(v: Any, d: int) -> Any:
                if type(v) is list:
                    return one_of(v)
                if type(v) not in allowed:
                    raise DecodeError(f"{where}: value of type {type(v).__name__} not allowed")
                return v

            return check_one_of
        options = [_checker_for(a, where) for a in typing.get_args(tp)]

        def check_union(v: Any, d: int) -> Any:
            for opt in options:
                try:
                    return opt(v, d)
                except DecodeError:
                    continue
            raise DecodeError(f"{where}: value of type {type(v).__name__} not allowed")

        return check_union
    if tp is type(None):

        def check_none(v: Any, d: int) -> Any:
            if v is not None:
                raise DecodeError(f"{where}: expected null")
            return v

        return check_none
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item = _checker_for(item_tp, where)

        def check_list(v: Any, d: int) -> Any:
            if not isinstance(v, list | tuple):  # cbor2 decodes arrays inside tags as tuples
                raise DecodeError(f"{where}: expected a list, got {type(v).__name__}")
            return [item(x, d + 1) for x in v]

        return check_list
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [_checker_for(a, where) for a in args]

        def check_tuple(v: Any, d: int) -> Any:
            if not isinstance(v, list | tuple) or len(v) != len(parts):
                raise DecodeError(f"{where}: expected a {len(parts)}-tuple")
            return tuple(p(x, d + 1) for p, x in zip(parts, v, strict=True))

        return check_tuple
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        members = dict(tp._value2member_map_)  # a lookup, not the enum's slow __call__

        def check_enum(v: Any, d: int) -> Any:
            if type(v) is not int:
                raise DecodeError(f"{where}: expected an integer enum value")
            member = members.get(v)
            if member is None:
                raise DecodeError(f"{where}: {v} is not a valid {tp.__name__}")
            return member

        return check_enum
    if tp is bool:

        def check_bool(v: Any, d: int) -> Any:
            if type(v) is not bool:
                raise DecodeError(f"{where}: expected a bool, got {type(v).__name__}")
            return v

        return check_bool
    if tp is int:

        def check_int(v: Any, d: int) -> Any:
            if type(v) is not int:
                raise DecodeError(f"{where}: expected an int, got {type(v).__name__}")
            if not -(2**63) <= v < 2**64:
                raise DecodeError(f"{where}: integer out of 64-bit range")
            return v

        return check_int
    if tp in (bytes, str, float):

        def check_scalar(v: Any, d: int) -> Any:
            if type(v) is not tp:
                raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__}")
            return v

        return check_scalar
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        child = _lazy_child(tp)

        def check_message(v: Any, d: int) -> Any:
            if type(v) is list:
                return child[0](v)
            if type(v) is not tp:
                raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__}")
            return v

        return check_message
    raise TypeError(f"{where}: unsupported field type {tp!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """A message already encoded, written as is wherever it appears inside another (a batch
    of responses encoded one by one)."""

    raw: bytes


_MARKER = 2**64 - 0x5EED  # a value no field of a template's message holds


class Template:
    """Encodings of one message that differ only in one integer field: the bytes around the
    field are made once, so a thousand watchers' copies of one response cost a concatenation
    each instead of a full encode."""

    __slots__ = ("_prefix", "_suffix", "_msg", "_field")

    def __init__(self, msg: Any, field: str) -> None:
        self._msg, self._field = msg, field
        raw = encode(dataclasses.replace(msg, **{field: _MARKER}))
        mark = cbor2.dumps(_MARKER)
        at = raw.find(mark)
        if at < 0 or raw.find(mark, at + 1) >= 0:  # not found once: no shortcut
            self._prefix = self._suffix = b""
        else:
            self._prefix, self._suffix = raw[:at], raw[at + len(mark) :]

    def encode(self, value: int) -> bytes:
        if not self._prefix:
            return encode(dataclasses.replace(self._msg, **{self._field: value}))
        return self._prefix + cbor2.dumps(value) + self._suffix


def _default(encoder: cbor2.CBOREncoder, value: Any) -> None:
    if type(value) is Encoded:
        encoder.write(value.raw)
        return
    spec = _spec_for(type(value))
    if spec is None:
        raise TypeError(f"{type(value).__name__} is not a registered message")
    encoder.encode(spec.payload(value))


def _tree(value: Any) -> Any:
    """A message (or a value holding messages) as lists and scalars."""
    spec = _BY_CLS.get(type(value))
    if spec is not None:
        return spec.payload(value)
    if type(value) is list or type(value) is tuple:
        return [_tree(v) for v in value]
    if type(value) is dict:
        return {k: _tree(v) for k, v in value.items()}
    if type(value) in _SCALARS:
        return value
    spec = _spec_for(type(value))  # a message whose class is not compiled yet
    if spec is not None:
        return spec.payload(value)
    # What the default hook writes (``Encoded``) or refuses; never left to cbor2's own search
    # for an encoder, which imports a dozen modules (email, uuid, ...) the first time.
    return value


def encode(msg: Any) -> bytes:
    """Encode a registered message (or a plain CBOR value holding messages) to bytes."""
    return cbor2.dumps(_tree(msg), default=_default)


def _message(body: Any) -> Any:
    """A message from the ``[type_id, fields...]`` received where any message may stand (the
    top of a frame, the old tagged form), checked against its schema."""
    if (type(body) is not tuple and type(body) is not list) or not body or type(body[0]) is not int:
        raise DecodeError("malformed message: expected [type_id, fields...]")
    spec = _BY_ID.get(body[0]) or _spec_of(body[0])
    if spec is None:
        raise DecodeError(f"unknown message type {body[0]}")
    return _from_body(spec, body)


def _tagged(tag: cbor2.CBORTag, immutable: bool = False) -> Any:
    """The old form: cbor2 calls this tag hook once the tag's content is decoded (so the
    message is built bottom-up); any other tag is refused."""
    if tag.tag != MESSAGE_TAG:
        raise DecodeError(f"CBOR tag {tag.tag} is not allowed")
    return _message(tag.value)


def _refuser(number: int) -> Callable[[Any, bool], Any]:
    def refuse(value: Any, immutable: bool = False) -> Any:
        raise DecodeError(f"CBOR tag {number} is not allowed")

    return refuse


def _refuse_map(value: Any, immutable: bool = False) -> Any:
    raise DecodeError("CBOR maps are not allowed")


# cbor2's options for every decode (the message tag goes through the tag hook: measured
# faster than a semantic decoder of its own).
_OPTIONS: dict[str, Any] = {
    "tag_hook": _tagged,
    "object_hook": _refuse_map,
    "semantic_decoders": {t: _refuser(t) for t in NATIVE_TAGS},
    "max_depth": MAX_DEPTH,
    "allow_indefinite": False,
    "strict_hashable_types": True,
}
_WIDTH = {24: 1, 25: 2, 26: 4, 27: 8}


def count_items(data: bytes, limit: int) -> int:
    """The number of CBOR items in ``data``, walking headers only (a string's bytes are skipped,
    nothing is built); ``DecodeError`` as soon as there are more than ``limit`` or a header
    that decoding would refuse anyway (a foreign tag, a map, an indefinite length)."""
    end, at, items = len(data), 0, 0
    while at < end:
        head = data[at]
        at += 1
        major, info = head >> 5, head & 31
        if info < 24:
            arg = info
        elif info < 28:
            width = _WIDTH[info]
            arg = int.from_bytes(data[at : at + width], "big")
            at += width
        elif info == 31:
            raise DecodeError("indefinite-length CBOR items are not allowed")
        else:
            raise DecodeError(f"malformed CBOR: reserved header byte {head:#x}")
        if major == 2 or major == 3:
            at += arg
        elif major == 5:
            raise DecodeError("CBOR maps are not allowed")
        elif major == 6 and arg != MESSAGE_TAG:
            raise DecodeError(f"CBOR tag {arg} is not allowed")
        items += 1
        if items > limit:
            raise DecodeError(f"message holds more than {limit} CBOR items")
    return items


@typing.overload
def decode(data: bytes, expect: type[_T], max_items: int | None = None) -> _T: ...
@typing.overload
def decode(data: bytes, expect: tuple[type, ...] | None = None, max_items: int | None = None) -> Any: ...
def decode(
    data: bytes, expect: type[Any] | tuple[type, ...] | None = None, max_items: int | None = None
) -> Any:
    """Decode bytes to a message; ``expect`` narrows which top-level types are acceptable,
    ``max_items`` bounds how many CBOR items the bytes may hold (for input from the network)."""
    if max_items is not None and len(data) > max_items:
        count_items(data, max_items)
    try:
        value = cbor2.loads(data, **_OPTIONS) if max_items is None else _loads_whole(data)
        if type(value) is list and value and type(value[0]) is int:
            spec = _BY_ID.get(value[0])
            value = spec.child(value) if spec is not None else _message(value)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("message nested too deeply") from None
    except Exception as exc:  # cbor2 raises several types for malformed input
        cause = exc.__cause__
        if isinstance(cause, DecodeError):
            raise cause from None
        raise DecodeError(f"malformed CBOR: {exc}") from None
    if expect is not None and not isinstance(value, expect):
        raise DecodeError(f"unexpected message type {type(value).__name__}")
    return value


def _loads_whole(data: bytes) -> Any:
    """``cbor2.loads`` for input from the network, which must be one CBOR item and nothing
    after it: ``loads`` ignores whatever follows the first item (0.7 us more per message)."""
    fp = io.BytesIO(data)
    value = cbor2.CBORDecoder(fp, **_OPTIONS).decode()
    if fp.tell() != len(data):
        raise DecodeError(f"malformed CBOR: {len(data) - fp.tell()} bytes after the message")
    return value


def _keep_message_tag(tag: cbor2.CBORTag, immutable: bool = False) -> Any:
    if tag.tag != MESSAGE_TAG:
        raise DecodeError(f"CBOR tag {tag.tag} is not allowed")
    return tag


# The same refusals, with messages left as tags (``peek`` reads one's head, building nothing).
_PEEK_OPTIONS = {**_OPTIONS, "tag_hook": _keep_message_tag}


def peek(data: bytes, cls: type, count: int) -> list[int]:
    """The first ``count`` fields of a ``cls`` message, which must be ints, without building
    the rest: for a receiver that needs only the head of a large message (a watch hub with no
    watcher notes how far an event batch goes and drops its events)."""
    spec = _spec_for(cls)
    if spec is None:
        raise TypeError(f"{cls.__name__} is not a registered message")
    try:
        value = cbor2.loads(data, **_PEEK_OPTIONS)
    except Exception as exc:  # cbor2 raises several types for malformed input
        cause = exc.__cause__
        raise (cause if isinstance(cause, DecodeError) else DecodeError(f"malformed CBOR: {exc}")) from None
    body = value.value if type(value) is cbor2.CBORTag and value.tag == MESSAGE_TAG else value
    if not isinstance(body, list | tuple) or len(body) <= count or body[0] != spec.type_id:
        raise DecodeError(f"unexpected message: expected {cls.__name__}")
    head = list(body[1 : count + 1])
    if any(type(v) is not int for v in head):
        raise DecodeError(f"{cls.__name__}: expected ints in its first {count} fields")
    return head


def registered() -> dict[int, type]:
    """Every registered message by type id (for the CDDL rendering and tests)."""
    load_all()
    return {tid: spec.cls for tid, spec in sorted(_BY_ID.items())}


def field_names(cls: type) -> tuple[str, ...]:
    spec = _spec_for(cls)
    if spec is None:
        raise TypeError(f"{cls.__name__} is not a registered message")
    return spec.names
