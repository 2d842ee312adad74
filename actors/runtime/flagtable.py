"""Flag tables: each flag's parser, default and help, read from the command line, else the
environment (``ETCDZ_`` + the flag in upper snake case, as etcd reads ``ETCD_*``), else the
default. Shared by the member's flags (actors/supervisor/flags.py) and the standalone watch hub
and gRPC door, which run without a member and so without the supervisor.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence


def boolean(value: str) -> bool:
    """Go's bool flag values (a bare ``--flag`` means true)."""
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(value)


# Bounds on what one client may make a watch hub hold (the member's hubs and ``etcdz
# watch-hub``); beyond them ``etcdserver: too many requests``, or its watches are canceled.
WATCH_LIMIT_FLAGS: dict[str, tuple[Callable[[str], object], object, str]] = {
    "max-watch-streams": (int, 10_000, "watch streams (client connections) one watch hub serves"),
    "max-watchers-per-stream": (int, 10_000, "watchers one watch stream may hold"),
    "max-watch-queue-bytes": (
        int,
        4 << 20,
        "replies a watch hub keeps for a client that does not read; beyond, its watches are canceled",
    ),
}

# flag -> (type, default, help). Defaults are etcd's.


def watch_limits(values: Mapping[str, object]) -> dict[str, int]:
    """The watch hub bounds among parsed flag ``values`` (checked: each at least 1)."""
    limits = {name: int(values[name]) for name in WATCH_LIMIT_FLAGS}  # type: ignore[call-overload]
    for name, value in limits.items():
        if value < 1:
            raise ValueError(f"--{name} must be at least 1")
    return {
        "max_streams": limits["max-watch-streams"],
        "max_watchers_per_stream": limits["max-watchers-per-stream"],
        "max_queued_bytes": limits["max-watch-queue-bytes"],
    }


def env_name(flag: str) -> str:
    return "ETCDZ_" + flag.upper().replace("-", "_")


Table = Mapping[str, tuple[Callable[[str], object], object, str]]


def parser(table: Table, prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    for flag, (kind, default, help_text) in table.items():
        bare = {"nargs": "?", "const": "true"} if kind is boolean else {}
        p.add_argument(
            f"--{flag}",
            default=None,
            help=f"{help_text} (default: {default!r}; env {env_name(flag)})",
            **bare,  # type: ignore[arg-type]
        )
    return p


def read(
    p: argparse.ArgumentParser, table: Table, argv: Sequence[str] | None, environ: Mapping[str, str]
) -> dict[str, object]:
    """Each flag's value: the command line's, else the environment's, else the default."""
    args = vars(p.parse_args(argv))
    values: dict[str, object] = {}
    for flag, (kind, default, _) in table.items():
        raw = args[flag.replace("-", "_")]
        if raw is None:
            raw = environ.get(env_name(flag))
        if raw is None:
            values[flag] = default
        else:
            try:
                values[flag] = kind(raw)
            except ValueError:
                raise ValueError(f"--{flag}: expected {kind.__name__}, got {raw!r}") from None
    return values


def comma_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def urls(value: str) -> list[str]:
    """A comma-separated list of ZeroMQ URLs (tcp:// or ipc://)."""
    found = comma_list(value)
    for url in found:
        if not url.startswith(("tcp://", "ipc://")):
            raise ValueError(f"URL must be tcp://host:port, got {url!r}")
    return found


def parse_duration_ms(value: str) -> int:
    """Go's duration syntax for one unit (``10m``, ``5s``, ``250ms``, ``1h``) -> milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    for unit in ("ms", "s", "m", "h"):
        number = value[: -len(unit)]
        if value.endswith(unit) and number.replace(".", "", 1).isdigit():
            return int(float(number) * units[unit])
    raise ValueError(f"expected a duration like 10m, 5s or 250ms, got {value!r}")
