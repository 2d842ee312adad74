"""``etcdzctl watch``: etcdctl's watch command and its output.

Simple output is etcdctl's: per event its type, then the previous key and value (with
``--prev-kv``, when there was one), then the key and value, a line each. ``-i`` reads commands
from stdin: ``watch [--prefix] [--rev N] [--prev-kv] key [range_end]`` and ``progress``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from etcdz import _cli_format as fmt
from etcdz._cli_flags import Parser, UsageError, add_watch_arguments
from etcdz.errors import Compacted
from proto_schemas.kv import EventType
from proto_schemas.watch import WatchResponse

if TYPE_CHECKING:
    from etcdz.client import Client

EXIT_INTERRUPTED = 5  # etcdctl's code when the server cancels the watch


def simple_lines(resp: WatchResponse, hex_: bool = False) -> list[bytes]:
    lines: list[bytes] = []
    for e in resp.events:
        lines.append(b"PUT" if e.type == EventType.PUT else b"DELETE")
        if e.prev_kv is not None:
            lines += fmt.kv_lines(e.prev_kv, hex_=hex_)
        lines += fmt.kv_lines(e.kv, hex_=hex_)
    return lines


def fields_lines(resp: WatchResponse) -> list[bytes]:
    lines = fmt.fields_header(resp.header)
    for e in resp.events:
        lines.append(f'"Type" : {"PUT" if e.type == EventType.PUT else "DELETE"}')
        if e.prev_kv is not None:
            lines += fmt.fields_kv(e.prev_kv, "Prev")
        lines += fmt.fields_kv(e.kv)
    return [line.encode() for line in lines]


def json_line(resp: WatchResponse) -> str:
    events = []
    for e in resp.events:
        one: dict[str, Any] = {}
        if e.type == EventType.DELETE:
            one["type"] = 1
        one["kv"] = fmt.kv_json(e.kv)
        if e.prev_kv is not None:
            one["prev_kv"] = fmt.kv_json(e.prev_kv)
        events.append(one)
    h = resp.header
    header = {
        "cluster_id": h.cluster_id,
        "member_id": h.member_id,
        "revision": h.revision,
        "raft_term": h.raft_term,
    }
    return fmt.to_json(
        {
            "Header": header,
            "Events": events,
            "CompactRevision": resp.compact_revision,
            "Canceled": resp.canceled,
            "Created": resp.created,
        }
    )


def run(args: argparse.Namespace, client: Client, lines: Callable[[list[bytes]], None], mode: str) -> int:
    if args.interactive:
        return _interactive(client, lines, mode, args.hex)
    return _follow(client, args, lines, mode)


def _follow(client: Client, args: argparse.Namespace, lines: Callable[[list[bytes]], None], mode: str) -> int:
    if not args.key and not args.prefix:
        raise fmt.ExitError(
            "watch in non-interactive mode requires an argument as key or prefix", fmt.EXIT_BAD_ARGS
        )
    watch = client.watch(
        args.key,
        args.range_end,
        prefix=args.prefix,
        start_revision=args.rev,
        prev_kv=args.prev_kv,
        progress_notify=getattr(args, "progress_notify", False),
    )
    try:
        for resp in watch:
            if mode == "json":
                lines([json_line(resp).encode()])
            elif mode == "fields":
                lines(fields_lines(resp))
            else:
                lines(simple_lines(resp, args.hex))
    except Compacted as exc:
        sys.stderr.write(f"watch was canceled (etcdserver: {exc.message})\n")
        raise fmt.ExitError("watch is canceled by the server", EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        return 0
    return 0


def _interactive(client: Client, lines: Callable[[list[bytes]], None], mode: str, hex_: bool) -> int:
    parser = Parser(prog="watch", add_help=False)  # Go's flag forms, errors raised
    add_watch_arguments(parser)
    threads: list[threading.Thread] = []
    for line in sys.stdin:
        words = shlex.split(line)
        if not words:
            continue
        if words[0] == "progress":
            client.request_progress()
            continue
        if words[0] != "watch":
            sys.stderr.write(f"Invalid command {words[0]} (only support watch)\n")
            continue
        try:
            args = parser.parse_args(words[1:], argparse.Namespace(hex=hex_))
        except UsageError as exc:
            sys.stderr.write(f"Invalid command: {exc}\n")
            continue
        t = threading.Thread(target=_follow, args=(client, args, lines, mode), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return 0
