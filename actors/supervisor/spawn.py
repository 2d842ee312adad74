"""How the supervisor starts an actor: a fork of itself, its imports already done.

An actor started by exec pays the interpreter's start and its imports (zmq, structlog, cbor2,
plyvel, the message classes) before it can serve: about 0.3 s of CPU each, 2 s of wall time when
a node's seven processes start together on two cores, and the same again for every restart. The
supervisor imports every actor's code once (``preload``) and forks: a fork costs milliseconds
and shares those pages with its siblings until they are written.

What a fork must not inherit, the child drops before it runs the actor: the supervisor's
blocked signals and handlers, its data-dir lock, its stdin. The supervisor holds no ZeroMQ
context when it forks (the one used to join a cluster is closed), and an actor makes its own.
The child never returns into the supervisor's code: it leaves with ``os._exit``. Its process
title names the actor (``etcdz gateway --config ...``), so ``ps`` and ``top`` tell actors apart.
"""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable

from setproctitle import setproctitle

from actors.runtime.loop import SPAWNED_VARIABLE

TITLE = "etcdz"  # a forked actor's title: "etcdz <name> <args>" (tools read it to find actors)
FORKED_MODULES = ("wal", "raft", "mvcc", "apply", "lease", "gateway", "watch", "metrics", "corruption")


def preload() -> None:
    """Import what every actor runs, once, in the supervisor (forks then share it)."""
    from proto_schemas import codec

    for actor in FORKED_MODULES:
        main = f"actors.{actor}.__main__"
        importlib.import_module(main)
        del sys.modules[main]  # run afresh as __main__ in the child; what it imported stays
    codec.load_all()


class Forked:
    """An actor forked from the supervisor, with the part of ``Popen``'s face the supervisor
    uses (poll, wait, send_signal, kill, pid, returncode)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already: it is gone, its code unknown
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_actor(name: str, module: str, args: list[str], close_fds: Iterable[int] = ()) -> Forked:
    """Fork and run ``python -m <module> <args>`` in the child, titled after ``name``."""
    spawned = time.monotonic_ns()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = 1
    try:
        _become_actor(name, module, args, close_fds, spawned)
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 (the child's last word, then it exits)
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    raise AssertionError("unreachable")  # pragma: no cover


def _become_actor(name: str, module: str, args: list[str], close_fds: Iterable[int], spawned: int) -> None:
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.environ[SPAWNED_VARIABLE] = str(spawned)
    sys.argv = [module, *args]
    setproctitle(" ".join([TITLE, name, *args]))
