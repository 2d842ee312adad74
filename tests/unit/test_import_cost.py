"""Import-time budgets as sets of modules: every etcdzctl call and every SDK user pays for what
these imports pull in, so a module outside the allowed set is a regression (the wall-clock
figures are in docs/performance.md; a test asserts only which modules load)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from etcdz.client import WRITES, is_write
from proto_schemas.auth import AUTH_REQUESTS, AuthenticateRequest
from proto_schemas.kv import PutRequest, RangeRequest

WATCHED = ("etcdz", "proto_schemas", "actors", "tools", "zmq", "cbor2", "structlog", "plyvel")
WATCHED_LIBRARIES = ("jwt", "cryptography", "prometheus_client")


def loaded_after(statement: str) -> set[str]:
    script = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return {m for m in out.split() if m.split(".")[0] in (*WATCHED, *WATCHED_LIBRARIES)}


def test_the_cli_grammar_imports_no_client_no_messages_and_no_server_code() -> None:
    """``etcdzctl --help`` and argument errors need only argparse and the grammar."""
    assert loaded_after("import etcdz.cli") == {"etcdz", "etcdz.cli", "etcdz._cli_flags", "etcdz._cli_pflag"}


@pytest.mark.parametrize("statement", ["import etcdz.client", "from etcdz import Client, ops"])
def test_a_client_imports_only_the_messages_of_kv_calls(statement: str) -> None:
    """A get or a put needs the key-value messages, the envelope and the errors; the other
    protocols are imported by the first call that uses them, and server code never."""
    loaded = loaded_after(statement)
    assert {m for m in loaded if m.startswith("proto_schemas.")} == {
        "proto_schemas.codec",
        "proto_schemas.envelope",
        "proto_schemas.errors",
        "proto_schemas.kv",
    }
    assert not {m for m in loaded if m.split(".")[0] in ("actors", "tools", "structlog", "plyvel")}


def test_every_command_module_imports_no_server_code() -> None:
    modules = [
        "auth",
        "check",
        "cluster",
        "extra",
        "format",
        "lease",
        "lock",
        "maintenance",
        "pflag",
        "protobuf",
        "txn",
        "watch",
    ]
    loaded = loaded_after("; ".join(f"import etcdz._cli_{m}" for m in modules))
    assert not {m for m in loaded if m.split(".")[0] in ("actors", "tools", "structlog", "plyvel")}


def test_writes_are_never_retried_blindly() -> None:
    """The client names its writes instead of importing their classes: every name must be a
    request, and every auth request but the login is a write."""
    from proto_schemas import codec

    names = {cls.__name__ for cls in codec.registered().values()}
    assert WRITES <= names
    assert is_write(PutRequest(key=b"k")) and not is_write(RangeRequest(key=b"k"))
    for cls in AUTH_REQUESTS:
        assert is_write(cls.__new__(cls)) is (cls is not AuthenticateRequest), cls.__name__


def test_a_member_start_loads_the_jwt_and_prometheus_libraries_only_when_used() -> None:
    """The supervisor imports every actor's code before it forks them: PyJWT, cryptography
    (~100 ms) and prometheus_client (~100 ms) load with JWT keys and the first scrape."""
    loaded = loaded_after(
        "from actors.supervisor.spawn import preload; import actors.supervisor.__main__; preload()"
    )
    assert {m.split(".")[0] for m in loaded} & set(WATCHED_LIBRARIES) == set()
