"""``etcdz``: run one member (``etcdz --help`` lists etcd's flags), or ``etcdz watch-hub ...``:
one more watch hub for a cluster, on any host."""

from __future__ import annotations

import sys

from actors.runtime.logs import configure
from actors.supervisor.flags import resolve
from actors.supervisor.identity import JoinError, resolve_identity
from actors.supervisor.node import DataDirLocked, NodeSupervisor
from actors.wal.records import WalCorruptError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch-hub"]:
        from actors.watch.__main__ import main as watch_hub

        return watch_hub(argv[1:])
    try:
        config = resolve(argv)
    except ValueError as exc:
        sys.stderr.write(f"etcdz: {exc}\n")
        return 2
    log = configure(config.name, "supervisor", config.log_format, config.log_level)
    try:
        config = resolve_identity(config)
        return NodeSupervisor(config, log).run()
    except (DataDirLocked, JoinError, WalCorruptError) as exc:
        log.error("cannot start", error=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
