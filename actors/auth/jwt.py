"""JWT auth tokens (etcd's ``--auth-token jwt,...``): signed, so any member holding the key
checks one alone, with nothing sent through raft and nothing kept per token.

Rules (etcd's JWT provider):
- A token names its user and the auth revision it was issued at, and expires ``ttl_s`` after
  issue (wall-clock ``exp``, as members compare it across hosts); use does not renew it.
- A token issued before the auth store last changed is refused with ``revision of auth store
  is old`` (so a revoked role or a changed password ends every older token, and the SDK logs
  in again).
- Signed with HMAC (HS256, HS384, HS512) under a secret key file shared by the members, as
  the Curve peer key is. A token whose header names any other algorithm is refused: the
  header never chooses how the token is checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

METHODS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
MIN_KEY_BYTES = 32
MAX_TOKEN_BYTES = 4096  # a token longer than any we issue is not worth decoding


class JwtKeyError(ValueError):
    """The key file cannot sign tokens (missing, open to others, too short)."""


@dataclass(frozen=True)
class JwtOptions:
    """``--auth-token jwt,priv-key=FILE,sign-method=HS256,ttl=5m`` once parsed."""

    key_file: str
    method: str = "HS256"
    ttl_s: float = 300.0


def load_key(path: str) -> bytes:
    """The signing secret: the key file's bytes, which only its owner may read."""
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            key = f.read()
    except OSError as exc:
        raise JwtKeyError(f"cannot read the JWT key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise JwtKeyError(f"{path} is readable by others: chmod 600 it")
    if len(key) < MIN_KEY_BYTES:
        raise JwtKeyError(f"{path} holds {len(key)} bytes; a JWT key needs at least {MIN_KEY_BYTES}")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class JwtTokens:
    def __init__(self, key: bytes, method: str, ttl_s: float, clock: Callable[[], float]) -> None:
        """``clock``: wall-clock seconds (``exp`` is compared on other members)."""
        if method not in METHODS:
            raise JwtKeyError(f"unknown JWT sign-method {method!r} (HS256, HS384 or HS512)")
        self._key = key
        self._hash = METHODS[method]
        self._header = _b64(json.dumps({"alg": method, "typ": "JWT"}, separators=(",", ":")).encode())
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, user: str, revision: int) -> str:
        claims = {"username": user, "revision": revision, "exp": int(self._clock() + self.ttl_s)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{self._header}.{payload}"
        return f"{signed}.{self._sign(signed)}"

    def check(self, token: str) -> tuple[str, int] | None:
        """(user, auth revision) of a token this cluster signed and that has not expired."""
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            return None
        header, payload, signature = token.split(".")
        if header != self._header or not hmac.compare_digest(signature, self._sign(f"{header}.{payload}")):
            return None
        try:
            claims = json.loads(_unb64(payload))
            user, revision, exp = claims["username"], claims["revision"], claims["exp"]
        except (ValueError, TypeError, KeyError):
            return None
        if not (isinstance(user, str) and type(revision) is int and type(exp) is int):
            return None
        if exp <= self._clock():
            return None
        return user, revision

    def _sign(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode(), self._hash).digest())
