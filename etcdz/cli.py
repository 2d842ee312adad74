"""``etcdzctl``: etcdctl's commands, flags and output, against etcdz.

    etcdzctl [--endpoints tcp://127.0.0.1:2379] [-w simple|json|table] [--command-timeout 5s] \\
        put|get|del|txn|compaction|endpoint status|health|hashkv|member ...|move-leader ...|
        lease ...|watch ...|alarm list|disarm|defrag|snapshot save|status|restore|
        user ...|role ...|auth enable|disable|status|check perf  [--user name[:password]] [--password ...]

Errors go to stderr as ``Error: <etcd's text>`` with exit code 1, as etcdctl's do.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from etcdz._cli_flags import (
    OUTPUT_FORMATS,
    SORT_TARGETS,
    Parser,
    UsageError,
    environment_argv,
    kv_parsers,
    parser,
)

if TYPE_CHECKING:
    from etcdz.client import Client

# The client, the messages and each command's own module are imported when a command runs, not
# here: every call pays for what this module imports (see the start-up figures in docs/performance.md).
# A command group's module, by command (each has run(args, client, out, mode)).
_GROUPS = {
    "alarm": ("etcdz._cli_maintenance", "run_alarm"),
    "member": ("etcdz._cli_cluster", "run_member"),
    "lease": ("etcdz._cli_lease", "run"),
    "user": ("etcdz._cli_auth", "run"),
    "role": ("etcdz._cli_auth", "run"),
    "auth": ("etcdz._cli_auth", "run"),
}


def request_for(args: argparse.Namespace, stdin: Any = None) -> Any:
    """The request a put/get/del command line stands for (shared by txn's op lines)."""
    from etcdz import _cli_format as fmt
    from etcdz import ops
    from proto_schemas.kv import SortOrder, SortTarget

    if args.command == "put":
        value = args.value
        if value is None:
            if args.ignore_value:
                value = ""
            elif stdin is None:
                raise UsageError("put command needs 1 argument and input from stdin or 2 arguments", 128)
            else:
                value = stdin.read()
                if not value:  # etcdctl: empty input is no value
                    raise UsageError("put command needs 1 argument and input from stdin or 2 arguments", 128)
        lease = fmt.parse_int(args.lease, 16, "bad lease ID ({}), expecting ID in Hex")
        return ops.put(
            args.key,
            value,
            lease=lease,
            prev_kv=args.prev_kv,
            ignore_value=args.ignore_value,
            ignore_lease=args.ignore_lease,
        )
    if args.command in ("get", "del") and (args.prefix or args.from_key) and args.range_end is not None:
        raise fmt.ExitError(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            fmt.EXIT_BAD_ARGS,
        )
    if args.command == "get":
        if args.prefix and args.from_key:
            raise UsageError("`--prefix` and `--from-key` cannot be set at the same time, choose one")
        if args.consistency not in ("l", "s"):
            raise fmt.ExitError(f'unknown consistency flag "{args.consistency}"', EXIT_BAD_FEATURE)
        orders = {"": SortOrder.NONE, "ASCEND": SortOrder.ASCEND, "DESCEND": SortOrder.DESCEND}
        if args.order.upper() not in orders:
            raise fmt.ExitError(f"bad sort order {args.order}", EXIT_BAD_FEATURE)
        if args.sort_by and args.sort_by.upper() not in SORT_TARGETS:
            raise fmt.ExitError(f"bad sort target {args.sort_by}", EXIT_BAD_FEATURE)
        order = orders[args.order.upper()]
        target = SortTarget[SORT_TARGETS.get(args.sort_by.upper(), "KEY")]
        if args.sort_by and order == SortOrder.NONE:
            order = SortOrder.ASCEND  # etcdctl: a sort target alone sorts ascending
        return ops.get(
            args.key,
            range_end=args.range_end,
            prefix=args.prefix,
            from_key=args.from_key,
            limit=args.limit,
            revision=args.rev,
            sort_order=order,
            sort_target=target,
            serializable=args.consistency == "s",
            keys_only=args.keys_only,
            count_only=args.count_only,
            min_create_revision=args.min_create_rev,
            max_create_revision=args.max_create_rev,
            min_mod_revision=args.min_mod_rev,
            max_mod_revision=args.max_mod_rev,
        )
    if args.command == "del":
        if args.prefix and args.from_key:
            raise UsageError("`--prefix` and `--from-key` cannot be set at the same time, choose one")
        return ops.delete(
            args.key,
            range_end=args.range_end,
            prefix=args.prefix,
            from_key=args.from_key,
            prev_kv=args.prev_kv,
        )
    raise UsageError(f"unknown command {args.command!r}")


def _txn_op(argv: list[str]) -> Any:
    sub = Parser(prog="txn").add_subparsers(dest="command", required=True)
    kv_parsers(sub)
    return request_for(
        sub._name_parser_map[argv[0]].parse_args(argv[1:], argparse.Namespace(command=argv[0]))
    )


class Output:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.out = sys.stdout.buffer

    def lines(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            self.out.write(line + b"\n")
        self.out.flush()

    def text(self, text: str) -> None:
        self.lines([text.encode()])


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


Connect = Callable[..., "Client"]  # (endpoints, **Client options) -> a client with the command's flags


def connector(args: argparse.Namespace) -> Connect:
    """Clients as the global flags describe them (timeouts, credentials, watch hubs)."""
    from etcdz import _cli_format as fmt

    user, sep, password = args.user.partition(":")
    if args.password:
        if sep:
            raise UsageError("--user and --password cannot both carry a password")
        password = args.password
    elif user and not sep:
        try:
            password = getpass.getpass("Password: ")
        except EOFError:  # no terminal and nothing on stdin
            raise UsageError(f"no password given for user {user}") from None
    options: dict[str, Any] = {
        "timeout": args.command_timeout,
        "dial_timeout": args.dial_timeout,
        "watch_endpoints": _comma_list(args.watch_endpoints),
        "user": user or None,
        "password": password,
        "server_key": args.cacert or None,
        "client_key": args.key or args.cert or None,
    }

    from etcdz.client import Client
    from etcdz.errors import EtcdzError

    def connect(endpoints: list[str], **changes: Any) -> Client:
        client = Client(endpoints, **{**options, **changes})
        if client.user is not None:
            try:
                client.auth_token()  # as etcdctl: a failed login fails the command at once
            except EtcdzError as exc:
                client.close()
                raise fmt.ExitError(exc.message, fmt.EXIT_BAD_CONNECTION) from None
        return client

    return connect


EXIT_BAD_FEATURE = 4  # etcdctl's code for an output format or an option it does not have
# The output formats each command has beyond simple, json and table (etcdctl's printers).
_ALL = ("simple", "json", "table", "fields", "protobuf")
_FIELDS = ("simple", "json", "table", "fields")
FORMATS = {
    **dict.fromkeys(("put", "get", "del", "txn", "member"), _ALL),
    **dict.fromkeys(("compaction", "defrag", "lease", "endpoint", "watch", "user", "role"), _FIELDS),
}
API_VERSION = "3.5"  # the etcd API etcdz speaks (the gateway's VERSION, major.minor)


def _refusals(args: argparse.Namespace) -> None:
    """What cannot apply to etcdz fails clearly before anything reaches a member."""
    from etcdz import _cli_format as fmt

    if args.write_out not in OUTPUT_FORMATS:
        raise fmt.ExitError("unsupported output format", EXIT_BAD_FEATURE)
    if args.write_out not in FORMATS.get(args.command, ("simple", "json", "table")):
        raise fmt.ExitError(f"{args.write_out} not supported as output format", EXIT_BAD_FEATURE)
    if args.discovery_srv or args.discovery_srv_name:
        raise fmt.ExitError("etcdz does not discover members by DNS SRV records: give --endpoints")
    if args.insecure_skip_tls_verify:
        raise fmt.ExitError("--insecure-skip-tls-verify: etcdz always verifies the members' CurveZMQ key")
    refused = {
        ("migrate", ""): "etcdz has no v2 store: there is nothing to migrate",
        ("snapshot", "wal_dir"): "--wal-dir: an etcdz member keeps its WAL inside --data-dir",
        ("snapshot", "skip_hash_check"): "--skip-hash-check: an etcdz snapshot always carries its hash",
    }
    for (command, flag), message in refused.items():
        if args.command == command and (not flag or getattr(args, flag, None)):
            raise fmt.ExitError(message)


def run(args: argparse.Namespace, out: Output) -> int:
    from etcdz import _cli_format as fmt

    _refusals(args)
    if args.command == "version":
        out.text(f"etcdctl version: {_own_version()}\nAPI version: {API_VERSION}")
        return 0
    if args.command == "completion":
        from etcdz._cli_extra import completion

        out.text(completion(args.shell))
        return 0
    connect = connector(args)
    timeout = args.command_timeout
    endpoints = _comma_list(args.endpoints)
    if args.command == "make-mirror":
        from etcdz._cli_extra import run_make_mirror

        return run_make_mirror(args, endpoints, connect, out.text)
    if getattr(args, "cluster", False):  # endpoint ..., defrag: every member's client URL
        from etcdz._cli_cluster import cluster_endpoints

        with connect(endpoints) as client:
            endpoints = cluster_endpoints(client)
    if args.command == "endpoint":
        if args.action == "hashkv":
            from etcdz._cli_maintenance import run_hashkv

            return run_hashkv(endpoints, connect, out.text, _stderr, out.mode, args.rev)
        return _endpoint(args, endpoints, connect, out)
    slow = max(timeout, 60.0)
    if args.command in ("defrag", "snapshot"):
        from etcdz import _cli_maintenance as maint

        if args.command == "defrag" and args.data_dir:
            return maint.run_offline_defrag(args.data_dir)
        if args.command == "defrag":
            return maint.run_defrag(endpoints, lambda e: connect(e, timeout=slow), out.text, _stderr)
        return maint.run_snapshot(
            args, endpoints, lambda e: connect(e, timeout=slow), out.text, _stderr, out.mode
        )
    if args.command == "check" and args.action == "datascale":
        from etcdz._cli_extra import run_datascale

        return run_datascale(args, endpoints, connect, out.text)
    if args.command == "check":
        from etcdz._cli_check import run as run_check

        return run_check(args, endpoints, connect, out.out)
    if args.command == "move-leader":
        from etcdz._cli_cluster import run_move_leader

        return run_move_leader(args, endpoints, connect, out.text)
    if args.command in _GROUPS:
        module, name = _GROUPS[args.command]
        command: Callable[..., int] = getattr(importlib.import_module(module), name)
        with connect(endpoints) as client:
            return command(args, client, out.text, out.mode)
    if args.command in ("lock", "elect"):
        from etcdz import _cli_lock

        with connect(endpoints) as client:
            return (_cli_lock.run_lock if args.command == "lock" else _cli_lock.run_elect)(
                args, client, out.lines, out.mode
            )
    if args.command == "watch":
        from etcdz._cli_watch import run as run_watch

        with connect(endpoints) as client:
            return run_watch(args, client, out.lines, out.mode)
    if out.mode == "table":
        raise UsageError("table not supported as output format")
    with connect(endpoints) as client:
        if args.command == "compaction":
            try:
                revision = int(args.revision, 10)
            except ValueError:
                raise fmt.ExitError(f'strconv.ParseInt: parsing "{args.revision}": invalid syntax') from None
            resp = client.compact(revision, physical=args.physical)
            out.text(
                fmt.to_json(fmt.response_json(resp))
                if out.mode == "json"
                else f"compacted revision {revision}"
            )
            return 0
        if args.command == "txn":
            from etcdz import _cli_txn as txnfmt

            prompt = out.text if args.interactive else None
            request = txnfmt.build(txnfmt.read_sections(iter(sys.stdin), prompt), _txn_op)
        else:
            request = request_for(args, sys.stdin)
        resp = client.call(request)
    if out.mode == "json":
        out.text(fmt.to_json(fmt.response_json(resp)))
    elif out.mode == "fields":
        out.text("\n".join(fmt.fields(resp)))
    elif out.mode == "protobuf":
        from etcdz._cli_protobuf import encode

        out.out.write(encode(resp))  # as etcdctl: the bytes alone, no newline
        out.out.flush()
    elif args.command == "get" and args.count_only:
        out.text(str(resp.count))
    else:
        out.lines(fmt.simple(resp, value_only=getattr(args, "print_value_only", False), hex_=args.hex))
    return 0


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("etcdz")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _endpoint(args: argparse.Namespace, endpoints: list[str], connect: Connect, out: Output) -> int:
    from etcdz import _cli_format as fmt
    from etcdz.errors import EtcdzError, PermissionDenied, Unhealthy

    code = 0
    rows: list[Any] = []
    for endpoint in endpoints:
        with connect([endpoint]) as client:
            started = time.perf_counter()
            try:
                if args.action == "health":
                    try:
                        client.get("health")
                    except PermissionDenied:
                        pass  # as etcdctl: the refusal went through consensus, which is the point
                    problems = client.status().errors  # what the member cannot serve (a hub down)
                    if problems:
                        raise Unhealthy("; ".join(problems))
                    rows.append((endpoint, True, fmt.duration(time.perf_counter() - started), ""))
                else:
                    rows.append((endpoint, client.status()))
            except EtcdzError as exc:
                code = 1
                if args.action == "health":
                    rows.append((endpoint, False, fmt.duration(time.perf_counter() - started), exc.message))
                else:
                    sys.stderr.write(f"Failed to get the status of endpoint {endpoint} ({exc.message})\n")
    if args.action == "health":
        if out.mode == "fields":
            for e, healthy, took, err in rows:
                out.text(
                    f'"Endpoint" : {fmt.go_quote(e)}\n"Health" : {str(healthy).lower()}\n'
                    f'"Took" : {took}\n"Error" : {err}\n'
                )
        elif out.mode == "json":
            out.text(
                fmt.to_json(
                    [
                        {"endpoint": e, "health": h, "took": t, **({"error": err} if err else {})}
                        for e, h, t, err in rows
                    ]
                )
            )
        else:
            for e, healthy, took, err in rows:
                line = (
                    f"{e} is healthy: successfully committed proposal: took = {took}"
                    if healthy
                    else f"{e} is unhealthy: failed to commit proposal: {err}"
                )
                (out.text if healthy else _stderr)(line)
        if code:
            _stderr("Error: unhealthy cluster")
        return code
    if out.mode == "fields":
        for e, st in rows:
            out.text("\n".join([*fmt.status_fields(st), f'"Endpoint" : {fmt.go_quote(e)}', ""]))
    elif out.mode == "json":
        out.text(fmt.to_json([fmt.status_json(e, st) for e, st in rows]))
    elif out.mode == "table":
        out.text(fmt.table(fmt.STATUS_COLUMNS, [fmt.status_row(e, st) for e, st in rows]))
    else:
        for e, st in rows:
            out.text(", ".join(fmt.status_row(e, st)))
    return code


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from_env, warnings = environment_argv(os.environ, argv)
    for warning in warnings:
        _stderr(f"Warning: {warning}")
    argv = [*from_env, *argv]
    try:
        try:
            args = parser(argv).parse_args(argv)
        except UsageError:  # a flag's value taken for the command: the whole grammar decides
            args = parser().parse_args(argv)
        if args.command == "help":  # etcdctl help [command...]: that command's --help
            topic = [w for w in args.topic if not w.startswith("-")]
            parser(topic).parse_args([*topic, "--help"])
    except UsageError as exc:
        _stderr(f"Error: {exc}")
        return exc.code
    from etcdz import _cli_format as fmt
    from etcdz.errors import EtcdzError

    try:
        return run(args, Output(args.write_out))
    except UsageError as exc:
        _stderr(f"Error: {exc}")
        return exc.code
    except fmt.ExitError as exc:
        _stderr(f"Error: {exc.message}")
        return exc.code
    except EtcdzError as exc:
        _stderr(f"Error: {exc.message}")
        return 1
    except (ValueError, OSError) as exc:
        _stderr(f"Error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
