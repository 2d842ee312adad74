"""The ZAP decision and the key files, without sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zmq
from zmq.auth import create_certificates
from zmq.utils import z85

from actors.runtime.curve import KeyFileError, door_secret, for_node, load_pair, zap_reply


def request(key: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    return [b"route", b"", b"1.0", b"42", b"clients", b"127.0.0.1", b"", mechanism, z85.decode(key)]


def test_zap_allows_listed_keys_or_anyone_and_refuses_the_rest() -> None:
    mine, _ = zmq.curve_keypair()
    other, _ = zmq.curve_keypair()
    ok = zap_reply(request(mine), frozenset({mine}))
    assert ok[:2] == [b"route", b""] and ok[2:5] == [b"1.0", b"42", b"200"] and ok[6] == mine
    assert zap_reply(request(other), frozenset({mine}))[4] == b"400"
    assert zap_reply(request(other), None)[4] == b"200"  # encryption only: any key
    assert zap_reply(request(mine, b"NULL")[:-1], None)[4] == b"400"  # CURVE is required
    assert zap_reply([b"route", b"", b"9.9"], None)[4] == b"400"  # garbage is refused, not raised on
    assert zap_reply([b"r", b"", b"1.0", b"1", b"d", b"a", b"", b"CURVE", b"short"], None)[4] == b"400"


def test_key_files_must_be_private_and_hold_a_secret(tmp_path: Path) -> None:
    public, secret = create_certificates(str(tmp_path), "n")
    os.chmod(secret, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_pair(secret)
    os.chmod(secret, 0o600)
    pair = load_pair(secret)
    with pytest.raises(KeyFileError, match="no secret key"):
        load_pair(public)
    with pytest.raises(KeyFileError):
        load_pair(str(tmp_path / "missing"))
    curve = for_node(secret, True, "")
    assert curve is not None and curve.allowed == frozenset({pair.public}) and curve.server == pair.public
    assert for_node("", True, "") is None


def test_the_door_secret_is_the_same_wherever_the_members_key_is_and_none_without_it(tmp_path: Path) -> None:
    """Every member and a standalone gRPC door holding the members' key pair vouch for a client
    certificate's user under the same secret; another pair gives another one."""
    _, members = create_certificates(str(tmp_path), "members")
    _, other = create_certificates(str(tmp_path), "other")
    for secret in (members, other):
        os.chmod(secret, 0o600)
    here, there = door_secret(for_node(members, False, "")), door_secret(for_node(members, True, ""))
    assert len(here) == 32 and here == there
    assert door_secret(for_node(other, False, "")) != here
    assert door_secret(None) == b""
