"""Signed auth tokens: what a member accepts, and every way a token can be wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest

from actors.auth.jwt import MIN_KEY_BYTES, JwtKeyError, JwtTokens, load_key

KEY = b"k" * 32


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(header: dict[str, object], claims: dict[str, object], key: bytes = KEY) -> str:
    """A token signed with ``key`` over any header and claims (HS256)."""
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"


def test_a_token_names_its_user_and_revision_until_it_expires_whatever_its_use() -> None:
    clock = Clock()
    tokens = JwtTokens(KEY, "HS256", 300, clock)
    token = tokens.issue("alice", 7)
    assert tokens.check(token) == ("alice", 7)
    clock.now += 299
    assert tokens.check(token) == ("alice", 7)  # used, and not renewed by use:
    clock.now += 1
    assert tokens.check(token) is None
    other_member = JwtTokens(KEY, "HS256", 300, Clock(clock.now - 10))
    assert other_member.check(token) == ("alice", 7)  # any member with the key checks it alone


@pytest.mark.parametrize("method", ["HS256", "HS384", "HS512"])
def test_each_method_signs_and_refuses_tokens_of_another_key_or_method(method: str) -> None:
    tokens = JwtTokens(KEY, method, 300, Clock())
    token = tokens.issue("root", 1)
    assert tokens.check(token) == ("root", 1)
    assert JwtTokens(b"x" * 32, method, 300, Clock()).check(token) is None
    other = "HS256" if method != "HS256" else "HS512"
    assert JwtTokens(KEY, other, 300, Clock()).check(token) is None


def test_a_changed_claim_or_a_header_choosing_its_own_check_is_refused() -> None:
    clock = Clock()
    tokens = JwtTokens(KEY, "HS256", 300, clock)
    header, payload, signature = tokens.issue("alice", 7).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["username"] = "root"
    assert tokens.check(f"{header}.{b64(json.dumps(claims).encode())}.{signature}") is None
    exp = int(clock.now) + 60
    unsigned = forge({"alg": "none", "typ": "JWT"}, {"username": "root", "revision": 7, "exp": exp})
    assert tokens.check(unsigned.rsplit(".", 1)[0] + ".") is None
    assert tokens.check(forge({"alg": "none"}, {"username": "root", "revision": 7, "exp": exp})) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"username": 5, "revision": 7, "exp": 2_000_000_000},
        {"username": "a", "revision": "7", "exp": 2_000_000_000},
        {"username": "a", "revision": True, "exp": 2_000_000_000},
        {"username": "a", "revision": 7, "exp": 2_000_000_000.5},
        {"username": "a", "revision": 7},
        [1, 2, 3],
    ],
)
def test_signed_claims_of_the_wrong_shape_are_refused(claims: object) -> None:
    tokens = JwtTokens(KEY, "HS256", 300, Clock())
    header = tokens.issue("a", 1).split(".")[0]
    signed = f"{header}.{b64(json.dumps(claims).encode())}"
    token = f"{signed}.{b64(hmac.new(KEY, signed.encode(), hashlib.sha256).digest())}"
    assert tokens.check(token) is None


@pytest.mark.parametrize("token", ["", "a", "a.b", "a.b.c.d", "...", "%%.%%.%%", "a" * 10_000 + ".b.c"])
def test_garbage_is_refused(token: str) -> None:
    assert JwtTokens(KEY, "HS256", 300, Clock()).check(token) is None


def test_the_key_file_is_private_and_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "jwt.key"
    path.write_bytes(os.urandom(MIN_KEY_BYTES))
    path.chmod(0o600)
    assert len(load_key(str(path))) == MIN_KEY_BYTES
    path.chmod(0o640)
    with pytest.raises(JwtKeyError, match="readable by others"):
        load_key(str(path))
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(JwtKeyError, match="at least 32"):
        load_key(str(path))
    with pytest.raises(JwtKeyError, match="cannot read"):
        load_key(str(tmp_path / "missing"))
    with pytest.raises(JwtKeyError, match="sign-method"):
        JwtTokens(KEY, "RS256", 300, Clock())
