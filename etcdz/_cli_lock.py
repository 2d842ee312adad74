"""``etcdzctl lock`` and ``etcdzctl elect``: etcdctl's coordination commands.

``lock NAME`` waits for the lock, prints its key (then the empty value line, as etcdctl's
``get`` display does) and holds it until SIGINT or SIGTERM; ``lock NAME COMMAND ...`` runs the
command while holding it, with ``ETCD_LOCK_KEY`` and ``ETCD_LOCK_REV`` in its environment,
and fails with ``exit status N`` if the command does. ``elect NAME PROPOSAL`` campaigns,
prints the leader's key and value once elected and leads until interrupted (then resigns);
``elect -l NAME`` prints every leader, key and value, as they change. Either way the session's
lease ends with the command, so nothing is left behind (a killed command's lease expires
after ``--ttl`` seconds).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from etcdz import _cli_format as fmt

if TYPE_CHECKING:
    from etcdz.client import Client

Lines = Callable[[Sequence[bytes]], None]


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM as SIGINT: both end the wait or the hold by ``KeyboardInterrupt``, so the
    lock's key is deleted and the session revoked on the way out."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _hold(session: Any) -> None:
    """Until interrupted; an error if the session is lost first."""
    while not session.done:
        time.sleep(0.2)
    raise fmt.ExitError("session expired", 1)


def _show(kv: Any, lines: Lines, mode: str, header: Any = None) -> None:
    if mode == "json":
        from proto_schemas.kv import RangeResponse

        lines([fmt.to_json(fmt.response_json(RangeResponse(header=header, kvs=[kv], count=1))).encode()])
    else:
        lines(fmt.kv_lines(kv))


def run_lock(args: argparse.Namespace, client: Client, lines: Lines, mode: str) -> int:
    from etcdz.concurrency import Mutex, Session

    command = list(args.exec)
    if command[:1] == ["--"]:
        command = command[1:]
    if not args.name:
        raise fmt.ExitError(
            "lock takes a lock name argument and an optional command to execute", fmt.EXIT_BAD_ARGS
        )
    with _interruptible():
        try:
            with Session(client, ttl=args.ttl) as session:
                mutex = Mutex(session, args.name)
                mutex.lock()
                try:
                    assert mutex.key is not None
                    if command:
                        return _exec(command, mutex.key, mutex.revision)
                    resp = client.get(mutex.key)
                    if resp.kvs:
                        _show(resp.kvs[0], lines, mode, resp.header)
                    _hold(session)
                finally:
                    mutex.unlock()
        except KeyboardInterrupt:
            return 0
    return 0


def _exec(command: list[str], key: bytes, revision: int) -> int:
    env = {
        **os.environ,
        "ETCD_LOCK_KEY": key.decode(errors="surrogateescape"),
        "ETCD_LOCK_REV": str(revision),
    }
    try:
        code = subprocess.run(command, env=env).returncode
    except FileNotFoundError:
        if "/" in command[0]:  # a path: tried as given, as Go's exec does
            raise fmt.ExitError(f"fork/exec {command[0]}: no such file or directory", 1) from None
        raise fmt.ExitError(f'exec: "{command[0]}": executable file not found in $PATH', 1) from None
    except PermissionError as exc:
        raise fmt.ExitError(f"fork/exec {command[0]}: {(exc.strerror or str(exc)).lower()}", 1) from None
    if code != 0:
        raise fmt.ExitError(f"exit status {code}", 1)
    return 0


def run_elect(args: argparse.Namespace, client: Client, lines: Lines, mode: str) -> int:
    from etcdz.concurrency import Election, Session, observe

    if not args.name:
        raise fmt.ExitError(
            "elect takes one election name argument and an optional proposal argument", fmt.EXIT_BAD_ARGS
        )
    if args.listen and args.proposal is not None:
        raise fmt.ExitError("proposal given but -l is set", fmt.EXIT_BAD_ARGS)
    if not args.listen and args.proposal is None:
        raise fmt.ExitError("no proposal argument but -l not set", fmt.EXIT_BAD_ARGS)
    with _interruptible():
        try:
            if args.listen:
                for kv in observe(client, args.name):
                    _show(kv, lines, mode)
                return 0
            with Session(client, ttl=args.ttl) as session:
                election = Election(session, args.name)
                election.campaign(args.proposal)
                try:
                    _show(election.leader(), lines, mode)
                    _hold(session)
                finally:
                    election.resign()
        except KeyboardInterrupt:
            return 0
    return 0
