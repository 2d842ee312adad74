"""etcdctl's ``txn`` input format: compares, a blank line, success ops, a blank line, failure
ops, a blank line. A compare is ``target("key") op "value"`` with target one of ``mod``,
``create``, ``version``, ``val``/``value``, ``lease`` and op one of ``= != < >``; an op is a
``put``/``get``/``del`` command line as on the command line."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from typing import Any

from etcdz import ops
from proto_schemas.kv import Compare, CompareResult, CompareTarget

_COMPARE = re.compile(r'^\s*(\w+)\("((?:[^"\\]|\\.)*)"\)\s*(!=|=|<|>)\s*(.+?)\s*$')
_TARGETS = {
    "mod": (CompareTarget.MOD, "mod_revision"),
    "create": (CompareTarget.CREATE, "create_revision"),
    "version": (CompareTarget.VERSION, "version"),
    "ver": (CompareTarget.VERSION, "version"),
    "val": (CompareTarget.VALUE, "value"),
    "value": (CompareTarget.VALUE, "value"),
    "lease": (CompareTarget.LEASE, "lease"),
}
_RESULTS = {
    "=": CompareResult.EQUAL,
    "!=": CompareResult.NOT_EQUAL,
    "<": CompareResult.LESS,
    ">": CompareResult.GREATER,
}


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    return text


def parse_compare(line: str) -> Compare:
    m = _COMPARE.match(line)
    if not m:
        raise ValueError(f"malformed comparison: {line!r}")
    target_name, key, op, raw = m.groups()
    if target_name not in _TARGETS:
        raise ValueError(f"malformed comparison: unknown target {target_name!r}")
    target, field = _TARGETS[target_name]
    value: Any = _unquote(raw)
    if target == CompareTarget.VALUE:
        value = value.encode()
    else:
        try:
            value = int(value, 16) if target == CompareTarget.LEASE and value.startswith("0x") else int(value)
        except ValueError:
            raise ValueError(f"malformed comparison: {raw!r} is not a number") from None
    return Compare(key=_unquote(f'"{key}"').encode(), target=target, result=_RESULTS[op], **{field: value})


EXIT_INVALID_INPUT = 3  # etcdctl's code for input it cannot read


def read_sections(lines: Iterator[str], prompt: Callable[[str], None] | None = None) -> list[list[str]]:
    """Three blank-line-terminated sections. As etcdctl, input that ends before the third
    blank line is refused (``Error: EOF``, exit 3) instead of sending a txn cut short."""
    from etcdz._cli_format import ExitError

    names = ["compares:", "success requests (get, put, del):", "failure requests (get, put, del):"]
    sections: list[list[str]] = []
    for name in names:
        if prompt:
            prompt(name)
        current: list[str] = []
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip():
                break
            current.append(line)
        else:
            raise ExitError("EOF", EXIT_INVALID_INPUT)
        sections.append(current)
    return sections


def parse_op(line: str, parse_command: Callable[[list[str]], Any]) -> Any:
    argv = shlex.split(line)
    if not argv or argv[0] not in ("get", "put", "del"):
        raise ValueError(f"invalid txn request: {line!r} (use get, put or del)")
    return parse_command(argv)


def build(sections: list[list[str]], parse_command: Callable[[list[str]], Any]) -> Any:
    compares, success, failure = sections
    return ops.txn(
        [parse_compare(c) for c in compares],
        [parse_op(s, parse_command) for s in success],
        [parse_op(f, parse_command) for f in failure],
    )
