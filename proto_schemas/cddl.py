"""Render every registered message as CDDL (RFC 8610), for SDKs in other languages.

    python -m proto_schemas.cddl > etcdz.cddl

Generated from the same classes the codec uses, so it cannot drift from the wire format: each
message is ``[type_id, field...]`` with trailing defaulted fields optional (decoders also read
the form earlier versions wrote, each message inside tag 27001).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from typing import Any, Union

import proto_schemas  # noqa: F401  (registers every message)
from proto_schemas.codec import registered


def _name(cls: type) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("-")


def _type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " / ".join(_type(a) for a in typing.get_args(tp))
    if origin is list:
        return f"[* {_type(typing.get_args(tp)[0])}]"
    if origin is tuple:
        return "[" + ", ".join(_type(a) for a in typing.get_args(tp)) + "]"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return _name(tp)
    if dataclasses.is_dataclass(tp):
        return _name(tp)  # type: ignore[arg-type]
    return {int: "int", bool: "bool", bytes: "bstr", str: "tstr", float: "float"}.get(tp, "any")


def render() -> str:
    lines = ["; etcdz wire messages: [type_id, fields...]", ""]
    enums: dict[str, type[enum.IntEnum]] = {}
    for type_id, cls in registered().items():
        hints = typing.get_type_hints(cls)
        parts = []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
                enums[_name(tp)] = tp
            optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            parts.append(f"{'? ' if optional else ''}{f.name}: {_type(tp)}")
        body = ", ".join([str(type_id), *parts])
        lines.append(f"{_name(cls)} = [{body}]")
    lines.append("")
    for name, tp in sorted(enums.items()):
        lines.append(
            f"{name} = "
            + " / ".join(f"{m.value}" for m in tp)
            + "  ; "
            + ", ".join(f"{m.name}={m.value}" for m in tp)
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
