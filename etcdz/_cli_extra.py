"""``etcdzctl make-mirror``, ``check datascale`` and ``completion``: etcdctl's remaining commands.

make-mirror (etcdctl's mirror.Syncer): copy every key under ``--prefix`` as of one revision to
the destination cluster, then follow the source's watch from the next revision, applying each
source revision's events as one destination transaction; the key's ``--prefix`` is replaced by
``--dest-prefix`` (by default the same prefix; ``--no-dest-prefix`` strips it). It runs until
stopped, printing the count of keys synced every 30 s, as etcdctl does.

check datascale (etcdctl 3.4): put the workload's keys under ``--prefix`` (refused if it holds
keys), delete them, compact and defragment when asked, and report the memory the member's
process grew by, read from ``process_resident_memory_bytes`` on its metrics endpoint
(``--metrics-url``: an etcdz member serves metrics apart from its client URL).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from etcdz import _cli_format as fmt
from etcdz import ops
from etcdz._cli_check import EXIT_BAD_FEATURE, clean_up, perf_key, progress_line, refuse_used_prefix
from etcdz.errors import EtcdzError
from proto_schemas.kv import EventType

if TYPE_CHECKING:
    from etcdz.client import Client

Out = Callable[[str], None]
MIRROR_REPORT_S = 30.0  # etcdctl prints the running total this often


def rename(key: bytes, prefix: bytes, dest_prefix: bytes) -> bytes:
    """etcdctl's modifyPrefix: strings.Replace(key, prefix, dest, 1)."""
    return key.replace(prefix, dest_prefix, 1) if prefix else dest_prefix + key


def run_make_mirror(
    args: argparse.Namespace, endpoints: list[str], connect: Callable[..., Client], out: Out
) -> int:
    if len(args.destination) != 1:
        raise fmt.ExitError("make-mirror takes one destination argument", fmt.EXIT_BAD_ARGS)
    if args.no_dest_prefix and args.dest_prefix:
        raise fmt.ExitError(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
            fmt.EXIT_BAD_ARGS,
        )
    prefix = args.prefix.encode()
    dest_prefix = b"" if args.no_dest_prefix else (args.dest_prefix or args.prefix).encode()
    user, _, password = args.dest_user.partition(":")
    dest_options = {
        "server_key": args.dest_cacert or None,
        "client_key": args.dest_key or args.dest_cert or None,
        "user": user or None,
        "password": args.dest_password or password,
    }
    total = [0]
    done = threading.Event()

    def report() -> None:
        while not done.wait(MIRROR_REPORT_S):
            out(str(total[0]))

    with (
        connect(endpoints) as source,
        connect([u.strip() for u in args.destination[0].split(",")], **dest_options) as dest,
    ):
        threading.Thread(target=report, daemon=True).start()
        try:
            revision = source.get(prefix, prefix=True, count_only=True).header.revision
            for kv in source.get_stream(prefix, prefix=True, revision=revision):
                dest.put(rename(kv.key, prefix, dest_prefix), kv.value)
                total[0] += 1
            with source.watch(prefix, prefix=True, start_revision=revision + 1) as watch:
                for resp in watch:
                    batch: list[object] = []
                    last = 0
                    for e in resp.events:
                        if last and e.kv.mod_revision > last:  # one destination txn per source revision
                            dest.txn(success=batch)
                            batch = []
                        last = e.kv.mod_revision
                        key = rename(e.kv.key, prefix, dest_prefix)
                        batch.append(ops.put(key, e.kv.value) if e.type == EventType.PUT else ops.delete(key))
                        total[0] += 1
                    if batch:
                        dest.txn(success=batch)
        except KeyboardInterrupt:
            return 0
        finally:
            done.set()
    return 0


@dataclass(frozen=True, slots=True)
class ScaleLoad:
    keys: int
    clients: int
    kv_size: int = 1024


SCALE_LOADS = {
    "s": ScaleLoad(keys=10_000, clients=50),
    "m": ScaleLoad(keys=100_000, clients=200),
    "l": ScaleLoad(keys=1_000_000, clients=500),
    "xl": ScaleLoad(keys=3_000_000, clients=1000),
}
SCALE_ALIASES = {
    **{name: name for name in SCALE_LOADS},
    "small": "s",
    "medium": "m",
    "large": "l",
    "xLarge": "xl",
}
MAX_CONNECTIONS = 16  # client threads share this many connections (each serialises its calls)


def resident_bytes(metrics_text: str) -> float | None:
    """The sum of ``process_resident_memory_bytes`` samples in a Prometheus text page."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("process_resident_memory_bytes")
    ]
    return sum(values) if values else None


def _memory(url: str) -> float | None:
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as page:  # noqa: S310 (an operator's URL)
            return resident_bytes(page.read().decode())
    except (OSError, ValueError):
        return None


def run_datascale(
    args: argparse.Namespace, endpoints: list[str], connect: Callable[..., Client], out: Out
) -> int:
    if args.load not in SCALE_ALIASES:
        raise fmt.ExitError(f"unknown load option {args.load}", EXIT_BAD_FEATURE)
    load = SCALE_LOADS[SCALE_ALIASES[args.load]]
    keys = load.keys if args.limit is None else args.limit
    prefix = args.prefix
    with connect(endpoints) as first:
        refuse_used_prefix(first, prefix)
        before = _memory(args.metrics_url)
        out(
            f"Start data scale check for work load [{keys} key-value pairs, "
            f"{load.kv_size} bytes per key-value, {load.clients} concurrent clients]."
        )
        failures = _put_all(first, keys, load, prefix.encode(), out)
        after = _memory(args.metrics_url)
        clean_up(first, args, endpoints, connect, out)
    if failures:
        out("FAIL: too many errors")
        for message, count in sorted(failures.items()):
            out(f"FAIL: ERROR({message}) -> {count}")
        return 1
    if before is None or after is None:
        out(
            "PASS: Approximate system memory used : unknown "
            "(no process_resident_memory_bytes at --metrics-url)."
        )
    else:
        out(f"PASS: Approximate system memory used : {(after - before) / (1024 * 1024):.2f} MB.")
    return 0


def _put_all(first: Client, keys: int, load: ScaleLoad, prefix: bytes, out: Out) -> dict[str, int]:
    """``keys`` puts of random 256-byte keys by ``load.clients`` threads; the bar's last state
    (etcdctl's redrawn bar is not drawn: its interim states carry no information a script reads)."""
    connections = [first] + [first.clone() for _ in range(1, min(load.clients, MAX_CONNECTIONS))]
    value = bytes(load.kv_size)
    lock = threading.Lock()
    state = {"next": 0, "done": 0}
    failures: dict[str, int] = {}

    def worker(i: int) -> None:
        client, rng = connections[i % len(connections)], random.Random()
        while True:
            with lock:
                if state["next"] >= keys:
                    return
                state["next"] += 1
            try:
                client.call(ops.put(perf_key(prefix, rng.randrange(2**63 - 1)), value))
            except EtcdzError as exc:
                with lock:
                    failures[exc.message] = failures.get(exc.message, 0) + 1
            with lock:
                state["done"] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(load.clients)]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for client in connections[1:]:
            client.close()
    out(progress_line(keys, keys, time.monotonic() - started, 0, True))
    return failures


def completion(shell: str) -> str:
    """A completion script of etcdzctl's commands for ``shell``."""
    from etcdz._cli_flags import _COMMANDS

    words = " ".join(sorted(_COMMANDS))
    if shell == "bash":
        return f'complete -W "{words}" etcdzctl'
    if shell == "zsh":
        return f'autoload -U +X bashcompinit && bashcompinit\ncomplete -W "{words}" etcdzctl'
    if shell == "fish":
        return f'complete -c etcdzctl -f -a "{words}"'
    raise fmt.ExitError(f"completion for {shell} is not generated by etcdzctl", EXIT_BAD_FEATURE)
