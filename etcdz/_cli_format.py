"""etcdctl's output formats as pure functions: response -> text.

``simple`` prints raw keys and values (bytes, unquoted), ``json`` mirrors etcdctl's protobuf
JSON (base64 bytes, snake_case fields, zero values omitted), ``table`` exists only for the
commands where etcdctl has one.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from proto_schemas.kv import (
    DeleteRangeResponse,
    KeyValue,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    StatusResponse,
    TxnResponse,
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


EXIT_BAD_CONNECTION, EXIT_BAD_ARGS = 2, 128  # etcdctl's exit codes besides 1


class ExitError(Exception):
    """A command's failure as etcdctl reports it: ``Error: <message>`` and its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def parse_int(text: str, base: int, what: str, *, unsigned: bool = False) -> int:
    """``int(text, base)``, or etcdctl's bad-argument error in Go's own words: ``what`` may hold
    ``{}`` where the parse error goes (``"bad TTL ({})"``)."""
    try:
        value = int(text, base)
        if unsigned and value < 0:
            raise ValueError
        return value
    except ValueError:
        func = "ParseUint" if unsigned else "ParseInt"
        error = f"strconv.{func}: parsing {json.dumps(text)}: invalid syntax"
        raise ExitError(what.format(error), EXIT_BAD_ARGS) from None


def header_json(h: ResponseHeader) -> dict[str, int]:
    return {
        k: v
        for k, v in (
            ("cluster_id", h.cluster_id),
            ("member_id", h.member_id),
            ("revision", h.revision),
            ("raft_term", h.raft_term),
        )
        if v
    }


def kv_json(kv: KeyValue) -> dict[str, Any]:
    out: dict[str, Any] = {"key": _b64(kv.key)}
    for name in ("create_revision", "mod_revision", "version"):
        if getattr(kv, name):
            out[name] = getattr(kv, name)
    if kv.value:
        out["value"] = _b64(kv.value)
    if kv.lease:
        out["lease"] = kv.lease
    return out


def response_json(resp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"header": header_json(resp.header)}
    if isinstance(resp, RangeResponse):
        if resp.kvs:
            out["kvs"] = [kv_json(kv) for kv in resp.kvs]
        if resp.more:
            out["more"] = True
        if resp.count:
            out["count"] = resp.count
    elif isinstance(resp, PutResponse):
        if resp.prev_kv is not None:
            out["prev_kv"] = kv_json(resp.prev_kv)
    elif isinstance(resp, DeleteRangeResponse):
        if resp.deleted:
            out["deleted"] = resp.deleted
        if resp.prev_kvs:
            out["prev_kvs"] = [kv_json(kv) for kv in resp.prev_kvs]
    elif isinstance(resp, TxnResponse):
        if resp.succeeded:
            out["succeeded"] = True
        if resp.responses:
            out["responses"] = [{"Response": {_TXN_NAMES[type(r)]: response_json(r)}} for r in resp.responses]
    else:  # the auth responses: lists of names
        for name in ("users", "roles"):
            if getattr(resp, name, None):
                out[name] = list(getattr(resp, name))
    return out


_TXN_NAMES: dict[type, str] = {
    RangeResponse: "ResponseRange",
    PutResponse: "ResponsePut",
    DeleteRangeResponse: "ResponseDeleteRange",
    TxnResponse: "ResponseTxn",
}


def to_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def hex_escaped(raw: bytes) -> bytes:
    """etcdctl's ``--hex``: every byte as ``\\xNN``."""
    return b"".join(b"\\x%02x" % byte for byte in raw)


def kv_lines(kv: KeyValue, value_only: bool = False, hex_: bool = False) -> list[bytes]:
    key, value = (hex_escaped(kv.key), hex_escaped(kv.value)) if hex_ else (kv.key, kv.value)
    return [value] if value_only else [key, value]


def simple(resp: Any, value_only: bool = False, hex_: bool = False) -> list[bytes]:
    """The lines etcdctl's simple printer writes for a KV response."""
    if isinstance(resp, RangeResponse):
        return [line for kv in resp.kvs for line in kv_lines(kv, value_only, hex_)]
    if isinstance(resp, PutResponse):
        lines = [b"OK"]
        if resp.prev_kv is not None:
            lines += kv_lines(resp.prev_kv, hex_=hex_)
        return lines
    if isinstance(resp, DeleteRangeResponse):
        return [str(resp.deleted).encode()] + [
            line for kv in resp.prev_kvs for line in kv_lines(kv, hex_=hex_)
        ]
    if isinstance(resp, TxnResponse):
        lines = [b"SUCCESS" if resp.succeeded else b"FAILURE"]
        for r in resp.responses:
            lines.append(b"")
            lines += simple(r, hex_=hex_)
        return lines
    raise TypeError(type(resp).__name__)


def go_quote(raw: bytes | str) -> str:
    """Go's ``%q`` of a string: strconv.Quote (printable characters as they are, Go's escapes for
    the rest, ``\\xNN`` for each byte that is not UTF-8)."""
    data = raw.encode() if isinstance(raw, str) else raw
    out = ['"']
    text = data.decode("utf-8", errors="surrogateescape")
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def fields_header(h: ResponseHeader) -> list[str]:
    return [
        f'"ClusterID" : {h.cluster_id}',
        f'"MemberID" : {h.member_id}',
        f'"Revision" : {h.revision}',
        f'"RaftTerm" : {h.raft_term}',
    ]


def fields_kv(kv: KeyValue, prefix: str = "") -> list[str]:
    return [
        f'"{prefix}Key" : {go_quote(kv.key)}',
        f'"{prefix}CreateRevision" : {kv.create_revision}',
        f'"{prefix}ModRevision" : {kv.mod_revision}',
        f'"{prefix}Version" : {kv.version}',
        f'"{prefix}Value" : {go_quote(kv.value)}',
        f'"{prefix}Lease" : {kv.lease}',
    ]


def fields(resp: Any) -> list[str]:
    """The lines etcdctl's ``fields`` printer writes for a KV response (Go's ``%q`` strings)."""
    lines = fields_header(resp.header)
    if isinstance(resp, RangeResponse):
        lines += [line for kv in resp.kvs for line in fields_kv(kv)]
        return lines + [f'"More" : {str(resp.more).lower()}', f'"Count" : {resp.count}']
    if isinstance(resp, PutResponse):
        return lines + (fields_kv(resp.prev_kv, "Prev") if resp.prev_kv is not None else [])
    if isinstance(resp, DeleteRangeResponse):
        return (
            lines
            + [f'"Deleted" : {resp.deleted}']
            + [x for kv in resp.prev_kvs for x in fields_kv(kv, "Prev")]
        )
    if isinstance(resp, TxnResponse):
        lines.append(f'"Succeeded" : {str(resp.succeeded).lower()}')
        return lines + [line for r in resp.responses for line in fields(r)]
    raise TypeError(type(resp).__name__)


def human_bytes(n: int) -> str:
    """go-humanize's Bytes (SI units), as etcdctl prints DB SIZE."""
    if n < 10:
        return f"{n} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = int(math.floor(math.log(n, 1000)))
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.0f} {sizes[e]}" if val >= 10 else f"{val:.1f} {sizes[e]}"


STATUS_COLUMNS = [
    "ENDPOINT",
    "ID",
    "VERSION",
    "DB SIZE",
    "IS LEADER",
    "IS LEARNER",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "ERRORS",
]


def status_row(endpoint: str, st: StatusResponse) -> list[str]:
    return [
        endpoint,
        f"{st.header.member_id:x}",
        st.version,
        human_bytes(st.db_size),
        str(st.leader == st.header.member_id).lower(),
        str(st.is_learner).lower(),
        str(st.raft_term),
        str(st.raft_index),
        str(st.raft_applied_index),
        ", ".join(st.errors),
    ]


def status_fields(st: StatusResponse) -> list[str]:
    """etcdctl's fields printer for a status (the raft term twice: the header's, then its own)."""
    return [
        *fields_header(st.header),
        f'"Version" : {go_quote(st.version)}',
        f'"DBSize" : {st.db_size}',
        f'"Leader" : {st.leader}',
        f'"IsLearner" : {str(st.is_learner).lower()}',
        f'"RaftIndex" : {st.raft_index}',
        f'"RaftTerm" : {st.raft_term}',
        f'"RaftAppliedIndex" : {st.raft_applied_index}',
        f'"Errors" : [{" ".join(st.errors)}]',
    ]


def status_json(endpoint: str, st: StatusResponse) -> dict[str, Any]:
    status: dict[str, Any] = {"header": header_json(st.header), "version": st.version}
    for key, value in (
        ("dbSize", st.db_size),
        ("leader", st.leader),
        ("raftIndex", st.raft_index),
        ("raftTerm", st.raft_term),
        ("raftAppliedIndex", st.raft_applied_index),
        ("errors", st.errors),
        ("dbSizeInUse", st.db_size_in_use),
        ("isLearner", st.is_learner),
    ):
        if value:
            status[key] = value
    return {"Endpoint": endpoint, "Status": status}


def table(columns: list[str], rows: list[list[str]]) -> str:
    """etcdctl's (tablewriter's) table: centred headers, right-aligned cells."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head = "|" + "|".join(f" {_centre(c, w)} " for c, w in zip(columns, widths, strict=True)) + "|"
    body = ["|" + "|".join(f" {v.rjust(w)} " for v, w in zip(r, widths, strict=True)) + "|" for r in rows]
    return "\n".join([rule, head, rule, *body, rule])


def _centre(text: str, width: int) -> str:
    gap = width - len(text)
    left = (gap + 1) // 2  # tablewriter puts the odd space on the left
    return " " * left + text + " " * (gap - left)


def duration(seconds: float) -> str:
    """Go's time.Duration String() for the short durations etcdctl reports."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3f}".rstrip("0").rstrip(".") + "µs"
    if seconds < 1:
        return f"{seconds * 1e3:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def parse_duration(text: str) -> float:
    """``5s``, ``500ms``, ``1m30s`` -> seconds, as Go's time.ParseDuration reads them."""
    from etcdz._cli_pflag import go_duration

    try:
        return go_duration(text)
    except ValueError as exc:
        raise ValueError(f"invalid duration {text!r}: {exc}") from None
